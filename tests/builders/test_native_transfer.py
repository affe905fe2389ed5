"""Copying a natively built image: its base layers come from where the base is, once.

A native build's layout lacks its base's layers (store/overlay.py): transfer.Copier takes each
from the base's place — streamed once when that is another registry, mounted when it is the
target's, and uploaded into the session a refused mount opened (202) — and skips the layers no
registry holds (Docker foreign and OCI non-distributable layers, the manifest's urls name them).
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import tarfile
from collections import Counter
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import pytest

from manifesto.builders.base import BuildRequest
from manifesto.builders.native.builder import NativeBuilder
from manifesto.oci import mediatype
from manifesto.oci.digest import Digest
from manifesto.oci.platform import Platform
from manifesto.store.layout import LayoutStore
from manifesto.store.overlay import Overlay
from manifesto.transfer import Copier, Place
from tests.support.memstore import MemoryStore, MountingMemoryStore

PLATFORMS = ("linux/amd64", "linux/arm64/v8")
FOREIGN = {"mediaType": mediatype.OCI_NONDISTRIBUTABLE_GZIP, "digest": "sha256:" + "f" * 64, "size": 123,
           "urls": ["https://example.invalid/layer"]}  # fmt: skip


def _layer(name: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = len(name)
        tar.addfile(info, io.BytesIO(name.encode()))
    return buf.getvalue()


def _base(root: Path, *, foreign: bool = False) -> tuple[Path, dict[Digest, bytes]]:
    """An `oci:` layout tagged `1`: an index of two platforms sharing one layer (and, with
    `foreign`, a non-distributable layer it does not hold); returns it and every blob it holds."""
    blobs: dict[Digest, bytes] = {}

    def blob(data: bytes, media_type: str) -> dict[str, Any]:
        blobs[Digest.of(data)] = data
        return {"mediaType": media_type, "digest": str(Digest.of(data)), "size": len(data)}

    shared = _layer("shared")
    children = []
    for platform in PLATFORMS:
        os_, arch, *variant = platform.split("/")
        plat = {"os": os_, "architecture": arch, **({"variant": variant[0]} if variant else {})}
        own = _layer(arch)
        tars = [shared, own] + ([b"foreign"] if foreign else [])
        config = {**plat, "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(t).hexdigest()}" for t in tars]}}
        layers = [blob(gzip.compress(t, mtime=0), mediatype.OCI_LAYER_GZIP) for t in (shared, own)]
        manifest = {"schemaVersion": 2, "mediaType": mediatype.OCI_MANIFEST,
                    "config": blob(json.dumps(config).encode(), mediatype.OCI_CONFIG),
                    "layers": layers + ([FOREIGN] if foreign else [])}  # fmt: skip
        children.append(blob(json.dumps(manifest).encode(), mediatype.OCI_MANIFEST) | {"platform": plat})
    index = json.dumps({"schemaVersion": 2, "mediaType": mediatype.OCI_INDEX, "manifests": children}).encode()
    layout = root / "base"
    (layout / "blobs" / "sha256").mkdir(parents=True)
    for digest, data in {**blobs, Digest.of(index): index}.items():
        (layout / "blobs" / "sha256" / digest.hex).write_bytes(data)
    top = {"mediaType": mediatype.OCI_INDEX, "digest": str(Digest.of(index)), "size": len(index),
           "annotations": {"org.opencontainers.image.ref.name": "1"}}  # fmt: skip
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [top]}))
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    return layout, blobs


def _built(root: Path, base: Path) -> list[Path]:
    """Each platform built natively FROM the base into a layout of its own (tag `t`)."""
    ctx = root / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM oci:{base}:1\nARG TARGETARCH\nCOPY app-${{TARGETARCH}} /app/\n")
    outs = []
    for platform in PLATFORMS:
        arch = platform.split("/")[1]
        (ctx / f"app-{arch}").write_text(f"app for {arch}\n")
        out = root / f"out-{arch}"
        request = BuildRequest(Platform.parse(platform), ctx, ctx / "Dockerfile", {}, out, tag="t", source_date_epoch=1)
        built = NativeBuilder().build(request, lambda line: None)
        assert built.base == f"oci:{base}"
        outs.append(out)
    return outs


class CountingStore(MountingMemoryStore):
    """Counts the blobs read from it."""

    def __init__(self, name: str, *, refuse: bool = False) -> None:
        super().__init__(name, refuse=refuse)
        self.reads: Counter[Digest] = Counter()

    async def read_blob(self, repo: str, digest: Digest) -> AsyncGenerator[bytes, None]:
        self.reads[digest] += 1
        async for chunk in super().read_blob(repo, digest):
            yield chunk


def _copy(outs: list[Path], fallback: MemoryStore, target: Place) -> Copier:
    """Copy every built image, each read through an Overlay over `fallback`'s `base` repository."""

    async def run() -> Copier:
        copier = Copier(target)
        for out in outs:
            source = Place(Overlay(LayoutStore(out), fallback, "base"), "")
            fetched = await source.store.get_manifest("", "t")
            await copier.manifest(source, fetched)
        return copier

    return asyncio.run(run())


def _base_layers(outs: list[Path]) -> set[Digest]:
    """The layers of the built manifests their layouts do not hold."""
    out = set()
    for layout in outs:
        store = LayoutStore(layout)
        manifest = json.loads(asyncio.run(store.get_manifest("", "t")).raw)
        out |= {Digest.parse(d["digest"]) for d in manifest["layers"] if not store.blob_path(Digest.parse(d["digest"])).exists()}
    return out


def test_a_base_on_another_registry_is_streamed_once(tmp_path: Path) -> None:
    base, blobs = _base(tmp_path)
    outs = _built(tmp_path, base)
    origin = CountingStore("registry-a")
    origin.blobs.update({("base", d): data for d, data in blobs.items()})
    target = CountingStore("registry-b")
    copier = _copy(outs, origin, Place(target, "app"))
    absent = _base_layers(outs)
    assert len(absent) == 3  # the shared layer and each platform's own
    assert {d: origin.reads[d] for d in absent} == dict.fromkeys(absent, 1)  # the shared one too: once
    assert origin.mounts == target.mounts == []
    for digest in absent:
        assert target.blobs[("app", digest)] == blobs[digest]
    assert copier.stats.blobs_mounted == 0 and copier.stats.manifests_pushed == 2


@pytest.mark.parametrize("refuse", [False, True], ids=["mounted", "mount-answered-202"])
def test_a_base_in_the_target_registry_is_mounted_or_uploaded_into_the_session(tmp_path: Path, refuse: bool) -> None:
    base, blobs = _base(tmp_path)
    outs = _built(tmp_path, base)
    registry = CountingStore("registry", refuse=refuse)
    registry.blobs.update({("base", d): data for d, data in blobs.items()})
    copier = _copy(outs, registry, Place(registry, "app"))
    absent = _base_layers(outs)
    assert sorted(registry.mounts) == sorted(("app", d, "base") for d in absent)
    for digest in absent:
        assert registry.blobs[("app", digest)] == blobs[digest]
    if refuse:  # each refused mount's session took the upload: streamed from the base, once
        assert len(registry.sessions) == len(absent) and copier.stats.blobs_mounted == 0
        assert {d: registry.reads[d] for d in absent} == dict.fromkeys(absent, 1)
    else:
        assert registry.sessions == [] and copier.stats.blobs_mounted == len(absent)
        assert not any(registry.reads[d] for d in absent)


def test_non_distributable_base_layers_are_not_copied(tmp_path: Path) -> None:
    base, blobs = _base(tmp_path, foreign=True)
    outs = _built(tmp_path, base)
    origin = CountingStore("registry-a")
    origin.blobs.update({("base", d): data for d, data in blobs.items()})
    target = CountingStore("registry-b")
    _copy(outs, origin, Place(target, "app"))
    foreign = Digest.parse(FOREIGN["digest"])
    assert origin.reads[foreign] == 0 and ("app", foreign) not in target.blobs
    for layout in outs:
        manifest = json.loads(asyncio.run(LayoutStore(layout).get_manifest("", "t")).raw)
        assert manifest["layers"][2] == FOREIGN  # kept as the base's manifest has it
    assert mediatype.is_nondistributable(mediatype.DOCKER_FOREIGN_LAYER)
    assert mediatype.is_nondistributable("application/vnd.oci.image.layer.nondistributable.v1.tar+zstd")
    assert not mediatype.is_nondistributable(mediatype.OCI_LAYER_GZIP)
