"""A run's native builds read each FROM reference once (base_image.FirstReads).

Every platform of a publish must build on the same base: when the base's tag is pushed again
while the run builds, a platform built later must still use the index the first one read, and
the registry serves one read of the tag instead of one per platform.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import pytest

from manifesto.builders.base import BuildRequest
from manifesto.builders.native.base_image import FirstReads
from manifesto.builders.native.builder import NativeBuilder
from manifesto.errors import NetworkError
from manifesto.jobs.copy import copy
from manifesto.oci.digest import Digest
from manifesto.oci.platform import Platform
from manifesto.store.protocol import Fetched
from tests.builders.test_native_transfer import _base


def _pushed_again(layout: Path) -> None:
    """The layout's index made anew: each child manifest gains an annotation (a new digest)."""
    blobs = layout / "blobs" / "sha256"

    def write(doc: dict) -> dict:
        raw = json.dumps(doc).encode()
        (blobs / Digest.of(raw).hex).write_bytes(raw)
        return {"digest": str(Digest.of(raw)), "size": len(raw)}

    top = json.loads((layout / "index.json").read_text())
    index = json.loads((blobs / Digest.parse(top["manifests"][0]["digest"]).hex).read_bytes())
    for child in index["manifests"]:
        manifest = json.loads((blobs / Digest.parse(child["digest"]).hex).read_bytes())
        child.update(write({**manifest, "annotations": {"pushed": "again"}}))
    top["manifests"][0].update(write(index))
    (layout / "index.json").write_text(json.dumps(top))


def _from_line(builder: NativeBuilder, ctx: Path, out: Path) -> str:
    """The FROM line an amd64 build printed: it names the base image it used, by digest."""
    lines: list[str] = []
    request = BuildRequest(Platform.parse("linux/amd64"), ctx, ctx / "Dockerfile", {}, out, tag="t", source_date_epoch=1)
    builder.build(request, lines.append)
    return next(line for line in lines if line.startswith("FROM "))


def test_a_base_pushed_again_during_a_run_does_not_split_its_platforms(registry, tmp_path: Path) -> None:
    first, _ = _base(tmp_path / "a")
    again, _ = _base(tmp_path / "b")
    _pushed_again(again)
    ref = registry.ref("native-reads/base") + ":1"
    copy(f"oci:{first}:1", ref)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {ref}\nCOPY app /app\n")
    (ctx / "app").write_text("app\n")

    run = NativeBuilder(bases=FirstReads())
    on_first = _from_line(run, ctx, tmp_path / "o1")
    copy(f"oci:{again}:1", ref)  # the tag moves while the run builds
    later = _from_line(run, ctx, tmp_path / "o2")
    another_run = _from_line(NativeBuilder(bases=FirstReads()), ctx, tmp_path / "o3")
    assert later == on_first  # what the run first read
    assert another_run != on_first  # the tag did move: another run builds on the new base


def test_concurrent_reads_are_one_and_a_failed_one_is_not_kept() -> None:
    reads = FirstReads()
    calls: list[str] = []
    release = threading.Event()
    got: dict[str, Fetched] = {}

    async def slow() -> Fetched:
        calls.append("read")
        await asyncio.get_running_loop().run_in_executor(None, release.wait, 5)
        return Fetched(b"{}", "application/json", Digest.of(b"{}"))

    def build(name: str) -> None:  # each build runs its own event loop in a thread of its own
        got[name] = asyncio.run(reads.get("k", slow))

    threads = [threading.Thread(target=build, args=(name,)) for name in "abc"]
    for t in threads:
        t.start()
    release.set()
    for t in threads:
        t.join(5)
    assert calls == ["read"] and got["a"] is got["b"] is got["c"]

    async def failing() -> Fetched:
        raise RuntimeError("registry down")

    with pytest.raises(RuntimeError):
        asyncio.run(reads.get("bad", failing))
    assert asyncio.run(reads.get("bad", slow)).raw == b"{}"  # read again, not the failure


def test_a_failed_first_read_fails_every_waiting_build_at_once() -> None:
    """Not one after another: each waiter taking its turn to fail again would make a publish
    whose base cannot be read wait once per platform."""
    reads = FirstReads()
    calls: list[str] = []
    release = threading.Event()
    errors: dict[str, BaseException] = {}

    async def refused() -> Fetched:
        calls.append("read")
        await asyncio.get_running_loop().run_in_executor(None, release.wait, 5)
        raise NetworkError("base: cannot reach registry.example.com (5 attempts)")

    def build(name: str) -> None:
        try:
            asyncio.run(reads.get("k", refused))
        except NetworkError as e:
            errors[name] = e

    threads = [threading.Thread(target=build, args=(name,)) for name in "abc"]
    for t in threads:
        t.start()
    time.sleep(0.1)  # all three are waiting on the one read
    release.set()
    for t in threads:
        t.join(5)
    assert calls == ["read"] and sorted(errors) == ["a", "b", "c"]


def test_a_cancelled_waiter_leaves_the_read_to_the_others() -> None:
    reads = FirstReads()
    release, started = threading.Event(), threading.Event()
    got: dict[str, object] = {}

    async def slow() -> Fetched:
        started.set()
        await asyncio.get_running_loop().run_in_executor(None, release.wait, 5)
        return Fetched(b"[]", "application/json", Digest.of(b"[]"))

    def owner() -> None:
        got["owner"] = asyncio.run(reads.get("k", slow))

    async def cancelled_waiter() -> None:
        task = asyncio.ensure_future(reads.get("k", slow))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    thread = threading.Thread(target=owner)
    thread.start()
    assert started.wait(5)
    asyncio.run(cancelled_waiter())
    release.set()
    thread.join(5)
    assert got["owner"].raw == b"[]"  # type: ignore[union-attr]
    assert asyncio.run(reads.get("k", slow)) is got["owner"]


def test_each_publish_run_gets_its_own_first_reads() -> None:
    from manifesto.jobs.builds import builders_for

    one, two = builders_for(["native"], None)["native"], builders_for(["native"], None)["native"]
    assert isinstance(one.bases, FirstReads) and isinstance(two.bases, FirstReads)  # type: ignore[attr-defined]
    assert one.bases is not two.bases  # type: ignore[attr-defined]
