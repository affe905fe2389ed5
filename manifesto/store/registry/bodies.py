"""Reading and checking what a registry sends: capped bodies, lengths, digests, file chunks.

Kept apart from the client so the rules about bytes (a manifest is at most 4 MiB, every digest
is the sha256 of the exact bytes received) read in one place.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
import zlib
from pathlib import Path

import httpx

from manifesto.errors import ContentError, DigestMismatch
from manifesto.oci.digest import Digest
from manifesto.oci.reference import is_digest

CHUNK = 1024 * 1024
# what a request is doing, for "connection lost while ..." when the caller names nothing better
DOING = {"GET": "reading", "HEAD": "checking", "DELETE": "deleting"}


async def read_capped(resp: httpx.Response, limit: int, what: str) -> None:
    """Read the body into `resp.content`, refusing more than `limit` bytes, encoded or decoded.

    Capped reads ask for `Accept-Encoding: identity`; a server that compresses anyway is decoded
    here with a bounded inflater, since a few KiB of gzip can inflate to gigabytes in a single
    decode call (httpx's own decoder inflates each chunk whole). Stored where httpx's `aread()`
    stores a body, so `resp.content` works as usual.
    """
    try:
        held = resp.content  # a response made in memory arrives already read
    except httpx.ResponseNotRead:
        held = None
    if held is not None:
        if len(held) > limit:
            raise ContentError(f"{what}: larger than {limit} bytes; refusing it")
        return
    parts, total = [], 0
    async for chunk in resp.aiter_raw():
        total += len(chunk)
        if total > limit:
            raise ContentError(f"{what}: larger than {limit} bytes; refusing it")
        parts.append(chunk)
    raw = b"".join(parts)
    encoding = resp.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("gzip", "x-gzip", "deflate"):
        inflater = zlib.decompressobj(47)  # 32 + 15: gzip or zlib header, detected
        try:
            raw = inflater.decompress(raw, limit + 1)
        except zlib.error as e:
            raise ContentError(f"{what}: a {encoding} body that does not decode: {e}") from None
        if len(raw) > limit or inflater.unconsumed_tail:
            raise ContentError(f"{what}: larger than {limit} bytes once decoded; refusing it")
    elif encoding not in ("", "identity"):
        raise ContentError(f"{what}: sent with Content-Encoding {encoding!r}, which manifesto does not read")
    resp._content = raw


def content_length(resp: httpx.Response, what: str) -> int:
    value = resp.headers.get("content-length", "")
    if not value.isdigit():
        raise ContentError(f"{what}: the registry sent no usable Content-Length ({value!r})")
    return int(value)


def verified_digest(raw: bytes, reference: str, header: str | None, what: str) -> Digest:
    """sha256 of the bytes, checked against the digest asked for and the one the registry named."""
    digest = Digest.of(raw)
    if is_digest(reference):
        Digest.parse(reference).verify(raw, what)
    if header and header.startswith("sha256:") and header != str(digest):
        raise DigestMismatch(f"{what}: registry says {header}, content hashes to {digest}")
    return digest


async def file_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk
