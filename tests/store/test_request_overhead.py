"""A request costs no work that could be done once: no import is tried again and again.

On httpx's own transport (verified HTTPS registries, and every host other than a loopback or
--insecure registry's own origin) httpcore asks which async library runs, for each lock it
sets up (several per request), by trying `import sniffio`; without sniffio installed every one
of those is a failed import, a search of the whole sys.path (~30-80 µs each). sniffio is
therefore one of manifesto's dependencies; this shows that request path, and the HTTP/1.1 one
of a loopback registry (store/registry/http1.py), try no import that fails.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Iterator

import httpx
import pytest

from manifesto.store.registry.client import RegistryClient


@pytest.fixture
def failed_imports() -> Iterator[list[str]]:
    """Names whose import failed while the test ran."""
    failed: list[str] = []
    real = builtins.__import__

    def counting(name, *args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return real(name, *args, **kwargs)
        except ImportError:
            failed.append(name)
            raise

    builtins.__import__ = counting
    try:
        yield failed
    finally:
        builtins.__import__ = real


@pytest.mark.parametrize("transport", ["httpx", "http1"])
def test_requests_try_no_import_that_fails(registry, failed_imports: list[str], transport: str) -> None:
    async def main() -> None:
        own = httpx.AsyncHTTPTransport() if transport == "httpx" else None
        async with RegistryClient(registry.host, max_concurrency=4, transport=own) as client:
            await client.head_manifest("overhead/none", "1")  # first use: its lazy imports
            failed_imports.clear()
            for _ in range(3):
                await asyncio.gather(*(client.head_manifest("overhead/none", str(n)) for n in range(8)))

    asyncio.run(main())
    assert failed_imports == []
