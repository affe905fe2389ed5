"""Safety of the registry client: no deadlock when uploads stream from the same registry,
credentials only for the registry's own origin, verified TLS for every other host."""

from __future__ import annotations

import asyncio
import json
import ssl

import httpx
import pytest

from manifesto.errors import AuthError, ContentError, RegistryError
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.digest import Digest
from manifesto.store.registry.client import RegistryClient
from manifesto.store.registry.lookup import Credential
from manifesto.transfer import Copier, Place

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _put_blob(base: str, repo: str, data: bytes) -> dict:
    digest = str(Digest.of(data))
    r = httpx.post(f"{base}/v2/{repo}/blobs/uploads/")
    loc = httpx.URL(base).join(r.headers["location"])
    httpx.put(loc.copy_merge_params({"digest": digest}), content=data).raise_for_status()
    return {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": len(data)}


def test_streamed_same_registry_copies_of_many_layers_do_not_deadlock(registry, monkeypatch):
    """A registry that answers mounts with 202 (allowed by the spec) makes every blob stream
    from a GET on the same client into a PUT; more blobs than slots must still finish."""
    base = registry.url
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    cfg = _put_blob(base, "src/many", config) | {"mediaType": "application/vnd.oci.image.config.v1+json"}
    layers = [_put_blob(base, "src/many", f"layer {i} ".encode() * 1000) for i in range(12)]
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg, "layers": layers}).encode()
    httpx.put(f"{base}/v2/src/many/manifests/v1", content=manifest, headers={"Content-Type": OCI_MANIFEST}).raise_for_status()

    async def no_mount(self, repo, descriptor, from_repo):  # a registry without mount support
        return await self._start_upload(repo)

    monkeypatch.setattr(RegistryClient, "mount_blob", no_mount)

    async def run() -> int:
        async with RegistryClient(registry.host, max_concurrency=4) as client:
            fetched = await client.get_manifest("src/many", "v1")
            copier = Copier(Place(client, "dst/many"))
            await asyncio.wait_for(copier.manifest(Place(client, "src/many"), fetched), 60)
            return copier.stats.blobs_uploaded

    assert asyncio.run(run()) == 13


def _recording_transport(locations: dict[str, str]):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        host = request.url.host
        if host == "registry.example.com":
            if "Authorization" not in request.headers:
                return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'})
            if request.method == "POST":
                return httpx.Response(202, headers={"Location": locations["upload"]})
        return httpx.Response(201, headers={"Docker-Content-Digest": str(Digest.of(b"x"))})

    return httpx.MockTransport(handler), seen


def test_credentials_are_not_sent_to_a_host_an_upload_location_names():
    transport, seen = _recording_transport({"upload": "https://elsewhere.example.net/upload?state=1"})

    async def run() -> None:
        async with RegistryClient(
            "registry.example.com", credential=Credential("alice", "s3cret-pass"), transport=transport, backoff=0
        ) as client:
            await client.write_blob("repo", Descriptor("application/octet-stream", Digest.of(b"x"), 1), _chunks(b"x"))

    asyncio.run(run())
    elsewhere = [r for r in seen if r.url.host == "elsewhere.example.net"]
    assert elsewhere and all("Authorization" not in r.headers for r in elsewhere)
    assert any("Authorization" in r.headers for r in seen if r.url.host == "registry.example.com")


def test_a_location_that_downgrades_to_plain_http_is_refused():
    transport, seen = _recording_transport({"upload": "http://registry.example.com/upload?state=1"})

    async def run() -> None:
        async with RegistryClient(
            "registry.example.com", credential=Credential("alice", "s3cret-pass"), transport=transport, backoff=0
        ) as client:
            await client.write_blob("repo", Descriptor("application/octet-stream", Digest.of(b"x"), 1), _chunks(b"x"))

    with pytest.raises(RegistryError, match="plain HTTP"):
        asyncio.run(run())
    assert not [r for r in seen if r.url.scheme == "http"]


def test_a_verified_registry_will_not_fetch_tokens_over_plain_http():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "registry.example.com":
            return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="http://auth.example.com/token",service="s"'})
        return httpx.Response(200, json={"token": "t"})

    async def run() -> None:
        async with RegistryClient(
            "registry.example.com", credential=Credential("alice", "pw"), transport=httpx.MockTransport(handler)
        ) as client:
            await client.check_login()

    with pytest.raises(AuthError, match="plain HTTP"):
        asyncio.run(run())


def test_only_the_loopback_registry_itself_skips_tls_verification():
    async def modes() -> tuple[int, int]:
        async with RegistryClient("127.0.0.1:5999") as client:
            own = client.http._transport_for_url(httpx.URL("https://127.0.0.1:5999/v2/"))
            other = client.http._transport_for_url(httpx.URL("https://auth.example.com/token")).inner
            return own._tls().verify_mode, other._pool._ssl_context.verify_mode

    own, other = asyncio.run(modes())
    assert own == ssl.CERT_NONE and other == ssl.CERT_REQUIRED


async def _chunks(data: bytes):
    yield data


def test_a_body_that_is_no_manifest_is_refused_naming_the_reference():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"<html>maintenance</html>", headers={"Content-Type": "text/html"})

    async def run() -> None:
        async with RegistryClient("registry.example.com", transport=httpx.MockTransport(handler)) as client:
            await client.get_manifest("team/app", "1")

    with pytest.raises(ContentError, match=r"^manifest registry\.example\.com/team/app:1: cannot tell the manifest type"):
        asyncio.run(run())


def test_a_busy_answer_after_every_attempt_says_how_many_were_made():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"errors": [{"code": "UNAVAILABLE", "message": "busy"}]})

    async def run() -> None:
        transport = httpx.MockTransport(handler)
        async with RegistryClient("registry.example.com", transport=transport, attempts=3, backoff=0) as client:
            await client.get_manifest("team/app", "1")

    with pytest.raises(RegistryError, match=r"registry answered HTTP 503.*\(3 attempts\)$") as caught:
        asyncio.run(run())
    assert caught.value.attempts == 3
