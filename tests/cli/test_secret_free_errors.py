"""No secret in any form of an error: the error line, the `--report` JSON, the GitHub step summary
and `::error` annotation, the dotenv report, and a failed build's log on the board and in lines.

Error text quotes registries and builds: a registry's error body may echo an Authorization
header, a RUN step may print a token, a URL may carry user:password. Each form is checked with
the same secrets: a hostile loopback registry end to end, and a failed build's log tail through
the real CLI entry point in this process (a real failing build would need buildah and minutes).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from manifesto import redact
from manifesto.cli import ci
from manifesto.cli import logging as mlog
from manifesto.errors import BuildError
from manifesto.jobs import progress
from manifesto.jobs.progress import Event
from tests.cli.conftest import DeniedRegistry, host_of, serving

# what each must not show, and (for the registry's answer) the words around them that must stay
SECRETS = ("abc.def.ghi", "s3cret", "hunter2x", "tok-from-run-step")
ECHOED = (
    "denied: sent Authorization: Bearer abc.def.ghi to https://user:s3cret@host/v2/ "
    "then https://host/v2/token?service=x&password=hunter2x"
)
TAIL = (
    "STEP 3/4: RUN ./fetch.sh\n"
    "curl -H 'Authorization: Bearer abc.def.ghi' https://user:s3cret@host/archive\n"
    "GET https://host/token?password=hunter2x\n"
    "token=tok-from-run-step\n"
    "error: exit status 7"
)


def assert_secret_free(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} in {where}:\n{text}"


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    yield
    mlog.reset()
    redact.clear_secrets()


def github_env(tmp_path: Path) -> dict[str, str]:
    return {
        "GITHUB_ACTIONS": "true",
        "GITHUB_OUTPUT": str(tmp_path / "github_output"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "step_summary"),
        "GITHUB_WORKSPACE": str(tmp_path),
    }


class _Echoing(DeniedRegistry):
    """A registry that answers every manifest request 400 with an error body quoting secrets."""

    message = ECHOED


@pytest.fixture
def echoing() -> Iterator[str]:
    """host:port of a loopback registry whose errors echo an Authorization header and credentials."""
    with serving(_Echoing) as server:
        yield host_of(server)


def test_a_registry_error_echoing_secrets_shows_none_in_any_output(cli, echoing: str, tmp_path: Path) -> None:
    env = github_env(tmp_path)
    report, dotenv = tmp_path / "report.json", tmp_path / "build.env"
    rc, out, err = cli(
        "copy", f"{echoing}/app:v1", f"oci:{tmp_path / 'out'}:v1",
        "--report", str(report), "--report-env", str(dotenv), env=env,
    )  # fmt: skip
    assert rc == 3, err  # DENIED: an auth error
    summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text()
    data = json.loads(report.read_text())
    for text, where in ((err, "stderr"), (report.read_text(), "report"), (summary, "summary"), (dotenv.read_text(), "dotenv")):
        assert_secret_free(text, where)
    # the error itself is still there, its secrets replaced
    line = next(x for x in err.splitlines() if x.startswith("manifesto: error:"))
    annotation = next(x for x in err.splitlines() if x.startswith("::error::"))
    for text in (line, annotation, data["error"], summary):
        assert "Authorization: Bearer [REDACTED]" in text and "https://user:REDACTED@host/v2/" in text, text
        assert "password=REDACTED" in text, text
    assert data["status"] == "failed" and "**Failed:**" in summary


def test_several_refs_each_failing_show_no_secret(cli, echoing: str, tmp_path: Path) -> None:
    rc, out, err = cli("inspect", f"{echoing}/app:v1", f"{echoing}/app:v2", env=github_env(tmp_path))
    assert rc == 3 and out.strip() == ""
    assert_secret_free(err, "stderr")
    assert err.count("Bearer [REDACTED]") == 4  # two annotations, two error lines
    rc, out, err = cli("inspect", "--referrers", f"{echoing}/app:v1", f"{echoing}/app:v2", env=github_env(tmp_path))
    assert rc == 3 and out.strip() == ""
    assert_secret_free(err, "stderr")
    assert err.count("Bearer [REDACTED]") == 4


@pytest.fixture
def failed_build(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Run the real CLI entry point in this process on a `copy` whose work fails the way a failed
    build does (jobs/builds.py: the error line, then the log's tail); returns (rc, stdout, stderr)."""
    from manifesto.cli import main as cli_main
    from manifesto.jobs import copy as copy_job

    def fail(*args: object, **kwargs: object) -> None:
        raise BuildError(f"linux/arm64/v8: build failed: buildah exited 7\n{TAIL}", log_tail=TAIL)

    monkeypatch.setattr(copy_job, "copy", fail)
    monkeypatch.setattr(cli_main, "_stop_on_signals", lambda: None)  # not in a test process

    def run(capsys: pytest.CaptureFixture[str], *argv: str, github: bool = True) -> tuple[int, str, str]:
        for name, value in github_env(tmp_path).items():
            if github:
                monkeypatch.setenv(name, value)
            else:
                monkeypatch.delenv(name, raising=False)
        rc = cli_main.main(["copy", "a.example/src:v1", f"oci:{tmp_path / 'out'}:v1", *argv])
        captured = capsys.readouterr()
        return rc, captured.out, captured.err

    return run


def test_a_failed_builds_log_tail_shows_no_secret_in_any_output(
    failed_build, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    report, dotenv = tmp_path / "report.json", tmp_path / "build.env"
    rc, out, err = failed_build(capsys, "--report", str(report), "--report-env", str(dotenv))
    assert rc == 1
    summary = Path(tmp_path / "step_summary").read_text()
    for text, where in ((err, "stderr"), (report.read_text(), "report"), (summary, "summary"), (dotenv.read_text(), "dotenv")):
        assert_secret_free(text, where)
    lines = err.splitlines()
    assert lines[0].startswith("::error::linux/arm64/v8: build failed: buildah exited 7%0ASTEP 3/4")
    assert "manifesto: error: linux/arm64/v8: build failed: buildah exited 7" in lines
    # the tail is still shown, indented under the error line, its secrets replaced
    assert "  curl -H 'Authorization: Bearer [REDACTED]' https://user:REDACTED@host/archive" in lines
    assert "  GET https://host/token?password=REDACTED" in lines and "  token=[REDACTED]" in lines
    assert json.loads(report.read_text())["error"] == "linux/arm64/v8: build failed: buildah exited 7"


def test_the_error_line_has_no_secret_outside_ci_either(failed_build, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = failed_build(capsys, "--report", "-", github=False)
    assert rc == 1 and "::error" not in err
    assert_secret_free(err, "stderr")
    assert_secret_free(out, "the report on stdout")
    assert "  token=[REDACTED]" in err.splitlines()


def test_an_internal_error_shows_no_secret(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from manifesto.cli import main as cli_main
    from manifesto.jobs import copy as copy_job

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("unexpected answer from https://user:s3cret@host/v2/")

    monkeypatch.setattr(copy_job, "copy", crash)
    monkeypatch.setattr(cli_main, "_stop_on_signals", lambda: None)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    assert cli_main.main(["copy", "a.example/src:v1", "a.example/dst:v1"]) == 1
    err = capsys.readouterr().err
    assert_secret_free(err, "stderr")
    assert err.startswith("manifesto: error: internal error: RuntimeError: unexpected answer from https://user:REDACTED@host/")


def test_a_failed_builds_log_on_the_board_shows_no_secret() -> None:
    from rich.console import Console

    from manifesto.cli.board import Board

    file = io.StringIO()
    board = Board(["linux/amd64"], file)
    for line in TAIL.splitlines():
        board.line(f"[linux/amd64] {line}")
    board(Event("linux/amd64", progress.FAILED, time.time(), text="buildah exited 7: token=tok-from-run-step"))
    logs = board.failed_logs()
    assert_secret_free(logs, "the board's failed log")
    assert "curl -H 'Authorization: Bearer [REDACTED]' https://user:REDACTED@host/archive" in logs
    screen = Console(file=io.StringIO(), width=200)
    screen.print(board.render())
    shown = screen.file.getvalue()  # type: ignore[attr-defined]
    assert_secret_free(shown, "the board")
    assert "failed: buildah exited 7: token=[REDACTED]" in shown


def test_a_failed_builds_error_in_lines_shows_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    from manifesto.cli.progress import Lines

    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    out: list[str] = []
    lines = Lines(out.append)
    lines(Event("linux/amd64", progress.STEP, time.time(), step=3, steps=4, text="RUN curl https://user:s3cret@host/x"))
    lines(Event("linux/amd64", progress.FAILED, time.time(), text=f"buildah exited 7\n{TAIL}"))
    text = "\n".join(out)
    assert_secret_free(text, "phase lines")
    assert "linux/amd64: building step 3/4 RUN curl https://user:REDACTED@host/x" in text
    assert "token=[REDACTED]" in text


def test_a_build_log_in_a_github_group_shows_no_secret() -> None:
    out: list[str] = []
    groups = ci.Groups(out.append)
    for line in TAIL.splitlines():
        groups.line(f"[linux/amd64] {line}")
    groups.line("a line of no platform: Bearer abc.def.ghi")
    groups.event(Event("linux/amd64", progress.FAILED, time.time()))
    text = "\n".join(out)
    assert_secret_free(text, "the build log group")
    assert "GET https://host/token?password=REDACTED" in out


def test_build_output_on_plain_stderr_shows_no_secret(capsys: pytest.CaptureFixture[str]) -> None:
    from manifesto.cli.publishing import _stderr

    for line in TAIL.splitlines():
        _stderr(f"[linux/amd64] {line}\n")
    err = capsys.readouterr().err
    assert_secret_free(err, "stderr")
    assert "[linux/amd64] token=[REDACTED]\n" in err


def test_an_annotation_made_from_an_error_alone_shows_no_secret() -> None:
    annotation = ci.error_annotation(RuntimeError(f"push failed\n{TAIL}"))
    assert_secret_free(annotation, "the annotation")
    assert annotation.startswith("::error::push failed%0ASTEP 3/4") and "token=[REDACTED]" in annotation
