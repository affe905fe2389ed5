"""Copy an image out of a containers/image `dir:` directory into an OCI layout.

buildah writes an image it pushes with the `dir:` transport as `manifest.json` plus one file per
blob named by its sha256 hex; manifesto takes it from there into its layout, checking every blob,
and (for reproducible builds) fixing the per-build fields buildah 1.28 writes into Docker configs.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from manifesto.errors import ContentError
from manifesto.oci import mediatype
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.digest import Digest
from manifesto.oci.manifest import ImageManifest, detect_media_type
from manifesto.store.layout import LayoutStore


def export_via_dir(push: Callable[[str], None], layout: Path, tag: str, tool: str, *, reproducible: bool) -> None:
    """`push(destination)` the built image to a private `dir:` directory (which keeps a Docker
    manifest as it is, where `oci:` would convert it), then copy it into the layout at `layout`
    as `tag` (copy_dir_image); the directory is removed whatever happens."""
    layout.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".manifesto-{tool}-", dir=layout.parent))
    try:
        image = tmp / "image"
        push(f"dir:{image}")
        copy_dir_image(image, LayoutStore(layout, create=True), tag, reproducible=reproducible)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def copy_dir_image(source: Path, dst: LayoutStore, tag: str, *, reproducible: bool = False) -> None:
    """Copy an image from a containers/image `dir:` directory into a layout under `tag`.

    The dir: transport keeps `manifest.json` and names each blob by its sha256 hex; add_blob
    verifies every blob against the manifest's digest and size on the way in. With
    `reproducible`, a Docker config's per-build fields are first made fixed (docker_config_fixed).
    """
    try:
        raw = (source / "manifest.json").read_bytes()
    except OSError as e:
        raise ContentError(f"{source}: no image written there ({e.strerror})") from None
    media_type = detect_media_type(raw, what=f"{source}/manifest.json")
    if not mediatype.is_image_manifest(media_type):
        raise ContentError(f"{source}: expected an image manifest, got {media_type}")
    manifest = ImageManifest.parse(raw, media_type, f"{source}/manifest.json")
    for blob in manifest.blobs():
        if blob.digest.algorithm != "sha256":
            raise ContentError(f"{source}: unsupported blob digest {blob.digest}")
    if reproducible and manifest.config.media_type == mediatype.DOCKER_CONFIG:
        config = manifest.config
        config_raw = (source / config.digest.hex).read_bytes()
        config.digest.verify(config_raw, f"{source}: config")
        fixed = docker_config_fixed(config_raw)
        if fixed != config_raw:
            digest = Digest.of(fixed)
            (source / digest.hex).write_bytes(fixed)
            doc = json.loads(raw)
            doc["config"].update(digest=str(digest), size=len(fixed))
            raw = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
            manifest = ImageManifest.parse(raw, media_type, f"{source}/manifest.json")
    for blob in manifest.blobs():
        dst.add_blob(Descriptor(blob.media_type, blob.digest, blob.size), source / blob.digest.hex)
    dst.put_manifest_sync(tag, raw, media_type)


def docker_config_fixed(raw: bytes) -> bytes:
    """A Docker image config without the fields that differ on every build.

    buildah 1.28 writes the working container's random ID (`container`) and hostname
    (`config.Hostname`, `container_config.Hostname`) into Docker-format configs even with
    --timestamp; buildah since containers/buildah#6211 (2025) writes fixed values there. The ID
    is dropped (Go's omitempty shape) and the hostnames set to "sandbox", the fixed name newer
    buildah uses; the rest of the document keeps its order. Bytes without those fields come
    back unchanged.
    """
    doc = json.loads(raw)
    changed = doc.pop("container", None) is not None
    for key in ("config", "container_config"):
        inner = doc.get(key)
        if isinstance(inner, dict) and inner.get("Hostname") not in (None, "", "sandbox"):
            inner["Hostname"] = "sandbox"
            changed = True
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode() if changed else raw
