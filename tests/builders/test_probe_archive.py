"""buildah's storage probe takes its one-layer image from an OCI archive: real buildah, in a
storage path with capitals (buildah names an image from an `oci:` path, and refuses capitals)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from manifesto.builders.buildah import BuildahBuilder
from manifesto.builders.cache import unmount_under
from manifesto.builders.runner import Runner
from tests.support import require
from tests.support.tools import missing


@pytest.fixture(autouse=True)
def no_storage_driver_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STORAGE_DRIVER", raising=False)


def test_the_probe_finds_overlay_in_a_storage_path_with_capitals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require("buildah")
    if os.geteuid() != 0:
        missing("overlay stores are mounted in the host's namespace only as root")
    monkeypatch.setenv("TMPDIR", str(tmp_path / "Tmp"))  # the probe's runroot goes there
    (tmp_path / "Tmp").mkdir()
    storage = tmp_path / "Cache" / "Buildah"
    calls: list[list[str]] = []

    class Recording(Runner):
        def capture(self, argv, **kw):  # type: ignore[no-untyped-def, override]
            calls.append([str(a) for a in argv])
            return super().capture(argv, **kw)

    try:
        b = BuildahBuilder(Recording(), storage=storage)
        verdict = b.storage_verdict
    finally:
        unmount_under(tmp_path)
    assert verdict.driver == "overlay", verdict
    assert len(calls) == 3, calls  # from (the archive), mount, umount
    assert sorted(p.name for p in storage.iterdir()) == ["driver.json", "driver.lock"]  # the probe's store is gone
