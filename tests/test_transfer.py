"""transfer.Copier through the store protocols only: layouts, a registry, and an in-memory store.

The in-memory store (tests/support/memstore.py) implements `Store` and nothing else, so a copy
that works through it needs nothing more of a place than the protocol. Abilities change how a
blob moves (mounted, read from its file) but never what arrives: the same bytes, the same digests.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from manifesto.oci import mediatype
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.digest import Digest
from manifesto.store.layout import LayoutStore
from manifesto.store.protocol import Store
from manifesto.store.registry.client import RegistryClient
from manifesto.transfer import Copier, Place
from tests.support.memstore import MemoryStore, MountingMemoryStore

T = TypeVar("T")

ARCHES = ("amd64", "arm64", "s390x")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def _json(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _desc(media_type: str, data: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": str(Digest.of(data)), "size": len(data)}


def seed(store: MemoryStore, repo: str = "src") -> tuple[bytes, dict[Digest, bytes]]:
    """An index of three images sharing one base layer, tagged `1`; returns (index, every blob)."""
    shared = b"shared base layer " * 40
    blobs: dict[Digest, bytes] = {Digest.of(shared): shared}
    children = []
    for arch in ARCHES:
        config = _json({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})
        own = f"{arch} layer ".encode() * 30
        blobs[Digest.of(config)] = config
        blobs[Digest.of(own)] = own
        manifest = _json(
            {
                "schemaVersion": 2,
                "mediaType": mediatype.OCI_MANIFEST,
                "config": _desc(mediatype.OCI_CONFIG, config),
                "layers": [_desc(mediatype.OCI_LAYER_GZIP, shared), _desc(mediatype.OCI_LAYER_GZIP, own)],
            }
        )
        store.manifests[(repo, Digest.of(manifest))] = (manifest, mediatype.OCI_MANIFEST)
        children.append(_desc(mediatype.OCI_MANIFEST, manifest) | {"platform": {"os": "linux", "architecture": arch}})
    for digest, data in blobs.items():
        store.blobs[(repo, digest)] = data
    index = _json({"schemaVersion": 2, "mediaType": mediatype.OCI_INDEX, "manifests": children})
    _run(store.put_manifest(repo, "1", index, mediatype.OCI_INDEX))
    return index, blobs


async def copy(source: Place, target: Place, reference: str = "1", tag: str = "1") -> Copier:
    fetched = await source.store.get_manifest(source.repo, reference)
    copier = Copier(target)
    await copier.manifest(source, fetched)
    await copier.tag(tag, fetched.raw, fetched.media_type)
    return copier


async def same_content(a: Place, b: Place, index: bytes, blobs: dict[Digest, bytes], tag: str = "1") -> None:
    """`b` serves the index under `tag`, every child by digest and every blob, byte for byte as `a`."""
    got = await b.store.get_manifest(b.repo, tag)
    assert got.raw == index and got.digest == Digest.of(index)
    for child in json.loads(index)["manifests"]:
        digest = Digest.parse(child["digest"])
        assert (await b.store.get_manifest(b.repo, digest)).raw == (await a.store.get_manifest(a.repo, digest)).raw
    for digest, data in blobs.items():
        assert await b.store.read_blob_bytes(b.repo, digest) == data


def test_the_in_memory_store_has_no_abilities() -> None:
    from manifesto.store.protocol import LocalBlobs, Mounter

    store: Store = MemoryStore()
    assert not isinstance(store, Mounter) and not isinstance(store, LocalBlobs)


def test_copy_through_the_protocol_alone_into_a_layout_and_on_to_another(tmp_path: Path) -> None:
    memory = MemoryStore()
    index, blobs = seed(memory)
    src = Place(memory, "src")
    first = Place(LayoutStore(tmp_path / "a", create=True), "")
    second = Place(LayoutStore(tmp_path / "b", create=True), "")
    back = Place(MemoryStore("back"), "dst")

    async def run() -> None:
        copier = await copy(src, first)
        assert copier.stats.blobs_uploaded == len(blobs)  # the shared layer once
        assert copier.stats.blobs_mounted == 0
        assert copier.stats.manifests_pushed == 1 + len(ARCHES)
        await same_content(src, first, index, blobs)
        await copy(first, second)
        await same_content(first, second, index, blobs)
        await copy(second, back)  # a layout's blobs go into a store that only speaks the protocol
        await same_content(second, back, index, blobs)

    _run(run())
    assert LayoutStore(tmp_path / "b").tags()["1"].digest == Digest.of(index)


def test_copy_again_skips_what_is_there_and_leaves_the_tag(tmp_path: Path) -> None:
    memory = MemoryStore()
    seed(memory)
    target = Place(LayoutStore(tmp_path / "a", create=True), "")

    async def run() -> tuple[Copier, bool]:
        await copy(Place(memory, "src"), target)
        fetched = await memory.get_manifest("src", "1")
        again = Copier(target)
        await again.manifest(Place(memory, "src"), fetched)
        return again, await again.tag("1", fetched.raw, fetched.media_type)

    again, moved = _run(run())
    assert (again.stats.manifests_skipped, again.stats.manifests_pushed, again.stats.blobs_uploaded) == (1, 0, 0)
    assert moved is False


def test_layout_to_registry_and_back(registry: Any, unique_repo: str, tmp_path: Path) -> None:
    memory = MemoryStore()
    index, blobs = seed(memory)
    layout = Place(LayoutStore(tmp_path / "src", create=True), "")
    back = Place(LayoutStore(tmp_path / "back", create=True), "")

    async def run() -> None:
        await copy(Place(memory, "src"), layout)
        async with RegistryClient(registry.host) as client:
            remote = Place(client, unique_repo)
            pushed = await copy(layout, remote, tag="v1")
            assert pushed.stats.blobs_uploaded == len(blobs)
            await same_content(layout, remote, index, blobs, tag="v1")
            await copy(remote, back, reference="v1", tag="again")
            await same_content(remote, back, index, blobs, tag="again")

    _run(run())


class PathRecorder(MemoryStore):
    """Records whether each blob arrived as a file or as a stream."""

    def __init__(self) -> None:
        super().__init__("recorder")
        self.kinds: list[str] = []

    async def write_blob(self, repo: str, descriptor: Descriptor, source: Path | AsyncIterator[bytes]) -> None:
        self.kinds.append("file" if isinstance(source, Path) else "stream")
        await super().write_blob(repo, descriptor, source)


def test_a_store_with_local_blobs_hands_over_files_and_others_stream(tmp_path: Path) -> None:
    memory = MemoryStore()
    _, blobs = seed(memory)
    layout = Place(LayoutStore(tmp_path / "a", create=True), "")
    from_files, from_stream = PathRecorder(), PathRecorder()

    async def run() -> None:
        await copy(Place(memory, "src"), layout)
        await copy(layout, Place(from_files, "r"))
        await copy(Place(memory, "src"), Place(from_stream, "r"))

    _run(run())
    assert from_files.kinds == ["file"] * len(blobs)
    assert from_stream.kinds == ["stream"] * len(blobs)


def test_repositories_of_a_store_that_mounts_mount_instead_of_copying() -> None:
    store = MountingMemoryStore()
    _, blobs = seed(store)

    copier = _run(copy(Place(store, "src"), Place(store, "dst")))
    assert copier.stats.blobs_mounted == len(blobs) and copier.stats.blobs_uploaded == 0
    assert store.blob_writes == 0
    assert {(repo, source) for repo, _, source in store.mounts} == {("dst", "src")}


def test_a_mount_answered_with_a_session_uploads_into_it() -> None:
    store = MountingMemoryStore(refuse=True)
    index, blobs = seed(store)

    copier = _run(copy(Place(store, "src"), Place(store, "dst")))
    assert copier.stats.blobs_mounted == 0 and copier.stats.blobs_uploaded == len(blobs)
    assert sorted(store.sessions) == sorted(f"session-{i}" for i in range(1, len(blobs) + 1))
    _run(same_content(Place(store, "src"), Place(store, "dst"), index, blobs))


def test_no_mount_between_two_stores() -> None:
    store, elsewhere = MountingMemoryStore(), MountingMemoryStore("elsewhere")
    _, blobs = seed(store)

    copier = _run(copy(Place(store, "src"), Place(elsewhere, "dst")))
    assert store.mounts == [] and elsewhere.mounts == []
    assert copier.stats.blobs_uploaded == len(blobs)
