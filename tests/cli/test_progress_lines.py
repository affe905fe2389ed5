"""A publish off a terminal: timestamped phase lines, a heartbeat for a long step, the summary;
`-q` prints only the result; `--report` is written on failure too, naming what was pushed.

The lines are checked on the renderer (cli/progress.py) with an injected clock and interval,
and end to end on the real CLI with the native builder (FROM scratch + COPY: no tool, no qemu)
into a real registry.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from manifesto.cli.progress import Lines, summary
from manifesto.jobs import progress
from manifesto.jobs.progress import Event
from tests.jobs.conftest import write_matrix
from tests.publish.conftest import tags_of
from tests.support import Registry

STAMP = r"\d\d:\d\d:\d\d "


def test_each_phase_change_is_one_timestamped_line() -> None:
    out: list[str] = []
    lines = Lines(out.append)
    t = time.time()
    lines(Event("linux/s390x", progress.QUEUED, t))
    lines(Event("linux/s390x", progress.STEP, t, step=4, steps=6, text="RUN make -j4"))
    lines(Event("linux/s390x", progress.PUSHED, t, digest="sha256:ab", size=3_355_443, seconds=1.1))
    lines(Event("linux/s390x", progress.FAILED, t, text="boom"))
    assert [re.sub(STAMP, "", line, count=1) for line in out] == [
        "linux/s390x: queued",
        "linux/s390x: building step 4/6 RUN make -j4",
        "linux/s390x: pushed sha256:ab (3.2 MiB in 1.1 s)",
        "linux/s390x: failed: boom",
    ]
    assert all(re.match(STAMP, line) for line in out)
    assert not any(line.lstrip().startswith("{") for line in out)  # never JSON


def test_a_long_step_gets_a_heartbeat_every_interval() -> None:
    now = [1000.0]
    out: list[str] = []
    lines = Lines(out.append, interval=10, clock=lambda: now[0])
    lines(Event("linux/s390x", progress.STEP, 1000.0, step=4, steps=6, text="RUN make"))
    lines(Event("linux/amd64", progress.VERIFIED, 1000.0))
    now[0] = 1005.0
    lines.beat()
    assert len(out) == 2  # not yet
    now[0] = 1040.0
    lines.beat()
    assert re.sub(STAMP, "", out[-1]) == "linux/s390x: step 4/6 RUN make running 40 s"
    lines.beat()
    assert len(out) == 3  # one per interval, and none for a platform that is done


def test_the_heartbeat_thread_speaks_for_a_silent_step() -> None:
    out: list[str] = []
    with Lines(out.append, interval=0.05) as lines:
        lines(Event("linux/arm/v7", progress.STEP, time.time(), step=2, steps=3, text="RUN sleep 1"))
        time.sleep(0.4)
    assert any("linux/arm/v7: step 2/3 RUN sleep 1 running" in line for line in out[1:])


def test_the_summary_table_marks_each_platform() -> None:
    outcomes = progress.summarize(
        [
            Event("linux/amd64", progress.BUILT, 0, digest="sha256:aa", seconds=2.0),
            Event("linux/amd64", progress.PUSHED, 0, digest="sha256:aa", size=2048, seconds=0.5),
            Event("linux/amd64", progress.VERIFIED, 0),
            Event("linux/arm64/v8", progress.BUILDING, 0),
            Event("linux/arm64/v8", progress.FAILED, 0, text="boom"),
            Event("linux/s390x", progress.QUEUED, 0),
            Event("linux/s390x", progress.NOT_STARTED, 0),
        ],
        ["linux/amd64", "linux/arm64/v8", "linux/s390x"],
    )
    text = summary(outcomes)
    rows = text.splitlines()[1:]
    assert rows[0].split()[:6] == ["linux/amd64", "✓", "sha256:aa", "2.0", "KiB", "2.0"]
    assert rows[1].split()[:2] == ["linux/arm64/v8", "✗"]
    assert "not started" in rows[2]


# ---- the real CLI -------------------------------------------------------------------------------


def test_quiet_prints_only_the_digest(cli, registry: Registry, unique_repo: str, tmp_path: Path) -> None:
    spec = write_matrix(tmp_path, registry.ref(unique_repo), platforms=("linux/amd64", "linux/arm64/v8"))
    rc, out, err = cli("publish", "-f", str(spec), "-q")
    assert rc == 0, err
    assert re.fullmatch(r"sha256:[0-9a-f]{64}\n", out)
    assert err == ""  # no phase lines, no table, no index line


def test_phase_lines_and_summary_without_quiet(cli, registry: Registry, unique_repo: str, tmp_path: Path) -> None:
    spec = write_matrix(tmp_path, registry.ref(unique_repo), platforms=("linux/amd64",))
    rc, out, err = cli("publish", "-f", str(spec), "--report", str(tmp_path / "r.json"))
    assert rc == 0, err
    assert re.search(STAMP + r"linux/amd64: building step 1/1 COPY hello /hello", err), err
    assert re.search(STAMP + r"linux/amd64: pushed sha256:[0-9a-f]{64} \(.* in .* s\)", err), err
    assert re.search(r"^linux/amd64\s+✓\s+sha256:", err, re.M), err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["summary"][0]["status"] == "ok" and "buildSeconds" in report["summary"][0]


def test_a_failed_publish_writes_its_report_naming_the_pushed_child(
    cli, registry: Registry, unique_repo: str, tmp_path: Path
) -> None:
    # arm64 copies a file its context lacks; with one job amd64 is built (and pushed) first
    spec = write_matrix(
        tmp_path,
        registry.ref(unique_repo),
        platforms=("linux/amd64", f"platform: linux/arm64/v8\n    dockerfile: {tmp_path / 'Dockerfile.bad'}"),
    )
    (tmp_path / "Dockerfile.bad").write_text("FROM scratch\nCOPY missing /missing\n")
    report = tmp_path / "report.json"
    rc, out, err = cli("publish", "-f", str(spec), "--jobs", "1", "--report", str(report))
    assert rc != 0 and out == ""
    error = next(line for line in err.splitlines() if line.startswith("manifesto: error:"))
    data = json.loads(report.read_text())
    pushed = data["pushed"]
    assert [p["platform"] for p in pushed] == ["linux/amd64"]
    assert f"linux/amd64 {pushed[0]['digest']}" in error and "no tag moved" in error
    assert {s["platform"]: s["status"] for s in data["summary"]} == {"linux/amd64": "pushed", "linux/arm64/v8": "failed"}
    assert tags_of(registry, unique_repo) in (None, [])
    rc, out, err = cli("publish", "-f", str(spec), "--jobs", "1", "-q")
    assert rc != 0 and out == ""
    assert [line for line in err.splitlines() if not line.startswith("  ")][0].startswith("manifesto: error:")
