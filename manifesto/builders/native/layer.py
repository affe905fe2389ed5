"""One COPY/ADD as one image layer: a deterministic tar, gzipped and hashed in one pass.

Why: a native build writes layers itself, and the same inputs must give the same digest on any
machine. So the tar is built from metadata alone, never from the host: entries sorted by path,
every parent directory of the destination present, owner 0:0 unless `--chown`, no user or group
names, no xattrs, modes as in the context (`--chmod` applied to files and directories), symlinks
kept as symlinks, files hard-linked to each other in the context kept as hard links (the first in
sorted order carries the content), mtimes clamped to SOURCE_DATE_EPOCH when given. Directories
the step creates (the destination and its parents) get mode 0755 and the step's owner, as docker
creates them; their mtime is the epoch, or without one the newest mtime in the layer. Over a
base nobody has unpacked they get no entry at all (`base_unknown`): one of them may be the
base's (/tmp 1777), which the layer must not rewrite. The tar is
POSIX pax (ustar headers, a pax record only for what ustar cannot hold, such as a long path),
so its bytes depend on nothing else; the mode field holds permission bits only, as POSIX says
(Go's tar writers, docker's and buildah's, also put the file-type bits there). The gzip stream
has a fixed header (no name, mtime 0, OS "unknown") and level 1. Tar, gzip and both sha256 are
computed while streaming to one file: memory stays flat whatever the size of the files copied.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import os
import posixpath
import shutil
import stat
import struct
import tarfile
import tempfile
import threading
import zlib
from collections.abc import Callable, Collection
from contextlib import ExitStack
from functools import partial
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

from manifesto.builders.native.context import Context, Source
from manifesto.builders.native.steps import CopyStep
from manifesto.errors import BuildError, UsageError
from manifesto.oci import mediatype
from manifesto.oci.digest import Digest

GZIP_LEVEL = 1  # fastest, as go-containerregistry writes layers: ~4x the speed of 6 for ~10% more bytes
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x04\xff"  # deflate, no name, mtime 0, XFL fastest, OS unknown
_CHUNK = 1 << 20
_DIR_MODE = 0o755


@dataclass(frozen=True)
class Layer:
    """A written layer: blob `digest` (of the gzip bytes), `diff_id` (of the tar), gzip `size`
    and the file holding it (named by the digest's hex, so a layout's blobs/sha256 can hold it)."""

    digest: Digest
    diff_id: Digest
    size: int
    path: Path
    media_type: str = mediatype.OCI_LAYER_GZIP
    into_dir: bool = False  # the step's destination is a directory once the layer is applied


@dataclass(frozen=True, slots=True)
class Entry:
    """One tar entry to write: its image path (no leading "/") and header facts; `content` opens
    a regular file's bytes; `link_key` groups entries that are hard links to one file."""

    path: str
    kind: bytes
    mode: int
    uid: int = 0
    gid: int = 0
    mtime: int = 0
    size: int = 0
    linkname: str = ""
    devmajor: int = 0
    devminor: int = 0
    content: Callable[[], IO[bytes]] | None = None
    link_key: object = None


class _Sink:
    """A write-only file for tarfile: hashes the tar, deflates it into a gzip member, hashes
    that and writes it out, all as the bytes pass."""

    def __init__(self, out: IO[bytes], stop: threading.Event | None = None):
        self._out = out
        self._stop = stop
        self._tar_sha = hashlib.sha256()
        self._gz_sha = hashlib.sha256()
        self._deflate = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
        self._crc = 0
        self._tar_size = 0
        self.size = 0
        self._emit(_GZIP_HEADER)

    def _emit(self, data: bytes) -> None:
        if data:
            self._gz_sha.update(data)
            self._out.write(data)
            self.size += len(data)

    def write(self, data: bytes) -> int:
        _check(self._stop)
        self._tar_sha.update(data)
        self._crc = zlib.crc32(data, self._crc)
        self._tar_size += len(data)
        self._emit(self._deflate.compress(data))
        return len(data)

    def tell(self) -> int:
        return self._tar_size

    def finish(self) -> tuple[Digest, Digest]:
        """End the gzip member; return (blob digest, diff_id)."""
        self._emit(self._deflate.flush())
        self._emit(struct.pack("<II", self._crc & 0xFFFFFFFF, self._tar_size & 0xFFFFFFFF))
        return Digest("sha256", self._gz_sha.hexdigest()), Digest("sha256", self._tar_sha.hexdigest())


def write_layer(
    context: Context,
    step: CopyStep,
    out_dir: Path,
    epoch: int | None,
    *,
    existing_dirs: Collection[str] = (),
    base_unknown: bool = False,
    tmp_dir: Path | None = None,
    stop: threading.Event | None = None,
) -> Layer:
    """Write the layer of one COPY/ADD into `out_dir` and return it.

    `epoch` is SOURCE_DATE_EPOCH (mtimes clamped to it), or None. `existing_dirs` are absolute
    image paths already directories below this layer (from the base or earlier steps, when the
    builder knows them): a file copied to such a path goes inside it, as docker does, and the
    layer leaves their mode and owner alone. `base_unknown` says the layers below hold a
    filesystem nobody has looked at (a base image's): then the layer holds no entry for a
    directory the step only implies (the destination, its parents, an archive's missing
    parents), so whatever the base has there keeps its mode and owner. A file copied to a
    destination without a trailing "/" that is not in `existing_dirs` is written AT that path,
    docker's documented rule for a destination that does not exist. Temporary files go to `tmp_dir` (default `out_dir`), on the
    same filesystem as `out_dir`; the finished layer is renamed into `out_dir`. Setting `stop`
    interrupts the write (BuildError) within one entry or one chunk. Raise UsageError naming
    the step's `file:line`.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tmp_dir) if tmp_dir is not None else out_dir
    tmp.mkdir(parents=True, exist_ok=True)
    existing = {posixpath.normpath(d).strip("/") for d in existing_dirs}
    with ExitStack() as stack:
        entries, into_dir = _plan(context, step, epoch, existing, tmp, stack, base_unknown=base_unknown)
        return replace(_write(entries, out_dir, step.where, tmp, stop), into_dir=into_dir)


def write_dirs_layer(
    path: str,
    owner: tuple[int, int] | None,
    out_dir: Path,
    mtime: int,
    *,
    where: object = "",
    existing_dirs: Collection[str] = (),
    tmp_dir: Path | None = None,
) -> Layer:
    """Write a layer holding only the directory `path` and its parents, into `out_dir`.

    Why: WORKDIR creates its directory (buildkit and buildah both do), with mode 0755 and the
    numeric USER in force as owner (0:0 without one). The entries are written exactly as
    write_layer writes them (sorted, pax, fixed gzip header), so the same path, owner and
    `mtime` (SOURCE_DATE_EPOCH when set) give the same digest. Directories in `existing_dirs`
    are left out (their mode and owner stay as the layers below have them); when every one
    is, the layer is an empty tar, as docker writes for a WORKDIR that already exists.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    existing = {posixpath.normpath(d).strip("/") for d in existing_dirs}
    target = posixpath.normpath("/" + path).strip("/")
    uid, gid = owner or (0, 0)
    wanted = [*_parents(target), target] if target else []
    entries = [Entry(d, tarfile.DIRTYPE, _DIR_MODE, uid, gid, mtime) for d in wanted if d not in existing]
    tmp = Path(tmp_dir) if tmp_dir is not None else out_dir
    tmp.mkdir(parents=True, exist_ok=True)
    return replace(_write(sorted(entries, key=lambda e: e.path.encode()), out_dir, where, tmp), into_dir=True)


def _check(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise BuildError("layer write cancelled")


def _write(entries: list[Entry], out_dir: Path, where: object, tmp_dir: Path, stop: threading.Event | None = None) -> Layer:
    """Stream `entries` as a tar through gzip and both hashes into a temporary file in
    `tmp_dir`, renamed to `<digest hex>` in `out_dir` once complete (so `out_dir`, a layout's
    blobs/sha256, never holds a partial or misnamed file, even after a crash)."""
    fd, tmp_name = tempfile.mkstemp(dir=tmp_dir, prefix=".layer-", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            sink = _Sink(fh, stop)
            tar = tarfile.TarFile(fileobj=sink, mode="w", format=tarfile.PAX_FORMAT, copybufsize=_CHUNK)  # type: ignore[arg-type]
            with tar:
                for entry in entries:
                    _check(stop)
                    _add(tar, entry, where)
                    tar.members.clear()  # TarFile keeps every header it wrote; nothing here reads them
            digest, diff_id = sink.finish()
        final = out_dir / digest.hex
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return Layer(digest, diff_id, sink.size, final)


def _add(tar: tarfile.TarFile, e: Entry, where: object) -> None:
    """Append one entry to the tar, with only the header fields that carry meaning."""
    info = tarfile.TarInfo(e.path)
    info.type, info.mode, info.uid, info.gid = e.kind, e.mode, e.uid, e.gid
    info.uname = info.gname = ""
    info.mtime, info.linkname = e.mtime, e.linkname
    info.devmajor, info.devminor = e.devmajor, e.devminor
    if e.kind == tarfile.REGTYPE and e.content is not None:
        info.size = e.size
        try:
            with e.content() as f:
                tar.addfile(info, f)
        except OSError as err:
            raise UsageError(f"{where}: cannot read {e.path!r} while writing the layer: {err}") from None
    else:
        tar.addfile(info)


def _plan(
    context: Context,
    step: CopyStep,
    epoch: int | None,
    existing: set[str],
    scratch: Path,
    stack: ExitStack,
    *,
    base_unknown: bool = False,
) -> tuple[list[Entry], bool]:
    """Every entry of the layer, sorted, hard links resolved, implied directories added (unless
    `base_unknown`); and whether the destination is a directory after the step."""
    sources = context.sources(step)
    uid, gid = step.chown or (0, 0)
    dest = posixpath.normpath("/" + step.dest).strip("/")
    dest_is_dir = step.dest.endswith("/") or step.dest.endswith("/.") or not dest or dest in existing
    into_dir = dest_is_dir
    made_dirs: set[str] = set()  # directories the step creates itself: mode 0755, its owner
    root_dirs: set[str] = set()  # directories an archive implies: mode 0755, owner 0:0
    entries: dict[str, Entry] = {}

    def clamp(mtime_ns: int) -> int:
        t = (mtime_ns + 500_000_000) // 1_000_000_000  # to the nearest second, as Go's tar writers
        return min(t, epoch) if epoch is not None else t

    def put(entry: Entry) -> None:
        entries[entry.path] = entry

    for src in sources:
        if src.is_dir:
            into_dir = True
            made_dirs.add(dest)
            for rel, target, st in _walk(context, src.rel, dest):
                put(_from_stat(context, rel, target, st, step, uid, gid, clamp))
            continue
        archive = _open_archive(context, src, scratch, stack) if step.add else None
        if archive is not None:
            into_dir = True
            made_dirs.add(dest)
            for entry in _archive_entries(archive, dest, step, clamp, root_dirs):
                put(entry)
            continue
        name = posixpath.basename(src.match) or posixpath.basename(src.rel)
        target = posixpath.join(dest, name) if dest_is_dir else dest
        if not target:
            raise UsageError(f"{step.where}: cannot copy a file onto '/'")
        if dest_is_dir:
            made_dirs.add(dest)
        put(_from_stat(context, src.rel, target, src.st, step, uid, gid, clamp))

    newest = max((e.mtime for e in entries.values()), default=0)
    dir_mtime = epoch if epoch is not None else newest
    for path in list(entries):
        made_dirs.update(_parents(path))
    for path in sorted(made_dirs):
        if not path or path in existing:
            continue
        have = entries.get(path)
        if have is None:
            if base_unknown:
                continue  # perhaps the base's (/tmp): left as it is there, or made 0755 0:0 by the applier
            owner = (0, 0) if path in root_dirs else (uid, gid)
            entries[path] = Entry(path, tarfile.DIRTYPE, _DIR_MODE, *owner, dir_mtime)
        elif have.kind != tarfile.DIRTYPE:
            raise UsageError(f"{step.where}: cannot copy into /{path}: the step also writes it as a file")
    return _link_hard(sorted(entries.values(), key=lambda e: e.path.encode())), into_dir


def _parents(path: str) -> list[str]:
    """The parent directories of an image path, outermost first."""
    parts = path.split("/")[:-1]
    return ["/".join(parts[: k + 1]) for k in range(len(parts))]


def _link_hard(entries: list[Entry]) -> list[Entry]:
    """Turn every entry after the first of a hard-link group into a link to the first."""
    first: dict[object, str] = {}
    out: list[Entry] = []
    for e in entries:
        if e.link_key is not None and e.kind == tarfile.REGTYPE:
            if e.link_key in first:
                e = replace(e, kind=tarfile.LNKTYPE, linkname=first[e.link_key], size=0, content=None)
            else:
                first[e.link_key] = e.path
        out.append(e)
    return out


def _walk(context: Context, top: str, dest: str):
    """Yield (context path, image path, lstat) under a context directory, not following
    symlinks and skipping what the ignore file excludes."""
    stack = [(top, dest)]
    while stack:
        rel_dir, dest_dir = stack.pop()
        children = []
        for name in context.listdir(rel_dir):
            rel = f"{rel_dir}/{name}" if rel_dir else name
            st = context.lstat(rel)
            if st is None or stat.S_ISSOCK(st.st_mode) or not context.present(rel, st):
                continue
            target = f"{dest_dir}/{name}" if dest_dir else name
            yield rel, target, st
            if stat.S_ISDIR(st.st_mode):
                children.append((rel, target))
        stack.extend(reversed(children))


def _from_stat(context: Context, rel: str, target: str, st: os.stat_result, step: CopyStep, uid: int, gid: int, clamp) -> Entry:
    """An entry for one context file as it is on disk."""
    mode = stat.S_IMODE(st.st_mode)
    fmt = stat.S_IFMT(st.st_mode)
    common = dict(uid=uid, gid=gid, mtime=clamp(st.st_mtime_ns))
    if fmt == stat.S_IFDIR:
        return Entry(target, tarfile.DIRTYPE, step.chmod if step.chmod is not None else mode, **common)
    if fmt == stat.S_IFLNK:
        return Entry(target, tarfile.SYMTYPE, mode, linkname=os.readlink(context.path(rel)), **common)
    if fmt == stat.S_IFREG:
        key = (st.st_dev, st.st_ino) if st.st_nlink > 1 else None
        return Entry(
            target, tarfile.REGTYPE, step.chmod if step.chmod is not None else mode, size=st.st_size,
            content=partial(open, os.fspath(context.path(rel)), "rb"), link_key=key, **common,
        )  # a partial of a str, not a closure over a Path: one Entry per file stays small
    kinds = {stat.S_IFIFO: tarfile.FIFOTYPE, stat.S_IFCHR: tarfile.CHRTYPE, stat.S_IFBLK: tarfile.BLKTYPE}
    if fmt in kinds:
        major, minor = (os.major(st.st_rdev), os.minor(st.st_rdev)) if fmt != stat.S_IFIFO else (0, 0)
        return Entry(target, kinds[fmt], mode, devmajor=major, devminor=minor, **common)
    raise UsageError(f"{step.where}: {rel!r} in the build context is not a file, directory or link")


# --- ADD of a local tar archive ------------------------------------------------------------------

_DECOMPRESS = (
    (b"\x1f\x8b", gzip.open),
    (b"BZh", bz2.open),
    (b"\xfd7zXZ\x00", lzma.open),
)


def _open_archive(context: Context, src: Source, scratch: Path, stack: ExitStack) -> tarfile.TarFile | None:
    """The source as an open tar when its content is a tar archive (plain, gzip, bzip2 or xz,
    told by its bytes, not its name, as docker does), else None (copied as a file).

    A compressed archive is first decompressed to a scratch file, so members can be read in
    sorted order without holding them in memory.
    """
    if not stat.S_ISREG(src.st.st_mode):
        return None
    path = context.path(src.rel)
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
        opener = next((o for m, o in _DECOMPRESS if magic.startswith(m)), None)
        if opener is None:
            return _tar_or_none(path, stack)
        with opener(path, "rb") as z:
            try:
                head = z.read(tarfile.BLOCKSIZE)
            except (OSError, EOFError, lzma.LZMAError):
                return None
            if not _looks_like_tar(head):
                return None
            fd, name = tempfile.mkstemp(dir=scratch, prefix=".archive-", suffix=".tar")
            stack.callback(Path(name).unlink, missing_ok=True)
            with os.fdopen(fd, "wb") as out:
                out.write(head)
                shutil.copyfileobj(z, out, _CHUNK)
    except (OSError, EOFError, lzma.LZMAError) as e:
        raise UsageError(f"cannot read archive {path}: {e}") from None
    return _tar_or_none(Path(name), stack)


def _looks_like_tar(block: bytes) -> bool:
    """True when a 512-byte block is a valid tar header (its checksum holds)."""
    if len(block) < tarfile.BLOCKSIZE:
        return False
    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def _tar_or_none(path: Path, stack: ExitStack) -> tarfile.TarFile | None:
    """Open a plain tar, or None when the file is not one."""
    try:
        with open(path, "rb") as f:
            if not _looks_like_tar(f.read(tarfile.BLOCKSIZE)):
                return None
        tar = tarfile.open(path, "r:")
    except (tarfile.TarError, OSError):
        return None
    stack.callback(tar.close)
    return tar


def _archive_entries(tar: tarfile.TarFile, dest: str, step: CopyStep, clamp, root_dirs: set[str]) -> list[Entry]:
    """The members of a tar archive re-rooted at `dest`: owners and modes as in the archive,
    mtimes clamped, later members replacing earlier ones; the parents it lacks below `dest`
    are added to `root_dirs` (made 0755 0:0, as extracting it would)."""
    verb = "ADD" if step.add else "COPY"
    out: dict[str, Entry] = {}
    try:
        members = tar.getmembers()
    except (tarfile.TarError, OSError, EOFError) as e:
        raise UsageError(f"{step.where}: {verb}: bad tar archive: {e}") from None
    for m in members:
        name = posixpath.normpath("/" + m.name).strip("/")
        if m.name.replace("\\", "/").lstrip("/").split("/")[0] == ".." or not name:
            if not name:
                continue
            raise UsageError(f"{step.where}: {verb}: archive member {m.name!r} is outside the archive")
        path = f"{dest}/{name}" if dest else name
        common = dict(uid=m.uid, gid=m.gid, mtime=clamp(int(m.mtime * 1_000_000_000)))
        mode = m.mode & 0o7777
        if m.isreg():
            entry = Entry(path, tarfile.REGTYPE, mode, size=m.size, content=_member(tar, m), link_key=(id(tar), name), **common)
        elif m.isdir():
            entry = Entry(path, tarfile.DIRTYPE, mode, **common)
        elif m.issym():
            entry = Entry(path, tarfile.SYMTYPE, mode, linkname=m.linkname, **common)
        elif m.islnk():
            target = posixpath.normpath("/" + m.linkname).strip("/")
            first = out.get(f"{dest}/{target}" if dest else target)
            if first is None or first.kind != tarfile.REGTYPE:
                raise UsageError(f"{step.where}: {verb}: archive hard link {m.name!r} to missing {m.linkname!r}")
            entry = replace(first, path=path)
        elif m.ischr() or m.isblk() or m.isfifo():
            entry = Entry(path, m.type, mode, devmajor=m.devmajor, devminor=m.devminor, **common)
        else:
            continue
        out[path] = entry
    for path in list(out):
        for parent in _parents(path):
            if parent not in out and (not dest or parent.startswith(dest + "/")):
                root_dirs.add(parent)
    return list(out.values())


def _member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> Callable[[], IO[bytes]]:
    """An opener of one archive member's bytes."""

    def open_member() -> IO[bytes]:
        f = tar.extractfile(member)
        if f is None:
            raise OSError(f"archive member {member.name!r} has no data")
        return f

    return open_member
