"""A certificate that fails verification is not a transient fault: one attempt, one clear line.

Loopback registries are not verified by design (client.py), so these tests make the client
treat the loopback TLS registry as a remote one by patching `is_loopback_host` where the
client decides; everything else (the registry, its self-signed certificate, the TLS
handshake) is real. Attempts are counted in the registry's own log of failed handshakes.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from manifesto.errors import NetworkError
from manifesto.store.registry import client as client_module
from manifesto.store.registry.client import RegistryClient
from tests.store.test_tls import _self_signed
from tests.support.registry import Registry


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls-failures")
    cert, key = _self_signed(d)
    reg = Registry(d / "reg", extra_config={"http": {"tls": {"certificate": str(cert), "key": str(key)}}}).start()
    reg.ca = cert
    yield reg
    reg.stop()


def handshake_failures(registry: Registry, since: int) -> int:
    time.sleep(0.2)  # the registry logs a failed handshake after the client has gone
    return registry.log_text()[since:].count("TLS handshake error")


def test_an_unverifiable_certificate_fails_at_once_naming_the_fix(tls_registry, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(client_module, "is_loopback_host", lambda registry: False)
    certs = tmp_path / "certs.d"
    mark = len(tls_registry.log_text())

    async def go() -> None:
        async with RegistryClient(tls_registry.host, attempts=5, backoff=2, certs_dir=certs) as c:
            await c.get_manifest("app", "1")

    started = time.monotonic()
    with pytest.raises(NetworkError) as info:
        asyncio.run(go())
    assert time.monotonic() - started < 2  # a retry would first sleep 2 s
    assert handshake_failures(tls_registry, mark) == 1
    host = tls_registry.host
    assert str(info.value) == (
        f"{host}: TLS certificate verification failed (self-signed certificate); "
        f"put the registry's CA in {certs}/{host}/ca.crt or use --insecure"
    )


def test_the_ca_in_the_named_place_fixes_it(tls_registry, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(client_module, "is_loopback_host", lambda registry: False)
    certs = tmp_path / "certs.d"
    (certs / tls_registry.host).mkdir(parents=True)
    (certs / tls_registry.host / "ca.crt").write_bytes(Path(tls_registry.ca).read_bytes())

    async def go() -> None:
        async with RegistryClient(tls_registry.host, attempts=5, backoff=2, certs_dir=certs) as c:
            await c.check_login()

    asyncio.run(go())
