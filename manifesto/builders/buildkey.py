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
  default ("ifnewer"), so a base tag that moved changes the output.

Anything that cannot be had (a pulled image that cannot be resolved, a builder not found)
means no key, and the build runs. `--no-cache` never reuses, but saves the key of its build.
The last image itself is an OCI layout in the store (EXPORT_DIR), copied out by
copy_layout_image.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import stat
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from manifesto.builders.native.context import IGNORE_FILES, Context
from manifesto.errors import ContentError, ManifestoError
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
    """sha256 over the build context the builder sees: every path the ignore file leaves
    (native/context.py's rules, the ignore file itself always included), with its type,
    permission bits, owner and content (a symlink: its target), in byte order of the paths.

    Modification times are left out: buildah's layer cache ignores them too (a touched file
    reuses the cached step, so the image is the same). `memo` keeps each file's content digest
    by its identity and times (device, inode, size, mtime, ctime) for the length of a run: the
    platforms of a publish share one context, which is then read once.
    """
    ctx = Context.load(context, dockerfile)
    h = hashlib.sha256()
    for name in (f"{dockerfile}.dockerignore", *(str(ctx.root / n) for n in IGNORE_FILES)):
        _add_file(h, f"ignore:{name}", Path(name))

    def walk(rel: str) -> None:
        for name in ctx.listdir(rel):
            sub = f"{rel}/{name}" if rel else name
            st = ctx.lstat(sub)
            if st is None or not ctx.present(sub, st):
                continue
            kind, mode = stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode)
            h.update(f"\0{sub}\0{kind}:{mode:o}:{st.st_uid}:{st.st_gid}\0".encode())
            if stat.S_ISDIR(st.st_mode):
                walk(sub)
            elif stat.S_ISLNK(st.st_mode):
                h.update(os.fsencode(os.readlink(ctx.path(sub))))
            elif stat.S_ISREG(st.st_mode):
                ident = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                known = memo.get(ident) if memo is not None else None
                if known is None:
                    known = _file_digest(ctx.path(sub))
                    if memo is not None:
                        memo[ident] = known
                h.update(f"\0{sub}\0{known}\0".encode())

    walk("")
    return h.hexdigest()


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
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = asyncio.run(make())
        except BaseException as e:  # handed to the caller's thread
            out["error"] = e

    thread = threading.Thread(target=target, name="build-key", daemon=True)
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


def saved(store: Path) -> str | None:
    """The key saved for the store's last image; None when there is none (or no image)."""
    try:
        key = (store / KEY_FILE).read_text().strip()
    except OSError:
        return None
    return key if (store / EXPORT_DIR / "index.json").is_file() else None


def forget(store: Path) -> None:
    """Drop the saved key and the last image (before a build replaces them)."""
    (store / KEY_FILE).unlink(missing_ok=True)
    shutil.rmtree(store / EXPORT_DIR, ignore_errors=True)


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
