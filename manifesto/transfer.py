"""Copy manifests and their content between stores: children first, tags last.

Every blob is moved at most once per run (concurrent copies of a shared layer wait for the one
in flight), skipped when the target already has it, mounted when source and target are
repositories of the same registry, and streamed otherwise. Child manifests are PUT by digest
before anything refers to them, so a registry never sees an index naming a missing child
(distribution 2.8 answers such an index with 400 MANIFEST_BLOB_UNKNOWN).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from manifesto import tasks
from manifesto.errors import ConnectionLost, NetworkError, RegistryError
from manifesto.log import get_logger
from manifesto.oci import mediatype
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.digest import Digest
from manifesto.oci.manifest import ImageIndex, ImageManifest, parse
from manifesto.store.protocol import Fetched, Store
from manifesto.store.registry.client import RegistryClient
from manifesto.store.registry.retry import RETRY_STATUSES
from manifesto.tags import Snapshot, TagMove, move_tags

log = get_logger("manifesto.transfer")

BLOB_COPY_ATTEMPTS = 3  # a streamed blob is copied again from the source at most twice


@dataclass(frozen=True)
class Place:
    """A repository in a store."""

    store: Store
    repo: str

    def same_registry(self, other: Place) -> bool:
        return isinstance(self.store, RegistryClient) and self.store is other.store


@dataclass
class Stats:
    blobs_uploaded: int = 0
    blobs_mounted: int = 0
    blobs_skipped: int = 0
    bytes_uploaded: int = 0
    manifests_pushed: int = 0
    manifests_skipped: int = 0


class Copier:
    """Copies content into one target place, remembering what is already done this run."""

    def __init__(self, target: Place):
        self.target = target
        self.stats = Stats()
        self._blobs: dict[Digest, asyncio.Task[None]] = {}
        self._manifests: dict[Digest, asyncio.Task[None]] = {}

    async def blob(self, source: Place, descriptor: Descriptor) -> None:
        """Make a blob present in the target (once per digest per run)."""
        if descriptor.digest not in self._blobs:
            self._blobs[descriptor.digest] = asyncio.ensure_future(self._copy_blob(source, descriptor))
        await self._blobs[descriptor.digest]

    async def _copy_blob(self, source: Place, descriptor: Descriptor) -> None:
        dst = self.target
        if descriptor.media_type == mediatype.DOCKER_FOREIGN_LAYER:
            return  # non-distributable: the manifest's urls point at it
        if await dst.store.blob_size(dst.repo, descriptor.digest) is not None:
            self.stats.blobs_skipped += 1
            return
        location = None
        if source.same_registry(dst) and source.repo != dst.repo:
            assert isinstance(dst.store, RegistryClient)
            location = await dst.store.mount_blob(dst.repo, descriptor, source.repo)
            if location is None:
                self.stats.blobs_mounted += 1
                return
        path = getattr(source.store, "blob_path", None)
        if path:  # a file: the store replays it itself if an upload breaks
            await self._write(descriptor, path(descriptor.digest), location)
        else:
            await self._stream_blob(source, descriptor, location)
        self.stats.blobs_uploaded += 1
        self.stats.bytes_uploaded += descriptor.size
        log.debug("blob_copied", digest=str(descriptor.digest), size=descriptor.size)

    async def _stream_blob(self, source: Place, descriptor: Descriptor, location: str | None) -> None:
        """Stream a blob from the source into the target, restarting the whole copy (a new GET,
        a new upload session) when either connection breaks: a stream cannot be replayed, and
        distribution refuses to resume a broken session. The digest is verified as it streams."""
        dst = self.target
        for attempt in range(1, BLOB_COPY_ATTEMPTS + 1):
            data = source.store.read_blob(source.repo, descriptor.digest)
            try:
                await self._write(descriptor, data, location)
                return
            except (NetworkError, RegistryError) as e:
                if isinstance(e, RegistryError) and e.status not in RETRY_STATUSES:
                    raise  # the registry refused the blob: copying it again changes nothing
                if await dst.store.blob_size(dst.repo, descriptor.digest) == descriptor.size:
                    return  # the final PUT landed before the connection broke
                if attempt == BLOB_COPY_ATTEMPTS:
                    if isinstance(e, ConnectionLost):
                        raise ConnectionLost(e.doing, attempt, e.detail) from None
                    raise
                log.info("blob_copy_restart", digest=str(descriptor.digest), attempt=attempt, reason=str(e))
                location = None  # a mount's session went with the broken upload
            finally:
                if hasattr(data, "aclose"):
                    await data.aclose()  # closes the source's response

    async def _write(self, descriptor: Descriptor, data: Path | AsyncIterator[bytes], location: str | None) -> None:
        dst = self.target
        if isinstance(dst.store, RegistryClient):
            await dst.store.write_blob(dst.repo, descriptor, data, location=location)
        else:
            await dst.store.write_blob(dst.repo, descriptor, data)

    async def manifest(self, source: Place, fetched: Fetched) -> Descriptor:
        """Copy a manifest (and, for an index, every child) into the target by digest."""
        if fetched.digest not in self._manifests:
            self._manifests[fetched.digest] = asyncio.ensure_future(self._copy_manifest(source, fetched))
        await self._manifests[fetched.digest]
        return fetched.descriptor()

    async def _copy_manifest(self, source: Place, fetched: Fetched) -> None:
        dst = self.target
        doc = parse(fetched.raw, fetched.media_type, f"{source.repo}@{fetched.digest}")
        if await dst.store.head_manifest(dst.repo, str(fetched.digest)) is not None:
            self.stats.manifests_skipped += 1
            return
        if isinstance(doc, ImageIndex):
            await self.children(source, doc.manifests)
        else:
            assert isinstance(doc, ImageManifest)
            await tasks.gather(*(self.blob(source, d) for d in doc.blobs()))
        await dst.store.put_manifest(dst.repo, str(fetched.digest), fetched.raw, fetched.media_type)
        self.stats.manifests_pushed += 1

    async def children(self, source: Place, descriptors: tuple[Descriptor, ...] | list[Descriptor]) -> None:
        """Copy the manifests an index names (fetched from `source` by digest)."""

        async def one(d: Descriptor) -> None:
            fetched = await source.store.get_manifest(source.repo, str(d.digest))
            await self.manifest(source, fetched)

        await tasks.gather(*(one(d) for d in descriptors))

    async def tag(self, reference: str, raw: bytes, media_type: str, seen: Snapshot | None = None) -> bool:
        """PUT a manifest under a tag unless the tag already holds exactly these bytes.

        Compare-and-swap (tags.move_tags): a tag that moved since `seen` first read it (without
        `seen`: since this call read it) is not overwritten. False when it was already there.
        """
        dst = self.target
        return (await move_tags([TagMove(dst.store, dst.repo, reference, raw, media_type)], seen))[0]


