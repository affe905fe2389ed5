"""The small protocols every place that holds images speaks (registry, OCI layout), and its abilities.

Transfer code copies between any two stores through `Store` alone: `Manifests` (three calls) and
`Blobs` (four), plus a stable `name`. All calls are async so independent registry transfers can
run concurrently; file stores do their (small) I/O inline.

What only some stores can do is an optional ability, a separate runtime-checkable protocol that
the caller asks for with `isinstance(store, Mounter)`: a store that lacks an ability need not know
it exists (a test's in-memory store implements `Store` and nothing else), and no caller names a
concrete store class. The check looks at method names only, so tests/store/test_protocol.py
checks the real stores' signatures against these declarations.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeAlias, runtime_checkable

from manifesto.oci.descriptor import Descriptor
from manifesto.oci.digest import Digest

ManifestRef: TypeAlias = str | Digest
"""A manifest reference: a tag, or a digest (a Digest, or its `sha256:...` text)."""


@dataclass(frozen=True)
class Fetched:
    """A manifest as received: exact bytes, its media type, and the digest of those bytes."""

    raw: bytes
    media_type: str
    digest: Digest

    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, len(self.raw))


class Manifests(Protocol):
    """Manifests by tag or digest in the repositories of a place. One-repo stores ignore `repo`."""

    @property
    def name(self) -> str:
        """A stable name of the place (a registry host, `oci:DIR`), the same for every client of it.

        Why: a run may read a tag with one client and write it with another; compare-and-swap
        tag moves (tags.py) key what they saw by this name.
        """
        ...

    async def get_manifest(self, repo: str, reference: ManifestRef) -> Fetched:
        """Manifest by tag or digest; raises NotFound; digest verified against the bytes."""
        ...

    async def head_manifest(self, repo: str, reference: ManifestRef) -> Descriptor | None:
        """Descriptor (type, digest, size) of a manifest, or None when absent."""
        ...

    async def put_manifest(self, repo: str, reference: ManifestRef, raw: bytes, media_type: str) -> Digest:
        """Store exact bytes under a tag or their digest; returns the digest of the bytes."""
        ...


class Blobs(Protocol):
    """Blobs (configs, layers) by digest in the repositories of a place."""

    async def blob_size(self, repo: str, digest: Digest) -> int | None:
        """Size of a blob if present, else None."""
        ...

    def read_blob(self, repo: str, digest: Digest) -> AsyncGenerator[bytes, None]:
        """Stream a blob's bytes; the stream raises DigestMismatch at its end if they are wrong.

        An async generator (an `async def` with `yield`), so a copy cut short can `aclose()` it.
        """
        ...

    async def read_blob_bytes(self, repo: str, digest: Digest, limit: int = 16 * 1024 * 1024) -> bytes:
        """A small blob (a config) in memory, verified; ContentError past `limit` bytes."""
        ...

    async def write_blob(self, repo: str, descriptor: Descriptor, source: Path | AsyncIterator[bytes]) -> None:
        """Store a blob from a file or a chunk stream, verifying digest and size."""
        ...


class Store(Manifests, Blobs, Protocol):
    """A place holding repositories of manifests and blobs: what transfer needs of either end."""


@runtime_checkable
class Mounter(Protocol):
    """Ability: mount a blob from another repository of the same store instead of copying it.

    distribution's cross-repository mount: 201 mounted, or 202 an upload session instead (the
    blob must then be written into that session).
    """

    async def mount_blob(self, repo: str, descriptor: Descriptor, from_repo: str) -> str | None:
        """Mount `descriptor` from `from_repo` into `repo`: None when mounted, else the Location
        of an upload session opened instead, for write_blob(..., location=)."""
        ...

    async def write_blob(
        self, repo: str, descriptor: Descriptor, source: Path | AsyncIterator[bytes], *, location: str | None = None
    ) -> None:
        """Blobs.write_blob, into the upload session `location` when given."""
        ...


@runtime_checkable
class LocalBlobs(Protocol):
    """Ability: blobs are files on this machine, so a copy can read (and re-read) them directly.

    Why: a file can be replayed when an upload breaks, where a stream must be fetched again.
    """

    def blob_path(self, digest: Digest) -> Path:
        """Where a blob lives (whether or not it is there)."""
        ...


@runtime_checkable
class BlobOrigins(Protocol):
    """Ability: some blobs this store names are not held here but live in another place.

    Why: a natively built image is written without its base layers (they are never downloaded
    to build); a copy of it must take those blobs from where they really are — mounted when that
    is another repository of the target's registry, streamed once otherwise. A blob held here
    and there too (`blob_copy`) is mounted from there when it can be, else read from here.
    """

    def blob_origin(self, digest: Digest) -> tuple[Store, str] | None:
        """(store, repository) holding a blob this store lacks, or None when it holds it itself."""
        ...

    async def blob_copy(self, digest: Digest, near: Store) -> str | None:
        """A repository of `near` that holds a blob this store holds too, or None.

        Why: a built image's layout holds its base's layers as the bytes the base's registry
        serves; a copy into that registry mounts them from the base's repository instead of
        uploading what is already there.
        """
        ...
