"""Under GitHub Actions, text from registries and builds cannot become a workflow command; and
`publish --dry-run` refuses `--report`/`--report-env` rather than writing no report.

The runner reads a line as a command when it starts with `::` after leading whitespace (so the
indented lines of an error's tail or a traceback count) or holds `##[` anywhere. The rule lives
in cli/ci.py (`guard`); each output that quotes a registry or a build is checked here: tag names,
the errors of several REFs, log events with a traceback, the main error line.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from manifesto.cli import ci
from manifesto.cli import logging as mlog
from tests.cli.conftest import DeniedRegistry, host_of, serving
from tests.jobs.conftest import write_matrix

HOSTILE_TAGS = ["v1", "::set-output name=digest::sha256:evil", "##[add-mask]v1", "  ::error::indented", "ok\n::warning::x", "1.0"]
HOSTILE_MESSAGE = "denied\n::add-mask::v1\n  ::set-output name=digest::evil\nsee ##[error]here"


def commands_outside_stops(text: str) -> list[str]:
    """The lines of `text` the runner would run as workflow commands: every `::`-led (after
    whitespace) or `##[`-holding line not between `::stop-commands::TOKEN` and `::TOKEN::`."""
    found, stopped = [], None
    for line in text.splitlines():
        bare = line.lstrip()
        if stopped is not None:
            if bare == f"::{stopped}::":
                stopped = None
            continue
        if bare.startswith("::stop-commands::"):
            stopped = bare.removeprefix("::stop-commands::")
            continue
        if bare.startswith("::") or "##[" in line:
            found.append(line)
    assert stopped is None, "commands left stopped"
    return found


def ours(line: str) -> bool:
    """A command manifesto itself writes: an annotation (what follows its `::` is its data, which
    the runner shows and does not read for another command)."""
    return bool(re.match(r"::error( file=[^:]*)?::", line))


class _Hostile(DeniedRegistry):
    """A registry listing tags that are no tags, and answering manifests with a command in its error."""

    message = HOSTILE_MESSAGE
    tags = HOSTILE_TAGS


@pytest.fixture
def hostile() -> Iterator[str]:
    with serving(_Hostile) as server:
        yield host_of(server)


GITHUB = {"GITHUB_ACTIONS": "true"}


# ---- the rule -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, command",
    [
        ("manifesto: error: cannot reach x", False),
        ("::add-mask::x", True),
        ("   \t::add-mask::x", True),  # the runner strips leading whitespace first
        ("first\n  ::set-output name=a::b", True),
        ("tail says ##[add-mask]x", True),  # the older form counts anywhere in a line
        ("a: b :: c", False),
        ("sha256:ab linux/arm64/v8 1.0", False),
    ],
)
def test_what_could_be_a_workflow_command(text: str, command: bool) -> None:
    assert ci.could_be_command(text) is command


def test_guard_puts_such_text_between_stop_commands_markers_under_github_only() -> None:
    text = "manifesto: warning: odd\n  ::add-mask::x"
    assert ci.guard(text, environ={}) == text
    assert ci.guard("plain words", environ=GITHUB) == "plain words"
    guarded = ci.guard(text, environ=GITHUB)
    first, *middle, last = guarded.splitlines()
    token = first.removeprefix("::stop-commands::")
    assert len(token) >= 32 and token not in text and last == f"::{token}::"
    assert middle == text.splitlines()
    assert commands_outside_stops(guarded) == []


# ---- tags -----------------------------------------------------------------------------------


def test_tags_prints_only_valid_tags_and_warns_of_the_rest(cli, hostile: str) -> None:
    rc, out, err = cli("tags", f"{hostile}/app", env=GITHUB)
    assert rc == 0, err
    assert out.splitlines() == ["v1", "1.0"]
    assert "skipped 4 name(s) that are not valid tags" in err
    assert commands_outside_stops(err) == [], err
    rc, out, err = cli("tags", f"{hostile}/app")  # outside GitHub: the same tags, a plain warning
    assert rc == 0 and out.splitlines() == ["v1", "1.0"]
    assert err.startswith("manifesto: warning: ") and "::stop-commands::" not in err
    assert "'##[add-mask]v1'" in err and "'ok\\n::warning::x'" in err  # shown escaped, on one line
    assert len(err.splitlines()) == 1


def test_a_layouts_odd_tag_names_are_listed_but_issue_no_command(cli, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    layout.mkdir()
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    names = ["docker.io/library/app:1.0", "::add-mask::v1", "v2"]  # some tools write whole references
    manifests = [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + f"{i}" * 64, "size": 2,
         "annotations": {"org.opencontainers.image.ref.name": name}}
        for i, name in enumerate(names)
    ]  # fmt: skip
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": manifests}))
    rc, out, err = cli("tags", f"oci:{layout}", env=GITHUB)
    assert rc == 0, err
    assert commands_outside_stops(out) == [], out
    shown = re.sub(r"^::stop-commands::(\S+)\n(.*?)\n::\1::$", r"\2", out, flags=re.M | re.S)
    assert shown.splitlines() == sorted(names)
    rc, out, err = cli("tags", f"oci:{layout}")
    assert rc == 0 and out.splitlines() == sorted(names)


# ---- errors ---------------------------------------------------------------------------------


def test_several_refs_failing_are_annotated_and_issue_no_command(cli, hostile: str) -> None:
    rc, out, err = cli("inspect", f"{hostile}/app:v1", f"{hostile}/app:v2", env=GITHUB)
    assert rc == 3 and out.strip() == ""
    annotations = [x for x in err.splitlines() if x.startswith("::error::")]
    assert len(annotations) == 2  # one per failed REF, as the one error of a command has
    assert any("app:v1" in a for a in annotations) and any("app:v2" in a for a in annotations)
    assert [x for x in commands_outside_stops(err) if not ours(x)] == [], err
    errors = [x for x in err.splitlines() if x.startswith("manifesto: error: manifest ")]
    assert len(errors) == 2 and all(x.endswith("see ##[error]here") for x in errors)  # shown, commands off


def test_the_main_error_line_with_a_command_issues_none(cli, hostile: str, tmp_path: Path) -> None:
    rc, out, err = cli("copy", f"{hostile}/app:v1", f"oci:{tmp_path / 'o'}:v1", env=GITHUB)
    assert rc == 3
    assert [x for x in commands_outside_stops(err) if not ours(x)] == [], err


def test_a_one_line_error_holding_the_older_form_issues_none(capsys: pytest.CaptureFixture[str]) -> None:
    error = RuntimeError("registry said: ##[add-mask]v1")
    ci.report_failure(error, lambda: print(f"manifesto: error: {error}", file=__import__("sys").stderr), environ=GITHUB)
    err = capsys.readouterr().err
    assert err.splitlines()[0] == "::error::registry said: ##[add-mask]v1"  # data of our command: inert
    assert [x for x in commands_outside_stops(err) if not ours(x)] == [], err


# ---- build output and phase lines --------------------------------------------------------------


def test_a_stray_build_line_and_a_phase_line_issue_no_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from manifesto.cli.progress import Lines
    from manifesto.jobs import progress
    from manifesto.jobs.progress import Event

    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    out: list[str] = []
    groups = ci.Groups(out.append)
    groups.line("  ::add-mask::v1")  # no `[platform] ` prefix: written at once, not in a group
    Lines(out.append)(Event("linux/amd64", progress.FAILED, time.time(), text="registry said ##[add-mask]v1"))
    text = "\n".join(out)
    assert commands_outside_stops(text) == [], text
    assert "  ::add-mask::v1" in out[0].splitlines() and "linux/amd64: failed: registry said ##[add-mask]v1" in text


# ---- log events -----------------------------------------------------------------------------


@pytest.fixture
def _logs() -> Iterator[None]:
    yield
    mlog.reset()


@pytest.mark.parametrize("json_logs", [False, True])
def test_a_traceback_in_a_log_event_issues_no_command(monkeypatch: pytest.MonkeyPatch, _logs: None, json_logs: bool) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    buf = io.StringIO()
    mlog.configure(verbosity=0, debug=True, stream=buf, json=json_logs)
    try:
        raise RuntimeError("registry answered:\n::add-mask::v1\n##[set-output name=digest]evil")
    except RuntimeError:
        structlog.get_logger().exception("push_failed")
    structlog.get_logger().warning("fine", repo="lib/app")
    text = buf.getvalue()
    assert commands_outside_stops(text) == [], text
    assert "::add-mask::v1" in text and "push_failed" in text.replace(" ", "_")  # shown, commands off
    last = text.splitlines()[-1]  # an event with nothing to defuse is left as it is
    assert last.startswith("{") if json_logs else last == "manifesto: warning: fine repo=lib/app"


def test_log_events_are_left_alone_outside_github(monkeypatch: pytest.MonkeyPatch, _logs: None) -> None:
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    buf = io.StringIO()
    mlog.configure(verbosity=0, debug=True, stream=buf)
    try:
        raise RuntimeError("x\n::add-mask::v1")
    except RuntimeError:
        structlog.get_logger().exception("push_failed")
    assert "::stop-commands::" not in buf.getvalue() and "  ::add-mask::v1" in buf.getvalue().splitlines()


# ---- publish --dry-run with a report ----------------------------------------------------------


@pytest.mark.parametrize("flags", [("--report", "-"), ("--report", "r.json"), ("--report-env", "r.env")])
def test_dry_run_refuses_a_report(cli, tmp_path: Path, flags: tuple[str, str]) -> None:
    spec = write_matrix(tmp_path, "127.0.0.1:9/app", platforms=("linux/amd64",))
    flag, value = flags
    target = value if value == "-" else str(tmp_path / value)
    rc, out, err = cli("publish", "-f", str(spec), "--dry-run", flag, target)
    assert rc == 2 and out == ""
    assert err.startswith(f"manifesto: error: --dry-run does not go with {flag} ") and "publish --check" in err
    assert not (tmp_path / value).exists()


def test_build_dry_run_refuses_a_report_and_a_dry_run_alone_still_prints_its_plan(cli, tmp_path: Path) -> None:
    spec = write_matrix(tmp_path, "127.0.0.1:9/app", platforms=("linux/amd64",))
    rc, out, err = cli("build", "-f", str(spec), "-o", str(tmp_path / "layout"), "--dry-run", "--report", "-")
    assert rc == 2 and out == "" and "--dry-run does not go with --report" in err
    rc, out, err = cli("publish", "-f", str(spec), "--dry-run")
    assert rc == 0 and "linux/amd64" in out, err
