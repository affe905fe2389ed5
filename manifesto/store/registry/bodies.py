"""Reading and checking what a registry sends: capped bodies, lengths, digests, file chunks.

Kept apart from the client so the rules about bytes (a manifest is at most 4 MiB, every digest
is the sha256 of the exact bytes received) read in one place.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from manifesto.errors import ContentError, DigestMismatch
from manifesto.oci.digest import Digest

CHUNK = 1024 * 1024
# what a request is doing, for "connection lost while ..." when the caller names nothing better
DOING = {"GET": "reading", "HEAD": "checking", "DELETE": "deleting"}


class Capped(httpx.AsyncByteStream):
    """A response stream refusing more than `limit` bytes (a manifest is at most 4 MiB)."""

    def __init__(self, inner: Any, limit: int, what: str):
        self.inner, self.limit, self.what = inner, limit, what

    async def __aiter__(self) -> AsyncIterator[bytes]:
        total = 0
        async for chunk in self.inner:
            total += len(chunk)
            if total > self.limit:
                raise ContentError(f"{self.what}: larger than {self.limit} bytes; refusing it")
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()


def content_length(resp: httpx.Response, what: str) -> int:
    value = resp.headers.get("content-length", "")
    if not value.isdigit():
        raise ContentError(f"{what}: the registry sent no usable Content-Length ({value!r})")
    return int(value)


def verified_digest(raw: bytes, reference: str, header: str | None, what: str) -> Digest:
    """sha256 of the bytes, checked against the digest asked for and the one the registry named."""
    digest = Digest.of(raw)
    if ":" in reference:  # a digest reference (tags cannot hold ':')
        Digest.parse(reference).verify(raw, what)
    if header and header.startswith("sha256:") and header != str(digest):
        raise DigestMismatch(f"{what}: registry says {header}, content hashes to {digest}")
    return digest


async def file_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk
