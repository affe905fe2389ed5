"""The build key: when a platform's last image may be taken from its cache store unbuilt.

Why: a republish with nothing changed should start no builder process at all: one `buildah
build` costs about a second per platform even when every step is a cache hit. The key is a
digest over everything the image can depend on, and a build whose key equals the one saved
beside its store's last image (`save`, under the store's lock) reuses that image as it is:

- the build command line without its temporary paths (platform, format, build args with
  TARGET* and SOURCE_DATE_EPOCH, --timestamp, labels, target, the registry cache, --layers);
- the builder: its name, storage driver and isolation, and the executable's resolved path,
  size and modification time (an upgrade changes them);
- the Dockerfile's bytes and the build context as the build sees it (`context_digest`);
- the digest each image the Dockerfile pulls resolves to now: buildah pulls a newer base by
  default ("ifnewer"), so a base tag that moved changes the output; a short name is the image
  registries.conf makes of it (access.ShortNames);
- the settings buildah reads besides its command line (BUILDAH_*, CONTAINERS_* and STORAGE_*
  variables, containers.conf files) and manifesto's own version (it post-processes the export).

Anything that cannot be had (a pulled image that cannot be resolved, a short name registries.conf
may send elsewhere, a builder not found) means no key, and the build runs. So does an input the
key cannot hold (`unkeyable`): an ADD of a URL or git repository, or an ADD source named by a
variable (fetched again by every build, which compares what it gets), and a RUN --mount of a type
buildah 1.28 does not know. The key is computed again once the build has run and saved only when
it is the same: a context file changed while buildah read it leaves no key naming its old bytes.
`--no-cache` never reuses, but saves the key of its build.
The last image itself is an OCI layout in the store (EXPORT_DIR), copied out by
copy_layout_image.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import stat
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from manifesto import tasks
from manifesto.builders.native.context import IGNORE_FILES, Context, Ignore
from manifesto.errors import ContentError, ManifestoError, UsageError
from manifesto.log import get_logger
from manifesto.oci import mediatype
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.manifest import ImageManifest
from manifesto.oci.reference import Reference
from manifesto.store.layout import LayoutStore

log = get_logger("manifesto.builders")

KEY_VERSION = 1
KEY_FILE = "image.key"  # in the store's directory: the key of the image in EXPORT_DIR
EXPORT_DIR = "image"  # in the store's directory: an OCI layout holding the last image as EXPORT_TAG
EXPORT_TAG = "latest"
CHUNK = 1 << 20


def build_key(parts: Mapping[str, object]) -> str:
    """sha256 over `parts` (JSON-serializable) as canonical JSON, with the key's version."""
    doc = json.dumps({"version": KEY_VERSION, **parts}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(doc.encode()).hexdigest()


_REMOTE = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*://|git@)|\$")
KNOWN_MOUNTS = frozenset({"bind", "cache", "tmpfs", "secret", "ssh"})
SETTINGS_PREFIXES = ("BUILDAH_", "CONTAINERS_", "STORAGE_", "SOURCE_DATE_EPOCH")
RACY_NS = 2_000_000_000  # a file changed this recently may change again within one timestamp tick


def unkeyable(text: str) -> list[str]:
    """The steps of a Dockerfile whose input no key can hold (`line N: text`), in order.

    An ADD of a URL or git repository reads what the remote serves at build time (buildah
    fetches it on every build and compares it with the cached step), and an ADD source with a
    variable in it may expand to one. A RUN --mount of a type buildah 1.28 does not know may
    read anything. A Dockerfile the parser rejects has none: pulled_images refuses it first.
    """
    import dockerfile  # loaded only when building: it starts a Go runtime

    try:
        commands = dockerfile.parse_string(text)
    except dockerfile.GoParseError:
        return []
    found = []
    for command in commands:
        keyword = command.cmd.upper()
        if keyword == "ADD" and any(_REMOTE.search(source) for source in command.value[:-1]):
            found.append(f"line {command.start_line}: {command.original}")
        elif keyword == "RUN":
            for flag in command.flags:
                if not flag.lower().startswith("--mount="):
                    continue
                fields = dict(f.partition("=")[::2] for f in flag[len("--mount=") :].split(","))
                if fields.get("type", "bind").lower() not in KNOWN_MOUNTS:
                    found.append(f"line {command.start_line}: {command.original}")
                    break
    return found


def builder_settings(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """What buildah reads besides its command line that can change an image: its environment
    variables (BUILDAH_FORMAT, BUILDAH_LAYERS, CONTAINERS_CONF, STORAGE_OPTS...) and the
    content digest of each containers.conf file (default environment, annotations...)."""
    environ = os.environ if environ is None else environ
    out = {f"env:{k}": v for k, v in sorted(environ.items()) if k.startswith(SETTINGS_PREFIXES)}
    files = [Path("/usr/share/containers/containers.conf"), Path("/etc/containers/containers.conf")]
    dirs = [Path("/usr/share/containers/containers.conf.d"), Path("/etc/containers/containers.conf.d")]
    if environ.get("HOME"):
        user = Path(environ["HOME"]) / ".config" / "containers"
        files.append(user / "containers.conf")
        dirs.append(user / "containers.conf.d")
    if environ.get("CONTAINERS_CONF"):
        files.append(Path(environ["CONTAINERS_CONF"]))
    for directory in dirs:
        files += sorted(directory.glob("*.conf")) if directory.is_dir() else []
    for path in files:
        try:
            out[f"file:{path}"] = _file_digest(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
    return out


def own_version() -> str:
    """manifesto's installed version (its post-processing of an export may change with it)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("manifesto-oci")
    except PackageNotFoundError:
        return "unknown"


def tool_identity(executable: str) -> str | None:
    """`path size mtime_ns` of the executable `executable` names, None when it is not found."""
    found = shutil.which(executable)
    if found is None:
        return None
    path = os.path.realpath(found)
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{path} {st.st_size} {st.st_mtime_ns}"


def context_digest(context: Path, dockerfile: Path, memo: dict[tuple[int, ...], str] | None = None) -> str:
    """sha256 over the build context the builder sees: every path an ignore file leaves
    (native/context.py's rules, the ignore files themselves always included), with its type,
    permission bits, owner, extended attributes and content (a symlink: its target; a file
    with several links: the first path of the context it shares them with, as a layer's tar
    records a hard link), in byte order of the paths.

    buildah 1.28 takes the first of `<Dockerfile>.containerignore`, `<Dockerfile>.dockerignore`,
    `.containerignore` and `.dockerignore` (checked), BuildKit only the `.dockerignore` ones: a
    path is left out only when every ignore file there leaves it out, so whichever one a builder
    picks, each path it sees is in the key.

    Modification times are left out: buildah's layer cache ignores them too (a touched file
    reuses the cached step, so the image is the same). `memo` keeps each file's content digest
    by its identity and times (device, inode, size, mtime, ctime) for the length of a run: the
    platforms of a publish share one context, which is then read once. A file changed in the
    last RACY_NS is read each time: a rewrite within the same coarse kernel timestamp tick keeps
    its times (the "racily clean" case git guards against too).
    """
    ctx = Context.load(context)
    names = (f"{dockerfile}.containerignore", f"{dockerfile}.dockerignore", *(str(ctx.root / n) for n in IGNORE_FILES))
    h = hashlib.sha256()
    for name in names:
        _add_file(h, f"ignore:{name}", Path(name))
    views = [Context(ctx.root, ignore) for ignore in _ignores(names)] or [ctx]
    links: dict[tuple[int, int], str] = {}

    def walk(rel: str) -> None:
        for name in ctx.listdir(rel):
            sub = f"{rel}/{name}" if rel else name
            st = ctx.lstat(sub)
            if st is None or not any(view.present(sub, st) for view in views):
                continue
            kind, mode = stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode)
            h.update(f"\0{sub}\0{kind}:{mode:o}:{st.st_uid}:{st.st_gid}\0".encode())
            h.update(_xattrs(ctx.path(sub)))
            if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
                h.update(f"link:{links.setdefault((st.st_dev, st.st_ino), sub)}\0".encode())
            if stat.S_ISDIR(st.st_mode):
                walk(sub)
            elif stat.S_ISLNK(st.st_mode):
                h.update(os.fsencode(os.readlink(ctx.path(sub))))
            elif stat.S_ISREG(st.st_mode):
                ident = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                known = memo.get(ident) if memo is not None else None
                if known is None:
                    known = _file_digest(ctx.path(sub))
                    if memo is not None and time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > RACY_NS:
                        memo[ident] = known
                h.update(f"\0{sub}\0{known}\0".encode())

    walk("")
    return h.hexdigest()


def _ignores(names: Iterable[str]) -> list[Ignore]:
    """The rules of each ignore file of `names` that exists."""
    found = []
    for name in names:
        try:
            text = Path(name).read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            continue
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"cannot read {name}: {e}") from None
        found.append(Ignore.parse(text, Path(name).name))
    return found


def _xattrs(path: Path) -> bytes:
    """A path's extended attributes (names and values, sorted) as bytes; none where the
    filesystem has none."""
    try:
        names = sorted(os.listxattr(path, follow_symlinks=False))
        pairs = [(n, os.getxattr(path, n, follow_symlinks=False)) for n in names]
    except OSError:
        return b""
    return b"".join(b"x\0" + n.encode() + b"\0" + hashlib.sha256(v).digest() for n, v in pairs)


def _add_file(h: Any, label: str, path: Path) -> None:
    """A file's label and content digest (or "absent") into `h`."""
    try:
        digest = _file_digest(path)
    except (FileNotFoundError, NotADirectoryError):
        digest = "absent"
    h.update(f"\0{label}\0{digest}\0".encode())


def _file_digest(path: Path) -> str:
    """The sha256 of a file's content, hex."""
    inner = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            inner.update(chunk)
    return inner.hexdigest()


class PulledDigests:
    """What each pulled image's reference resolves to, asked of its registry about once a run.

    One instance serves a builder from any build thread: every platform of a publish pulls the
    same bases, so each is asked about once; an answer older than `ttl` seconds is asked again
    (a builder kept for longer than a run still sees a base tag move). A reference with a
    digest needs no question. A reference that cannot be resolved (not found, no access,
    unreachable) makes `digests` None: no key, and the build runs and says why.
    """

    def __init__(self, credential: Callable[[str], Any], attempts: int = 2, ttl: float = 300.0):
        self.credential = credential  # host -> Credential | None
        self.attempts = attempts
        self.ttl = ttl
        self._known: dict[tuple[str, bool], tuple[float, str | None]] = {}
        self._lock = threading.Lock()

    def digests(self, refs: Iterable[Reference], insecure: bool) -> dict[str, str] | None:
        refs = list(refs)
        with self._lock:
            now = time.monotonic()
            todo = [
                r for r in refs
                if r.digest is None and now - self._known.get((str(r), insecure), (-self.ttl - 1, None))[0] > self.ttl
            ]  # fmt: skip
            if todo:
                found = _run(lambda: _heads(todo, insecure, self.credential, self.attempts))
                for ref in todo:
                    self._known[(str(ref), insecure)] = (now, found.get(str(ref)))
            out = {}
            for ref in refs:
                digest = str(ref.digest) if ref.digest is not None else self._known[(str(ref), insecure)][1]
                if digest is None:
                    return None
                out[str(ref)] = digest
            return out


async def _heads(
    refs: list[Reference], insecure: bool, credential: Callable[[str], Any], attempts: int
) -> dict[str, str]:
    """reference -> digest of its manifest, for those the registry answers; the rest left out."""
    from manifesto.store.registry.client import RegistryClient

    clients: dict[str, RegistryClient] = {}
    out: dict[str, str] = {}
    try:
        for ref in refs:
            if ref.registry not in clients:
                clients[ref.registry] = RegistryClient(
                    ref.api_host,
                    credential=lambda host=ref.registry: credential(host),
                    insecure=insecure,
                    attempts=attempts,
                )
            try:
                found = await clients[ref.registry].head_manifest(ref.repository, ref.reference)
            except ManifestoError as e:
                log.info("build_key_base_unresolved", image=str(ref), reason=str(e))
                continue
            if found is not None:
                out[str(ref)] = str(found.digest)
    finally:
        for client in clients.values():
            await client.aclose()
    return out


def _run(make: Callable[[], Any]) -> Any:
    """asyncio.run(make()), in a thread of its own when the caller already runs a loop."""
    return tasks.off_loop(lambda: asyncio.run(make()))


def saved(store: Path) -> str | None:
    """The key saved for the store's last image; None when there is none (or no image)."""
    try:
        key = (store / KEY_FILE).read_text().strip()
    except OSError:
        return None
    return key if (store / EXPORT_DIR / "index.json").is_file() else None


def forget(store: Path) -> None:
    """Drop the saved key and the last image."""
    forget_key(store)
    shutil.rmtree(store / EXPORT_DIR, ignore_errors=True)


def forget_key(store: Path) -> None:
    """Drop the saved key alone (before a build replaces the image, whose blobs its push may
    reuse: export.py)."""
    (store / KEY_FILE).unlink(missing_ok=True)


def save(store: Path, key: str) -> None:
    """Record `key` as the key of the image now in the store's export (atomically)."""
    tmp = store / f".{KEY_FILE}.tmp"
    tmp.write_text(key + "\n")
    os.replace(tmp, store / KEY_FILE)


def copy_layout_image(src: LayoutStore, src_tag: str, dst: LayoutStore, tag: str) -> None:
    """Put the image `src_tag` of a store's export layout into `dst` under `tag`, the manifest's
    bytes as they are.

    Layers are hard-linked when both layouts are on one filesystem (a warm publish of a large
    base would otherwise copy and fsync every layer of every platform): the export is
    manifesto's own, written only by the tool's push and replaced whole, never modified in
    place, and a later read of either layout still checks each blob against its digest. The
    config, and every blob across filesystems, is copied and verified (add_blob).
    """
    fetched = src.manifest(src_tag)
    if not mediatype.is_image_manifest(fetched.media_type):
        raise ContentError(f"{src.path}:{src_tag}: expected an image manifest, got {fetched.media_type}")
    manifest = ImageManifest.parse(fetched.raw, fetched.media_type, f"{src.path}:{src_tag}")
    for blob in manifest.blobs():
        descriptor = Descriptor(blob.media_type, blob.digest, blob.size)
        if blob.digest == manifest.config.digest or not _link_blob(src, dst, descriptor):
            dst.add_blob(descriptor, src.blob_path(blob.digest))
    dst.put_manifest_sync(tag, fetched.raw, fetched.media_type)


def _link_blob(src: LayoutStore, dst: LayoutStore, blob: Descriptor) -> bool:
    """Hard-link a blob of `src` of the expected size into `dst` (atomically); False when it
    cannot be (another filesystem, a size that is wrong: the caller copies and verifies)."""
    source, target = src.blob_path(blob.digest), dst.blob_path(blob.digest)
    try:
        if source.stat().st_size != blob.size:
            return False
        if target.is_file() and target.stat().st_size == blob.size:
            return True
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.path / "blobs" / f".link-{os.getpid()}-{threading.get_ident()}-{blob.digest.hex[:16]}"
        tmp.unlink(missing_ok=True)
        os.link(source, tmp)
        os.replace(tmp, target)
    except OSError:
        return False
    return True
