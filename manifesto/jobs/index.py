"""`manifesto index add|rm`: change the list a tag holds, safe against a concurrent writer.

Why a loop and not one write: a registry has no conditional PUT (distribution 2.8 ignores
If-Match), so two CI jobs that each add their platform to one tag at the same moment would
each write the list they read plus their own entry, and the later write would drop the other's.
Each attempt reads the tag (the list's exact bytes and digest), applies the change to that
(lists/edit.py), puts the new list by digest, and moves the tag only if it still holds what
was read (tags.move_tags, which also checks the tag again before any retry of its PUT). The tag is then read again after a
settle time longer than a writer's HEAD-to-PUT round trip, so any writer that checked the tag
before ours landed has landed too; if the list it holds lacks this run's change (lists.edit.held),
the change is applied again to what is there, after a random pause, a bounded number of times.
Children go into the target repository first, through the one push path's copy (lists/push.py).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from manifesto import tasks
from manifesto.errors import ConcurrentUpdate, NetworkError, NotFound, RegistryError, UsageError
from manifesto.lists import edit, rules
from manifesto.lists.edit import Applied, Change
from manifesto.lists.entry import Entry
from manifesto.lists.push import copy_entry, verify
from manifesto.lists.sources import read_source
from manifesto.log import get_logger
from manifesto.oci.descriptor import KEEP
from manifesto.oci.manifest import ImageIndex, parse
from manifesto.oci.platform import Platform, matches
from manifesto.oci.reference import Reference, parse_location
from manifesto.store.places import Location
from manifesto.store.registry.pool import Registries
from manifesto.store.registry.retry import RETRY_STATUSES
from manifesto.tags import Snapshot, TagMove, move_tags
from manifesto.transfer import Copier, Place

log = get_logger("manifesto.index")

ATTEMPTS = 12  # reads, changes and writes of the list before giving up to other writers
SETTLE = 0.3  # seconds at least between moving the tag and reading it back
SETTLE_MAX = 3.0
PAUSE_MAX = 2.0  # the random pause before another attempt grows up to this


def _ignore(line: str) -> None:
    pass


@dataclass(frozen=True)
class Edited:
    """What an edit did: the list the tag holds now, and what went in and out."""

    target: Reference
    index: ImageIndex
    added: tuple[str, ...] = ()  # digests
    removed: tuple[str, ...] = ()
    created: bool = False  # there was no list under the tag: a new one was made
    unchanged: bool = False  # the list already was as asked: nothing written
    attempts: int = 1


async def read_added(
    registries: Registries,
    sources: Sequence[Location],
    platforms: Sequence[Platform] = (),
    attestations: str = KEEP,
    on_notice: Callable[[str], None] = _ignore,
) -> list[Entry]:
    """The entries `index add` adds: each source's image, or a list's images (of `platforms`,
    when given) with the attestations of those images, unless `attestations` is strip.

    A source is a registry reference or an OCI layout (`oci:DIR[:TAG|@DIGEST]`): the entries
    keep where they were read, so the one push path copies them from there."""
    read = await tasks.gather(*(read_source(registries, s, skip_platformless=bool(platforms)) for s in sources))
    out: list[Entry] = []
    for source, got in zip(sources, read):
        entries = got.entries
        if platforms:
            picked = [e for e in entries if _wanted(e, platforms)]
            if not picked:
                raise NotFound(f"{source.familiar}: no image for {', '.join(map(str, platforms))} there")
            digests = {str(e.digest) for e in picked}
            entries = [e for e in entries if e in picked or e.descriptor.attests in digests]
        entries, dropped = rules.split_attestations(entries, attestations)
        if dropped:
            on_notice(rules.dropped_text(len(dropped), source.familiar))
        out += entries
    found = rules.duplicate_problems(out)
    if found:
        raise UsageError(f"{'; '.join(map(str, found))}: add one image per platform")
    return out


def _wanted(entry: Entry, platforms: Sequence[Platform]) -> bool:
    p = entry.platform
    return not entry.descriptor.is_attestation and p is not None and any(matches(p, w) for w in platforms)


async def edit_list(
    registries: Registries,
    target: Reference,
    change: Change,
    *,
    media_type: str | None = None,
    attempts: int = ATTEMPTS,
    settle: float = SETTLE,
) -> Edited:
    """Apply `change` to the list under `target`'s tag (created when absent and the change adds).

    Every added entry is copied into the target repository by digest first and must be there.
    A `rm` selector naming nothing in the list is a NotFound, and nothing is written. Raises
    ConcurrentUpdate when other writers kept moving the tag through every attempt.
    """
    if target.digest:
        raise UsageError(f"{target}: a list is changed under a tag, not a digest")
    tag = target.tag or "latest"
    place = Place(registries.client(target), target.repository)
    added = list(change.added)
    if added:
        copier = Copier(place)
        await tasks.gather(*(copy_entry(copier, registries, e) for e in added if e.source is not None and e.raw is not None))
        await verify(place, str(target), added, read_back=False, copied=copier)
    for attempt in range(1, attempts + 1):
        base = await _read(place, target, tag)
        if base is None and not added:
            raise NotFound(f"{target.familiar}: no list there to remove entries from")
        applied = edit.apply(base, change, media_type)
        if attempt == 1 and applied.unmatched:
            raise NotFound(f"{target.familiar}: no entry for {', '.join(applied.unmatched)} in the list; nothing changed")
        if applied.index is None:
            assert base is not None
            return Edited(target, base, unchanged=True, attempts=attempt)
        _refuse(target, applied, added)
        index = applied.index
        await place.store.put_manifest(place.repo, index.digest, index.raw, index.media_type)
        move = TagMove(place.store, place.repo, tag, index.raw, index.media_type)
        seen = Snapshot()
        seen.first(move.key, base.digest if base is not None else None)
        started = time.monotonic()
        try:
            await move_tags([move], seen)
        except (ConcurrentUpdate, NetworkError) as e:
            log.info("index_edit_conflict", target=str(target), attempt=attempt, reason=str(e))
        except RegistryError as e:
            if e.status not in RETRY_STATUSES:
                raise
            log.info("index_edit_retry", target=str(target), attempt=attempt, reason=str(e))
        await asyncio.sleep(min(max(settle, 2 * (time.monotonic() - started)), SETTLE_MAX))
        now = await _read(place, target, tag)
        if now is not None and edit.held(now, applied):
            return Edited(
                target,
                now,
                added=tuple(str(d.digest) for d in applied.added),
                removed=tuple(str(d.digest) for d in applied.removed),
                created=base is None,
                attempts=attempt,
            )
        await asyncio.sleep(random.uniform(0, min(PAUSE_MAX, 0.05 * 2**attempt)))
    raise ConcurrentUpdate(
        f"{target.familiar}: other writers kept changing the list; gave up after {attempts} attempts "
        "(the change is not in it); re-run to try again"
    )


async def _read(place: Place, target: Reference, tag: str) -> ImageIndex | None:
    """The list under the tag as served (exact bytes), or None when the tag is absent."""
    try:
        fetched = await place.store.get_manifest(place.repo, tag)
    except NotFound:
        return None
    doc = parse(fetched.raw, fetched.media_type, target.familiar)
    if not isinstance(doc, ImageIndex):
        raise UsageError(f"{target.familiar} holds an image, not a list; `manifesto create` makes a list of it")
    return doc


def _refuse(target: Reference, applied: Applied, added: Sequence[Entry]) -> None:
    """Refuse a change that makes the list wrong or lossy in a way it was not before."""
    assert applied.index is not None

    def entries(index: ImageIndex) -> list[Entry]:
        known = {e.digest: e for e in added}
        return [known.get(d.digest) or Entry(target.with_digest(d.digest), d) for d in index.manifests]

    before = set()
    if applied.base is not None:
        base = applied.base
        before = {str(p) for p in rules.problems(entries(base), base.media_type, base.annotations)}
    index = applied.index
    found = [p for p in rules.problems(entries(index), index.media_type, index.annotations) if str(p) not in before]
    if found:
        text = "; ".join(p.text("--format oci") for p in found)
        raise UsageError(f"refusing to change {target.familiar}: {text}")


def index_add(
    target: str,
    sources: Sequence[str],
    *,
    platforms: Sequence[str | Platform] = (),
    attestations: str = KEEP,
    format: str | None = None,
    insecure: bool = False,
    on_notice: Callable[[str], None] = _ignore,
) -> Edited:
    """Add images (or a list's images) to the list a tag holds; the sync wrapper for library users.

    `format` (oci|docker) converts the list; `on_notice` hears what was left out."""
    from manifesto.oci import mediatype

    wanted = [p if isinstance(p, Platform) else Platform.parse(p) for p in platforms]
    ref = Reference.parse(target)

    async def run() -> Edited:
        async with Registries(insecure=insecure) as registries:
            entries = await read_added(registries, [parse_location(s) for s in sources], wanted, attestations, on_notice)
            return await edit_list(
                registries, ref, Change(added=tuple(entries)), media_type=mediatype.index_type(format) if format else None
            )

    return asyncio.run(run())


def index_remove(
    target: str, *, platforms: Sequence[str | Platform] = (), digests: Sequence[str] = (), insecure: bool = False
) -> Edited:
    """Remove entries (by platform or digest, with their attestations) from the list a tag holds."""
    from manifesto.oci.digest import Digest

    if not platforms and not digests:
        raise UsageError("name the entries to remove: --platform P or --digest D")
    change = Change(
        platforms=tuple(p if isinstance(p, Platform) else Platform.parse(p) for p in platforms),
        digests=tuple(Digest.parse(d) for d in digests),
    )

    async def run() -> Edited:
        async with Registries(insecure=insecure) as registries:
            return await edit_list(registries, Reference.parse(target), change)

    return asyncio.run(run())
