"""The one way an index is pushed: children into the target → verify from the target → arch
tags → the index under every tag.

Why one path: `push` (a local draft), `publish` (a matrix) and `assemble` (digest files) differ
only in where their entries come from and in which words they refuse a list. Order is the
contract: entries already in the target (built and pushed by digest, or claimed by a digest
file) are verified before anything is written; entries read from elsewhere are copied in by
digest and verified too; the surface's `refuse` sees the rules' problems; only then do arch
tags and the index's tags move, every one by compare-and-swap against what `preflight` read
(tags.move_tags), so a refused or raced list moves no tag.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from manifesto import tasks
from manifesto.errors import NotFound, VerificationError
from manifesto.lists import rules
from manifesto.lists.entry import Entry
from manifesto.log import get_logger
from manifesto.oci.config import ImageConfig
from manifesto.oci.digest import Digest
from manifesto.oci.manifest import ImageIndex, ImageManifest, parse
from manifesto.oci.reference import Reference
from manifesto.store.protocol import Fetched
from manifesto.store.registry.pool import Registries
from manifesto.tags import Snapshot, TagMove, move_tags
from manifesto.transfer import Copier, Place

log = get_logger("manifesto.lists")

Refuse = Callable[[list[rules.Problem]], None]


@dataclass(frozen=True)
class Pushed:
    """What a push did: the index, its entries as the target serves them, and the tags."""

    index: ImageIndex
    entries: tuple[Entry, ...]
    tags_moved: tuple[str, ...]
    tags_unchanged: tuple[str, ...]


async def preflight(
    registries: Registries,
    target: Reference,
    tags: Sequence[str],
    arch_refs: Sequence[Reference] = (),
    *,
    unchanged: Digest | None = None,
) -> Snapshot:
    """May we push to the target (and every arch-tag repository), and what does each tag hold now?

    An auth problem is an AuthError in seconds, not after the builds or copies; the tags read
    here are what the compare-and-swap checks against. With `unchanged` (the index about to be
    pushed), a run that finds every tag already holding it writes nothing and asks for no push
    access. Without tags, only the target repository is asked.
    """
    seen = Snapshot()
    refs = [target.with_tag(t) for t in tags] + list(arch_refs) if tags else [target]
    repos = {(r.registry, r.repository): r for r in refs}
    reads = [(r, [x.tag or "latest" for x in refs if (x.registry, x.repository) == key]) for key, r in repos.items()]

    async def read() -> None:
        await tasks.gather(*(seen.take(registries.client(r), r.repository, names) for r, names in reads))

    async def check() -> None:
        await tasks.gather(*(registries.client(r).check_push(r.repository, r.name) for r in repos.values()))

    if unchanged is not None:
        await read()
        if any(seen.get(registries.client(r), r.repository, t) != unchanged for r, names in reads for t in names):
            await check()
        return seen
    await check()
    if tags:
        await read()
    return seen


async def copy_entry(copier: Copier, registries: Registries, entry: Entry) -> None:
    """Copy an entry read from a registry into the copier's target by digest (its exact bytes)."""
    assert entry.source is not None and entry.raw is not None
    src = Place(registries.client(entry.source), entry.source.repository)
    await copier.manifest(src, Fetched(entry.raw, entry.media_type, entry.digest))


def _to_copy(entry: Entry) -> bool:
    return entry.source is not None and entry.raw is not None


async def verify(place: Place, target: str, entries: Sequence[Entry], *, read_back: bool = True) -> list[Entry]:
    """Each entry as the target serves it, or a VerificationError: nothing is tagged then.

    With `read_back`, each child is read from the target by digest: its media type and size
    come from the bytes served, never from a claim (a digest file can be edited: a claim that
    disagrees is refused), it must be an image manifest, and its config (read from the target)
    must say its platform. Without, each child must merely be there (`push`, whose draft was
    checked before it was copied).
    """
    if not read_back:
        heads = await tasks.gather(*(place.store.head_manifest(place.repo, str(e.digest)) for e in entries))
        missing = [str(e.digest) for e, h in zip(entries, heads) if h is None]
        if missing:
            raise VerificationError(f"{target}: children missing after copy: {', '.join(missing)}; list not pushed")
        return list(entries)

    async def one(e: Entry) -> Entry:
        try:
            fetched = await place.store.get_manifest(place.repo, str(e.digest))
        except NotFound:
            raise VerificationError(f"{e.platform}: {e.digest} is not in {target}; index not pushed") from None
        size = len(fetched.raw)
        if (e.media_type, e.size) != (fetched.media_type, size):
            if e.origin:  # a claim from a digest file that the registry contradicts
                raise VerificationError(
                    f"{e.origin}: {e.platform} {e.digest} is {fetched.media_type}, {size} bytes in "
                    f"{target}, not {e.media_type}, {e.size} bytes as the file says; index not pushed"
                )
            log.warning("child_descriptor_differs", digest=str(e.digest), pushed=e.media_type, served=fetched.media_type)
        doc = parse(fetched.raw, fetched.media_type, f"{e.platform} child {e.digest}")
        if not isinstance(doc, ImageManifest):
            raise VerificationError(f"{e.platform}: {e.digest} is not an image manifest; index not pushed")
        raw = await place.store.read_blob_bytes(place.repo, doc.config.digest)
        config = ImageConfig.parse(raw, f"{e.platform} config")
        served = replace(
            e,
            descriptor=e.descriptor.with_(media_type=fetched.media_type, size=size),
            raw=fetched.raw,
            config_platform=config.platform,
        )
        problem = rules.config_problem(served)
        if problem is not None:
            raise VerificationError(f"{problem}; index not pushed")
        return served

    return list(await tasks.gather(*(one(e) for e in entries)))


async def arch_moves(registries: Registries, place: Place, entries: Sequence[Entry]) -> list[TagMove]:
    """Docker-library style per-arch tags (arm64v8/hello:1.0), ready to move with the index's.

    Each entry is copied by digest into its arch repositories from the target repository, where
    it already is (blobs are mounted across repositories of one registry); the tags move only
    with the index's, once every child is verified, so a refused list moves no tag.
    """

    async def one(entry: Entry, repository: str, refs: list[Reference]) -> list[TagMove]:
        fetched = await place.store.get_manifest(place.repo, str(entry.digest))
        client = registries.client(refs[0])
        await Copier(Place(client, repository)).manifest(place, fetched)
        return [TagMove(client, repository, ref.tag or "latest", fetched.raw, fetched.media_type) for ref in refs]

    jobs = []
    for entry in entries:
        by_repo: dict[tuple[str, str], list[Reference]] = {}
        for ref in entry.arch_refs:
            by_repo.setdefault((ref.registry, ref.repository), []).append(ref)
        jobs += [one(entry, repo, refs) for (_, repo), refs in by_repo.items()]
    return [move for moves in await tasks.gather(*jobs) for move in moves]


async def push(
    registries: Registries,
    place: Place,
    target: str,
    entries: Sequence[Entry],
    *,
    media_type: str,
    annotations: dict[str, str],
    tags: Sequence[str],
    seen: Snapshot | None = None,
    copier: Copier | None = None,
    read_back: bool = True,
    refuse: Refuse | None = None,
) -> Pushed:
    """Children into the target → verify from the target → arch tags → index under every tag.

    `entries` in index order. Those already in the target are verified first, before anything
    is written; the rest (each with its source and bytes) are copied in by digest (`copier`
    remembers copies a caller already made this run), then verified. `refuse` (the surface's
    way of saying no) sees the duplicates among the first, then every problem of the whole
    list. `seen` is what `preflight` read: every tag move is a compare-and-swap against it.
    """
    copier = copier or Copier(place)
    present = [i for i, e in enumerate(entries) if not _to_copy(e)]
    fetched = [i for i, e in enumerate(entries) if _to_copy(e)]
    verified: dict[int, Entry] = {}
    if present:
        done = await verify(place, target, [entries[i] for i in present], read_back=read_back)
        verified.update(zip(present, done))
        if refuse is not None and (found := rules.duplicate_problems(done)):
            refuse(found)
    if fetched:
        await tasks.gather(*(copy_entry(copier, registries, entries[i]) for i in fetched))
        done = await verify(place, target, [entries[i] for i in fetched], read_back=read_back)
        verified.update(zip(fetched, done))
    ordered = [verified[i] for i in range(len(entries))]
    if refuse is not None and (found := rules.problems(ordered, media_type, annotations)):
        refuse(found)
    arch = await arch_moves(registries, place, ordered)
    index = rules.build_index(ordered, media_type, annotations)
    moves = [TagMove(place.store, place.repo, tag, index.raw, index.media_type) for tag in tags]
    done_moves = (await move_tags(arch + moves, seen))[len(arch) :]
    moved = tuple(tag for tag, changed in zip(tags, done_moves) if changed)
    unchanged = tuple(tag for tag, changed in zip(tags, done_moves) if not changed)
    log.info("index_pushed", target=target, digest=str(index.digest), tags=list(moved), unchanged=list(unchanged), stats=vars(copier.stats))
    return Pushed(index, tuple(ordered), moved, unchanged)
