"""lists.sources.read_source: an index's first bad entry (in index order) stops the other reads."""

from __future__ import annotations

import asyncio
import json

import pytest

from manifesto.errors import NotFound, UsageError
from manifesto.lists.sources import read_source
from manifesto.oci import mediatype
from manifesto.oci.digest import Digest
from manifesto.oci.reference import Reference
from manifesto.store.protocol import Fetched

CHILDREN = [Digest.of(f"child {i}".encode()) for i in range(3)]


class SlowClient:
    """An index of three children: 0 fails late, 1 fails at once, 2 would take long."""

    def __init__(self) -> None:
        self.index = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": mediatype.OCI_INDEX,
                "manifests": [
                    {"mediaType": mediatype.OCI_MANIFEST, "digest": str(d), "size": 10,
                     "platform": {"os": "linux", "architecture": "amd64"}}
                    for d in CHILDREN
                ],
            }
        ).encode()
        self.events: list[str] = []

    async def get_manifest(self, repo: str, reference: str) -> Fetched:
        if reference == "1.0":
            return Fetched(self.index, mediatype.OCI_INDEX, Digest.of(self.index))
        i = CHILDREN.index(Digest.parse(reference))
        try:
            await asyncio.sleep([0.05, 0, 2][i])
        except asyncio.CancelledError:
            self.events.append(f"{i} cancelled")
            raise
        self.events.append(f"{i} failed")
        raise NotFound(f"child {i} is gone")


class FakeRegistries:
    def __init__(self, client: SlowClient) -> None:
        self._client = client

    def client(self, ref: Reference) -> SlowClient:
        return self._client


def test_first_bad_entry_in_index_order_and_the_rest_stop() -> None:
    client = SlowClient()
    with pytest.raises(NotFound, match="child 0"):
        asyncio.run(asyncio.wait_for(read_source(FakeRegistries(client), Reference.parse("r.example/a:1.0")), 1))
    assert sorted(client.events) == ["0 failed", "1 failed", "2 cancelled"]


# ---- an image: entry picking a platform out of a list that also holds an artifact ------------


class StaticClient:
    """Manifests (by tag or digest) and blobs from dicts."""

    def __init__(self) -> None:
        self.manifests: dict[str, tuple[bytes, str]] = {}
        self.blobs: dict[str, bytes] = {}

    def add(self, doc: dict, media_type: str, tag: str | None = None) -> dict:
        raw = json.dumps(doc).encode()
        digest = str(Digest.of(raw))
        self.manifests[digest] = (raw, media_type)
        if tag:
            self.manifests[tag] = (raw, media_type)
        return {"mediaType": media_type, "digest": digest, "size": len(raw)}

    def blob(self, data: bytes, media_type: str) -> dict:
        self.blobs[str(Digest.of(data))] = data
        return {"mediaType": media_type, "digest": str(Digest.of(data)), "size": len(data)}

    async def get_manifest(self, repo: str, reference: str) -> Fetched:
        raw, media_type = self.manifests[str(reference)]
        return Fetched(raw, media_type, Digest.of(raw))

    async def read_blob_bytes(self, repo: str, digest, limit: int = 0) -> bytes:
        return self.blobs[str(digest)]


def _list_with_an_artifact() -> StaticClient:
    c = StaticClient()
    image_config = c.blob(json.dumps({"os": "linux", "architecture": "arm64", "variant": "v8"}).encode(), mediatype.OCI_CONFIG)
    image = c.add({"schemaVersion": 2, "mediaType": mediatype.OCI_MANIFEST, "config": image_config, "layers": []},
                  mediatype.OCI_MANIFEST)
    helm = c.blob(b"{}", "application/vnd.cncf.helm.config.v1+json")
    artifact = c.add({"schemaVersion": 2, "mediaType": mediatype.OCI_MANIFEST, "config": helm, "layers": []},
                     mediatype.OCI_MANIFEST)
    image["platform"] = {"os": "linux", "architecture": "arm64", "variant": "v8"}
    c.add({"schemaVersion": 2, "mediaType": mediatype.OCI_INDEX, "manifests": [artifact, image]}, mediatype.OCI_INDEX, "1.0")
    return c


def test_an_image_entry_picking_a_platform_passes_over_platformless_entries() -> None:
    from manifesto.jobs.publish import read_assembled
    from manifesto.matrix.plan import AssembleStep
    from manifesto.oci.platform import Platform

    regs = FakeRegistries(_list_with_an_artifact())  # type: ignore[arg-type]
    ref = Reference.parse("r.example/mixed:1.0")
    (entry,) = asyncio.run(read_assembled(regs, AssembleStep(ref, Platform.parse("linux/arm64/v8"))))  # type: ignore[arg-type]
    assert str(entry.platform) == "linux/arm64/v8"


def test_create_still_refuses_a_platformless_entry() -> None:
    regs = FakeRegistries(_list_with_an_artifact())  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="artifact .*needs a platform"):
        asyncio.run(read_source(regs, Reference.parse("r.example/mixed:1.0")))  # type: ignore[arg-type]
