"""An in-memory Store: the Store protocol (store/protocol.py) and nothing more.

Library tests copy through it to show that transfer needs no more of a place than the protocol:
no abilities, no concrete class. `MountingMemoryStore` adds the Mounter ability and records what
it was asked.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path

from manifesto.errors import ContentError, NotFound
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.digest import Digest
from manifesto.store.protocol import Fetched, ManifestRef


class MemoryStore:
    """Repositories of manifests, tags and blobs in dicts."""

    def __init__(self, name: str = "memory") -> None:
        self.name = name
        self.manifests: dict[tuple[str, Digest], tuple[bytes, str]] = {}
        self.tags: dict[tuple[str, str], Digest] = {}
        self.blobs: dict[tuple[str, Digest], bytes] = {}
        self.blob_writes = 0

    def _digest(self, repo: str, reference: ManifestRef) -> Digest | None:
        if isinstance(reference, Digest):
            return reference
        if ":" in reference:
            return Digest.parse(reference)
        return self.tags.get((repo, reference))

    async def get_manifest(self, repo: str, reference: ManifestRef) -> Fetched:
        digest = self._digest(repo, reference)
        if digest is None or (repo, digest) not in self.manifests:
            raise NotFound(f"{self.name}: {repo}: no manifest {reference}")
        raw, media_type = self.manifests[(repo, digest)]
        digest.verify(raw, f"{self.name}: manifest")
        return Fetched(raw=raw, media_type=media_type, digest=digest)

    async def head_manifest(self, repo: str, reference: ManifestRef) -> Descriptor | None:
        try:
            return (await self.get_manifest(repo, reference)).descriptor()
        except NotFound:
            return None

    async def put_manifest(self, repo: str, reference: ManifestRef, raw: bytes, media_type: str) -> Digest:
        digest = Digest.of(raw)
        if isinstance(reference, Digest) or ":" in reference:
            Digest.parse(str(reference)).verify(raw, f"{self.name}: manifest")
        else:
            self.tags[(repo, reference)] = digest
        self.manifests[(repo, digest)] = (raw, media_type)
        return digest

    async def blob_size(self, repo: str, digest: Digest) -> int | None:
        data = self.blobs.get((repo, digest))
        return None if data is None else len(data)

    async def read_blob(self, repo: str, digest: Digest) -> AsyncGenerator[bytes, None]:
        data = self.blobs.get((repo, digest))
        if data is None:
            raise NotFound(f"{self.name}: {repo}: no blob {digest}")
        for i in range(0, len(data), 7):  # several chunks, as a real stream arrives
            yield data[i : i + 7]
        digest.verify(data, f"{self.name}: blob")

    async def read_blob_bytes(self, repo: str, digest: Digest, limit: int = 16 * 1024 * 1024) -> bytes:
        data = b"".join([chunk async for chunk in self.read_blob(repo, digest)])
        if len(data) > limit:
            raise ContentError(f"{self.name}: blob {digest} is larger than {limit} bytes")
        return data

    async def write_blob(self, repo: str, descriptor: Descriptor, source: Path | AsyncIterator[bytes]) -> None:
        if isinstance(source, Path):
            data = source.read_bytes()
        else:
            data = b"".join([chunk async for chunk in source])
        descriptor.digest.verify(data, f"{self.name}: blob")
        if len(data) != descriptor.size:
            raise ContentError(f"{self.name}: blob {descriptor.digest}: {len(data)} bytes, expected {descriptor.size}")
        self.blobs[(repo, descriptor.digest)] = data
        self.blob_writes += 1


class MountingMemoryStore(MemoryStore):
    """A MemoryStore with the Mounter ability; `refuse` makes every mount open a session instead."""

    def __init__(self, name: str = "memory", *, refuse: bool = False) -> None:
        super().__init__(name)
        self.refuse = refuse
        self.mounts: list[tuple[str, Digest, str]] = []
        self.sessions: list[str] = []

    async def mount_blob(self, repo: str, descriptor: Descriptor, from_repo: str) -> str | None:
        self.mounts.append((repo, descriptor.digest, from_repo))
        if self.refuse:
            return f"session-{len(self.mounts)}"
        self.blobs[(repo, descriptor.digest)] = self.blobs[(from_repo, descriptor.digest)]
        return None

    async def write_blob(
        self, repo: str, descriptor: Descriptor, source: Path | AsyncIterator[bytes], *, location: str | None = None
    ) -> None:
        if location is not None:
            self.sessions.append(location)
        await super().write_blob(repo, descriptor, source)
