"""The one small protocol every place that holds images speaks (registry, OCI layout).

Transfer code copies between any two stores through these six calls; nothing else about a store
is assumed. All calls are async so independent registry transfers can run concurrently; file
stores do their (small) I/O inline.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from manifesto.oci.descriptor import Descriptor
from manifesto.oci.digest import Digest


@dataclass(frozen=True)
class Fetched:
    """A manifest as received: exact bytes, its media type, and the digest of those bytes."""

    raw: bytes
    media_type: str
    digest: Digest

    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, len(self.raw))


class Store(Protocol):
    """A place holding repositories of manifests and blobs. `repo` is ignored by one-repo stores."""

    async def get_manifest(self, repo: str, reference: str) -> Fetched:
        """Manifest by tag or digest; raises NotFound; digest verified against the bytes."""

    async def head_manifest(self, repo: str, reference: str) -> Descriptor | None:
        """Descriptor (type, digest, size) of a manifest, or None when absent."""

    async def put_manifest(self, repo: str, reference: str, raw: bytes, media_type: str) -> Digest:
        """Store exact bytes under a tag or their digest; returns the digest of the bytes."""

    async def blob_size(self, repo: str, digest: Digest) -> int | None:
        """Size of a blob if present, else None."""

    def read_blob(self, repo: str, digest: Digest) -> AsyncIterator[bytes]:
        """Stream a blob's bytes; the stream raises DigestMismatch at its end if they are wrong."""

    async def read_blob_bytes(self, repo: str, digest: Digest, limit: int = 16 * 1024 * 1024) -> bytes:
        """A small blob (a config) in memory, verified; ContentError past `limit` bytes."""

    async def write_blob(self, repo: str, descriptor: Descriptor, source: Path | AsyncIterator[bytes]) -> None:
        """Store a blob from a file or a chunk stream, verifying digest and size."""
