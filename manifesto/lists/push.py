"""The one way an index is pushed: children into the target → verify from the target → arch
tags → the index under every tag (in every target, when there are mirrors).

Why one path: `push` (a local draft), `publish` (a matrix) and `assemble` (digest files) differ
only in where their entries come from and in which words they refuse a list. Order is the
contract: entries already in the target (built and pushed by digest, or claimed by a digest
file) are verified before anything is written; entries read from elsewhere are copied in by
digest and verified too; the surface's `refuse` sees the rules' problems; only then do arch
tags and the index's tags move, every one by compare-and-swap against what `preflight` read
(tags.move_tags), so a refused or raced list moves no tag. With mirrors (more targets: a
registry's mirror, another registry or repository) every child goes from the first target
into each mirror (mounted within a registry, streamed across) and is verified there, then the
index goes to every target by digest, and only then do the tags of every target move, in one
compare-and-swap: no registry shows a new tag before every registry holds all content, and a
target that refuses anything leaves every tag as it was.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

from manifesto import tasks
from manifesto.errors import ManifestoError, NotFound, VerificationError
from manifesto.lists import rules
from manifesto.lists.entry import Entry
from manifesto.log import get_logger
from manifesto.oci.config import ImageConfig
from manifesto.oci.digest import Digest
from manifesto.oci.manifest import ImageIndex, ImageManifest, parse
from manifesto.oci.reference import Reference
from manifesto.store.places import open_store
from manifesto.store.protocol import Fetched
from manifesto.store.registry.pool import Registries
from manifesto.tags import Snapshot, TagMove, move_tags
from manifesto.transfer import Copier, Place

log = get_logger("manifesto.lists")

Refuse = Callable[[list[rules.Problem]], None]


@dataclass(frozen=True)
class Landed:
    """One target's tags after a push: those moved and those that already held the index."""

    target: str
    tags_moved: tuple[str, ...]
    tags_unchanged: tuple[str, ...]


@dataclass(frozen=True)
class Pushed:
    """What a push did: the index, its entries as the target serves them, and the tags.

    `tags_moved` names a tag moved in any target, `tags_unchanged` one no target had to move;
    `targets` says it per target, the first first.
    """

    index: ImageIndex
    entries: tuple[Entry, ...]
    tags_moved: tuple[str, ...]
    tags_unchanged: tuple[str, ...]
    targets: tuple[Landed, ...] = ()


async def preflight(
    registries: Registries,
    target: Reference | Sequence[Reference],
    tags: Sequence[str],
    arch_refs: Sequence[Reference] = (),
    *,
    unchanged: Digest | Awaitable[Digest] | None = None,
    access: bool = True,
) -> Snapshot:
    """May we push to the target (each one, when given several, and every arch-tag repository),
    and what does each tag hold now?

    An auth problem is an AuthError in seconds, not after the builds or copies; the tags read
    here are what the compare-and-swap checks against. With `unchanged` (the index about to be
    pushed), a run that finds every tag already holding it writes nothing and asks for no push
    access. `unchanged` may still be on its way (an awaitable: the list is being read): the tags
    are read meanwhile, and so is push access asked for once a tag is found absent (it cannot
    hold the index: the run will write); a failure of the awaitable is the one raised. Without
    tags, only the target repository is asked. `access=False` asks for no push access: for a
    caller whose first write comes before any work a refusal would waste (its first blob
    mount or upload is refused just as early, and writes nothing either).
    """
    seen = Snapshot()
    targets = [target] if isinstance(target, Reference) else list(target)
    refs = [t.with_tag(tag) for t in targets for tag in tags] + list(arch_refs) if tags else targets
    repos = {(r.registry, r.repository): r for r in refs}
    reads = [(r, [x.tag or "latest" for x in refs if (x.registry, x.repository) == key]) for key, r in repos.items()]

    async def read() -> None:
        await tasks.gather(*(seen.take(registries.client(r), r.repository, names) for r, names in reads))

    async def check() -> None:
        if access:
            await tasks.gather(*(registries.client(r).check_push(r.repository, r.name) for r in repos.values()))

    def held() -> list[Digest | None]:
        return [seen.get(registries.client(r), r.repository, t) for r, names in reads for t in names]

    if unchanged is not None:

        async def known() -> Digest:
            return unchanged if isinstance(unchanged, Digest) else await unchanged

        async def read_then_check() -> bool:
            await read()
            if None in held():
                await check()
                return True
            return False

        digest, checked = await tasks.gather(known(), read_then_check(), in_order=True)
        if not checked and any(d != digest for d in held()):
            await check()
        return seen
    await check()
    if tags:
        await read()
    return seen


async def copy_entry(copier: Copier, registries: Registries, entry: Entry) -> None:
    """Copy an entry read from a registry or an OCI layout into the copier's target by digest
    (its exact bytes; its blobs from where it was read)."""
    assert entry.source is not None and entry.raw is not None
    src = Place(*open_store(registries, entry.source))
    await copier.manifest(src, Fetched(entry.raw, entry.media_type, entry.digest))


def _to_copy(entry: Entry) -> bool:
    return entry.source is not None and entry.raw is not None


async def verify(
    place: Place, target: str, entries: Sequence[Entry], *, read_back: bool = True, copied: Copier | None = None
) -> list[Entry]:
    """Each entry as the target serves it, or a VerificationError: nothing is tagged then.

    With `read_back`, each child is read from the target by digest: its media type and size
    come from the bytes served, never from a claim (a digest file can be edited: a claim that
    disagrees is refused), it must be an image manifest, and its config (read from the target)
    must say its platform. Without, each child must merely be there (`push`, whose draft was
    checked before it was copied): asked with a HEAD, unless `copied` (the Copier that copied
    them) put it there or found it there this run.
    """
    if not read_back:
        asked = [e for e in entries if copied is None or not copied.holds(e.digest)]
        heads = await tasks.gather(*(place.store.head_manifest(place.repo, str(e.digest)) for e in asked))
        missing = [str(e.digest) for e, h in zip(asked, heads) if h is None]
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


async def arch_moves(registries: Registries, places: Sequence[Place], entries: Sequence[Entry]) -> list[TagMove]:
    """Docker-library style per-arch tags (arm64v8/hello:1.0), ready to move with the index's.

    Each entry is copied by digest into its arch repositories from a target repository, where
    it already is: the one in the arch repository's registry (blobs are mounted across
    repositories of one registry), else the first; the tags move only with the index's, once
    every child is verified, so a refused list moves no tag.
    """

    async def one(entry: Entry, repository: str, refs: list[Reference]) -> list[TagMove]:
        client = registries.client(refs[0])
        source = next((p for p in places if p.store is client), places[0])
        fetched = await source.store.get_manifest(source.repo, str(entry.digest))
        await Copier(Place(client, repository)).manifest(source, fetched)
        return [TagMove(client, repository, ref.tag or "latest", fetched.raw, fetched.media_type) for ref in refs]

    jobs = []
    for entry in entries:
        by_repo: dict[tuple[str, str], list[Reference]] = {}
        for ref in entry.arch_refs:
            by_repo.setdefault((ref.registry, ref.repository), []).append(ref)
        jobs += [one(entry, repo, refs) for (_, repo), refs in by_repo.items()]
    return [move for moves in await tasks.gather(*jobs) for move in moves]


def untagged(error: ManifestoError, pushed: Sequence[Entry]) -> ManifestoError:
    """`error`, its first line naming the children already pushed by digest (under no tag)."""
    if not pushed:
        return error
    first, sep, rest = str(error).partition("\n")
    named = ", ".join(f"{e.platform} {e.digest}" for e in pushed)
    error.args = (f"{first} (pushed by digest, untagged: {named}; no tag moved){sep}{rest}",)
    return error


async def mirror(place: Place, mirrors: Sequence[tuple[Place, str]], entries: Sequence[Entry], *, read_back: bool = True) -> None:
    """Every entry from the first target (`place`, where each is verified) into each mirror by
    digest, then verified there as in the first; a failure names what the first target holds.

    One Copier per mirror: a blob goes once per mirror, mounted when the mirror is another
    repository of the first target's registry, streamed from the first target otherwise.
    """

    async def one(entry: Entry) -> Fetched:
        if entry.raw is not None:
            return Fetched(entry.raw, entry.media_type, entry.digest)
        return await place.store.get_manifest(place.repo, str(entry.digest))

    try:
        fetched = await tasks.gather(*(one(e) for e in entries))

        async def into(mirror_place: Place, name: str) -> None:
            copier = Copier(mirror_place)
            await tasks.gather(*(copier.manifest(place, f) for f in fetched))
            await verify(mirror_place, name, entries, read_back=read_back, copied=copier)
            log.info("mirrored", target=name, stats=vars(copier.stats))

        await tasks.gather(*(into(p, name) for p, name in mirrors))
    except ManifestoError as e:
        raise untagged(e, entries) from None


async def _put_by_digest(place: Place, index: ImageIndex) -> None:
    if await place.store.head_manifest(place.repo, str(index.digest)) is None:  # a republish writes nothing
        await place.store.put_manifest(place.repo, str(index.digest), index.raw, index.media_type)


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
    mirrors: Sequence[tuple[Place, str]] = (),
) -> Pushed:
    """Children into the target → verify from the target → arch tags → index under every tag.

    `entries` in index order. Those already in the target are verified first, before anything
    is written; the rest (each with its source and bytes) are copied in by digest (`copier`
    remembers copies a caller already made this run), then verified. `refuse` (the surface's
    way of saying no) sees the duplicates among the first, then every problem of the whole
    list. `mirrors` (place, name) get every child from the target and the index by digest
    (mirror()), before any tag moves. `seen` is what `preflight` read: every tag move, in
    every target, is a compare-and-swap against it, all in one move_tags.
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
        done = await verify(place, target, [entries[i] for i in fetched], read_back=read_back, copied=copier)
        verified.update(zip(fetched, done))
    ordered = [verified[i] for i in range(len(entries))]
    if refuse is not None and (found := rules.problems(ordered, media_type, annotations)):
        refuse(found)
    places = [(place, target), *mirrors]
    index = rules.build_index(ordered, media_type, annotations)
    if not mirrors:
        arch = await arch_moves(registries, [place], ordered)
    else:
        await mirror(place, mirrors, ordered, read_back=read_back)
        try:
            arch = await arch_moves(registries, [p for p, _ in places], ordered)
            # the index by digest everywhere: each tag then moves to content every target has
            await tasks.gather(*(_put_by_digest(p, index) for p, _ in places))
        except ManifestoError as e:
            raise untagged(e, ordered) from None
    moves = [TagMove(p.store, p.repo, tag, index.raw, index.media_type) for p, _ in places for tag in tags]
    changed = (await move_tags(arch + moves, seen))[len(arch) :]
    landed = []
    for n, (_, name) in enumerate(places):
        mine = changed[n * len(tags) : (n + 1) * len(tags)]
        landed.append(Landed(name, tuple(t for t, c in zip(tags, mine) if c), tuple(t for t, c in zip(tags, mine) if not c)))
    moved = tuple(t for t in tags if any(t in x.tags_moved for x in landed))
    unchanged = tuple(t for t in tags if t not in moved)
    log.info("index_pushed", target=target, digest=str(index.digest), tags=list(moved), unchanged=list(unchanged), stats=vars(copier.stats))
    return Pushed(index, tuple(ordered), moved, unchanged, tuple(landed))
