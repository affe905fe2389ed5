"""One RegistryClient per registry host for the length of a command."""

from __future__ import annotations

from manifesto.oci.reference import Reference
from manifesto.store.registry.client import RegistryClient
from manifesto.store.registry.lookup import resolve


class Registries:
    """Opens clients lazily, with credentials resolved once per host; closes them all at exit."""

    def __init__(self, *, insecure: bool = False, **client_options):
        self.insecure = insecure
        self.options = client_options
        self._clients: dict[str, RegistryClient] = {}

    def client(self, registry: str | Reference) -> RegistryClient:
        host = registry.registry if isinstance(registry, Reference) else registry
        if host not in self._clients:
            api_host = Reference(host, "x").api_host
            self._clients[host] = RegistryClient(
                api_host, credential=lambda: resolve(host), insecure=self.insecure, **self.options
            )
        return self._clients[host]

    async def __aenter__(self) -> Registries:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for client in self._clients.values():
            await client.aclose()
