"""Local drafts of manifest lists, as `docker manifest create` keeps them.

One JSON file per list under `$XDG_DATA_HOME/manifesto/lists/`. Writes go to a temp file and
are renamed into place, and every read-modify-write holds an exclusive lock on the list's lock
file, so two processes amending the same list cannot lose each other's entries. A lock file
lives no longer than its draft (see `DraftStore.locked`). Each entry keeps the child manifest's
exact bytes, so a push sends what `create` saw. (Here, not in store/: a draft is the list
engine's own state, made of lists.entry.Entry, not a place content is copied between.)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

from manifesto.errors import ContentError, ManifestoError, NotFound, UsageError
from manifesto.fileio import write_atomic
from manifesto.lists.entry import Entry
from manifesto.oci.reference import LayoutReference, Reference, parse_location

VERSION = 1
_LOCK_ATTEMPTS = 1000  # a retry means another process removed the lock file meanwhile


@dataclass(frozen=True)
class Draft:
    """A manifest list being assembled locally."""

    name: Reference
    entries: tuple[Entry, ...] = ()
    format: str | None = None  # "oci" | "docker" | None (decide at push)
    annotations: dict[str, str] = field(default_factory=dict)
    insecure: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "name": str(self.name),
            "format": self.format,
            "annotations": self.annotations,
            "insecure": self.insecure,
            "entries": [e.to_draft() for e in self.entries],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Draft:
        if data.get("version") != VERSION:
            raise ContentError(f"draft format {data.get('version')!r} is not supported")
        return cls(
            name=Reference.parse(data["name"]),
            entries=tuple(Entry.from_draft(e) for e in data["entries"]),
            format=data.get("format"),
            annotations=dict(data.get("annotations") or {}),
            insecure=bool(data.get("insecure")),
        )

    def with_entries(self, entries: list[Entry] | tuple[Entry, ...]) -> Draft:
        return replace(self, entries=tuple(entries))


def default_root() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "manifesto" / "lists"


class DraftStore:
    """Drafts on disk, keyed by the list's full reference."""

    def __init__(self, root: Path | None = None):
        self.root = root or default_root()

    def _path(self, name: Reference) -> Path:
        # `reg/list` and `reg/list:latest` are one list, as in docker. Readable file names,
        # hashed when quoting would pass the 255-byte name limit.
        if name.tag is None and name.digest is None:
            name = name.with_tag("latest")
        stem = quote(str(name), safe="")
        if len(stem) > 200:
            stem = "sha256-" + hashlib.sha256(str(name).encode()).hexdigest()
        return self.root / (stem + ".json")

    def exists(self, name: Reference) -> bool:
        return self._path(name).exists()

    def load(self, name: Reference) -> Draft:
        path = self._path(name)
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            raise NotFound(f"no local manifest list {name.familiar} (create it with `manifesto create`)") from None
        except ValueError as e:
            raise ContentError(f"local manifest list {name.familiar} is corrupt: {e}") from None
        try:
            return Draft.from_json(data)
        except (KeyError, TypeError, AttributeError, ValueError) as e:  # valid JSON, wrong shape
            raise ContentError(f"local manifest list {name.familiar} is corrupt: {type(e).__name__}: {e}") from None

    def save(self, draft: Draft) -> None:
        write_atomic(self._path(draft.name), json.dumps(draft.to_json(), indent=1).encode())

    def delete(self, name: Reference) -> None:
        """Remove a draft under its lock; leaving the lock then removes the lock file too."""
        with self.locked(name):
            try:
                self._path(name).unlink()
            except FileNotFoundError:
                raise NotFound(f"no local manifest list {name.familiar}") from None

    def names(self) -> list[Reference]:
        if not self.root.is_dir():
            return []
        names = []
        for path in self.root.glob("*.json"):
            if path.name.startswith("."):
                continue
            try:
                names.append(Reference.parse(json.loads(path.read_bytes())["name"]))
            except (OSError, ValueError, KeyError, TypeError, UsageError):
                continue  # a corrupt draft is reported when it is loaded, not when listing
        return sorted(names, key=str)

    @contextlib.contextmanager
    def locked(self, name: Reference) -> Iterator[None]:
        """Hold the list's exclusive lock across a read-modify-write.

        Leaving the lock with no draft on disk (after `rm` or `push --purge`, or on a list that
        does not exist) unlinks the lock file while still holding it, so no lock file outlives
        its draft. Waiters stay safe because a lock counts only while the path still names the
        inode locked: a process that was waiting on the unlinked file sees it is gone and locks
        the path afresh, so two holders never hold locks on different files at once.
        """
        path = self._path(name)
        lock = path.with_suffix(".lock")
        for _ in range(_LOCK_ATTEMPTS):
            lock.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if not _names(lock, fd):
                    continue  # the holder before us removed it: lock the file there now
                try:
                    yield
                finally:
                    if not path.exists():
                        lock.unlink(missing_ok=True)
                return
            finally:
                os.close(fd)  # releases the lock
        raise ManifestoError(f"cannot lock the local manifest list {name.familiar}: its lock file keeps being removed")


def _names(path: Path, fd: int) -> bool:
    """True if `path` still names the open file `fd`."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def source_location(text: str) -> Reference | LayoutReference:
    """A SOURCE of a list as given to a verb: a registry reference, or an OCI layout by its
    absolute path.

    Why absolute: a draft outlives the process that made it, and `push` (or `annotate`) may run
    from another directory; the layout it names must stay the one `create` read.
    """
    where = parse_location(text)
    if isinstance(where, LayoutReference):
        return replace(where, path=os.path.abspath(where.path))
    return where


def _place(ref: Reference | LayoutReference) -> tuple[str, str]:
    """Where an entry's source lives: a registry repository or a layout directory."""
    return ("oci", ref.path) if isinstance(ref, LayoutReference) else ("registry", ref.name)


def find_entry(draft: Draft, source: Reference | LayoutReference) -> int:
    """Index of the entry added as `source` (same repository or layout and tag, or that digest)."""

    def matches(entry: Entry) -> bool:
        if entry.source is None or _place(entry.source) != _place(source):
            return False
        if source.digest:
            return entry.descriptor.digest == source.digest
        return entry.source.digest is None and (entry.source.tag or "latest") == (source.tag or "latest")

    for i, entry in enumerate(draft.entries):
        if matches(entry):
            return i
    raise UsageError(f"{source.familiar} is not in the list {draft.name.familiar}")
