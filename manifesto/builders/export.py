"""A store's export layout between builds: its last image alone, kept for the next push.

Why kept: `buildah push oci:DIR` writes every blob of an image again unless the layout already
holds it. containers/image's layout destination reuses a blob it finds under the digest the
source gives, which with the store's blob cache (cache.prepare_blob_cache) is the compressed
digest of the layer; so a push into the previous export writes only the layers that changed,
where a push into an empty layout copies (and hashes) the whole base again for every platform
(~100 MiB each, most of the cost of exporting a build whose last steps changed). Checked on
buildah 1.28: the manifest pushed is the same, byte for byte, either way.

Why tidied (`keep_last`, before and after each push, under the store's lock): the export must
hold one image and nothing else. A push leaves the image it replaced as an untagged entry of
index.json, with blobs no later push needs, and a killed push leaves temporary files; a blob
whose size is not the one its image names would be reused as it is (the layout destination
looks only at the file's name). Every blob of an export is written by a rename (the tool's and
LayoutStore's own writes both), never in place, so removing one, or replacing it, leaves a
layout linked to it (buildkey.copy_layout_image) as it was.

Why sealed: the blobs are hard-linked into the layouts handed out, so a change made in place
through one of those (or a push cut short before the export was tidied) would otherwise be
reused by name by every later push or build reuse. After each push the export's blobs are
recorded (size and modification time, beside it: `<export>.seal.json`); before the next push a
blob that no longer matches its record goes, an unchanged build reuses only an export that
matches it whole (`intact`), and an export without a record is not reused at all.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from manifesto.errors import ManifestoError
from manifesto.fileio import write_atomic
from manifesto.log import get_logger
from manifesto.oci import canonical, mediatype
from manifesto.oci.manifest import ImageManifest
from manifesto.store.layout import REF_NAME, LayoutStore

log = get_logger("manifesto.builders")

LAYOUT_FILES = frozenset({"oci-layout", "index.json", "blobs"})


def keep_last(export: Path, tag: str, *, fresh: bool = False, seal: bool = False) -> None:
    """Leave the layout at `export` holding its image `tag` alone, or nothing at all.

    Everything that image does not name goes: other index.json entries, other blobs, a blob
    whose size is wrong or that changed since the export was sealed, stray files. An export
    that cannot be read whole (no such tag, a manifest or config that does not verify) or was
    not sealed is removed, as it is with `fresh` (a build with --no-cache starts from an empty
    export too); the push then writes every blob. `seal` (after a push): record what is left.
    """
    sealed = _read_seal(export)
    _seal_path(export).unlink(missing_ok=True)  # until sealed again, nothing here is trusted
    if fresh or (not seal and sealed is None):
        _remove(export)
        return
    if not export.is_dir():
        return
    layout = LayoutStore(export)
    try:
        fetched = layout.manifest(tag)
        if not mediatype.is_image_manifest(fetched.media_type):
            raise ManifestoError(f"{export}:{tag}: not an image manifest")
        manifest = ImageManifest.parse(fetched.raw, fetched.media_type, f"{export}:{tag}")
        layout.read_bytes(manifest.config.digest, "config")
        doc = json.loads((export / "index.json").read_bytes())
    except (ManifestoError, OSError, ValueError) as e:
        log.info("export_discarded", export=str(export), reason=str(e))
        _remove(export)
        return
    sizes = {str(fetched.digest): len(fetched.raw)}
    sizes.update((str(blob.digest), blob.size) for blob in manifest.blobs())
    try:
        _only_blobs(layout, sizes, None if seal else sealed)
        entries = doc.get("manifests") or []
        kept = [e for e in entries if isinstance(e, dict) and (e.get("annotations") or {}).get(REF_NAME) == tag]
        if len(kept) != len(entries):
            write_atomic(export / "index.json", canonical.dumps({**doc, "manifests": kept[-1:]}))
        if seal:
            write_atomic(_seal_path(export), json.dumps(_blob_stats(layout)).encode())
    except OSError as e:
        log.info("export_discarded", export=str(export), reason=str(e))
        _remove(export)


def intact(export: Path) -> bool:
    """Whether every blob of the export is as it was sealed (a reuse may link them out)."""
    sealed = _read_seal(export)
    try:
        return sealed is not None and _blob_stats(LayoutStore(export)) == sealed
    except (ManifestoError, OSError):
        return False


def _seal_path(export: Path) -> Path:
    return export.with_name(export.name + ".seal.json")


def _read_seal(export: Path) -> dict[str, list[int]] | None:
    try:
        doc = json.loads(_seal_path(export).read_bytes())
        return doc if isinstance(doc, dict) else None
    except (OSError, ValueError):
        return None


def _stat(entry: os.DirEntry[str]) -> list[int]:
    st = entry.stat(follow_symlinks=False)
    # size and mtime: an edit in place changes them; not ctime (linking a blob out changes it)
    # nor the inode (a cache directory copied or restored elsewhere keeps them, not its inodes)
    return [st.st_size, st.st_mtime_ns]


def _blob_stats(layout: LayoutStore) -> dict[str, list[int]]:
    """digest -> [size, modification time] of every blob file of `layout`."""
    return {
        f"{algorithm.name}:{blob.name}": _stat(blob)
        for algorithm in os.scandir(layout.path / "blobs")
        if algorithm.is_dir(follow_symlinks=False)
        for blob in os.scandir(algorithm.path)
        if blob.is_file(follow_symlinks=False)
    }


def _only_blobs(layout: LayoutStore, sizes: dict[str, int], sealed: dict[str, list[int]] | None) -> None:
    """Remove every file of `layout` but its layout files and the blobs `sizes` names (digest ->
    size) that have that size and, with `sealed` (digest -> stat), the stat recorded there."""
    for entry in os.scandir(layout.path):
        if entry.name not in LAYOUT_FILES:
            _remove(Path(entry.path))
    for algorithm in os.scandir(layout.path / "blobs"):
        if not algorithm.is_dir(follow_symlinks=False):
            _remove(Path(algorithm.path))
            continue
        for blob in os.scandir(algorithm.path):
            digest = f"{algorithm.name}:{blob.name}"
            want = sizes.get(digest)
            if want is None or not blob.is_file(follow_symlinks=False) or blob.stat().st_size != want:
                _remove(Path(blob.path))
            elif sealed is not None and sealed.get(digest) != _stat(blob):
                _remove(Path(blob.path))


def _remove(path: Path) -> None:
    """Remove a file or directory tree (gone already: nothing to do)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
