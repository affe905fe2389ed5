"""Carry what refers to an image (signatures, SBOMs, attestations) along with it, and list it.

For an index, the referrers of the index and of every manifest in it (nested lists too) count.
Found through the referrers API or the tag schema (store/referrers.py); at the destination each
referrer is copied by digest, exact bytes and blobs first (transfer.Copier, which verifies every
digest), and then the tags that make them findable where there is no API: the `sha256-<hex>`
referrers index of each subject (merged with one already there: its entries kept, ours added,
none twice; a compare-and-swap move, read again when another writer moved it) and cosign's
`.sig`/`.att`/`.sbom` tags under the same names. A destination with the API indexes the subjects
of what is pushed to it itself and gets no referrers index tag.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from manifesto import tasks
from manifesto.errors import ConcurrentUpdate, ContentError, NotFound
from manifesto.log import get_logger
from manifesto.oci import mediatype
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.digest import Digest
from manifesto.oci.manifest import ImageIndex, parse
from manifesto.oci.reference import LayoutReference
from manifesto.oci.referrers import fallback_tag, merged
from manifesto.store.places import Location, open_store
from manifesto.store.protocol import Fetched
from manifesto.store.referrers import Api, Finder, Referrer
from manifesto.store.registry.pool import Registries
from manifesto.store.registry.referrers import list_referrers
from manifesto.tags import Snapshot, TagMove, move_tags
from manifesto.transfer import Copier, Place

log = get_logger("manifesto.referrers")

MAX_NESTING = 8  # lists inside lists followed this deep when collecting the subjects
MERGE_ATTEMPTS = 3  # a referrers index tag moved by another writer is read and merged again


@dataclass(frozen=True)
class End:
    """One end of a referrers copy: a place and, when it is a registry, its referrers API."""

    place: Place
    api: Api | None = None


def end(registries: Registries, location: Location, *, create: bool = False) -> End:
    """The End a parsed reference names: its place (store.places.open_store; `create` makes a
    layout) and a registry's referrers API (a layout has only the tag schema)."""
    store, repo = open_store(registries, location, create=create)
    if isinstance(location, LayoutReference):
        return End(Place(store, repo))
    client = registries.client(location)
    return End(Place(store, repo), lambda repo, digest: list_referrers(client, repo, digest))


async def subjects(place: Place, fetched: Fetched) -> list[Digest]:
    """The digest of `fetched` and, for an index, of every manifest in it (nested lists too)."""
    out: list[Digest] = [fetched.digest]
    level = [fetched]
    for _ in range(MAX_NESTING):
        children: list[Descriptor] = []
        for f in level:
            doc = parse(f.raw, f.media_type, f"{place.repo}@{f.digest}")
            if isinstance(doc, ImageIndex):
                children += [d for d in doc.manifests if d.digest not in out]
        out += [d.digest for d in children]
        nested = [d for d in children if mediatype.is_index(d.media_type)]
        if not nested:
            break
        level = await tasks.gather(*(place.store.get_manifest(place.repo, d.digest) for d in nested))
    return list(dict.fromkeys(out))


async def find(source: End, fetched: Fetched) -> list[Referrer]:
    """Every referrer of `fetched` (and of its children, and of their referrers)."""
    finder = Finder(source.place.store, source.place.repo, source.api)
    return await finder.walk(await subjects(source.place, fetched))


async def carry(source: End, destination: End, copier: Copier, fetched: Fetched) -> list[Referrer]:
    """Copy every referrer of `fetched` (found in `source`) into `destination` with its tags.

    `copier` copies into destination.place (the caller's, so blobs it already moved are not
    moved again). Returns what was carried (per subject: one manifest may be listed for two).
    A referrer whose bytes do not match the digest (or
    size) it is listed with is refused: DigestMismatch or ContentError, and no tag is written.
    """
    finder = Finder(source.place.store, source.place.repo, source.api)
    found = await finder.walk(await subjects(source.place, fetched))
    if not found:
        return []

    async def one(r: Referrer) -> None:
        await copier.manifest(source.place, await finder.fetch(r))

    unique = {r.descriptor.digest: r for r in found}  # one listed for two subjects: copied once
    await tasks.gather(*(one(r) for r in unique.values()), in_order=True)
    dst = destination.place
    if destination.api is None or await destination.api(dst.repo, fetched.digest) is None:
        by_subject: dict[Digest, list[Descriptor]] = defaultdict(list)
        for r in found:
            if r.listed:
                by_subject[r.subject].append(r.descriptor)
        for subject, listed in by_subject.items():
            await merge_index(dst, subject, listed)
    for r in found:
        for tag in r.tags:
            assert r.fetched is not None  # found under that tag, so read from it
            await copier.tag(tag, r.fetched.raw, r.fetched.media_type)
    return found


async def merge_index(place: Place, subject: Digest, listed: list[Descriptor]) -> bool:
    """Add `listed` to the referrers index tag of `subject` in `place`; False if all were there.

    Read, merge, move with compare-and-swap; another writer's move in between means read and
    merge again (at most MERGE_ATTEMPTS times, then ConcurrentUpdate). A tag holding anything
    but an image index is a ContentError and stays as it is (distribution spec 1.1, "Pushing
    Manifests with Subject": report a failure and skip the rest).
    """
    tag = fallback_tag(subject)
    for attempt in range(1, MERGE_ATTEMPTS + 1):
        try:
            current = await place.store.get_manifest(place.repo, tag)
        except NotFound:
            current = None
        existing = None
        if current is not None and not mediatype.is_index(current.media_type):
            # spec: a referrers tag holding anything else is a failure; it is not ours to replace
            name = TagMove(place.store, place.repo, tag, current.raw, current.media_type).name
            raise ContentError(f"{name} holds {current.media_type}, not an image index of referrers; not overwritten")
        if current is not None:
            existing = ImageIndex.parse(current.raw, current.media_type, f"{place.repo}:{tag}")
        index = merged(existing, listed)
        if index is None:
            return False
        move = TagMove(place.store, place.repo, tag, index.raw, index.media_type)
        seen = Snapshot()
        seen.first(move.key, current.digest if current is not None else None)
        try:
            await move_tags([move], seen)
            return True
        except ConcurrentUpdate as e:
            if attempt == MERGE_ATTEMPTS:
                raise
            log.info("referrers_index_conflict", tag=tag, attempt=attempt, reason=str(e))
    raise AssertionError("unreachable")
