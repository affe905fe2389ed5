"""Concurrent requests share tokens: one fetch per scope, not one per request."""

from __future__ import annotations

import asyncio

import pytest

from manifesto.cli.main import exit_code
from manifesto.oci.digest import Digest
from manifesto.store.registry.client import RegistryClient
from manifesto.store.registry.lookup import Credential


def test_concurrent_requests_for_one_scope_fetch_one_token(token_registry):
    ts = token_registry.token_server
    user, password = token_registry.creds

    async def run() -> int:
        async with RegistryClient(token_registry.host, credential=Credential(user, password)) as client:
            missing = [Digest.of(str(i).encode()) for i in range(12)]
            sizes = await asyncio.gather(*(client.blob_size("shared/scope", d) for d in missing))
            assert sizes == [None] * 12
            return client.auth.token_fetches

    ts.requests.clear()
    assert asyncio.run(run()) == 1
    assert len([r for r in ts.requests if r.wants("shared/scope", "pull")]) == 1


def test_token_service_hiccups_are_retried(token_registry):
    ts = token_registry.token_server
    user, password = token_registry.creds

    async def run() -> int | None:
        async with RegistryClient(token_registry.host, credential=Credential(user, password), backoff=0) as client:
            return await client.blob_size("retry/me", Digest.of(b"nothing"))

    ts.fail_next(503, count=2)
    assert asyncio.run(run()) is None  # answered, after two refused token requests


def test_a_broken_token_service_is_a_registry_failure_not_an_auth_one(token_registry):
    from manifesto.errors import AuthError, RegistryError

    ts = token_registry.token_server
    user, password = token_registry.creds

    async def run() -> None:
        async with RegistryClient(token_registry.host, credential=Credential(user, password), attempts=2, backoff=0) as client:
            await client.blob_size("broken/token", Digest.of(b"nothing"))

    ts.fail_next(500, count=2, body=b"<html><title>token service down</title></html>")  # both attempts
    with pytest.raises(RegistryError, match="token service .* failed .*HTTP 500.*token service down") as info:
        asyncio.run(run())
    assert not isinstance(info.value, AuthError) and exit_code(info.value) == 1
