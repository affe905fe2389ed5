"""`manifesto copy SRC DST`: an image or index with every child, between registries and layouts.

A location is a registry reference (`docker://` optional) or `oci:DIR[:TAG]`. Blobs are mounted
when source and destination are repositories of one registry, skipped when already there, and
streamed otherwise; the destination tag is set last.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from manifesto.errors import UsageError
from manifesto.jobs.referrers import carry, end
from manifesto.lists.edit import Change, apply
from manifesto.lists.rules import dropped_text, split_attestations
from manifesto.oci.descriptor import KEEP
from manifesto.oci.digest import Digest
from manifesto.oci.manifest import ImageIndex, parse
from manifesto.oci.reference import is_digest, parse_location
from manifesto.store.places import manifest_reference
from manifesto.store.protocol import Fetched
from manifesto.store.referrers import Finder
from manifesto.store.registry.pool import Registries
from manifesto.transfer import Copier, OnBytes


def copy(
    source: str,
    destination: str,
    *,
    insecure: bool = False,
    on_bytes: OnBytes | None = None,
    on_tag: Callable[[str], None] | None = None,
    attestations: str = KEEP,
    on_notice: Callable[[str], None] | None = None,
    referrers: bool = False,
) -> Digest:
    """Copy an image or index with every child from `source` to `destination`; its digest.

    The sync wrapper library users call (and the CLI): copy_image runs under asyncio.run with
    Registries of its own (`insecure`: no TLS verification for any registry). `on_bytes` hears
    each uploaded blob's progress (transfer.Copier), for a caller that shows it; `on_tag` hears
    the destination tag once it is set (for a caller that reports it). `attestations` strip:
    an index is copied without its attestation manifests (a new index, so a new digest), and
    `on_notice` hears how many were left out. `referrers`: what refers to the image and to each
    of its children (signatures, SBOMs, attestations) goes along (jobs/referrers.py), before
    the destination tag moves; `on_notice` hears how many.
    """

    async def run() -> Digest:
        async with Registries(insecure=insecure) as registries:
            return await copy_image(
                registries,
                source,
                destination,
                on_bytes=on_bytes,
                on_tag=on_tag,
                attestations=attestations,
                on_notice=on_notice,
                referrers=referrers,
            )

    return asyncio.run(run())


async def copy_image(
    registries: Registries,
    source: str,
    destination: str,
    *,
    on_bytes: OnBytes | None = None,
    on_tag: Callable[[str], None] | None = None,
    attestations: str = KEEP,
    on_notice: Callable[[str], None] | None = None,
    referrers: bool = False,
) -> Digest:
    """The async core of copy(), with the caller's Registries: the manifest by its exact bytes,
    every blob and child first (and, with `referrers`, what refers to them), the destination
    tag (else the source's, else latest) last."""
    src, dst = parse_location(source), parse_location(destination)
    if dst.digest:
        raise UsageError(f"{destination}: copy to a tag, not a digest")
    source_end = end(registries, src)
    src_place = source_end.place
    ref = manifest_reference(src, source)  # oci:DIR without a tag: the layout's only tag
    original = await src_place.store.get_manifest(src_place.repo, ref)
    fetched = _stripped(original, attestations, source, on_notice)
    destination_end = end(registries, dst, create=True)  # a layout is made once there is a source
    # eager: a copy is made for a destination that lacks the content (when it holds the index
    # already, that answer comes before any child is copied)
    copier = Copier(destination_end.place, on_bytes=on_bytes, eager=True)
    if not referrers:
        # every child and blob, not the manifest itself: the tag's PUT below stores those very
        # bytes, so a PUT by digest first would be one more round trip for nothing. Should the
        # tag not move (another writer moved it), the children wait untagged as they would anyway.
        await copier.content(src_place, fetched)
    else:  # a referrer names its subject by digest: the subject goes in first
        await copier.manifest(src_place, fetched)
        carried = await carry(source_end, destination_end, copier, fetched)
        if on_notice is not None:
            count = len({r.descriptor.digest for r in carried})
            on_notice(f"{source}: {count} referrer{'s' if count != 1 else ''} copied")
            if original.digest != fetched.digest:  # a new index: what referred to the old one does not
                left = await Finder(src_place.store, src_place.repo, source_end.api).direct(original.digest)
                if left:
                    on_notice(f"{source}: {len(left)} referrer(s) of the index not copied: it was rewritten")
    tag = dst.tag or (None if is_digest(ref) else ref) or "latest"
    await copier.tag(tag, fetched.raw, fetched.media_type)
    if on_tag is not None:
        on_tag(tag)
    return fetched.digest


def _stripped(fetched: Fetched, how: str, source: str, on_notice: Callable[[str], None] | None) -> Fetched:
    """`fetched`, or (an index, under `--attestations strip`) the index without its attestations:
    the rest of the document kept as it is (lists.edit.apply)."""
    doc = parse(fetched.raw, fetched.media_type, source)
    if not isinstance(doc, ImageIndex):
        return fetched
    _, dropped = split_attestations(doc.manifests, how, descriptor=lambda d: d)
    if not dropped:
        return fetched
    index = apply(doc, Change(digests=tuple(d.digest for d in dropped))).index
    assert index is not None
    if on_notice is not None:
        on_notice(dropped_text(len(dropped), source))
    return Fetched(index.raw, index.media_type, index.digest)
