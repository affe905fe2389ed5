"""The publish benchmarks' buildah peers run on the storage driver manifesto's buildah builds
resolve to, and a run whose manifesto stores used another driver fails."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench import native_publish, publish
from bench.base_image import buildah_driver, buildah_stores, check_driver
from bench.common import BenchError, Context, Proc


@pytest.fixture
def ctx() -> Iterator[Context]:
    c = Context(None)
    try:
        yield c
    finally:
        c.close()


def _driver_of(argv: list[str]) -> str:
    assert argv[0] == "buildah"
    return argv[argv.index("--storage-driver") + 1]


def test_the_peer_driver_is_the_one_the_library_resolves(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORAGE_DRIVER", "overlay")  # chosen explicitly: no probe
    assert buildah_driver(ctx, "t") == "overlay"


def test_the_peer_falls_back_to_vfs_where_the_probe_fails(
    ctx: Context, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = tmp_path / "bin" / "buildah"  # a buildah whose every command fails: overlay cannot work
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'Error: no overlay here' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.delenv("STORAGE_DRIVER", raising=False)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    assert buildah_driver(ctx, "t") == "vfs"


def _stores(cache: Path, *drivers: str) -> Path:
    """A manifesto cache (as $XDG_CACHE_HOME) holding buildah stores of `drivers`, the kept
    verdict, its lock, an unfinished probe and a podman store beside them."""
    base = cache / "manifesto" / "buildah"
    base.mkdir(parents=True)
    for d in drivers:
        (base / d / "linux-amd64").mkdir(parents=True)
    (base / "driver.json").write_text("{}")
    (base / "driver.lock").write_text("")
    (base / ".probe-x1").mkdir()
    (cache / "manifesto" / "podman" / "vfs").mkdir(parents=True)
    return cache


def test_stores_on_the_peer_driver_pass_and_others_fail(tmp_path: Path) -> None:
    cache = _stores(tmp_path / "a", "overlay")
    assert buildah_stores(cache) == ["overlay"]
    check_driver(cache, "overlay", "publish")
    with pytest.raises(BenchError, match=r"publish: manifesto's buildah stores used \['overlay'\], the peer vfs"):
        check_driver(cache, "vfs", "publish")
    both = _stores(tmp_path / "b", "overlay", "vfs")
    with pytest.raises(BenchError, match="not the same work"):
        check_driver(both, "overlay", "publish")


def test_a_native_publish_must_leave_no_buildah_store(tmp_path: Path) -> None:
    check_driver(tmp_path / "empty", None, "native")  # no cache at all
    with pytest.raises(BenchError, match="expected none"):
        check_driver(_stores(tmp_path / "c", "vfs"), None, "native")


def test_the_publish_peer_runs_on_the_given_driver(tmp_path: Path) -> None:
    build, push = publish.buildah_commands(tmp_path, "overlay", "127.0.0.1:5000")
    assert _driver_of(build) == _driver_of(push) == "overlay"
    assert "build" in build and "--layers" not in build  # the target's command: no --layers
    assert push[-1] == "docker://127.0.0.1:5000/hello-buildah:1"


def test_the_native_peer_runs_on_the_given_driver(
    ctx: Context, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ran: list[list[str]] = []

    def run(argv, env, **kw):  # type: ignore[no-untyped-def]
        ran.append([str(a) for a in argv])
        return Proc([str(a) for a in argv], 0.5, 0, "", "", -1, 0.25)

    monkeypatch.setattr(native_publish, "run", run)
    monkeypatch.setattr(native_publish, "index_children", lambda host, repo, tag: len(native_publish.PLATFORMS))
    reg = SimpleNamespace(host="127.0.0.1:5000")
    assert native_publish.publish_buildah(ctx, reg, tmp_path, 0, "overlay") == (1.0, 0.5)
    assert [_driver_of(argv) for argv in ran] == ["overlay", "overlay"]
