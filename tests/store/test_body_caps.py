"""A body's size cap counts decoded bytes: a small gzip body cannot inflate past it in memory."""

from __future__ import annotations

import asyncio
import gzip
import tracemalloc

import httpx
import pytest

from manifesto.errors import ContentError
from manifesto.oci.digest import Digest
from manifesto.store.registry.client import RegistryClient

HOST = "registry.test"
INFLATED = 64 * 1024 * 1024  # what the body decodes to: far past the 4 MiB manifest cap


def _bomb() -> bytes:
    return gzip.compress(b"\0" * INFLATED, compresslevel=9)  # ~64 KiB on the wire


def _client(body: bytes, content_type: str) -> RegistryClient:
    def handler(request: httpx.Request) -> httpx.Response:
        headers = {"Content-Encoding": "gzip", "Content-Type": content_type}
        # sent in small pieces, as a network would: the decoder inflates each as it arrives
        chunks = [body[i : i + 16384] for i in range(0, len(body), 16384)]
        return httpx.Response(200, headers=headers, stream=_Chunks(chunks))

    return RegistryClient(HOST, transport=httpx.MockTransport(handler), attempts=1)


def _peak_while(coro_factory) -> int:
    async def run() -> None:
        with pytest.raises(ContentError, match="larger than"):
            await coro_factory()

    tracemalloc.start()
    try:
        asyncio.run(run())
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("kind", ["manifest", "config"])
def test_a_gzip_body_is_refused_before_it_inflates_in_memory(kind: str) -> None:
    bomb = _bomb()

    async def fetch():
        client = _client(bomb, "application/vnd.oci.image.manifest.v1+json")
        async with client:
            if kind == "manifest":
                return await client.get_manifest("app", "1")
            return await client.read_blob_bytes("app", Digest.of(b"x"), limit=4 * 1024 * 1024)

    peak = _peak_while(fetch)
    assert peak < 24 * 1024 * 1024, f"peak {peak >> 20} MiB while refusing a {INFLATED >> 20} MiB body"


class _Chunks(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes]):
        self.chunks = chunks

    async def __aiter__(self):
        for chunk in self.chunks:
            yield chunk


def test_a_compressed_body_within_the_cap_still_reads() -> None:
    manifest = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'

    async def fetch():
        client = _client(gzip.compress(manifest), "application/vnd.oci.image.manifest.v1+json")
        async with client:
            return await client.get_manifest("app", "1")

    assert asyncio.run(fetch()).raw == manifest
