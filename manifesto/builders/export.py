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


def keep_last(export: Path, tag: str, *, fresh: bool = False) -> None:
    """Leave the layout at `export` holding its image `tag` alone, or nothing at all.

    Everything that image does not name goes: other index.json entries, other blobs, a blob
    whose size is wrong, stray files. An export that cannot be read whole (no such tag, a
    manifest or config that does not verify) is removed, as it is with `fresh` (a build with
    --no-cache starts from an empty export too); the push then writes every blob.
    """
    if fresh:
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
        _only_blobs(layout, sizes)
        entries = doc.get("manifests") or []
        kept = [e for e in entries if isinstance(e, dict) and (e.get("annotations") or {}).get(REF_NAME) == tag]
        if len(kept) != len(entries):
            write_atomic(export / "index.json", canonical.dumps({**doc, "manifests": kept[-1:]}))
    except OSError as e:
        log.info("export_discarded", export=str(export), reason=str(e))
        _remove(export)


def _only_blobs(layout: LayoutStore, sizes: dict[str, int]) -> None:
    """Remove every file of `layout` but its layout files and the blobs `sizes` names (digest ->
    size) that have that size."""
    for entry in os.scandir(layout.path):
        if entry.name not in LAYOUT_FILES:
            _remove(Path(entry.path))
    for algorithm in os.scandir(layout.path / "blobs"):
        if not algorithm.is_dir(follow_symlinks=False):
            _remove(Path(algorithm.path))
            continue
        for blob in os.scandir(algorithm.path):
            want = sizes.get(f"{algorithm.name}:{blob.name}")
            if want is None or not blob.is_file(follow_symlinks=False) or blob.stat().st_size != want:
                _remove(Path(blob.path))


def _remove(path: Path) -> None:
    """Remove a file or directory tree (gone already: nothing to do)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
