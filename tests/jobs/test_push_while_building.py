"""Each platform is pushed by digest as its build ends, while the others still build.

A fake builder holds one platform's build until the other platform's child is IN THE TARGET
REGISTRY (read back over HTTP): without pushing while building, that build would wait forever
(here: time out and fail the publish). A failure after a child was pushed moves no tag and
names the pushed child; the events (jobs/progress.py) tell the phases and the summary.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import manifesto
from manifesto.builders.base import BuildRequest, BuiltImage
from manifesto.errors import BuildError
from manifesto.jobs import progress
from tests.jobs.conftest import FakeBuilder, write_matrix
from tests.publish.conftest import head_status, tags_of
from tests.support import Registry

TWO = ("linux/amd64", "linux/arm64/v8")


class WaitingBuilder(FakeBuilder):
    """FakeBuilder whose build of `waits` starts only once `ready()` is true (or fails after 20 s),
    and then fails when `then_fail`."""

    def __init__(self, waits: str, ready: Callable[[], bool], *, then_fail: bool = False):
        super().__init__(fail=(waits,) if then_fail else ())
        self.waits, self.ready = waits, ready

    def build(self, request: BuildRequest, on_line: Callable[[str], None]) -> BuiltImage:
        if str(request.platform) == self.waits:
            deadline = time.monotonic() + 20
            while not self.ready():
                if time.monotonic() > deadline:
                    raise BuildError(f"{self.waits}: the other platform never reached the target")
                time.sleep(0.02)
        on_line("STEP 1/2: FROM scratch")
        on_line("STEP 2/2: COPY hello /hello")
        return super().build(request, on_line)


def _pushed_to(registry: Registry, repo: str, events: list[progress.Event], platform: str) -> Callable[[str], bool]:
    def ready() -> bool:
        pushed = [e for e in list(events) if e.platform == platform and e.phase == progress.PUSHED]
        return bool(pushed) and head_status(registry, repo, "manifests", str(pushed[0].digest)) == 200

    return ready


def test_a_child_is_in_the_target_before_the_last_build_ends(
    tmp_home, registry: Registry, unique_repo: str, tmp_path: Path
) -> None:
    plan = manifesto.plan(write_matrix(tmp_path, registry.ref(unique_repo), platforms=TWO))
    events: list[progress.Event] = []
    builder = WaitingBuilder("linux/arm64/v8", lambda: ready())
    ready = _pushed_to(registry, unique_repo, events, "linux/amd64")

    result = manifesto.publish(plan, manifesto.Options(builder=builder, jobs=2, on_event=events.append))

    assert result.index is not None and sorted(tags_of(registry, unique_repo) or []) == ["1.0", "latest"]
    phases = [(e.platform, e.phase) for e in events]
    # amd64 was pushed before arm64 finished building; verification waited for both
    assert phases.index(("linux/amd64", progress.PUSHED)) < phases.index(("linux/arm64/v8", progress.BUILT))
    first_verified = min(i for i, p in enumerate(phases) if p[1] == progress.VERIFIED)
    assert first_verified > phases.index(("linux/arm64/v8", progress.PUSHED))
    steps = [(e.step, e.steps, e.text) for e in events if e.platform == "linux/amd64" and e.phase == progress.STEP]
    assert steps == [(1, 2, "FROM scratch"), (2, 2, "COPY hello /hello")]
    assert [o.status for o in result.outcomes] == ["ok", "ok"]
    assert all(o.build_seconds is not None and o.push_seconds is not None for o in result.outcomes)
    summary = result.report()["summary"]
    assert [s["platform"] for s in summary] == list(TWO) and {s["status"] for s in summary} == {"ok"}


def test_a_failure_after_a_push_moves_no_tag_and_names_the_pushed_child(
    tmp_home, registry: Registry, unique_repo: str, tmp_path: Path
) -> None:
    plan = manifesto.plan(write_matrix(tmp_path, registry.ref(unique_repo), platforms=TWO))
    events: list[progress.Event] = []
    builder = WaitingBuilder("linux/arm64/v8", lambda: ready(), then_fail=True)
    ready = _pushed_to(registry, unique_repo, events, "linux/amd64")

    with pytest.raises(manifesto.BuildError) as e:
        manifesto.publish(plan, manifesto.Options(builder=builder, jobs=2, on_event=events.append))

    pushed = next(ev for ev in events if ev.phase == progress.PUSHED)
    first = str(e.value).splitlines()[0]
    assert "linux/arm64/v8: build failed" in first
    assert f"untagged: linux/amd64 {pushed.digest}" in first and "no tag moved" in first
    assert e.value.log_tail == "step 1/1: boom"
    assert head_status(registry, unique_repo, "manifests", str(pushed.digest)) == 200  # it stays, by digest
    assert tags_of(registry, unique_repo) in (None, [])  # no tag, no index
    outcomes = {o.platform: o.status for o in progress.summarize(events, TWO)}
    assert outcomes == {"linux/amd64": "pushed", "linux/arm64/v8": "failed"}


def test_a_failing_build_leaves_the_layout_untagged_and_names_what_it_holds(tmp_home, tmp_path: Path) -> None:
    out = tmp_path / "out"
    plan = manifesto.plan(write_matrix(tmp_path, f"oci:{out}", platforms=TWO))
    manifesto.publish(plan, manifesto.Options(builder=FakeBuilder()))
    index_before = (out / "index.json").read_bytes()
    events: list[progress.Event] = []

    def ready() -> bool:
        return any(e.platform == "linux/amd64" and e.phase == progress.PUSHED for e in list(events))

    failing = WaitingBuilder("linux/arm64/v8", ready, then_fail=True)
    failing.content = b"another build"
    with pytest.raises(manifesto.BuildError) as e:
        manifesto.publish(plan, manifesto.Options(builder=failing, jobs=2, on_event=events.append))

    pushed = next(ev for ev in events if ev.phase == progress.PUSHED)
    assert f"untagged: linux/amd64 {pushed.digest}" in str(e.value)
    assert (out / "index.json").read_bytes() == index_before  # not a tag moved
    assert (out / "blobs" / "sha256" / str(pushed.digest).split(":")[1]).is_file()  # the child, by digest


def test_queued_builds_do_not_start_after_a_failure_and_say_so(tmp_home, tmp_path: Path) -> None:
    plan = manifesto.plan(write_matrix(tmp_path, f"oci:{tmp_path / 'out'}"))
    events: list[progress.Event] = []
    lock = threading.Lock()

    def on_event(event: progress.Event) -> None:
        with lock:
            events.append(event)

    with pytest.raises(manifesto.BuildError):
        manifesto.publish(plan, manifesto.Options(builder=FakeBuilder(fail=("linux/amd64",)), jobs=1, on_event=on_event))
    statuses = [o.status for o in progress.summarize(events, ("linux/amd64", "linux/arm64/v8", "linux/arm/v7"))]
    assert statuses == ["failed", "not started", "not started"]
    assert [e.phase for e in events if e.platform == "linux/arm/v7"] == [progress.QUEUED, progress.NOT_STARTED]


def test_step_lines_are_parsed_in_one_place() -> None:
    assert progress.parse_step("STEP 4/6: RUN make -j4") == (4, 6, "RUN make -j4")
    assert progress.parse_step("#7 [stage-0 3/5] RUN apk add gcc") == (3, 5, "RUN apk add gcc")
    assert progress.parse_step("#7 [3/5] COPY . /src") == (3, 5, "COPY . /src")
    assert progress.parse_step("--> 2f088f48c61") is None
