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
from manifesto.oci.manifest import ImageIndex, ImageManifest, parse
from manifesto.oci.platform import Platform
from manifesto.oci.reference import Reference
from manifesto.store.registry.pool import Registries


async def read_config(
    registries: Registries, ref: Reference, manifest: ImageManifest, *, require_platform: bool = True
) -> ImageConfig:
    """The image config a manifest names (its `platform` may be None only if not required)."""
    client = registries.client(ref)
    raw = await client.read_blob_bytes(ref.repository, manifest.config.digest)
    return ImageConfig.parse(raw, f"config of {ref.familiar}", require_platform=require_platform)


@dataclass(frozen=True)
class Source:
    """What one source of a list gives: its entries, and its own annotations if it is a list."""

    entries: list[Entry]
    annotations: dict[str, str]


async def read_source(registries: Registries, ref: Reference, *, skip_platformless: bool = False) -> Source:
    """A source read for a list: itself if an image, its children if an index (flattened).

    A flattened index hands over its annotations too, so the list can keep them (or `push`
    can say why it cannot). Every entry needs a platform, from the index or from its config:
    an artifact or a platform-less image is refused here, naming it; attestations pass as they are.
    With `skip_platformless` (a caller picking one platform out of an index) an index's entries
    that could never be picked (no platform, not an image manifest) are left out instead.
    """
    client = registries.client(ref)
    fetched = await client.get_manifest(ref.repository, ref.reference)
    doc = parse(fetched.raw, fetched.media_type, ref.familiar)
    if isinstance(doc, ImageManifest):
        platform, config_platform = await _entry_platform(registries, ref, doc, None)
        if platform is None:
            raise _no_platform(ref, doc)
        descriptor = fetched.descriptor().with_(platform=platform)
        return Source([Entry(ref, descriptor, fetched.raw, config_platform)], {})

    async def child(d: Descriptor) -> Entry | None:
        if skip_platformless and not d.is_attestation and not mediatype.is_image_manifest(d.media_type):
            return None  # a nested index or an artifact type of its own: nothing to pick
        child_ref = ref.with_digest(d.digest)
        got = await client.get_manifest(ref.repository, str(d.digest))
        child_doc = parse(got.raw, got.media_type, child_ref.familiar)
        if isinstance(child_doc, ImageIndex):
            if skip_platformless:
                return None
            raise ContentError(f"{ref.familiar}: nested index {d.digest} is not supported")
        if d.is_attestation:
            return Entry(child_ref, d, got.raw, None)
        platform, config_platform = await _entry_platform(registries, child_ref, child_doc, d.platform)
        if platform is None:
            if skip_platformless:
                return None
            raise _no_platform(child_ref, child_doc)
        descriptor = d.with_(media_type=got.media_type, size=len(got.raw), platform=platform)
        return Entry(child_ref, descriptor, got.raw, config_platform)

    # the first problem in the index's order, whichever finished first; nothing after it goes on
    children = await tasks.gather(*(child(d) for d in doc.manifests), in_order=True)
    return Source([c for c in children if c is not None], dict(doc.annotations))


async def read_sources(registries: Registries, refs: list[Reference]) -> list[Source]:
    """Several sources at once (the first failure stops the others)."""
    return list(await tasks.gather(*(read_source(registries, r) for r in refs)))


async def _entry_platform(
    registries: Registries, ref: Reference, doc: ImageManifest, declared: Platform | None
) -> tuple[Platform | None, Platform | None]:
    """A list entry's platform (the index's word, else its config's) and what its config says."""
    config = None
    if doc.has_image_config:
        config = (await read_config(registries, ref, doc, require_platform=False)).platform
    return declared or config, config


def _no_platform(ref: Reference, doc: ImageManifest) -> UsageError:
    what = f"an artifact ({doc.artifact})" if doc.artifact else "an image whose config names no os/architecture"
    return UsageError(f"{ref.familiar} is {what}: a manifest list entry needs a platform")
