"""A layout that lacks some blobs, and the place those blobs really live.

Why: the native builder never downloads base layers to build, so the layout it writes holds the
new layers, the config and the manifest, and not the base layers. To copy such an image
anywhere, transfer.Copier asks a store for the `BlobOrigins` ability (store/protocol.py) and
takes each absent blob from its origin: mounted when the origin is another repository of the
target's registry (the same client), streamed once otherwise — into a registry or, for a layout
target, into that layout, which a complete layout needs. Reads of an absent blob go to the
origin as well, so everything else sees one whole image.

A layout that holds every blob (a buildah or podman export: its base's layers come out as the
very bytes the base's registry serves, see builders/cache.py) may still name its base, pinned
to the digest it was built from: the blobs of the base's image for the layout's platform are
then also in the base's repository, and a copy into that registry mounts them from there
instead of uploading them (`blob_copy`). The base's manifest is read only then, once per copy.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path

from manifesto.errors import ManifestoError, UsageError
from manifesto.log import get_logger
from manifesto.oci import mediatype
from manifesto.oci.config import ImageConfig
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.digest import Digest
from manifesto.oci.manifest import ImageManifest
from manifesto.oci.platform import Platform
from manifesto.oci.reference import LAYOUT_PREFIX, Reference
from manifesto.store.layout import LayoutStore
from manifesto.store.places import platform_image
from manifesto.store.protocol import Fetched, ManifestRef, Store
from manifesto.store.registry.pool import Registries

log = get_logger("manifesto.overlay")


class Overlay:
    """A layout (its manifests and the blobs it holds) over a fallback place for the blobs it lacks.

    A Store with the `BlobOrigins` and `LocalBlobs` abilities; writes go to the layout. `repo`
    arguments are ignored, as a layout's are. `pin`: the digest of the base (an image, or an
    index holding one per platform) the layout's image was built from, whose blobs the layout
    may hold too (`blob_copy`).
    """

    def __init__(self, layout: LayoutStore, fallback: Store, fallback_repo: str, pin: Digest | None = None):
        self.layout = layout
        self.fallback = fallback
        self.fallback_repo = fallback_repo
        self.pin = pin
        self._base_blobs: frozenset[Digest] | None = None
        self._base_lock = asyncio.Lock()

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

    async def blob_copy(self, digest: Digest, near: Store) -> str | None:
        """The base's repository when the base is in `near` and its image for the layout's
        platform names this held blob; else None."""
        if self.pin is None or near is not self.fallback or not self._held(digest):
            return None
        async with self._base_lock:  # one read of the base, whoever asks first
            if self._base_blobs is None:
                self._base_blobs = await self._read_base_blobs()
        return self.fallback_repo if digest in self._base_blobs else None

    async def _read_base_blobs(self) -> frozenset[Digest]:
        """The blobs of the pinned base's image for each platform the layout's images are for;
        none when the base cannot be read (no pull access, gone): its blobs are then uploaded."""
        assert self.pin is not None
        label = f"base {self.fallback.name}/{self.fallback_repo}@{self.pin}"
        found: set[Digest] = set()
        try:
            fetched = await self.fallback.get_manifest(self.fallback_repo, self.pin)
            images = [fetched]
            if mediatype.is_index(fetched.media_type):
                images = [
                    (await platform_image(self.fallback, self.fallback_repo, fetched, platform, label))[0]
                    for platform in self._platforms()
                ]
            for image in images:
                if mediatype.is_image_manifest(image.media_type):
                    found.update(d.digest for d in ImageManifest.parse(image.raw, image.media_type, label).blobs())
        except (ManifestoError, OSError) as e:
            log.info("base_blobs_unknown", base=label, reason=str(e).splitlines()[0] if str(e) else type(e).__name__)
            return frozenset()
        return frozenset(found)

    def _platforms(self) -> list[Platform]:
        """The platforms (distinct) of the images the layout holds, as their configs say."""
        found: dict[str, Platform] = {}
        for descriptor in self.layout.descriptors():
            if not mediatype.is_image_manifest(descriptor.media_type):
                continue
            fetched = self.layout.manifest(str(descriptor.digest))
            manifest = ImageManifest.parse(fetched.raw, fetched.media_type, f"{self.layout.name}@{fetched.digest}")
            raw = self.layout.read_bytes(manifest.config.digest, "config")
            platform = ImageConfig.parse(raw, f"{self.layout.name}: config").platform
            if platform is not None:
                found.setdefault(str(platform), platform)
        return list(found.values())

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
    """Where a built image is read from: its layout, over its base's place when it has one
    (`host/repo@digest`: pinned to the base it was built from, see Overlay)."""
    store = LayoutStore(layout)
    if base is None:
        return store, ""
    fallback, repo = base_place(base, registries)
    pin = None if base.startswith(LAYOUT_PREFIX) else Reference.parse(base).digest
    return Overlay(store, fallback, repo, pin), ""
