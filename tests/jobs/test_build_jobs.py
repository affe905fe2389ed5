"""How many builds run at once by default: one per platform, at most four per core."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import manifesto
from manifesto.jobs import builds
from manifesto.jobs.builds import Options, build_all, default_jobs
from tests.jobs.conftest import DEBIAN_ARCH, FakeBuilder, write_matrix


def test_the_default_is_one_build_per_platform_up_to_four_per_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(builds.os, "cpu_count", lambda: 2)
    assert [default_jobs(n) for n in (1, 5, 8, 20)] == [1, 5, 8, 8]
    monkeypatch.setattr(builds.os, "cpu_count", lambda: None)
    assert default_jobs(5) == 4


def test_five_platforms_on_two_cores_build_at_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Builds wait on each other: with fewer than five at once this would time out."""
    monkeypatch.setattr(builds.os, "cpu_count", lambda: 2)
    together = threading.Barrier(5, timeout=10)

    class Waiting(FakeBuilder):
        def build(self, request, on_line):  # type: ignore[no-untyped-def]
            together.wait()
            return super().build(request, on_line)

    plan = manifesto.plan(write_matrix(tmp_path, f"oci:{tmp_path / 'out'}", platforms=tuple(DEBIAN_ARCH)))
    built = build_all(plan, Options(builder=Waiting()), tmp_path / "work")
    assert len(built) == 5
