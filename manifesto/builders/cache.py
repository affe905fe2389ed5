"""The persistent layer stores buildah and podman build in: one per builder and per platform.

Why one store per platform: buildah 1.28 with `--layers` matches cached layers by instruction
and parent, not by platform, so in one store an s390x build reuses the layers (and config) of
an arm64 build of the same Dockerfile. A store per platform cannot mix them. Why persistent: a
republish with an unchanged context then re-runs no step, and a change re-runs only the steps
after it. Why a lock: two manifesto runs on one machine building the same platform would
otherwise write one c/storage root at once; an flock on the store serializes them (and lets
`manifesto cache prune` skip a store that is in use instead of deleting it under a build).
Each store also keeps its last image as an OCI layout beside the key of that build's inputs
(buildkey.py), so an unchanged build runs no builder at all; and, for buildah, a blob cache
(`prepare_blob_cache`): the compressed copy of every layer it pulled, so exporting an image
whose base is unchanged does not compress those layers again. prune empties those too.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from manifesto.errors import BuildError
from manifesto.oci.platform import Platform, normalized

LOCK_FILE = "lock"
POLL = 0.2  # seconds between tries while another run holds a store
TOOLS = ("buildah", "podman")  # the builders that keep a layer store here
BLOB_CACHE = "blobs"  # in a store's directory: the builder's blob cache (prepare_blob_cache)
# Beside a tool's driver directories (storage.py): the storage driver verdict, the lock its
# probe runs under, and the prefix of the probe's throw-away store.
DRIVER_VERDICT = "driver.json"
DRIVER_LOCK = "driver.lock"
PROBE_PREFIX = ".probe-"
MNT_DETACH = 2  # umount2 flag: detach now, free once no longer busy


def cache_home() -> Path:
    """`$XDG_CACHE_HOME/manifesto` (or ~/.cache/manifesto)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "manifesto"


def platform_dir(platform: Platform) -> str:
    """A store's directory name: the containerd-normalized platform, e.g. linux-arm64-v8."""
    return str(normalized(platform)).replace("/", "-")


@contextmanager
def store_lock(
    store: Path,
    *,
    wait: bool = True,
    cancelled: Callable[[], bool] = lambda: False,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[bool]:
    """Hold the exclusive lock of the store at `store` (created if missing).

    Yields True when held; with `wait=False` yields False at once when another process holds it.
    Waiting polls (never a blocking flock a signal cannot end): `on_wait` hears once that another
    run holds the store, and `cancelled()` turning true ends the wait with BuildError, so Ctrl-C
    and SIGTERM stop a build that is still queued behind another run's.
    """
    try:
        store.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BuildError(f"cannot lock the build cache {store}: {e.strerror or e}") from None
    with file_lock(store / LOCK_FILE, f"the build cache {store}", wait=wait, cancelled=cancelled, on_wait=on_wait) as held:
        yield held


@contextmanager
def file_lock(
    path: Path,
    what: str,
    *,
    wait: bool = True,
    cancelled: Callable[[], bool] = lambda: False,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[bool]:
    """Hold the exclusive flock of the file at `path` (created if missing), which guards `what`.

    store_lock's machinery for any lock file; its parent directory must exist.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as e:
        raise BuildError(f"cannot lock {what}: {e.strerror or e}") from None
    try:
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if not wait:
                yield False
                return
            if cancelled():
                raise BuildError(f"cancelled while waiting for {what}")
            if on_wait is not None and not told:
                on_wait(f"waiting for {what}: another run is building there")
                told = True
            time.sleep(POLL)
        yield True
    finally:
        os.close(fd)  # closing drops the lock


def prepare_blob_cache(store: Path, cache: Path, *, layers: Path) -> None:
    """Create the blob cache directory `cache` of the store at `store`, whose layers are at
    `layers`; call it holding the store's lock.

    A blob cache (buildah's `--blob-cache`) keeps the compressed bytes of each layer pulled
    into the store under their digest, and its uncompressed bytes with a note naming the
    compressed digest, so a push takes those bytes instead of compressing the layer again (it
    also keeps an uncompressed copy of each committed layer: disk, not time). Its entries are
    named by content digest and checked against it on every copy, so one is never stale,
    whatever was rebuilt since. A store whose layers exist without a blob cache was filled
    before it had one: its pulled layers would be compressed again on export, giving other
    bytes (and digests) than a fresh store, so it is emptied first and builds once from nothing.
    """
    if not cache.is_dir():
        try:
            if layers.exists():
                _empty(store, keep=LOCK_FILE)
            cache.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise BuildError(f"cannot create the blob cache {cache}: {e.strerror or e}") from None


@dataclass(frozen=True)
class Pruned:
    """What `prune` did with one store: freed bytes, or skipped because a build holds it."""

    path: Path
    freed: int
    busy: bool = False


def stores(root: Path | None = None) -> tuple[Path, ...]:
    """The driver directories under the cache (`<tool>/<driver>`): each holds one store per
    platform (`<platform>/`, with its lock) and the store `check` opens."""
    root = root or cache_home()
    found: list[Path] = []
    for tool in TOOLS:
        base = root / tool
        if base.is_dir():
            found += sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(PROBE_PREFIX))
    return tuple(found)


def prune(root: Path | None = None) -> tuple[Pruned, ...]:
    """Empty every layer store under the cache, each under its lock; report what was freed.

    A store that a running build holds is left alone (its build would fail half-way). Lock
    files are never deleted: a build waiting on one must lock the file the next build locks.
    Each driver directory's other contents go only while every one of its store locks is held.
    Mounts a killed overlay build left in a store are detached first (they would keep their
    directories). Each tool's storage driver verdict is forgotten too (storage.py), so the next
    build probes again: after the filesystem or its setup changed, this is how to re-probe.
    """
    root = root or cache_home()
    out: list[Pruned] = []
    for driver_dir in stores(root):
        with ExitStack() as held:
            busy = False
            for store in sorted(p for p in driver_dir.iterdir() if p.is_dir() and (p / LOCK_FILE).exists()):
                if not held.enter_context(store_lock(store, wait=False)):
                    busy = True
                    out.append(Pruned(store, 0, busy=True))
                    continue
                unmount_under(store)
                out.append(Pruned(store, _empty(store, keep=LOCK_FILE)))
            if not busy:
                others = [p for p in driver_dir.iterdir() if not (p.is_dir() and (p / LOCK_FILE).exists())]
                for path in others:
                    unmount_under(path)
                freed = sum(disk_usage(p) for p in others)
                for path in others:
                    _remove(path)
                if freed:
                    out.append(Pruned(driver_dir, freed))
    for tool in TOOLS:
        _forget_driver(root / tool)
    return tuple(out)


def _forget_driver(base: Path) -> None:
    """Remove the storage driver verdict under the tool directory `base`, and what a killed
    probe left, unless a probe is running there (it would write its verdict afterwards)."""
    if not base.is_dir():
        return
    with file_lock(base / DRIVER_LOCK, f"the storage probe in {base}", wait=False) as held:
        if held:
            (base / DRIVER_VERDICT).unlink(missing_ok=True)
            for path in base.glob(PROBE_PREFIX + "*"):
                unmount_under(path)
                _remove(path)


def unmount_under(path: Path) -> None:
    """Detach every mount below `path` (not one at `path` itself: a volume mounted there is
    the user's), deepest first.

    Why: buildah and podman (as root) mount each overlay container and bind-mount the store's
    `overlay` directory onto itself, and unmount them when done; a process killed half-way
    leaves them, and their directories cannot be removed while mounted. Needs root (a user
    without it has no such mounts: a rootless store's live in the tool's own namespace).
    """
    try:
        text = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return
    base = os.path.realpath(path)
    points = set()
    for line in text.splitlines():
        fields = line.split()
        if len(fields) > 4:
            point = _unescape(fields[4])
            if point.startswith(base.rstrip("/") + "/"):
                points.add(point)
    if not points:
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for point in sorted(points, key=len, reverse=True):
        libc.umount2(os.fsencode(point), MNT_DETACH)  # failing (not root, gone already): nothing to do


def _unescape(field: str) -> str:
    """A mountinfo path: space, tab, newline and backslash are written as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), field)


def _empty(store: Path, *, keep: str) -> int:
    """Remove everything in `store` but `keep`; the bytes freed."""
    freed = 0
    for path in store.iterdir():
        if path.name == keep:
            continue
        freed += disk_usage(path)
        _remove(path)
    return freed


def disk_usage(path: Path) -> int:
    """Bytes the files under `path` (or `path` itself, a file) take (each hard-linked file
    once; symlinks not followed)."""
    if not path.is_dir() or path.is_symlink():
        try:
            st = path.lstat()
        except OSError:
            return 0
        return st.st_blocks * 512 if hasattr(st, "st_blocks") else st.st_size
    seen: set[tuple[int, int]] = set()
    total = 0
    for top, dirs, files in os.walk(path):
        for name in files + dirs:
            try:
                st = os.lstat(os.path.join(top, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512 if hasattr(st, "st_blocks") else st.st_size
    return total


def _remove(path: Path) -> None:
    """rmtree (a file: unlink), making read-only directories (left by some images' layers)
    writable first."""
    if not path.is_dir() or path.is_symlink():
        path.unlink(missing_ok=True)
        return

    def retry(func, name, _exc) -> None:  # type: ignore[no-untyped-def]
        try:
            os.chmod(os.path.dirname(name), 0o700)
            func(name)
        except OSError:
            pass

    shutil.rmtree(path, onerror=retry)
