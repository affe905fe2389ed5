"""A publish starts its builders' storage probes before the preflight; builds wait for them.

The probe here is a fake builder's `storage_verdict` (what buildah and podman probe with), and
the preflight is replaced by one that watches for it, so the order is observed directly.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import manifesto
from manifesto.builders.storage import Verdict
from manifesto.errors import AuthError, BuildError
from manifesto.jobs import publish as publish_job
from manifesto.jobs.builds import Options
from manifesto.tags import Snapshot
from tests.jobs.conftest import FakeBuilder, write_matrix

WAIT = 3.0  # seconds any side waits for the other at most


class Probing(FakeBuilder):
    """A fake builder that keeps a storage store: its verdict is probed (slowly) when first read."""

    name = "probing"

    def __init__(self, *, fail: BaseException | None = None, seconds: float = 0.0) -> None:
        super().__init__()
        self.started = threading.Event()
        self.finished = threading.Event()
        self.release = threading.Event()
        self.probe_error = fail
        self.seconds = seconds
        self.probes = 0
        self.built_before_probe = False
        self.cancels = 0
        self._verdict: Verdict | None = None
        self._verdict_lock = threading.Lock()

    @property
    def storage_verdict(self) -> Verdict:
        with self._verdict_lock:
            if self._verdict is None:
                self.probes += 1
                self.started.set()
                try:
                    if self.seconds:
                        self.release.wait(self.seconds)
                    if self.probe_error is not None:
                        raise self.probe_error
                    self._verdict = Verdict("overlay", "auto: overlay works here")
                finally:
                    self.finished.set()
            return self._verdict

    def build(self, request, on_line):  # type: ignore[no-untyped-def]
        self.built_before_probe |= not self.finished.is_set()
        return super().build(request, on_line)

    def cancel(self) -> None:
        self.cancels += 1
        self.release.set()


def _plan(tmp_path: Path) -> manifesto.Plan:
    return manifesto.plan(write_matrix(tmp_path, f"oci:{tmp_path / 'out'}"))


def test_the_storage_probe_runs_while_the_preflight_does(
    tmp_home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    builder = Probing(seconds=WAIT)
    seen: list[bool] = []

    async def preflight(plan, registries, **kw):  # type: ignore[no-untyped-def]
        seen.append(builder.started.wait(WAIT))  # the probe has started before the preflight ends
        builder.release.set()
        return Snapshot()

    monkeypatch.setattr(publish_job, "preflight", preflight)
    result = manifesto.publish(_plan(tmp_path), Options(builder=builder))
    assert seen == [True]
    assert result.index is not None and len(result.children) == 3
    assert builder.probes == 1 and not builder.built_before_probe  # the builds waited for the verdict


def test_a_probe_that_raises_fails_the_builds_with_its_error(tmp_home, tmp_path: Path) -> None:
    builder = Probing(fail=BuildError("the storage probe broke"))
    with pytest.raises(BuildError, match="the storage probe broke"):
        manifesto.publish(_plan(tmp_path), Options(builder=builder))
    assert builder.probes == 1 and builder.built == []  # not probed again, nothing built


def test_a_failed_preflight_leaves_no_probe_running(tmp_home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    builder = Probing(seconds=0.3)

    async def preflight(plan, registries, **kw):  # type: ignore[no-untyped-def]
        builder.started.wait(WAIT)
        raise AuthError("push denied")

    monkeypatch.setattr(publish_job, "preflight", preflight)
    with pytest.raises(AuthError, match="push denied"):
        manifesto.publish(_plan(tmp_path), Options(builder=builder))
    assert builder.finished.is_set() and builder.cancels == 0 and builder.built == []


def test_an_interrupted_preflight_stops_the_probe(tmp_home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    builder = Probing(seconds=60)  # ends early only when cancelled

    async def preflight(plan, registries, **kw):  # type: ignore[no-untyped-def]
        builder.started.wait(WAIT)
        raise KeyboardInterrupt

    monkeypatch.setattr(publish_job, "preflight", preflight)
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        manifesto.publish(_plan(tmp_path), Options(builder=builder))
    assert builder.cancels >= 1 and builder.finished.is_set() and time.monotonic() - started < WAIT * 2


def test_a_builder_without_storage_is_not_probed(tmp_home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only builders with a storage driver to choose (buildah, podman) get a probe thread."""
    before = {t.name for t in threading.enumerate()}
    names: list[str] = []

    async def preflight(plan, registries, **kw):  # type: ignore[no-untyped-def]
        names.extend(t.name for t in threading.enumerate() if t.name not in before)
        return Snapshot()

    monkeypatch.setattr(publish_job, "preflight", preflight)
    assert manifesto.publish(_plan(tmp_path), Options(builder=FakeBuilder())).index is not None
    assert not [n for n in names if n.startswith("probe-")]


def test_ctrl_c_while_a_failed_preflight_waits_for_the_probe_stops_it(
    tmp_home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The preflight failed and the run waits for the probe to end; Ctrl-C then must stop the
    probe's commands, not leave them running after manifesto."""
    from manifesto.jobs.builds import Crew

    builder = Probing(seconds=60)  # ends early only when cancelled
    waits: list[bool] = []
    close = Crew.close

    def interrupted_close(self, *, cancel: bool = False) -> None:  # type: ignore[no-untyped-def]
        waits.append(cancel)
        if not cancel:
            raise KeyboardInterrupt  # Ctrl-C during the wait
        close(self, cancel=cancel)

    async def preflight(plan, registries, **kw):  # type: ignore[no-untyped-def]
        builder.started.wait(WAIT)
        raise AuthError("push denied")

    monkeypatch.setattr(publish_job, "preflight", preflight)
    monkeypatch.setattr(Crew, "close", interrupted_close)
    with pytest.raises(KeyboardInterrupt):
        manifesto.publish(_plan(tmp_path), Options(builder=builder))
    assert waits == [False, True] and builder.cancels >= 1 and builder.finished.is_set()
