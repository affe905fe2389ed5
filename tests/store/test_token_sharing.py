"""Concurrent requests share tokens: one fetch per scope, not one per request."""

from __future__ import annotations

import asyncio

from manifesto.oci.digest import Digest
from manifesto.store.registry.client import RegistryClient
from manifesto.store.registry.credentials import Credential


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
