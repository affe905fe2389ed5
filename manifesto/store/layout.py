"""An OCI image layout directory as a Store: `oci-layout`, `index.json`, `blobs/<alg>/<hex>`.

OCI image spec image-layout.md. Tags are the `org.opencontainers.image.ref.name` annotation of
the descriptors in index.json (annotations.md); putting a manifest under a tag replaces that
tag's entry, putting one by digest only stores the blob. Every read is checked against its
digest, every write goes to a temporary file in `blobs/` that is renamed into place only after
its digest and size were verified, and index.json is replaced atomically under a lock on the
directory (flock), so concurrent writers in threads or processes that use this class never
lose a tag. Hardlinking a source file in is deliberately not done: the layout would then share
an inode with a file someone may later modify in place.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import AsyncGenerator, AsyncIterator, Collection, Iterator
from pathlib import Path
from typing import Any

from manifesto.errors import (
    ContentError,
    DigestMismatch,
    InvalidDigest,
    NotFound,
    UsageError,
)
from manifesto.fileio import random_hex, write_atomic
from manifesto.log import get_logger
from manifesto.oci import canonical, mediatype
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.digest import Digest
from manifesto.oci.manifest import ImageIndex, ImageManifest, detect_media_type, parse
from manifesto.oci.reference import LAYOUT_PREFIX, is_digest
from manifesto.store.protocol import Fetched, ManifestRef

log = get_logger("manifesto.layout")

REF_NAME = "org.opencontainers.image.ref.name"
LAYOUT_VERSION = "1.0.0"
CHUNK = 1024 * 1024

# image-layout.md: ref.name follows the `ref` grammar of annotations.md.
_COMPONENT = r"[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*"
_REF_NAME = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")


class LayoutStore:
    """One OCI image layout directory: a Store with the LocalBlobs ability (store/protocol.py).

    `repo` arguments are ignored (a layout is one repo).

    Construction touches nothing unless `create` is true (then the directory and its
    `oci-layout` and empty `index.json` are made if missing); every call checks the layout and
    raises NotFound for a missing directory, ContentError for a broken one.
    """

    def __init__(self, path: Path, create: bool = False):
        self.path = Path(path)
        if create:
            self._create()

    def __repr__(self) -> str:
        return f"LayoutStore({str(self.path)!r})"

    @property
    def name(self) -> str:
        """`oci:DIR`: the stable name of this place (Store protocol)."""
        return f"{LAYOUT_PREFIX}{self.path}"

    # ---- layout files -------------------------------------------------------------------

    @property
    def _index_path(self) -> Path:
        return self.path / "index.json"

    def _create(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise UsageError(f"cannot create an OCI layout at {self.path}: it is a file")
        self.path.mkdir(parents=True, exist_ok=True)
        with self.lock():
            if (self.path / "oci-layout").exists():
                self._check()
                return
            if any(p.name not in ("blobs",) for p in self.path.iterdir()):
                raise ContentError(f"{self.path}: not an OCI image layout (no oci-layout file) and not empty")
            (self.path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
            write_atomic(self.path / "oci-layout", canonical.dumps({"imageLayoutVersion": LAYOUT_VERSION}))
            if not self._index_path.exists():
                empty = {"schemaVersion": 2, "mediaType": mediatype.OCI_INDEX, "manifests": []}
                write_atomic(self._index_path, canonical.dumps(empty))

    def exists(self) -> bool:
        """True when the directory holds an OCI layout (an `oci-layout` file)."""
        return (self.path / "oci-layout").is_file()

    def _check(self) -> None:
        if not self.path.exists():
            raise NotFound(f"no OCI image layout at {self.path}: the directory does not exist")
        if not self.path.is_dir():
            raise ContentError(f"{self.path}: not an OCI image layout (not a directory)")
        marker = self.path / "oci-layout"
        try:
            doc = json.loads(marker.read_bytes())
        except FileNotFoundError:
            raise ContentError(f"{self.path}: not an OCI image layout (no oci-layout file)") from None
        except (ValueError, UnicodeDecodeError) as e:
            raise ContentError(f"{marker}: not valid JSON ({e})") from None
        version = doc.get("imageLayoutVersion") if isinstance(doc, dict) else None
        if not isinstance(version, str) or not version.startswith("1."):
            raise ContentError(f"{marker}: unsupported imageLayoutVersion {version!r} (need 1.x)")

    def _read_index(self) -> tuple[dict[str, Any], list[Descriptor]]:
        """index.json as a document (kept for rewriting) and its parsed descriptors."""
        self._check()
        try:
            raw = self._index_path.read_bytes()
        except FileNotFoundError:
            raise ContentError(f"{self.path}: broken OCI image layout (no index.json)") from None
        where = str(self._index_path)
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            raise ContentError(f"{where}: not valid JSON ({e})") from None
        declared = doc.get("mediaType") if isinstance(doc, dict) else None
        index = ImageIndex.parse(raw, declared if isinstance(declared, str) else mediatype.OCI_INDEX, where)
        return doc, list(index.manifests)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive flock on the layout directory, for read-modify-write of index.json.

        A lock on the directory (not on index.json, whose inode every write replaces) works
        between threads (each opens its own descriptor) and between processes.
        """
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # ---- sync helpers -------------------------------------------------------------------

    def descriptors(self) -> list[Descriptor]:
        """Every entry of index.json, tagged or not, in order."""
        return self._read_index()[1]

    def tags(self) -> dict[str, Descriptor]:
        """Tag → descriptor for every index.json entry carrying a ref.name annotation."""
        _, descriptors = self._read_index()
        return {d.annotations[REF_NAME]: d for d in descriptors if REF_NAME in d.annotations}

    def reference(self, given: str | None, label: str) -> str:
        """What to read: `given` (a tag or digest), else the layout's only tag.

        Why: `oci:DIR` without a tag or digest names the one image the layout holds, as skopeo
        reads it; with several tags that guess would be wrong, so the user must name one.
        `label` says where the reference came from, for the error.
        """
        if given is not None:
            return given
        tags = self.tags()
        if len(tags) != 1:
            raise UsageError(f"{label}: the layout has {len(tags)} tags; name one as oci:DIR:TAG")
        return next(iter(tags))

    def blob_path(self, digest: Digest) -> Path:
        """Where a blob lives (whether or not it is there)."""
        return self.path / "blobs" / digest.algorithm / digest.hex

    def read_bytes(self, digest: Digest, what: str = "blob") -> bytes:
        """A whole (small) blob, verified; raises NotFound or DigestMismatch."""
        self._check()
        try:
            data = self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"{self.path}: {what} {digest} not found") from None
        digest.verify(data, f"{self.path}: {what}")
        return data

    def resolve(self, reference: str) -> Descriptor:
        """The descriptor a tag or digest names (media type detected for bare digests)."""
        if is_digest(reference):
            digest = _parse_digest(reference)
            _, descriptors = self._read_index()
            for d in descriptors:
                if d.digest == digest:
                    return Descriptor(d.media_type, d.digest, d.size)
            raw = self.read_bytes(digest, "manifest")
            return Descriptor(detect_media_type(raw, what=f"{self.name} manifest {digest}"), digest, len(raw))
        found = self.tags().get(reference)
        if found is None:
            raise NotFound(f"{self.path}: no tag {reference!r}")
        return found

    def manifest(self, reference: str) -> Fetched:
        """Manifest bytes by tag or digest, verified against the digest and size."""
        desc = self.resolve(reference)
        raw = self.read_bytes(desc.digest, "manifest")
        if len(raw) != desc.size:
            raise ContentError(f"{self.path}: manifest {desc.digest} is {len(raw)} bytes, index.json says {desc.size}")
        return Fetched(raw=raw, media_type=desc.media_type, digest=desc.digest)

    def _store_bytes(self, data: bytes, digest: Digest) -> None:
        target = self.blob_path(digest)
        if target.is_file() and target.stat().st_size == len(data):
            return
        write_atomic(target, data)

    def _missing_children(self, raw: bytes, media_type: str) -> list[Descriptor]:
        doc = parse(raw, media_type, f"{self.path}: manifest")
        children: tuple[Descriptor, ...]
        if isinstance(doc, ImageManifest):
            children = tuple(d for d in doc.blobs() if not mediatype.is_nondistributable(d.media_type) and "urls" not in d.extra)
        else:
            children = doc.manifests
        return [d for d in children if not self.blob_path(d.digest).is_file()]

    def put_manifest_sync(self, reference: str, raw: bytes, media_type: str, *, absent: Collection[Digest] = ()) -> Digest:
        """Synchronous put_manifest (see there). Blobs listed in `absent` may be missing: a
        native build's base layers, which live elsewhere (store/overlay.py)."""
        self._check()
        digest = Digest.of(raw)
        if is_digest(reference):
            want = _parse_digest(reference)
            if want != Digest.of(raw, want.algorithm):
                raise DigestMismatch(f"{self.path}: manifest put as {want} but its bytes hash to {digest}")
        elif not valid_ref_name(reference):
            raise UsageError(f"invalid tag {reference!r} for an OCI layout (org.opencontainers.image.ref.name)")
        missing = [d for d in self._missing_children(raw, media_type) if d.digest not in absent]
        if missing:
            names = ", ".join(str(d.digest) for d in missing[:3])
            raise ContentError(f"{self.path}: manifest {digest} references blobs not in the layout: {names}")
        self._store_bytes(raw, digest)
        if is_digest(reference):
            return digest
        entry = Descriptor(mediatype_of(media_type), digest, len(raw), annotations={REF_NAME: reference})
        with self.lock():
            doc, descriptors = self._read_index()
            entries = doc.get("manifests") or []
            replaced = False
            out: list[dict[str, Any]] = []
            for raw_entry, desc in zip(entries, descriptors, strict=True):
                if desc.annotations.get(REF_NAME) == reference:
                    if not replaced:
                        out.append(entry.to_dict())
                        replaced = True
                    continue
                out.append(raw_entry)
            if not replaced:
                out.append(entry.to_dict())
            doc["manifests"] = out
            write_atomic(self._index_path, canonical.dumps(doc))
        log.debug("layout_tagged", layout=str(self.path), tag=reference, digest=str(digest))
        return digest

    # ---- the Store protocol -------------------------------------------------------------

    async def get_manifest(self, repo: str, reference: ManifestRef) -> Fetched:
        """Manifest by tag or digest; raises NotFound; digest verified against the bytes."""
        return self.manifest(str(reference))

    async def head_manifest(self, repo: str, reference: ManifestRef) -> Descriptor | None:
        """Descriptor (type, digest, size) of a manifest, or None when absent."""
        try:
            desc = self.resolve(str(reference))
        except NotFound:
            return None
        if not self.blob_path(desc.digest).is_file():
            return None
        return Descriptor(desc.media_type, desc.digest, desc.size)

    async def put_manifest(self, repo: str, reference: ManifestRef, raw: bytes, media_type: str) -> Digest:
        """Store exact bytes under a tag (replacing its entry) or by digest (blob only)."""
        return self.put_manifest_sync(str(reference), raw, media_type)

    async def blob_size(self, repo: str, digest: Digest) -> int | None:
        """Size of a blob if present, else None."""
        self._check()
        try:
            return self.blob_path(digest).stat().st_size
        except FileNotFoundError:
            return None

    async def read_blob(self, repo: str, digest: Digest) -> AsyncGenerator[bytes, None]:
        """Stream a blob in 1 MiB chunks; raises DigestMismatch at the end if the bytes are wrong."""
        self._check()
        hasher = digest.hasher()
        try:
            f = open(self.blob_path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"{self.path}: blob {digest} not found") from None
        with f:
            while chunk := f.read(CHUNK):
                hasher.update(chunk)
                yield chunk
        if hasher.hexdigest() != digest.hex:
            got = f"{digest.algorithm}:{hasher.hexdigest()}"
            raise DigestMismatch(f"{self.path}: blob {digest}: digest mismatch, its bytes hash to {got}")

    async def read_blob_bytes(self, repo: str, digest: Digest, limit: int = 16 * 1024 * 1024) -> bytes:
        """A small blob (a config) in memory, verified."""
        if (await self.blob_size(repo, digest) or 0) > limit:
            raise ContentError(f"{self.path}: blob {digest} is larger than {limit} bytes")
        return b"".join([chunk async for chunk in self.read_blob(repo, digest)])

    async def write_blob(self, repo: str, descriptor: Descriptor, source: Path | AsyncIterator[bytes]) -> None:
        """Store a blob from a file (copied, streamed) or a chunk stream, verifying digest and size.

        The bytes go to a temporary file in `blobs/` that is renamed into place only after
        they checked out; on any failure nothing is left behind.
        """
        if isinstance(source, (str, os.PathLike)):
            self.add_blob(descriptor, Path(source))
            return
        self._check()
        if self._has_blob(descriptor):
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                await aclose()
            return
        with _BlobWriter(self, descriptor) as writer:
            async for chunk in source:
                writer.write(chunk)
            writer.commit()

    def add_blob(self, descriptor: Descriptor, source: Path) -> None:
        """Synchronous write_blob from a file: streamed copy (never a hardlink), verified."""
        self._check()
        if self._has_blob(descriptor):
            return
        try:
            src = open(source, "rb")
        except FileNotFoundError:
            raise NotFound(f"blob source {source} does not exist") from None
        with src, _BlobWriter(self, descriptor) as writer:
            while chunk := src.read(CHUNK):
                writer.write(chunk)
            writer.commit()

    def _has_blob(self, descriptor: Descriptor) -> bool:
        target = self.blob_path(descriptor.digest)
        return target.is_file() and target.stat().st_size == descriptor.size


class _BlobWriter:
    """A temporary file in blobs/ that becomes blobs/<alg>/<hex> only if digest and size match."""

    def __init__(self, store: LayoutStore, descriptor: Descriptor):
        self.store = store
        self.descriptor = descriptor
        self.target = store.blob_path(descriptor.digest)
        self.tmp = store.path / "blobs" / f".tmp-{random_hex()}"
        self.hasher = descriptor.digest.hasher()
        self.size = 0

    def __enter__(self) -> _BlobWriter:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.tmp, "wb")
        return self

    def write(self, chunk: bytes) -> None:
        self.hasher.update(chunk)
        self.size += len(chunk)
        self.file.write(chunk)

    def commit(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        d = self.descriptor
        got = f"{d.digest.algorithm}:{self.hasher.hexdigest()}"
        if got != str(d.digest):
            raise DigestMismatch(f"{self.store.path}: blob {d.digest}: digest mismatch, received bytes hash to {got}")
        if self.size != d.size:
            raise ContentError(f"{self.store.path}: blob {d.digest}: expected {d.size} bytes, received {self.size}")
        os.replace(self.tmp, self.target)
        log.debug("layout_blob_written", layout=str(self.store.path), digest=str(d.digest), size=self.size)

    def __exit__(self, *exc: object) -> None:
        self.file.close()
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()


def valid_ref_name(name: str) -> bool:
    """True for a valid `org.opencontainers.image.ref.name` (annotations.md `ref` grammar)."""
    return bool(_REF_NAME.match(name))


def _parse_digest(reference: str) -> Digest:
    try:
        return Digest.parse(reference)
    except InvalidDigest as e:
        raise UsageError(str(e)) from None


def mediatype_of(media_type: str) -> str:
    """The media type as it goes into index.json (parameters stripped)."""
    return media_type.split(";")[0].strip()
