"""CI-native output: GitHub Actions outputs, step summary, build-log groups and annotations, the
GitLab dotenv report, plain log lines, and the `--report` document (schema, timings, failure,
`--report -`).

The renderers are checked directly (escaping, heredocs, groups), and the commands end to end on
the real CLI against a real registry: publish (native builder, no tools), a split publish and
its assemble, push and copy, each with GITHUB_ACTIONS=true and temporary output files.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from manifesto.cli import ci
from manifesto.cli.report import Facts, Row
from manifesto.errors import SpecError
from manifesto.jobs import progress
from manifesto.jobs.progress import Event
from tests.jobs.conftest import write_matrix
from tests.support import Registry

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def github_env(tmp_path: Path, **more: str) -> dict[str, str]:
    """GITHUB_ACTIONS=true with output and summary files that already hold an earlier step's lines."""
    out, summary = tmp_path / "github_output", tmp_path / "step_summary"
    out.write_text("earlier=kept\n")
    summary.write_text("# earlier step\n")
    return {"GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": str(out), "GITHUB_STEP_SUMMARY": str(summary), **more}


def outputs(env: dict[str, str]) -> dict[str, str]:
    """$GITHUB_OUTPUT read as GitHub does (name=value, or name<<DELIM ... DELIM)."""
    lines = Path(env["GITHUB_OUTPUT"]).read_text().splitlines()
    out, i = {}, 0
    while i < len(lines):
        name, sep, value = lines[i].partition("=")
        if "<<" in lines[i] and (not sep or "<<" in name):
            name, delim = lines[i].split("<<", 1)
            end = lines.index(delim, i + 1)
            out[name], i = "\n".join(lines[i + 1 : end]), end + 1
            continue
        out[name], i = value, i + 1
    return out


# ---- workflow commands, escaped ---------------------------------------------------------------


def test_workflow_command_values_are_escaped_as_github_requires() -> None:
    assert ci.escape_data("50% done\r\nnext") == "50%25 done%0D%0Anext"
    assert ci.escape_property("a:b,c%\n") == "a%3Ab%2Cc%25%0A"
    assert ci.command("error", "bad: x, y\nz", file="dir,1/p:q.yaml", line=3) == (
        "::error file=dir%2C1/p%3Aq.yaml,line=3::bad: x, y%0Az"
    )


def test_a_spec_error_becomes_an_annotation_on_its_file_and_line(tmp_path: Path) -> None:
    error = SpecError("unknown key 'bogus'", file=str(tmp_path / "ci" / "platforms.yaml"), line=7)
    assert ci.error_annotation(error, str(tmp_path)) == "::error file=ci/platforms.yaml,line=7::unknown key 'bogus'"
    outside = ci.error_annotation(error, "/somewhere/else")
    assert outside.startswith(f"::error file={ci.escape_property(str(tmp_path))}/ci/platforms.yaml,line=7::")
    assert ci.error_annotation(RuntimeError("a\nb")) == "::error::a%0Ab"


def test_an_output_with_a_line_break_is_written_as_a_heredoc() -> None:
    assert ci.output_lines("digest", "sha256:ab") == "digest=sha256:ab\n"
    text = ci.output_lines("tags", "a\nb")
    name, delim = text.splitlines()[0].split("<<")
    assert name == "tags" and delim.startswith("ghadelimiter_")
    assert text == f"tags<<{delim}\na\nb\n{delim}\n"


def test_build_logs_come_out_in_one_group_per_platform_and_issue_no_commands() -> None:
    out: list[str] = []
    groups = ci.Groups(out.append)
    groups.line("[linux/amd64] STEP 1/2: FROM scratch")
    groups.line("[linux/arm64/v8] STEP 1/2: FROM scratch")
    groups.line("[linux/amd64] ::set-output name=digest::sha256:evil")
    groups.event(Event("linux/arm64/v8", progress.FAILED, time.time(), text="boom"))
    groups.line("[linux/amd64] STEP 2/2: COPY a /a")
    groups.event(Event("linux/amd64", progress.BUILT, time.time()))
    assert out[0] == "::group::linux/arm64/v8 build log"
    token = out[1].removeprefix("::stop-commands::")
    assert out[1:5] == [f"::stop-commands::{token}", "STEP 1/2: FROM scratch", f"::{token}::", "::endgroup::"]
    second = out[5:]
    token2 = second[1].removeprefix("::stop-commands::")
    assert token2 != token and len(token2) >= 32
    assert second == [
        "::group::linux/amd64 build log",
        f"::stop-commands::{token2}",
        "STEP 1/2: FROM scratch",
        "::set-output name=digest::sha256:evil",  # inside stop-commands: GitHub ignores it
        "STEP 2/2: COPY a /a",
        f"::{token2}::",
        "::endgroup::",
    ]
    groups.line("[linux/s390x] left over")
    groups.close()
    assert out[-3:] == ["left over", out[-2], "::endgroup::"]


def test_the_dotenv_report_has_no_quotes_blank_lines_or_empty_values() -> None:
    facts = Facts("push", "reg.example/app", "sha256:ab", ("1.0",), ("latest",))
    assert ci.dotenv(facts) == (
        "MANIFESTO_STATUS=ok\nMANIFESTO_IMAGE=reg.example/app\nMANIFESTO_DIGEST=sha256:ab\nMANIFESTO_TAGS=1.0,latest\n"
    )
    failed = Facts("push", "reg.example/app", error="no\nway")
    assert ci.dotenv(failed) == "MANIFESTO_STATUS=failed\nMANIFESTO_IMAGE=reg.example/app\n"


def test_the_summary_table_escapes_cells() -> None:
    facts = Facts("copy", "reg/app", "sha256:ab", ("v1",), rows=(Row("linux/amd64", "ok", "sha256:cd", 2048, "a|b\nc"),))
    text = ci.summary_markdown(facts)
    assert "| linux/amd64 | ok | `sha256:cd` | 2.0 KiB | a\\|b c |" in text
    assert "Tags moved: `v1`; unchanged: none" in text


# ---- the commands under GitHub Actions ---------------------------------------------------------


def test_publish_under_github_actions(cli, registry: Registry, unique_repo: str, tmp_path: Path) -> None:
    spec = write_matrix(tmp_path, registry.ref(unique_repo), platforms=("linux/amd64", "linux/arm64/v8"))
    env = github_env(tmp_path)
    epoch = ("--source-date-epoch", "0")  # reproducible: the second publish makes the same index
    rc, out, err = cli("publish", "-f", str(spec), *epoch, "--report-env", str(tmp_path / "build.env"), env=env)
    assert rc == 0, err
    digest = out.strip()
    got = outputs(env)
    assert got == {"earlier": "kept", "digest": digest, "image": registry.ref(unique_repo), "tags": "1.0,latest"}
    summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text()
    assert summary.startswith("# earlier step\n")  # appended, never truncated
    assert f"### manifesto publish: {registry.ref(unique_repo)}" in summary
    assert re.search(r"^\| linux/arm64/v8 \| ok \| `sha256:[0-9a-f]{64}` \| \d+ B \| built \|$", summary, re.M), summary
    assert "Tags moved: `1.0`, `latest`; unchanged: none" in summary
    for platform in ("linux/amd64", "linux/arm64/v8"):  # the build log folded, one group each
        block = re.search(rf"^::group::{platform} build log\n::stop-commands::(\S+)\n(.*?)\n::\1::\n::endgroup::$", err, re.M | re.S)
        assert block and "COPY hello /hello" in block.group(2), err
    assert (tmp_path / "build.env").read_text() == (
        f"MANIFESTO_STATUS=ok\nMANIFESTO_IMAGE={registry.ref(unique_repo)}\nMANIFESTO_DIGEST={digest}\n"
        "MANIFESTO_TAGS=1.0,latest\n"
    )
    # again: nothing moves, and the outputs say so (every tag still names the digest)
    rc, out, err = cli("publish", "-f", str(spec), *epoch, "-q", env=env)
    assert rc == 0 and out.strip() == digest
    assert outputs(env)["tags"] == "1.0,latest"
    assert "Tags moved: none; unchanged: `1.0`, `latest`" in Path(env["GITHUB_STEP_SUMMARY"]).read_text()


def test_nothing_is_written_for_github_outside_github_actions(cli, registry: Registry, unique_repo: str, tmp_path: Path) -> None:
    spec = write_matrix(tmp_path, registry.ref(unique_repo), platforms=("linux/amd64",))
    env = {**github_env(tmp_path), "GITHUB_ACTIONS": "false"}
    rc, out, err = cli("publish", "-f", str(spec), env=env)
    assert rc == 0, err
    assert Path(env["GITHUB_OUTPUT"]).read_text() == "earlier=kept\n"
    assert Path(env["GITHUB_STEP_SUMMARY"]).read_text() == "# earlier step\n"
    assert "::group::" not in err


def test_a_platforms_yaml_error_is_annotated_on_its_line(cli, registry: Registry, unique_repo: str, tmp_path: Path) -> None:
    spec = write_matrix(tmp_path, registry.ref(unique_repo), platforms=("linux/amd64", "linux/arm64/v7"))
    line = spec.read_text().splitlines().index("  - linux/arm64/v7") + 1
    env = github_env(tmp_path, GITHUB_WORKSPACE=str(tmp_path))
    rc, out, err = cli("publish", "-f", str(spec), env=env)
    assert rc == 2 and out == ""
    annotation = next(x for x in err.splitlines() if x.startswith("::error"))
    assert annotation.startswith(f"::error file=platforms.yaml,line={line}::"), err
    assert "arm64/v7" in annotation and f"platforms.yaml:{line}" not in annotation
    assert any(x.startswith(f"manifesto: error: {spec}:{line}: ") for x in err.splitlines())
    rc, out, err = cli("publish", "-f", str(spec))  # not under GitHub Actions: no annotation
    assert rc == 2 and "::error" not in err


def test_a_split_publish_and_its_assemble(cli, registry: Registry, unique_repo: str, tmp_path: Path) -> None:
    spec = write_matrix(tmp_path, registry.ref(unique_repo), platforms=("linux/amd64", "linux/arm64/v8"))
    env = github_env(tmp_path)
    rc, out, err = cli(
        "publish", "-f", str(spec), "--push-by-digest", "--platform", "linux/amd64",
        "--digest-file", str(tmp_path / "amd64.json"), env=env,
    )  # fmt: skip
    assert rc == 0, err
    one = json.loads((tmp_path / "amd64.json").read_text())["platforms"][0]["digest"]
    assert outputs(env) == {"earlier": "kept", "digest": one, "image": registry.ref(unique_repo), "tags": ""}
    rc, out, err = cli(
        "publish", "-f", str(spec), "--push-by-digest", "--platform", "linux/arm64/v8", "--digest-file",
        str(tmp_path / "arm64.json"),
    )  # fmt: skip
    assert rc == 0, err
    report = tmp_path / "assemble.json"
    rc, out, err = cli(
        "assemble", "-f", str(spec), str(tmp_path / "amd64.json"), str(tmp_path / "arm64.json"),
        "--report", str(report), "--report-env", str(tmp_path / "a.env"), env=env,
    )  # fmt: skip
    assert rc == 0, err
    digest = out.strip()
    assert outputs(env)["digest"] == digest and outputs(env)["tags"] == "1.0,latest"
    data = json.loads(report.read_text())
    assert data["command"] == "assemble" and data["status"] == "ok" and data["index"]["digest"] == digest
    assert f"MANIFESTO_DIGEST={digest}\n" in (tmp_path / "a.env").read_text()


def _two_arch_list(cli, target: str, library_repos) -> str:
    """A local list `target` of the amd64 and arm64 library images (`create`), for push."""
    rc, _, err = cli("create", target, library_repos["amd64"].ref, library_repos["arm64"].ref)
    assert rc == 0, err
    return target


def test_push_and_copy_write_outputs_summaries_and_reports(
    cli, registry: Registry, library_repos, unique_repo: str, tmp_path: Path
) -> None:
    target = _two_arch_list(cli, registry.ref(unique_repo, "multi"), library_repos)
    env = github_env(tmp_path)
    rc, out, err = cli("push", target, "-t", "extra", "--report", str(tmp_path / "push.json"),
                       "--report-env", str(tmp_path / "push.env"), env=env)  # fmt: skip
    assert rc == 0, err
    digest = out.strip()
    assert outputs(env) == {"earlier": "kept", "digest": digest, "image": registry.ref(unique_repo), "tags": "multi,extra"}
    summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text()
    assert f"| linux/amd64 | ok | `{library_repos['amd64'].digest}` |" in summary
    data = json.loads((tmp_path / "push.json").read_text())
    assert data["command"] == "push" and data["index"]["digest"] == digest
    assert [p["digest"] for p in data["platforms"]] == [library_repos["amd64"].digest, library_repos["arm64"].digest]
    assert "MANIFESTO_TAGS=multi,extra\n" in (tmp_path / "push.env").read_text()

    (tmp_path / "copy").mkdir()
    env = github_env(tmp_path / "copy")
    copied = registry.ref(unique_repo + "-copy", "v2")
    rc, out, err = cli("copy", target, copied, "--report", "-", "--report-env", str(tmp_path / "copy.env"), env=env)
    assert rc == 0, err
    data = json.loads(out)  # `--report -`: stdout is the report alone
    assert data["command"] == "copy" and data["status"] == "ok" and data["digest"] == digest
    assert data["tags"] == ["v2"] and data["source"] == target and data["target"] == registry.ref(unique_repo + "-copy")
    assert outputs(env) == {"earlier": "kept", "digest": digest, "image": registry.ref(unique_repo + "-copy"), "tags": "v2"}
    assert (tmp_path / "copy.env").read_text().endswith(f"MANIFESTO_DIGEST={digest}\nMANIFESTO_TAGS=v2\n")


# ---- --report ---------------------------------------------------------------------------------


def test_the_report_has_schema_tool_version_and_timings(cli, registry: Registry, unique_repo: str, tmp_path: Path) -> None:
    from manifesto import __version__

    spec = write_matrix(tmp_path, registry.ref(unique_repo), platforms=("linux/amd64",))
    rc, out, err = cli("publish", "-f", str(spec), "--report", "-")
    assert rc == 0, err
    data = json.loads(out)  # the digest is in the report, not printed beside it
    assert DIGEST.fullmatch(data["index"]["digest"])
    assert data["schemaVersion"] == 1 and data["tool"] == {"name": "manifesto", "version": __version__}
    assert data["command"] == "publish" and data["status"] == "ok" and "error" not in data
    timings = data["timings"]
    for key in ("started", "ended"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", timings[key]), timings
    assert timings["started"] <= timings["ended"] and 0 < timings["seconds"] < 60
    assert set(timings["phases"]) == {"preflight", "build", "push", "index"}
    assert all(0 <= v <= timings["seconds"] for v in timings["phases"].values())
    assert "buildSeconds" in data["summary"][0] and "pushSeconds" in data["summary"][0]


def test_a_report_is_written_when_a_command_fails(cli, registry: Registry, unique_repo: str, tmp_path: Path) -> None:
    # publish refused at its preflight (nothing built yet): still a report saying so
    spec = write_matrix(tmp_path, "127.0.0.1:9/nowhere", platforms=("linux/amd64",))
    env = github_env(tmp_path)
    rc, out, err = cli("publish", "-f", str(spec), "--report", str(tmp_path / "p.json"), env=env)
    assert rc != 0
    data = json.loads((tmp_path / "p.json").read_text())
    assert data["status"] == "failed" and data["error"] in err and data["target"] == "127.0.0.1:9/nowhere"
    assert data["schemaVersion"] == 1 and "seconds" in data["timings"]
    assert outputs(env) == {"earlier": "kept"}  # no outputs for a failed step
    summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text()
    assert "### manifesto publish: 127.0.0.1:9/nowhere ❌" in summary and "**Failed:**" in summary
    assert any(x.startswith("::error::") for x in err.splitlines())

    # copy of something that is not there, report on stdout: still only the report there
    missing = registry.ref(unique_repo, "absent")
    rc, out, err = cli("copy", missing, registry.ref(unique_repo, "b"), "--report", "-", "--report-env", str(tmp_path / "e"))
    assert rc == 4
    data = json.loads(out)
    assert data["status"] == "failed" and data["source"] == missing and "absent" in data["error"]
    assert (tmp_path / "e").read_text() == f"MANIFESTO_STATUS=failed\nMANIFESTO_IMAGE={registry.ref(unique_repo)}\n"

    # assemble from a digest file that is not there
    spec = write_matrix(tmp_path / "a", registry.ref(unique_repo), platforms=("linux/amd64",))
    rc, out, err = cli("assemble", "-f", str(spec), str(tmp_path / "none.json"), "--report", str(tmp_path / "a.json"))
    assert rc == 2
    data = json.loads((tmp_path / "a.json").read_text())
    assert data["command"] == "assemble" and data["status"] == "failed" and "none.json" in data["error"]

    # push of a list refused before anything is sent
    rc, out, err = cli("push", registry.ref(unique_repo, "nolist"), "--report", str(tmp_path / "push.json"))
    assert rc == 4
    assert json.loads((tmp_path / "push.json").read_text())["status"] == "failed"


def test_report_dash_on_a_failure_and_an_unwritable_report_env(cli, tmp_path: Path) -> None:
    rc, out, err = cli("copy", "oci:/nonexistent-dir:x", f"oci:{tmp_path}/o:y", "--report", "-")
    assert rc != 0 and "--report -" not in err
    assert json.loads(out)["status"] == "failed"
    rc, out, err = cli("copy", "a", "b", "--report-env", str(tmp_path))
    assert rc == 2 and "--report-env" in err and "is a directory" in err


# ---- log lines -------------------------------------------------------------------------------


@pytest.mark.parametrize("json_logs", [False, True])
def test_a_warning_is_a_plain_line_unless_json_is_asked_for(
    cli, registry: Registry, library_repos, unique_repo: str, json_logs: bool
) -> None:
    target = _two_arch_list(cli, registry.ref(unique_repo, "forced"), library_repos)
    flags = ["--log-format", "json"] if json_logs else []
    rc, out, err = cli(*flags, "push", target, "--format", "docker", "--force")
    warnings = [x for x in err.splitlines() if "push" in x and "forced" in x]
    assert warnings, err
    if json_logs:
        event = json.loads(warnings[0])
        assert event["event"] == "push_forced" and event["level"] == "warning" and event["problem"]
    else:
        assert warnings[0].startswith("manifesto: warning: push forced problem=")
        assert not any(x.startswith("{") for x in err.splitlines())


def test_an_error_tail_cannot_issue_workflow_commands(capsys: pytest.CaptureFixture[str]) -> None:
    def fail(error: Exception) -> None:
        import sys

        first, *rest = str(error).splitlines()
        sys.stderr.write(f"manifesto: error: {first}\n" + "".join(f"  {line}\n" for line in rest))

    one = RuntimeError("cannot reach x")
    ci.report_failure(one, lambda: fail(one), environ={})
    assert capsys.readouterr().err == "::error::cannot reach x\nmanifesto: error: cannot reach x\n"

    tail = RuntimeError("build failed\n::add-mask::x\nSTEP 2/2")
    ci.report_failure(tail, lambda: fail(tail), environ={})
    lines = capsys.readouterr().err.splitlines()
    token = lines[1].removeprefix("::stop-commands::")
    assert lines == [
        "::error::build failed%0A::add-mask::x%0ASTEP 2/2",
        f"::stop-commands::{token}",
        "manifesto: error: build failed",
        "  ::add-mask::x",
        "  STEP 2/2",
        f"::{token}::",
    ]
