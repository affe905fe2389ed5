"""Compare-and-swap tag moves: a tag that moved since this run first read it is not overwritten.

Two runs pushing lists to one tag must not both succeed while one list silently disappears.
distribution 2.8 has no conditional PUT (no If-Match), so the check is ours: remember what each
tag held when the run first read it (a digest, or absent: `Snapshot`), read it again right
before the PUT, and read it back once after. A tag already holding our digest is left alone.
A PUT the client retries (5xx, a lost connection) reads the tag again before each retry, so a
retry after a pause never lands on a tag another writer moved during it (store/registry/retry.GUARD).
What remains is the time between our last read and our PUT landing (about one round trip): a
writer whose PUT and read-back both fall inside it is overwritten without either run noticing.
"""

from __future__ import annotations

from dataclasses import dataclass

from manifesto import tasks
from manifesto.errors import ConcurrentUpdate, ManifestoError, NetworkError, RegistryError
from manifesto.log import get_logger
from manifesto.oci.digest import Digest
from manifesto.oci.reference import LAYOUT_PREFIX
from manifesto.store.protocol import Store
from manifesto.store.registry import retry

log = get_logger("manifesto.tags")

Key = tuple[str, str, str]


def _where(store: Store) -> str:
    """A store's name that outlives its client: a run may read with one client, write with another."""
    return store.name


@dataclass(frozen=True)
class TagMove:
    """Put `raw` (a manifest, exact bytes) under `tag` in `repo` of `store`."""

    store: Store
    repo: str
    tag: str
    raw: bytes
    media_type: str

    @property
    def digest(self) -> Digest:
        return Digest.of(self.raw)

    @property
    def key(self) -> Key:
        return (_where(self.store), self.repo, self.tag)

    @property
    def name(self) -> str:
        where = _where(self.store)
        return f"{where}:{self.tag}" if where.startswith(LAYOUT_PREFIX) else f"{where}/{self.repo}:{self.tag}"


class Snapshot:
    """What tags held when this run first read them: a digest, or None for absent."""

    def __init__(self) -> None:
        self._seen: dict[Key, Digest | None] = {}

    async def take(self, store: Store, repo: str, tags: list[str] | tuple[str, ...]) -> None:
        """Read every tag of `repo` not read before (a later read never replaces the first)."""
        where = _where(store)
        todo = [t for t in dict.fromkeys(tags) if (where, repo, t) not in self._seen]
        found = await tasks.gather(*(_current(store, repo, t) for t in todo))
        for tag, digest in zip(todo, found):
            self._seen.setdefault((where, repo, tag), digest)

    def get(self, store: Store, repo: str, tag: str) -> Digest | None:
        """What the tag held when first read (None: absent, or not read yet)."""
        return self._seen.get((_where(store), repo, tag))

    def first(self, key: Key, now: Digest | None) -> Digest | None:
        """What the tag held when first read; `now` becomes that if this is the first read."""
        return self._seen.setdefault(key, now)


async def move_tags(moves: list[TagMove], seen: Snapshot | None = None) -> list[bool]:
    """Move every tag in order, refusing to overwrite one that moved since `seen` read it.

    Returns, per move, True when the tag was moved and False when it already held the digest.
    Every tag is checked before any is moved, so a conflict on one leaves all as they were;
    each later tag is checked again right before its own PUT, and every PUT is read back once.
    Without `seen` (a caller that never read the tags before) the first read is the one made
    here. Raises ConcurrentUpdate naming what the tag held first and what it holds now.
    """
    seen = seen if seen is not None else Snapshot()
    now = list(await tasks.gather(*(_current(m.store, m.repo, m.tag) for m in moves)))
    for move, digest in zip(moves, now):
        _check(move, seen.first(move.key, digest), digest, [])
    out: list[bool] = []
    moved: list[str] = []
    try:
        await _move_each(moves, seen, now, out, moved)
    except ManifestoError:
        if moved:  # no registry can move several tags at once: say which moved before the failure
            log.warning("tags_partly_moved", moved=moved, not_moved=[m.name for m in moves[len(out) :]])
        raise
    return out


async def _move_each(
    moves: list[TagMove], seen: Snapshot, now: list[Digest | None], out: list[bool], moved: list[str]
) -> None:
    for i, move in enumerate(moves):
        digest = now[i]
        if moved:  # a PUT has taken time since the check above: read again, right before ours
            digest = await _current(move.store, move.repo, move.tag)
            _check(move, seen.first(move.key, digest), digest, moved)
        if digest == move.digest:
            log.info("tag_unchanged", tag=move.name, digest=str(digest))
            out.append(False)
            continue
        await _put(move, seen, moved)
        after = await _current(move.store, move.repo, move.tag)
        if after != move.digest:
            raise ConcurrentUpdate(
                f"{move.name}: another writer replaced the tag right after this run pushed "
                f"{move.digest}: it holds {_show(after)} now; inspect it and re-run to replace it"
            )
        moved.append(move.name)
        out.append(True)


async def _put(move: TagMove, seen: Snapshot, moved: list[str]) -> None:
    """PUT the tag; a retry of the PUT (after a 5xx or a lost connection) checks the tag again
    first. When every attempt failed that way, the tag is read once more: a PUT the registry
    carried out but whose answer was lost each time has moved the tag all the same."""

    async def recheck() -> None:
        now = await _current(move.store, move.repo, move.tag)
        if now != move.digest:  # our failed attempt may have landed: then the retry is harmless
            _check(move, seen.first(move.key, now), now, moved)

    token = retry.GUARD.set(recheck)
    try:
        await move.store.put_manifest(move.repo, move.tag, move.raw, move.media_type)
        return
    except (NetworkError, RegistryError) as e:
        if isinstance(e, RegistryError) and e.status not in retry.RETRY_STATUSES:
            raise
        failed = e
    finally:
        retry.GUARD.reset(token)
    if await _current(move.store, move.repo, move.tag) != move.digest:
        raise failed
    log.info("tag_put_answer_lost", tag=move.name, reason=str(failed))


def _check(move: TagMove, first: Digest | None, now: Digest | None, moved: list[str]) -> None:
    if now == move.digest or now == first:
        return
    done = f"already moved: {', '.join(moved)}" if moved else "no tag moved"
    raise ConcurrentUpdate(
        f"{move.name}: another writer moved the tag while this run was working "
        f"({_show(first)} when first read, {_show(now)} now); not overwritten ({done}); "
        "inspect it and re-run to replace it"
    )


def _show(digest: Digest | None) -> str:
    return str(digest) if digest is not None else "absent"


async def _current(store: Store, repo: str, tag: str) -> Digest | None:
    found = await store.head_manifest(repo, tag)
    return found.digest if found is not None else None
