"""`manifesto copy SRC DST`: an image or index with every child, between registries and layouts.

A location is a registry reference (`docker://` optional) or `oci:DIR[:TAG]`. Blobs are mounted
when source and destination are repositories of one registry, skipped when already there, and
streamed otherwise; the destination tag is set last.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from manifesto.errors import UsageError
from manifesto.oci.digest import Digest
from manifesto.oci.reference import LAYOUT_PREFIX, Reference, is_digest, split_layout
from manifesto.store.layout import LayoutStore
from manifesto.store.registry.pool import Registries
from manifesto.transfer import Copier, OnBytes, Place


@dataclass(frozen=True)
class Location:
    """Where one end of a copy is: a registry reference, or a layout directory and tag."""

    reference: Reference | None = None
    layout: Path | None = None
    tag: str | None = None

    @classmethod
    def parse(cls, text: str) -> Location:
        if text.startswith(LAYOUT_PREFIX):
            path, tag = split_layout(text)  # a ':' in the directory name is no tag
            return cls(layout=Path(path), tag=tag)
        return cls(reference=Reference.parse(text.removeprefix("docker://")))

    def place(self, registries: Registries, create: bool = False) -> Place:
        if self.layout is not None:
            return Place(LayoutStore(self.layout, create=create), "")
        assert self.reference is not None
        return Place(registries.client(self.reference), self.reference.repository)

    @property
    def manifest_reference(self) -> str | None:
        if self.reference is not None:
            return self.reference.reference
        return self.tag


def copy(source: str, destination: str, *, insecure: bool = False, on_bytes: OnBytes | None = None) -> Digest:
    """Copy an image or index with every child from `source` to `destination`; its digest.

    The sync wrapper library users call (and the CLI): copy_image runs under asyncio.run with
    Registries of its own (`insecure`: no TLS verification for any registry). `on_bytes` hears
    each uploaded blob's progress (transfer.Copier), for a caller that shows it.
    """

    async def run() -> Digest:
        async with Registries(insecure=insecure) as registries:
            return await copy_image(registries, source, destination, on_bytes=on_bytes)

    return asyncio.run(run())


async def copy_image(
    registries: Registries, source: str, destination: str, *, on_bytes: OnBytes | None = None
) -> Digest:
    """The async core of copy(), with the caller's Registries: the manifest by its exact bytes,
    every blob and child first, the destination tag (else the source's, else latest) last."""
    src, dst = Location.parse(source), Location.parse(destination)
    if dst.reference is not None and dst.reference.digest:
        raise UsageError(f"{destination}: copy to a tag, not a digest")
    src_place = src.place(registries)
    ref = src.manifest_reference
    if ref is None:  # oci:DIR without a tag: the layout's only tag
        assert src.layout is not None
        tags = LayoutStore(src.layout).tags()
        if len(tags) != 1:
            raise UsageError(f"{source}: the layout has {len(tags)} tags; name one as oci:DIR:TAG")
        ref = next(iter(tags))
    fetched = await src_place.store.get_manifest(src_place.repo, ref)
    dst_place = dst.place(registries, create=True)
    copier = Copier(dst_place, on_bytes=on_bytes)
    await copier.manifest(src_place, fetched)
    tag = (dst.reference.tag if dst.reference else dst.tag) or (None if is_digest(ref) else ref) or "latest"
    await copier.tag(tag, fetched.raw, fetched.media_type)
    return fetched.digest
