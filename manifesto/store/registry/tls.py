"""TLS for registries: docker's per-registry certificate directory, and verified transports
built only when a request needs one."""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from pathlib import Path

import httpx

from manifesto.errors import UsageError

# docker's per-registry certificate directory (`<dir>/<host:port>/ca.crt`, client cert pairs)
CERTS_DIR = Path(os.environ.get("MANIFESTO_CERTS_D", "/etc/docker/certs.d"))


def ssl_context(registry: str, certs_dir: Path) -> ssl.SSLContext:
    """Verified TLS with the system CAs plus, as docker does, `<certs_dir>/<host:port>/*.crt`
    as extra CAs and `*.cert`/`*.key` pairs as client certificates."""
    ctx = ssl.create_default_context()
    d = certs_dir / registry
    if d.is_dir():
        for ca in sorted(d.glob("*.crt")):
            _load(ctx.load_verify_locations, ca, cafile=str(ca))
        for cert in sorted(d.glob("*.cert")):
            key = cert.with_suffix(".key")
            if key.exists():
                _load(ctx.load_cert_chain, cert, str(cert), str(key))
    return ctx


def verification_failed(registry: str, host: str, error: ssl.SSLCertVerificationError, certs_dir: Path) -> str:
    """One line for a certificate that failed verification, naming the fix: the CA where
    ssl_context() loads it from, or --insecure (only for the registry's own host)."""
    reason = error.verify_message or error.reason or "certificate verify failed"
    where = f"{certs_dir}/{registry}/ca.crt"
    if host == registry:
        return f"{registry}: TLS certificate verification failed ({reason}); put the registry's CA in {where} or use --insecure"
    return f"{registry}: TLS certificate verification failed for {host}, where the registry sent us ({reason}); put its CA in {where}"


def _load(method: Callable[..., None], path: Path, *args: str, **kwargs: str) -> None:
    try:
        method(*args, **kwargs)
    except (ssl.SSLError, OSError) as e:
        raise UsageError(f"{path}: cannot load this certificate: {e}") from None


class OnFirstUse(httpx.AsyncBaseTransport):
    """A transport built when a request first needs it: a loopback registry rarely sends us to
    another host, and loading a verified TLS context costs more than a whole local request."""

    def __init__(self, make: Callable[[], httpx.AsyncBaseTransport]):
        self._make = make
        self._inner: httpx.AsyncBaseTransport | None = None

    @property
    def inner(self) -> httpx.AsyncBaseTransport:
        if self._inner is None:
            self._inner = self._make()
        return self._inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        if self._inner is not None:
            await self._inner.aclose()


def unverified_transport(limits: httpx.Limits) -> httpx.AsyncBaseTransport:
    """HTTP/1.1 without certificate checks, for a loopback or --insecure registry's own origin."""
    from manifesto.store.registry.http1 import Http1Transport

    return Http1Transport(limits)
