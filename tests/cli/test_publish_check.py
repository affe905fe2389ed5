"""`publish --check`: build everything, compute the index, push nothing; exit 0 when every tag
already holds it, 8 when a publish would move one, and say per tag `TAG: FROM → TO`.

examples/hello-native with SOURCE_DATE_EPOCH (the State sets it) builds reproducibly with the
native builder, so a check right after a publish finds nothing to do; a changed file gives a
new index, and still nothing is written to the registry (its access log shows no write).
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.cli.conftest import hello_native
from tests.publish.conftest import AccessLog, State, stored_writes
from tests.support import Registry

TWO = "linux/amd64,linux/arm64/v8"


@pytest.fixture
def project(tmp_path: Path, registry: Registry) -> Path:
    """A copy of examples/hello-native publishing to `registry` (amd64 and arm64/v8)."""
    spec = hello_native(tmp_path)
    spec.write_text(spec.read_text().replace("localhost:5000/hello-native", f"{registry.host}/check/hello-native"))
    return spec


def _lines(out: str) -> dict[str, str]:
    """{tag reference: what follows it} of the --check lines."""
    return dict(line.split(": ", 1) for line in out.splitlines())


def test_check_after_publish_is_0_and_a_changed_file_is_8_with_nothing_pushed(
    tmp_path: Path, registry: Registry, project: Path
) -> None:
    state = State.make(tmp_path / "state")
    log = AccessLog(registry)
    name = f"{registry.host}/check/hello-native"

    mark = log.mark()
    rc, out, err = state.run("publish", "-f", project, "--check")
    assert rc == 8, out + err
    first = _lines(out)
    assert list(first) == [f"{name}:1.0.0", f"{name}:latest"], out
    index = first[f"{name}:1.0.0"].removeprefix("absent → ")
    assert first == {f"{name}:1.0.0": f"absent → {index}", f"{name}:latest": f"absent → {index}"}, out
    assert stored_writes(log.since(mark)) == []

    rc, out, err = state.run("publish", "-f", project)
    assert rc == 0, err
    assert out.strip().splitlines()[-1] == index  # the index --check computed is the one pushed

    rc, out, err = state.run("publish", "-f", project, "--check")
    assert rc == 0, out + err
    assert _lines(out) == {f"{name}:1.0.0": f"{index} (unchanged)", f"{name}:latest": f"{index} (unchanged)"}, out

    (project.parent / "etc" / "greeting").write_text("hello from a changed build for\n")
    mark = log.mark()
    rc, out, err = state.run("publish", "-f", project, "--check")
    assert rc == 8, out + err
    changed = _lines(out)
    new = changed[f"{name}:latest"].removeprefix(f"{index} → ")
    assert new != index and new.startswith("sha256:")
    assert changed == {f"{name}:1.0.0": f"{index} → {new}", f"{name}:latest": f"{index} → {new}"}, out
    assert "1 of 2" not in err and "2 of 2 tag(s) would move; nothing pushed" in err
    assert stored_writes(log.since(mark)) == []  # nothing pushed: no blob, no manifest, no tag


def test_check_writes_what_it_found_to_the_report_and_the_ci_outputs(
    tmp_path: Path, registry: Registry, project: Path
) -> None:
    """--report, --report-env and the GitHub Actions outputs say what --check found (the index
    a publish would push, each tag's now → wanted); the `TAG: FROM → TO` lines still go to
    stdout, or to stderr when `--report -` is stdout."""
    project.write_text(project.read_text().replace("check/hello-native", "check/report-hello"))
    name = f"{registry.host}/check/report-hello"
    state = State.make(tmp_path / "state")
    report, dotenv, outputs = tmp_path / "report.json", tmp_path / "check.env", tmp_path / "github-output"
    github = {"GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": str(outputs), "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")}
    rc, out, err = state.run("publish", "-f", project, "--check", "--report", report, "--report-env", dotenv, env=github)
    assert rc == 8, out + err
    index = _lines(out)[f"{name}:latest"].removeprefix("absent → ")
    doc = json.loads(report.read_text())
    assert (doc["command"], doc["status"], doc["target"], doc["index"]["digest"]) == ("publish --check", "ok", name, index)
    assert [p["platform"] for p in doc["platforms"]] == ["linux/amd64", "linux/arm64/v8"]
    assert doc["check"] == {
        "wouldChange": True,
        "tags": [{"tag": f"{name}:{t}", "now": None, "wanted": index, "changes": True} for t in ("1.0.0", "latest")],
    }
    assert dotenv.read_text() == f"MANIFESTO_STATUS=ok\nMANIFESTO_IMAGE={name}\nMANIFESTO_DIGEST={index}\n"
    assert outputs.read_text() == f"digest={index}\nimage={name}\ntags=\n"

    rc, _, err = state.run("publish", "-f", project)
    assert rc == 0, err
    rc, out, err = state.run("publish", "-f", project, "--check", "--report", "-", "--report-env", dotenv)
    assert rc == 0, out + err
    doc = json.loads(out)  # stdout is the report alone
    assert doc["check"]["wouldChange"] is False and not any(t["changes"] for t in doc["check"]["tags"])
    assert f"{name}:latest: {index} (unchanged)" in err.splitlines(), err
    assert "MANIFESTO_TAGS=1.0.0,latest\n" in dotenv.read_text()


def test_check_refuses_flags_that_do_not_go_with_it(tmp_path: Path, project: Path) -> None:
    state = State.make(tmp_path / "state")
    for flag in ("--dry-run", "--push-by-digest"):
        rc, _, err = state.run("publish", "-f", project, "--check", flag)
        assert rc == 2 and f"--check does not go with {flag}" in err, err


def test_check_counts_arch_tags_too(tmp_path: Path, registry: Registry, project: Path) -> None:
    """Each arch tag is listed with the child it would hold; one that moved is a change."""
    text = project.read_text().replace("check/hello-native", "check/arch-hello")
    project.write_text(text + 'arch_tag: "{registry}/check/{arch_ns}-hello:{tag}"\n')
    state = State.make(tmp_path / "state")
    rc, out, err = state.run("publish", "-f", project)
    assert rc == 0, err
    rc, out, err = state.run("publish", "-f", project, "--check")
    assert rc == 0, out + err
    lines = _lines(out)
    arch = {k: v for k, v in lines.items() if "/check/arch-hello:" not in k}
    assert sorted(arch) == sorted(
        f"{registry.host}/check/{ns}-hello:{tag}" for ns in ("amd64", "arm64v8") for tag in ("1.0.0", "latest")
    ), out
    assert all(v.endswith("(unchanged)") for v in lines.values()), out

    child = lines[f"{registry.host}/check/amd64-hello:1.0.0"].removesuffix(" (unchanged)")
    with httpx.Client(base_url=registry.url) as http:  # the amd64 arch repository loses its image
        assert http.delete(f"/v2/check/amd64-hello/manifests/{child}").status_code == 202
    rc, out, err = state.run("publish", "-f", project, "--check")
    assert rc == 8, out + err
    moved = {k: v for k, v in _lines(out).items() if "→" in v}
    assert moved == {f"{registry.host}/check/amd64-hello:{tag}": f"absent → {child}" for tag in ("1.0.0", "latest")}, out
