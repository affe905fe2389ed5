"""Network faults between the client and a real registry, injected by tests/support/faultproxy.py.

What must hold: a body cut short is retried like a failed request (manifests, configs) while a
whole body with the wrong digest is not; a registry -> registry blob copy restarts from the
source when either connection breaks, within a bound; and every failure says what happened
("cannot reach" only when nothing answered, "connection lost while ..." with the attempt count
when the registry was reached).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import time

import httpx
import pytest

from manifesto.errors import ConnectionLost, DigestMismatch, NetworkError, RegistryError
from manifesto.oci.digest import Digest
from manifesto.store.registry.client import RegistryClient
from manifesto.transfer import BLOB_COPY_ATTEMPTS, Copier, Place
from tests.support.faultproxy import Cut, FaultProxy, Reset, Respond
from tests.support.registry import Registry

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MIB = 1024 * 1024


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Image:
    """An image pushed with raw HTTP: a config, one layer (random bytes), a manifest."""

    def __init__(self, registry: Registry, repo: str, tag: str, layer_size: int):
        self.layer = os.urandom(layer_size)
        self.config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        self.manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(self.config), "size": len(self.config)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(self.layer), "size": len(self.layer)}],
            }
        ).encode()
        with registry.client() as c:
            for blob in (self.config, self.layer):
                r = c.post(f"/v2/{repo}/blobs/uploads/")
                url = r.url.join(r.headers["location"]).copy_merge_params({"digest": sha256(blob)})
                r = c.put(url, content=blob)
                assert r.status_code == 201, r.text
            r = c.put(f"/v2/{repo}/manifests/{tag}", content=self.manifest, headers={"Content-Type": OCI_MANIFEST})
            assert r.status_code == 201, r.text

    @property
    def layer_digest(self) -> str:
        return sha256(self.layer)


@pytest.fixture
def proxy(registry: Registry):
    with FaultProxy(registry.host) as p:
        yield p


@pytest.fixture(scope="module")
def image(registry: Registry) -> Image:
    return Image(registry, "faults/src", "1", 3 * MIB)


def client(host: str, **kwargs) -> RegistryClient:
    kwargs.setdefault("attempts", 3)
    kwargs.setdefault("backoff", 0)
    return RegistryClient(host, **kwargs)


def run(coro):
    return asyncio.run(coro)


# ---- the proxy itself ---------------------------------------------------------------------------


def test_the_proxy_passes_requests_through_and_logs_them(proxy: FaultProxy, image: Image) -> None:
    with httpx.Client(base_url=f"http://{proxy.host}") as c:
        r = c.get(f"/v2/faults/src/blobs/{image.layer_digest}")
    assert r.status_code == 200 and sha256(r.content) == image.layer_digest
    [entry] = proxy.requests("GET", "/blobs/")
    assert (entry.status, entry.action, entry.received) == (200, None, len(image.layer))


def test_the_proxy_cuts_a_body_and_answers_for_the_registry(proxy: FaultProxy, image: Image) -> None:
    cut = proxy.add(Cut(after=1000), method="GET", path="/blobs/", times=1)
    proxy.add(Respond(503, b"busy"), method="GET", path="/v2/$")
    with httpx.Client(base_url=f"http://{proxy.host}") as c:
        with pytest.raises(httpx.RemoteProtocolError):
            c.get(f"/v2/faults/src/blobs/{image.layer_digest}")
        assert c.get(f"/v2/faults/src/blobs/{image.layer_digest}").content == image.layer  # times=1
        assert c.get("/v2/").status_code == 503
    assert cut.hits == 1
    assert [(p.action, p.received) for p in proxy.requests("GET", "/blobs/")] == [("Cut", 1000), (None, len(image.layer))]


# ---- bodies read into memory are retried whole --------------------------------------------------


def test_a_manifest_body_cut_short_is_retried(proxy: FaultProxy, image: Image) -> None:
    proxy.add(Cut(after=10), method="GET", path="/manifests/1", times=1)

    async def go():
        async with client(proxy.host) as c:
            return await c.get_manifest("faults/src", "1")

    assert run(go()).raw == image.manifest
    assert [p.action for p in proxy.requests("GET", "/manifests/")] == ["Cut", None]


def test_a_config_body_cut_short_is_retried(proxy: FaultProxy, image: Image) -> None:
    config = Digest.parse(sha256(image.config))
    proxy.add(Cut(after=5), method="GET", path=config.hex, times=2)

    async def go():
        async with client(proxy.host) as c:
            return await c.read_blob_bytes("faults/src", config)

    assert run(go()) == image.config
    assert [p.action for p in proxy.requests("GET", config.hex)] == ["Cut", "Cut", None]


def test_a_body_cut_every_time_says_connection_lost_with_the_attempt_count(proxy: FaultProxy, image: Image) -> None:
    proxy.add(Cut(after=10), method="GET", path="/manifests/1")

    async def go():
        async with client(proxy.host, attempts=3) as c:
            await c.get_manifest("faults/src", "1")

    with pytest.raises(ConnectionLost) as info:
        run(go())
    assert str(info.value).startswith(f"connection lost while reading the manifest of {proxy.host}/faults/src:1 after 3 attempts: ")
    assert len(proxy.requests("GET", "/manifests/1")) == 3


def test_a_whole_body_with_the_wrong_digest_is_not_retried(proxy: FaultProxy, image: Image) -> None:
    digest = sha256(image.manifest)
    proxy.add(Respond(200, b'{"schemaVersion":2}', {"Content-Type": OCI_MANIFEST}), method="GET", path="/manifests/")

    async def go():
        async with client(proxy.host, attempts=3) as c:
            await c.get_manifest("faults/src", digest)

    with pytest.raises(DigestMismatch):
        run(go())
    assert len(proxy.requests("GET", "/manifests/")) == 1


def test_nothing_answering_is_cannot_reach() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        host = f"127.0.0.1:{s.getsockname()[1]}"  # bound, not listening: connection refused

        async def go():
            async with client(host, attempts=2) as c:
                await c.get_manifest("a", "1")

        with pytest.raises(NetworkError) as info:
            run(go())
    assert not isinstance(info.value, ConnectionLost)
    message = str(info.value)
    assert message.startswith(f"manifest {host}/a:1: cannot reach {host}: ") and message.endswith("(2 attempts)")


# ---- registry -> registry blob copies restart from the source -----------------------------------


async def _copy(src: str, dst: str, dst_repo: str = "faults/dst") -> Copier:
    async with client(src) as s, client(dst) as d:
        copier = Copier(Place(d, dst_repo))
        await copier.manifest(Place(s, "faults/src"), await s.get_manifest("faults/src", "1"))
        return copier


def _served(registry: Registry, repo: str, digest: str) -> str:
    with registry.client() as c:
        return sha256(c.get(f"/v2/{repo}/blobs/{digest}").content)


def test_a_reset_mid_upload_restarts_the_blob_from_the_source(registry, registry_factory, image: Image) -> None:
    target = registry_factory()
    with FaultProxy(target.host) as proxy:
        proxy.add(Reset(after=MIB), method="PUT", path=image.layer_digest[7:], times=1)
        copier = run(_copy(registry.host, proxy.host))
        puts = proxy.requests("PUT", image.layer_digest[7:])
    assert [p.action for p in puts] == ["Reset", None]
    assert MIB <= puts[0].sent < len(image.layer)
    assert copier.stats.blobs_uploaded == 2  # config and layer, each once in the stats
    assert _served(target, "faults/dst", image.layer_digest) == image.layer_digest


def test_a_download_cut_mid_stream_restarts_the_blob(registry, registry_factory, image: Image) -> None:
    target = registry_factory()
    with FaultProxy(registry.host) as proxy:
        proxy.add(Cut(after=MIB), method="GET", path=image.layer_digest[7:], times=1)
        run(_copy(proxy.host, target.host))
        gets = proxy.requests("GET", image.layer_digest[7:])
    assert [(p.action, p.received) for p in gets] == [("Cut", MIB), (None, len(image.layer))]
    assert _served(target, "faults/dst", image.layer_digest) == image.layer_digest


def test_a_source_that_always_breaks_fails_once_after_bounded_attempts(registry, registry_factory, image: Image) -> None:
    target = registry_factory()
    with FaultProxy(registry.host) as proxy:
        proxy.add(Cut(after=MIB), method="GET", path=image.layer_digest[7:])
        with pytest.raises(ConnectionLost) as info:
            run(_copy(proxy.host, target.host))
        gets = proxy.requests("GET", image.layer_digest[7:])
    assert len(gets) == BLOB_COPY_ATTEMPTS == 5
    assert str(info.value).startswith(
        f"connection lost while downloading blob {image.layer_digest} from {proxy.host}/faults/src after 5 attempts: "
    )


def test_a_source_that_is_always_busy_is_asked_as_often_as_any_request(registry, registry_factory, image: Image) -> None:
    """Its GET is retried by the one policy already; the copy does not start that over again
    (five restarts of five attempts each, every pause as long as Retry-After asks)."""
    target = registry_factory()
    with FaultProxy(registry.host) as proxy:
        proxy.add(Respond(503, b"busy"), method="GET", path=image.layer_digest[7:])
        with pytest.raises(RegistryError, match="503"):
            run(_copy(proxy.host, target.host))
        gets = proxy.requests("GET", image.layer_digest[7:])
    assert len(gets) == 3  # the test client's attempts (client() above), once


def test_a_target_that_always_resets_says_connection_lost_while_uploading(registry, registry_factory, image: Image) -> None:
    target = registry_factory()
    with FaultProxy(target.host) as proxy:
        proxy.add(Reset(after=MIB), method="PUT", path=image.layer_digest[7:])
        with pytest.raises(ConnectionLost) as info:
            run(_copy(registry.host, proxy.host))
        assert len(proxy.requests("PUT", image.layer_digest[7:])) == BLOB_COPY_ATTEMPTS
    assert str(info.value).startswith(
        f"connection lost while uploading blob {image.layer_digest} to {proxy.host}/faults/dst after 5 attempts: "
    )


def test_a_burst_of_busy_answers_to_a_streamed_upload_waits_as_asked_and_goes_through(
    registry, registry_factory, image: Image
) -> None:
    """A streamed blob (registry to registry) gets the same policy as any request: as many
    attempts, each after the pause the registry's Retry-After asks for (the test client's own
    backoff is 0, so the pauses are the registry's)."""
    target = registry_factory()
    with FaultProxy(target.host) as proxy:
        busy = Respond(503, b"busy", {"Retry-After": "1"})
        proxy.add(busy, method="PUT", path=image.layer_digest[7:], times=3)
        started = time.monotonic()
        run(_copy(registry.host, proxy.host))
        took = time.monotonic() - started
        puts = proxy.requests("PUT", image.layer_digest[7:])
    assert [(p.action, p.status) for p in puts] == [("Respond", 503)] * 3 + [(None, 201)]
    assert took >= 3.0
    assert _served(target, "faults/dst", image.layer_digest) == image.layer_digest


def test_a_busy_answer_to_a_streamed_upload_restarts_the_blob(registry, registry_factory, image: Image) -> None:
    target = registry_factory()
    with FaultProxy(target.host) as proxy:
        proxy.add(Respond(503, b"busy"), method="PUT", path=image.layer_digest[7:], times=1)
        run(_copy(registry.host, proxy.host))
        puts = proxy.requests("PUT", image.layer_digest[7:])
    assert [(p.action, p.status) for p in puts] == [("Respond", 503), (None, 201)]
    assert _served(target, "faults/dst", image.layer_digest) == image.layer_digest
