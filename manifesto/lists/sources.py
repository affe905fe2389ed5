"""Read what a list is made of: an image, or the children of an index (flattened), with configs.

Why here: `create` and a matrix's `image:` entries read sources the same way, and `inspect`
reads configs the same way; every entry comes out knowing its exact bytes and what its config
says, so the rules can check it before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass

from manifesto import tasks
from manifesto.errors import ContentError, UsageError
from manifesto.lists.entry import Entry
from manifesto.oci import mediatype
from manifesto.oci.config import ImageConfig
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.digest import Digest
from manifesto.oci.manifest import ImageIndex, ImageManifest, parse
from manifesto.oci.platform import Platform
from manifesto.store.places import Location, manifest_reference, open_store
from manifesto.store.protocol import Store
from manifesto.store.registry.pool import Registries


async def read_config(
    registries: Registries, ref: Location, manifest: ImageManifest, *, require_platform: bool = True
) -> ImageConfig:
    """The image config a manifest names (its `platform` may be None only if not required)."""
    store, repo = open_store(registries, ref)
    raw = await store.read_blob_bytes(repo, manifest.config.digest)
    return ImageConfig.parse(raw, f"config of {ref.familiar}", require_platform=require_platform)


@dataclass(frozen=True)
class Source:
    """What one source of a list gives: its entries, and its own annotations if it is a list."""

    entries: list[Entry]
    annotations: dict[str, str]


MAX_DEPTH = 8  # indexes inside indexes: deeper than any real list nests, shallow enough to stop a loop


async def read_source(
    registries: Registries,
    ref: Location,
    *,
    skip_platformless: bool = False,
    keep_nested: bool = False,
    max_depth: int = MAX_DEPTH,
) -> Source:
    """A source read for a list: itself if an image, its children if an index (flattened).

    A flattened index hands over its annotations too, so the list can keep them (or `push`
    can say why it cannot). An index inside it is flattened as well, at any depth up to
    `max_depth` (an index that names itself, at any depth, is refused), unless `keep_nested`:
    then it is one entry of the list, as it is. Every image entry needs a platform, from the
    index or from its config: an artifact or a platform-less image is refused here, naming it;
    attestations pass as they are. With `skip_platformless` (a caller picking one platform out
    of an index) entries that could never be picked (no platform, not an image) are left out.
    `ref` may be an OCI layout (`oci:DIR[:TAG|@DIGEST]`; its only tag when it names none):
    every manifest is then read from the layout, its bytes checked against their digest.
    """
    store, repo = open_store(registries, ref)
    fetched = await store.get_manifest(repo, manifest_reference(ref))
    doc = parse(fetched.raw, fetched.media_type, ref.familiar)
    if isinstance(doc, ImageManifest):
        platform, config_platform = await _entry_platform(registries, ref, doc, None)
        if platform is None:
            raise _no_platform(ref, doc)
        descriptor = fetched.descriptor().with_(platform=platform)
        return Source([Entry(ref, descriptor, fetched.raw, config_platform)], {})
    reading = _Reading(registries, store, repo, ref, skip_platformless, keep_nested, max_depth)
    return Source(await reading.children(doc, (fetched.digest,)), dict(doc.annotations))


@dataclass(frozen=True)
class _Reading:
    """One source's index being flattened: how, and from where."""

    registries: Registries
    store: Store
    repo: str
    ref: Location
    skip_platformless: bool
    keep_nested: bool
    max_depth: int

    async def children(self, doc: ImageIndex, path: tuple[Digest, ...]) -> list[Entry]:
        """The entries of `doc` (reached through the indexes in `path`), nested ones flattened."""
        # the first problem in the index's order, whichever finished first; nothing after it goes on
        found = await tasks.gather(*(self.child(d, path) for d in doc.manifests), in_order=True)
        return [e for entries in found for e in entries]

    async def child(self, d: Descriptor, path: tuple[Digest, ...]) -> list[Entry]:
        ref, skip = self.ref, self.skip_platformless
        if skip and not d.is_attestation and d.media_type not in mediatype.MANIFESTS:
            return []  # an artifact type of its own: nothing to pick
        child_ref = ref.with_digest(d.digest)
        got = await self.store.get_manifest(self.repo, str(d.digest))
        child_doc = parse(got.raw, got.media_type, child_ref.familiar)
        if isinstance(child_doc, ImageIndex):
            if self.keep_nested:
                return [Entry(child_ref, d.with_(media_type=got.media_type, size=len(got.raw)), got.raw, None)]
            if got.digest in path:
                raise ContentError(f"{ref.familiar}: index {got.digest} names itself (a loop); not flattened")
            if len(path) >= self.max_depth:
                raise ContentError(
                    f"{ref.familiar}: indexes nested more than {self.max_depth} deep (at {got.digest}); not flattened"
                )
            return await self.children(child_doc, (*path, got.digest))
        if d.is_attestation:
            return [Entry(child_ref, d, got.raw, None)]
        platform, config_platform = await _entry_platform(self.registries, child_ref, child_doc, d.platform)
        if platform is None:
            if skip:
                return []
            raise _no_platform(child_ref, child_doc)
        descriptor = d.with_(media_type=got.media_type, size=len(got.raw), platform=platform)
        return [Entry(child_ref, descriptor, got.raw, config_platform)]


async def read_sources(registries: Registries, refs: list[Location], *, keep_nested: bool = False) -> list[Source]:
    """Several sources at once (the first failure stops the others)."""
    return list(await tasks.gather(*(read_source(registries, r, keep_nested=keep_nested) for r in refs)))


async def _entry_platform(
    registries: Registries, ref: Location, doc: ImageManifest, declared: Platform | None
) -> tuple[Platform | None, Platform | None]:
    """A list entry's platform (the index's word, else its config's) and what its config says."""
    config = None
    if doc.has_image_config:
        config = (await read_config(registries, ref, doc, require_platform=False)).platform
    return declared or config, config


def _no_platform(ref: Location, doc: ImageManifest) -> UsageError:
    what = f"an artifact ({doc.artifact})" if doc.artifact else "an image whose config names no os/architecture"
    return UsageError(f"{ref.familiar} is {what}: a manifest list entry needs a platform")
