"""Assemble image indexes from children in registries, check them, and push them.

Shared by the `docker manifest`-style verbs and by `publish`/`assemble`: read each child
(flattening a source that is itself an index), check every entry against what its config says,
pick the list format, copy every child into the target repository, then PUT the list by tag.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from manifesto import tasks
from manifesto.errors import ContentError, UsageError, VerificationError
from manifesto.log import get_logger
from manifesto.oci import mediatype
from manifesto.oci.config import ImageConfig
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.digest import Digest
from manifesto.oci.manifest import ImageIndex, ImageManifest, parse
from manifesto.oci.platform import Platform, contrast
from manifesto.oci.reference import Reference, check_tag
from manifesto.store.protocol import Fetched
from manifesto.store.drafts import DraftEntry
from manifesto.store.registry.pool import Registries
from manifesto.tags import Snapshot, TagMove, move_tags
from manifesto.transfer import Copier, Place

log = get_logger("manifesto.assemble")


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

    entries: list[DraftEntry]
    annotations: dict[str, str]


async def read_source(registries: Registries, ref: Reference) -> Source:
    """A source read for a list: itself if an image, its children if an index (flattened).

    A flattened index hands over its annotations too, so the list can keep them (or `push`
    can say why it cannot). Every entry needs a platform, from the index or from its config:
    an artifact or a platform-less image is refused here, naming it; attestations pass as they are.
    """
    client = registries.client(ref)
    fetched = await client.get_manifest(ref.repository, ref.reference)
    doc = parse(fetched.raw, fetched.media_type, ref.familiar)
    if isinstance(doc, ImageManifest):
        platform, config_platform = await _entry_platform(registries, ref, doc, None)
        descriptor = fetched.descriptor().with_(platform=platform)
        return Source([DraftEntry(ref, descriptor, fetched.raw, config_platform)], {})

    async def child(d: Descriptor) -> DraftEntry:
        child_ref = ref.with_digest(d.digest)
        got = await client.get_manifest(ref.repository, str(d.digest))
        child_doc = parse(got.raw, got.media_type, child_ref.familiar)
        if isinstance(child_doc, ImageIndex):
            raise ContentError(f"{ref.familiar}: nested index {d.digest} is not supported")
        if d.is_attestation:
            return DraftEntry(child_ref, d, got.raw, None)
        platform, config_platform = await _entry_platform(registries, child_ref, child_doc, d.platform)
        return DraftEntry(child_ref, d.with_(media_type=got.media_type, size=len(got.raw), platform=platform), got.raw, config_platform)

    children = await asyncio.gather(*(child(d) for d in doc.manifests), return_exceptions=True)
    for c in children:  # the first problem in the index's order, whichever finished first
        if isinstance(c, BaseException):
            raise c
    return Source(list(children), dict(doc.annotations))  # type: ignore[arg-type]


async def read_entries(registries: Registries, ref: Reference) -> list[DraftEntry]:
    """The list entries a source gives: itself if an image, its children if an index."""
    return (await read_source(registries, ref)).entries


async def _entry_platform(
    registries: Registries, ref: Reference, doc: ImageManifest, declared: Platform | None
) -> tuple[Platform, Platform | None]:
    """A list entry's platform (the index's word, else its config's) and what its config says."""
    config = None
    if doc.has_image_config:
        config = (await read_config(registries, ref, doc, require_platform=False)).platform
    platform = declared or config
    if platform is None:
        what = f"an artifact ({doc.artifact})" if doc.artifact else "an image whose config names no os/architecture"
        raise UsageError(f"{ref.familiar} is {what}: a manifest list entry needs a platform")
    return platform, config


def choose_media_type(entries: list[DraftEntry] | tuple[DraftEntry, ...], requested: str | None) -> str:
    """`oci`/`docker` as asked; by default a Docker list when every child is Docker schema 2."""
    if requested:
        return mediatype.FORMATS[requested]
    if entries and all(e.descriptor.media_type == mediatype.DOCKER_MANIFEST for e in entries):
        return mediatype.DOCKER_LIST
    return mediatype.OCI_INDEX


def problems(entries, media_type: str, annotations: dict[str, str]) -> list[str]:
    """Everything that makes this list wrong or lossy; `--force` pushes anyway."""
    out: list[str] = []
    seen: dict[tuple, str] = {}
    for e in entries:
        d = e.descriptor
        if d.is_attestation:
            continue
        if d.platform is None:
            out.append(f"{e.source.familiar}: no platform")
            continue
        if e.config_platform is not None and not d.platform.same_as(e.config_platform):
            claimed, actual = contrast(d.platform, e.config_platform)
            out.append(f"{e.source.familiar}: annotated as {claimed} but its config says {actual}")
        key = d.platform.key()
        if key in seen:
            out.append(f"duplicate platform {d.platform}: {seen[key]} and {e.source.familiar}")
        seen[key] = e.source.familiar
    if media_type == mediatype.DOCKER_LIST:
        if annotations:
            out.append("a Docker manifest list cannot carry index annotations (use --format oci)")
        for e in entries:
            if e.descriptor.annotations and not e.descriptor.is_attestation:
                out.append(f"{e.source.familiar}: a Docker manifest list drops entry annotations (use --format oci)")
            if e.descriptor.media_type not in (mediatype.DOCKER_MANIFEST, mediatype.DOCKER_LIST):
                out.append(f"{e.source.familiar}: an OCI manifest in a Docker manifest list (use --format oci)")
    return out


def build_index(entries, media_type: str, annotations: dict[str, str]) -> ImageIndex:
    descriptors = [e.descriptor for e in entries]
    if media_type == mediatype.DOCKER_LIST:
        descriptors = [d.with_(annotations={}) for d in descriptors]
        annotations = {}
    return ImageIndex.build(media_type, descriptors, annotations)


@dataclass(frozen=True)
class PushResult:
    digest: Digest
    media_type: str
    size: int
    tags_moved: tuple[str, ...]
    tags_unchanged: tuple[str, ...]


async def push_index(
    registries: Registries, target: Reference, entries, index: ImageIndex, tags: list[str]
) -> PushResult:
    """Copy every child into the target repository, check they are all there, then tag the list.

    First, before anything is uploaded: what each tag holds now (the tags then move by
    compare-and-swap against that, see tags.move_tags), and may we push there (an AuthError in
    seconds, not after the copies). A push that finds every tag at the list writes nothing.
    """
    client = registries.client(target)
    dst = Place(client, target.repository)
    seen = Snapshot()
    await seen.take(client, target.repository, tags)
    if any(seen.get(client, target.repository, t) != index.digest for t in tags):
        await client.check_push(target.repository, target.name)
    copier = Copier(dst)

    async def copy(e: DraftEntry) -> None:
        src = Place(registries.client(e.source), e.source.repository)
        await copier.manifest(src, Fetched(e.raw, e.descriptor.media_type, e.descriptor.digest))

    await tasks.gather(*(copy(e) for e in entries))
    heads = await tasks.gather(*(dst.store.head_manifest(dst.repo, str(d.digest)) for d in index.manifests))
    missing = [str(d.digest) for d, h in zip(index.manifests, heads) if h is None]
    if missing:
        raise VerificationError(f"{target.name}: children missing after copy: {', '.join(missing)}; list not pushed")
    moves = [TagMove(client, target.repository, tag, index.raw, index.media_type) for tag in tags]
    done = await move_tags(moves, seen)
    moved = [tag for tag, changed in zip(tags, done) if changed]
    unchanged = [tag for tag, changed in zip(tags, done) if not changed]
    log.info("index_pushed", target=target.name, digest=str(index.digest), tags=moved, stats=vars(copier.stats))
    return PushResult(index.digest, index.media_type, index.size, tuple(moved), tuple(unchanged))


def ensure_tags(target: Reference, extra: list[str]) -> list[str]:
    """The list's own tag (default latest) and every --tag, validated, without repeats."""
    if target.digest:
        raise UsageError(f"{target}: a list is pushed under a tag, not a digest")
    return list(dict.fromkeys(check_tag(t) for t in [target.tag or "latest", *extra]))
