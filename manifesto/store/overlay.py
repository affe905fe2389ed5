"""A layout that lacks some blobs, and the place those blobs really live.

Why: the native builder never downloads base layers to build, so the layout it writes holds the
new layers, the config and the manifest, and not the base layers. To copy such an image
anywhere, transfer.Copier asks a store for the `BlobOrigins` ability (store/protocol.py) and
takes each absent blob from its origin: mounted when the origin is another repository of the
target's registry (the same client), streamed once otherwise — into a registry or, for a layout
target, into that layout, which a complete layout needs. Reads of an absent blob go to the
origin as well, so everything else sees one whole image.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path

from manifesto.errors import UsageError
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.digest import Digest
from manifesto.oci.reference import LAYOUT_PREFIX, Reference
from manifesto.store.layout import LayoutStore
from manifesto.store.protocol import Fetched, ManifestRef, Store
from manifesto.store.registry.pool import Registries

class Overlay:
    """A layout (its manifests and the blobs it holds) over a fallback place for the blobs it lacks.

    A Store with the `BlobOrigins` and `LocalBlobs` abilities; writes go to the layout. `repo`
    arguments are ignored, as a layout's are.
    """

    def __init__(self, layout: LayoutStore, fallback: Store, fallback_repo: str):
        self.layout = layout
        self.fallback = fallback
        self.fallback_repo = fallback_repo

    def __repr__(self) -> str:
        return f"Overlay({self.layout!r} over {self.fallback.name}/{self.fallback_repo})"

    @property
    def name(self) -> str:
        return self.layout.name

    def _held(self, digest: Digest) -> bool:
        return self.layout.blob_path(digest).is_file()

    # ---- abilities ------------------------------------------------------------------------

    def blob_origin(self, digest: Digest) -> tuple[Store, str] | None:
        """The fallback place for a blob the layout lacks; None for one it holds."""
        return None if self._held(digest) else (self.fallback, self.fallback_repo)

    def blob_path(self, digest: Digest) -> Path:
        """Where the layout keeps (or would keep) a blob."""
        return self.layout.blob_path(digest)

    # ---- the Store protocol ------------------------------------------------------------------

    async def get_manifest(self, repo: str, reference: ManifestRef) -> Fetched:
        return await self.layout.get_manifest("", reference)

    async def head_manifest(self, repo: str, reference: ManifestRef) -> Descriptor | None:
        return await self.layout.head_manifest("", reference)

    async def put_manifest(self, repo: str, reference: ManifestRef, raw: bytes, media_type: str) -> Digest:
        return await self.layout.put_manifest("", reference, raw, media_type)

    async def blob_size(self, repo: str, digest: Digest) -> int | None:
        if self._held(digest):
            return await self.layout.blob_size("", digest)
        return await self.fallback.blob_size(self.fallback_repo, digest)

    async def read_blob(self, repo: str, digest: Digest) -> AsyncGenerator[bytes, None]:
        if self._held(digest):
            source = self.layout.read_blob("", digest)
        else:
            source = self.fallback.read_blob(self.fallback_repo, digest)
        try:
            async for chunk in source:
                yield chunk
        finally:
            await source.aclose()

    async def read_blob_bytes(self, repo: str, digest: Digest, limit: int = 16 * 1024 * 1024) -> bytes:
        if self._held(digest):
            return await self.layout.read_blob_bytes("", digest, limit)
        return await self.fallback.read_blob_bytes(self.fallback_repo, digest, limit)

    async def write_blob(self, repo: str, descriptor: Descriptor, source: Path | AsyncIterator[bytes]) -> None:
        await self.layout.write_blob("", descriptor, source)


def base_place(base: str, registries: Registries) -> tuple[Store, str]:
    """The (store, repository) a built image's `base` names: `oci:DIR`, or a registry repository."""
    if base.startswith(LAYOUT_PREFIX):
        path = base[len(LAYOUT_PREFIX) :]
        if not path:
            raise UsageError(f"{base}: oci: needs a directory")
        return LayoutStore(Path(path)), ""
    ref = Reference.parse(base)
    return registries.client(ref), ref.repository


def built_place(layout: Path, base: str | None, registries: Registries) -> tuple[Store, str]:
    """Where a built image is read from: its layout, over its base's place when it has one."""
    store = LayoutStore(layout)
    if base is None:
        return store, ""
    fallback, repo = base_place(base, registries)
    return Overlay(store, fallback, repo), ""
