"""A tag PUT that the client retries checks the tag again first: a retry never overwrites a writer.

A scripted registry (httpx MockTransport) answers the first tag PUT with a 503 after "another
writer" moved the tag meanwhile (or after our own PUT landed anyway). Without the check before
the retry, the client's retry would overwrite the other writer's tag and the read-back would
report success to both writers.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from manifesto import tags
from manifesto.errors import ConcurrentUpdate, ManifestoError
from manifesto.oci import mediatype
from manifesto.oci.digest import Digest
from manifesto.store.registry.client import RegistryClient
from manifesto.tags import TagMove, move_tags


def _manifest(n: int) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mediatype.OCI_MANIFEST,
            "config": {"mediaType": mediatype.OCI_CONFIG, "digest": "sha256:" + f"{n:x}" * 64, "size": 2},
            "layers": [],
        }
    ).encode()


OURS, OTHERS = _manifest(1), _manifest(2)


class Registry:
    """One tag; the first PUT fails with 503 after `first_put` changed what the tag holds."""

    def __init__(self, first_put: str):
        self.held: bytes | None = None
        self.first_put = first_put  # "other-writer" or "landed"
        self.puts = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v2/":
            return httpx.Response(200)
        assert path == "/v2/r/manifests/t", path
        if request.method == "HEAD":
            if self.held is None:
                return httpx.Response(404)
            headers = {"Content-Type": mediatype.OCI_MANIFEST, "Docker-Content-Digest": str(Digest.of(self.held))}
            return httpx.Response(200, headers={**headers, "Content-Length": str(len(self.held))})
        assert request.method == "PUT"
        self.puts += 1
        if self.puts == 1:
            self.held = OTHERS if self.first_put == "other-writer" else request.content
            return httpx.Response(503, text="busy")
        self.held = request.content
        return httpx.Response(201, headers={"Docker-Content-Digest": str(Digest.of(request.content))})


def _move(fake: Registry) -> list[bool]:
    async def go() -> list[bool]:
        transport = httpx.MockTransport(fake)
        async with RegistryClient("127.0.0.1:5000", transport=transport, attempts=3, backoff=0) as client:
            return await move_tags([TagMove(client, "r", "t", OURS, mediatype.OCI_MANIFEST)])

    return asyncio.run(go())


def test_a_retried_tag_put_does_not_overwrite_a_writer_who_moved_the_tag_meanwhile() -> None:
    fake = Registry("other-writer")
    with pytest.raises(ConcurrentUpdate, match="another writer moved the tag"):
        _move(fake)
    assert fake.held == OTHERS and fake.puts == 1  # the retry was never sent


def test_a_retried_tag_put_whose_first_attempt_landed_goes_on() -> None:
    fake = Registry("landed")
    assert _move(fake) == [True]
    assert fake.held == OURS and fake.puts == 2


def test_a_failure_after_some_tags_moved_says_which_moved(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registries cannot move several tags at once: a later tag's failure names the ones moved."""
    held: dict[str, bytes] = {}

    def registry(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/":
            return httpx.Response(200)
        tag = request.url.path.rsplit("/", 1)[1]
        if request.method == "HEAD":
            if tag not in held:
                return httpx.Response(404)
            headers = {"Content-Type": mediatype.OCI_MANIFEST, "Docker-Content-Digest": str(Digest.of(held[tag]))}
            return httpx.Response(200, headers={**headers, "Content-Length": str(len(held[tag]))})
        if tag == "t2":
            return httpx.Response(400, json={"errors": [{"code": "TAG_INVALID", "message": "no"}]})
        held[tag] = request.content
        return httpx.Response(201)

    warnings: list[tuple[str, dict]] = []

    class Log:
        def warning(self, event: str, **kw: object) -> None:
            warnings.append((event, kw))

        def info(self, event: str, **kw: object) -> None:
            pass

    monkeypatch.setattr(tags, "log", Log())

    async def go() -> None:
        async with RegistryClient("127.0.0.1:5000", transport=httpx.MockTransport(registry), backoff=0) as client:
            await move_tags([TagMove(client, "r", t, OURS, mediatype.OCI_MANIFEST) for t in ("t1", "t2", "t3")])

    with pytest.raises(ManifestoError):
        asyncio.run(go())
    assert warnings == [("tags_partly_moved", {"moved": ["127.0.0.1:5000/r:t1"], "not_moved": ["127.0.0.1:5000/r:t2", "127.0.0.1:5000/r:t3"]})]
