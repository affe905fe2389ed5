"""Copy manifests and their content between stores: children first, tags last.

Every blob is moved at most once per run (concurrent copies of a shared layer wait for the one
in flight), mounted when source and target are repositories of the same store and it can mount
(without asking first whether the target has it: the mount answers that too), else skipped when
the target already has it, read from its file when the source has local
blobs, and streamed otherwise. A blob the source names but holds elsewhere (a natively built
image's base layers, store/overlay.py) is taken from that origin the same way: mounted when the
origin is another repository of the target, streamed once otherwise. A blob the source holds
that is in another repository of the target too (a buildah export's base layers) is mounted
from there; when the registry refuses, it is uploaded from the source into the session the
refusal opened (never streamed from the other repository). Child manifests are PUT
by digest before anything refers to them, so a registry never sees an index naming a missing
child (distribution 2.8 answers such an index with 400 MANIFEST_BLOB_UNKNOWN). Stores are
reached through store/protocol.py only: `Store`, and the optional abilities `Mounter`,
`LocalBlobs` and `BlobOrigins` asked for with isinstance on those protocols.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from manifesto import tasks
from manifesto.errors import AuthError, ConnectionLost, NetworkError, NotFound, RegistryError
from manifesto.log import get_logger
from manifesto.oci import mediatype
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.digest import Digest
from manifesto.oci.manifest import ImageIndex, ImageManifest, parse
from manifesto.store.protocol import BlobOrigins, Fetched, LocalBlobs, Mounter, Store
from manifesto.store.registry import retry
from manifesto.tags import Snapshot, TagMove, move_tags

log = get_logger("manifesto.transfer")

BLOB_COPY_ATTEMPTS = retry.ATTEMPTS  # copies of a streamed blob from its source, the first included
BYTES_EVERY = 0.25  # seconds between byte reports for one blob (the first and the last always go)
FILE_CHUNK = 1024 * 1024

OnBytes = Callable[[Digest, int, int], None]  # (blob digest, bytes sent so far, blob size)


@dataclass(frozen=True)
class Place:
    """A repository in a store."""

    store: Store
    repo: str

    def mounter(self, source: Place) -> Mounter | None:
        """This place's store when it can mount blobs from `source` (another repository of it)."""
        if isinstance(self.store, Mounter) and source.store is self.store and source.repo != self.repo:
            return self.store
        return None


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

    def __init__(self, target: Place, on_bytes: OnBytes | None = None, *, eager: bool = False):
        """`on_bytes` (optional) hears each uploaded blob's progress, a few times a second: who
        shows it (a live line per blob, a board row per platform) is the caller's business.

        `eager`: the caller expects the target to lack what it copies (a list about to move a
        tag, a copy). An image whose blobs all mount (another repository of the target's
        registry) is then mounted and put without asking first whether the target holds it:
        one round trip and one request less per image; when it was there after all, the mounts
        and the PUT change nothing (a mount and a PUT by digest show nothing under any name).
        An image whose blobs would be uploaded (from another registry, a layout) still waits
        for that answer.
        """
        self.target = target
        self.on_bytes = on_bytes
        self.eager = eager
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
        if mediatype.is_nondistributable(descriptor.media_type):
            return  # non-distributable: the manifest's urls point at it
        origin = source.store.blob_origin(descriptor.digest) if isinstance(source.store, BlobOrigins) else None
        if origin is not None:  # not held there (a native build's base layer): take it from where it is
            source = Place(*origin)
        mount_from = source
        if origin is None and isinstance(source.store, BlobOrigins) and isinstance(dst.store, Mounter):
            # held here and also in the target's registry (a buildah export's base layer): a
            # mount from there instead of an upload; the bytes are still read from here if not
            if (repo := await source.store.blob_copy(descriptor.digest, dst.store)) is not None:
                mount_from = Place(dst.store, repo)
        location = None
        mounter = dst.mounter(mount_from)
        if mounter is not None:
            # No HEAD first: a mount succeeds whether or not the target already holds the blob,
            # so asking would be one more round trip per blob for the same answer. A refused
            # mount opens an upload session instead, which the blob is then written into.
            refused = False
            try:
                location = await mounter.mount_blob(dst.repo, descriptor, mount_from.repo)
            except (AuthError, NotFound, RegistryError):
                if mount_from is source:
                    raise
                # a base mount some registries answer 403/404 rather than 202: the bytes are
                # here, so upload them (a real refusal to push comes back from the upload)
                refused = True
            if location is None and not refused:
                self.stats.blobs_mounted += 1
                return
        if await dst.store.blob_size(dst.repo, descriptor.digest) is not None:
            self.stats.blobs_skipped += 1  # (a refused mount's session is left to expire)
            return
        if isinstance(source.store, LocalBlobs) and self.on_bytes is None:
            # a file: the store replays it itself if an upload breaks
            await self._write(descriptor, source.store.blob_path(descriptor.digest), location)
        elif isinstance(source.store, LocalBlobs):  # counted as it is read: restarted like a stream
            path = source.store.blob_path(descriptor.digest)
            await self._stream_blob(source, descriptor, location, lambda: _file_chunks(path))
        else:
            await self._stream_blob(source, descriptor, location)
        self.stats.blobs_uploaded += 1
        self.stats.bytes_uploaded += descriptor.size
        log.debug("blob_copied", digest=str(descriptor.digest), size=descriptor.size)

    async def _stream_blob(
        self,
        source: Place,
        descriptor: Descriptor,
        location: str | None,
        open_source: Callable[[], AsyncGenerator[bytes, None]] | None = None,
    ) -> None:
        """Stream a blob from the source into the target, restarting the whole copy (a new GET,
        a new upload session) when either connection breaks: a stream cannot be replayed, and
        distribution refuses to resume a broken session. The digest is verified as it streams.
        `open_source` gives the bytes afresh for each attempt (default: a GET from the source)."""
        for attempt in range(1, BLOB_COPY_ATTEMPTS + 1):
            raw = open_source() if open_source else source.store.read_blob(source.repo, descriptor.digest)
            data = self._counted(descriptor, raw) if self.on_bytes is not None else raw
            try:
                await self._write(descriptor, data, location)
                return
            except (NetworkError, RegistryError) as e:
                if isinstance(e, RegistryError) and e.status not in retry.RETRY_STATUSES:
                    raise  # the registry refused the blob: copying it again changes nothing
                if e.attempts > 1:
                    raise  # a request the retry policy already repeated (a GET, a session's POST): spent
                # (whether a broken final PUT landed anyway, the store's write_blob has checked)
                if attempt == BLOB_COPY_ATTEMPTS:
                    if isinstance(e, ConnectionLost):
                        raise ConnectionLost(e.doing, attempt, e.detail) from None
                    raise
                log.info("blob_copy_restart", digest=str(descriptor.digest), attempt=attempt, reason=str(e))
                location = None  # a mount's session went with the broken upload
                # the one retry policy's pause, or the registry's Retry-After, before copying again
                backoff = getattr(self.target.store, "backoff", retry.BACKOFF)
                wait = retry.pause(attempt, backoff, getattr(e, "retry_after", None))
            finally:
                await data.aclose()  # closes the source's response
                if data is not raw:
                    await raw.aclose()
            await asyncio.sleep(wait)

    async def _counted(self, descriptor: Descriptor, data: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
        """`data`, telling on_bytes how much has gone: at the start, at most every BYTES_EVERY
        seconds, and when the last byte has been handed over."""
        assert self.on_bytes is not None
        done, last = 0, time.monotonic()
        self.on_bytes(descriptor.digest, 0, descriptor.size)
        async for chunk in data:
            yield chunk
            done += len(chunk)
            now = time.monotonic()
            if done >= descriptor.size or now - last >= BYTES_EVERY:
                last = now
                self.on_bytes(descriptor.digest, done, descriptor.size)

    async def _write(self, descriptor: Descriptor, data: Path | AsyncIterator[bytes], location: str | None) -> None:
        dst = self.target
        if location is None:
            await dst.store.write_blob(dst.repo, descriptor, data)
            return
        mounter = dst.store  # an upload session that a mount opened instead: only a Mounter has one
        assert isinstance(mounter, Mounter)
        await mounter.write_blob(dst.repo, descriptor, data, location=location)

    async def manifest(self, source: Place, fetched: Fetched) -> Descriptor:
        """Copy a manifest (and, for an index, every child) into the target by digest."""
        if fetched.digest not in self._manifests:
            self._manifests[fetched.digest] = asyncio.ensure_future(self._copy_manifest(source, fetched))
        await self._manifests[fetched.digest]
        return fetched.descriptor()

    def holds(self, digest: Digest) -> bool:
        """Whether this copier put that manifest in the target (or found it there) this run."""
        task = self._manifests.get(digest)
        return task is not None and task.done() and not task.cancelled() and task.exception() is None

    async def _copy_manifest(self, source: Place, fetched: Fetched) -> None:
        dst = self.target
        if await self.content(source, fetched):
            self.stats.manifests_skipped += 1
            return
        await dst.store.put_manifest(dst.repo, fetched.digest, fetched.raw, fetched.media_type)
        self.stats.manifests_pushed += 1

    async def content(self, source: Place, fetched: Fetched) -> bool:
        """Copy what a manifest names (an index's children, an image's blobs) into the target,
        not the manifest itself; True when the target holds the manifest already (then nothing).

        For a caller that puts the manifest itself under a tag next (copy): the tag's PUT
        stores the same bytes a PUT by digest would. An index's children are read from the
        source while the target is asked for the index (reads only, so nothing is written
        before the answer), each copied as soon as it is read and the answer is no.
        """
        dst = self.target
        doc = parse(fetched.raw, fetched.media_type, f"{source.repo}@{fetched.digest}")
        if isinstance(doc, ImageIndex):
            held = asyncio.ensure_future(dst.store.head_manifest(dst.repo, fetched.digest))

            async def child(d: Descriptor) -> None:
                got = await source.store.get_manifest(source.repo, d.digest)
                if await held is None:
                    await self.manifest(source, got)

            found, _ = await tasks.gather(held, tasks.gather(*(child(d) for d in doc.manifests)))
            return found is not None
        assert isinstance(doc, ImageManifest)
        if self.eager and dst.mounter(source) is not None:
            # Every blob is mounted, and the PUT after it writes the very bytes the target would
            # hold if it had the image: a HEAD first could save that PUT only, at the cost of a
            # request of its own (and, before the mounts, a round trip).
            await tasks.gather(*(self.blob(source, d) for d in doc.blobs()))
            return False
        if await dst.store.head_manifest(dst.repo, fetched.digest) is not None:
            return True
        await tasks.gather(*(self.blob(source, d) for d in doc.blobs()))
        return False

    async def tag(self, reference: str, raw: bytes, media_type: str, seen: Snapshot | None = None) -> bool:
        """PUT a manifest under a tag unless the tag already holds exactly these bytes.

        Compare-and-swap (tags.move_tags): a tag that moved since `seen` first read it (without
        `seen`: since this call read it) is not overwritten. False when it was already there.
        """
        dst = self.target
        return (await move_tags([TagMove(dst.store, dst.repo, reference, raw, media_type)], seen))[0]


async def _file_chunks(path: Path) -> AsyncGenerator[bytes, None]:
    """A local blob file, read a chunk at a time."""
    with path.open("rb") as f:
        while chunk := f.read(FILE_CHUNK):
            yield chunk
