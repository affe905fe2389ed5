"""A token the registry refuses before its `expires_in` is replaced by a genuinely new one.

The token server's `valid_for` makes the real registry reject tokens two seconds after issue
while `expires_in` still announces 300 s: a revoked token, or a registry whose clock runs
ahead. Every token issued before the refusal is as dead as the refused one, so the client must
not retry with another cached token (one held for a wider scope set, say), and concurrent
requests refused alike must share the one fresh fetch.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from manifesto.oci.descriptor import Descriptor
from manifesto.oci.digest import Digest
from manifesto.store.registry.client import RegistryClient
from manifesto.store.registry.lookup import Credential
from tests.support import Registry

MISSING = Digest.of(b"a blob nobody pushed")


@pytest.fixture
def issued(token_registry: Registry, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every token the token server signs during the test, in order."""
    ts = token_registry.token_server
    tokens: list[str] = []
    original = ts.issue

    def issue(*args: Any, **kwargs: Any) -> str:
        tokens.append(original(*args, **kwargs))
        return tokens[-1]

    monkeypatch.setattr(ts, "issue", issue)
    return tokens


async def _until_refused(reg: Registry, repo: str, tokens: list[str]) -> None:
    """Wait (at most 10 s) until the registry refuses every one of `tokens`."""
    deadline = time.monotonic() + 10
    async with httpx.AsyncClient() as raw:
        for token in tokens:
            while True:
                r = await raw.head(f"{reg.url}/v2/{repo}/blobs/{MISSING}", headers={"Authorization": f"Bearer {token}"})
                if r.status_code == 401:
                    assert 'error="invalid_token"' in r.headers["www-authenticate"]
                    break
                assert time.monotonic() < deadline, "the registry still accepts the token"
                await asyncio.sleep(0.1)


async def _two_cached_tokens(client: RegistryClient, repo: str) -> None:
    """Cache a pull token for `repo` and a wider one (pull+push on `repo`, pull on another)."""
    assert await client.blob_size(repo, MISSING) is None
    await client.mount_blob(repo, Descriptor("application/octet-stream", MISSING, 1), f"{repo}-elsewhere")
    assert client.auth.token_fetches == 2


def test_tokens_refused_early_are_replaced_by_one_fresh_fetch(token_registry, issued, unique_repo):
    reg, ts = token_registry, token_registry.token_server
    ts.configure(valid_for=2)

    async def run() -> tuple[int, int]:
        async with RegistryClient(reg.host, credential=Credential(*reg.creds), backoff=0) as client:
            await _two_cached_tokens(client, unique_repo)
            await _until_refused(reg, unique_repo, list(issued))
            ts.configure(valid_for=None)
            before = client.auth.token_fetches
            assert await client.blob_size(unique_repo, MISSING) is None  # 401, one fresh token, 404
            pull = client.auth.token_fetches - before
            # the wider token went with the refused one: a push asks for a new token up front
            await client.mount_blob(unique_repo, Descriptor("application/octet-stream", MISSING, 1), "x/elsewhere")
            return pull, client.auth.token_fetches - before

    assert asyncio.run(run()) == (1, 2)
    assert len(issued) == 4


def test_concurrent_requests_refused_alike_share_one_fresh_token(token_registry, issued, unique_repo):
    reg, ts = token_registry, token_registry.token_server
    ts.configure(valid_for=2)

    async def run() -> int:
        async with RegistryClient(reg.host, credential=Credential(*reg.creds), backoff=0) as client:
            await _two_cached_tokens(client, unique_repo)
            await _until_refused(reg, unique_repo, list(issued))
            ts.configure(valid_for=None)
            before = client.auth.token_fetches
            sizes = await asyncio.gather(*(client.blob_size(unique_repo, MISSING) for _ in range(6)))
            assert sizes == [None] * 6
            return client.auth.token_fetches - before

    assert asyncio.run(run()) == 1
    assert len(issued) == 3


def test_a_token_refused_as_too_narrow_discredits_no_other(token_registry, issued, unique_repo):
    """A mount from a repository alice may not pull is refused with insufficient_scope: that
    token is good, only narrow, so the pull token cached for another repository stays in use."""
    reg, ts = token_registry, token_registry.token_server
    ts.configure(acl=lambda user, repo: set() if repo.startswith("secret/") else {"pull", "push"})
    other = f"{unique_repo}-other"

    async def run() -> int:
        async with RegistryClient(reg.host, credential=Credential(*reg.creds), backoff=0) as client:
            assert await client.blob_size(other, MISSING) is None
            location = await client.mount_blob(unique_repo, Descriptor("application/octet-stream", MISSING, 1), "secret/x")
            assert location and "/blobs/uploads/" in location  # refused mount: upload instead
            before = client.auth.token_fetches
            assert await client.blob_size(other, MISSING) is None
            return client.auth.token_fetches - before

    assert asyncio.run(run()) == 0


def test_after_a_refusal_a_token_asked_for_wider_scopes_is_not_reused() -> None:
    """A token service may grant fewer scopes than asked (a mount token without pull on its
    source). Such a token is cached as if it covered the source, so after the registry refuses
    it, the retry must use a token asked for exactly the refused request's scopes."""
    import httpx as _httpx

    from manifesto.store.registry.auth import Authenticator as _Authenticator

    issued: list[list[str]] = []

    def token_service(request: _httpx.Request) -> _httpx.Response:
        issued.append(sorted(request.url.params.get_list("scope")))
        return _httpx.Response(200, json={"token": f"t{len(issued)}", "expires_in": 300})

    challenge = 'Bearer realm="https://auth.test/token",service="reg"'
    source, target, other = "repository:src:pull", "repository:dst:pull,push", "repository:dst2:pull,push"

    async def run() -> str:
        auth = _Authenticator("reg.test", None)
        async with _httpx.AsyncClient(transport=_httpx.MockTransport(token_service)) as http:
            await auth.answer(http, challenge, frozenset({target, source}))  # t1: one mount's token
            await auth.answer(http, challenge, frozenset({other, source}))  # t2: another's
            refused = f'{challenge},error="insufficient_scope",scope="{source}"'
            return await auth.answer(http, refused, frozenset({source}), sent="Bearer t1")

    value = asyncio.run(run())
    assert value == "Bearer t3" and issued[-1] == [source], issued
