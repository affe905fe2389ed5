"""TLS: verified by default with docker's certs.d CA; loopback/--insecure probe HTTPS, then HTTP."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import httpx
import pytest

from manifesto.store.registry.client import RegistryClient
from manifesto.store.registry.tls import ssl_context
from tests.support.certs import write_self_signed
from tests.support.registry import Registry


def _self_signed(directory: Path) -> tuple[Path, Path]:
    return write_self_signed(directory, "manifesto test registry")


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    cert, key = _self_signed(d)
    reg = Registry(d / "reg", extra_config={"http": {"tls": {"certificate": str(cert), "key": str(key)}}}).start()
    reg.ca = cert
    yield reg
    reg.stop()


async def _ping(client: RegistryClient) -> str:
    async with client:
        await client.check_login()
        return client.base


def test_loopback_registry_speaking_tls_is_reached_over_https(tls_registry):
    assert asyncio.run(_ping(RegistryClient(tls_registry.host))) == f"https://{tls_registry.host}"


def test_loopback_registry_without_tls_falls_back_to_http(registry):
    assert asyncio.run(_ping(RegistryClient(registry.host))) == f"http://{registry.host}"


def test_certs_d_ca_makes_verification_pass(tls_registry, tmp_path):
    certs = tmp_path / "certs.d"
    (certs / tls_registry.host).mkdir(parents=True)
    (certs / tls_registry.host / "ca.crt").write_bytes(tls_registry.ca.read_bytes())

    async def get(verify) -> int:
        async with httpx.AsyncClient(verify=verify) as http:
            return (await http.get(f"https://{tls_registry.host}/v2/")).status_code

    assert asyncio.run(get(ssl_context(tls_registry.host, certs))) == 200
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        asyncio.run(get(ssl_context(tls_registry.host, tmp_path / "empty")))


def test_remote_registries_are_verified_https_from_the_start():
    client = RegistryClient("registry.example.com")
    assert client.verified and client.base == "https://registry.example.com"
    assert isinstance(ssl_context("registry.example.com", Path("/nonexistent")), ssl.SSLContext)
    asyncio.run(client.aclose())


def test_an_unreadable_certs_d_file_is_a_clear_error(tmp_path):
    from manifesto.errors import UsageError

    (tmp_path / "reg.example:5000").mkdir()
    bad = tmp_path / "reg.example:5000" / "ca.crt"
    bad.write_text("not a certificate")
    with pytest.raises(UsageError, match="ca.crt: cannot load this certificate"):
        ssl_context("reg.example:5000", tmp_path)
