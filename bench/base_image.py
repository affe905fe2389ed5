"""The large 5-arch base image the publish benchmarks build FROM, made by the benchmark itself.

Why made, not pulled: the figures must not depend on a remote registry or on what a public
image weighs today. The base is an index of five images of three gzip layers each (BASE_MIB =
60 + 30 + 10 MiB of os.urandom bytes: incompressible, the size of a slim language runtime),
written as an OCI layout and pushed with skopeo into the benchmark's registry.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import tarfile
import zlib
from pathlib import Path
from typing import Any

from bench.common import BenchError, Context, log, run, sandbox_env

BASE_MIB = (60, 30, 10)  # the base's three layers, per platform
# (platform, TARGETARCH + TARGETVARIANT as the plan passes them, Debian arch of its busybox)
PLATFORMS = (
    ("linux/amd64", "amd64", "amd64"),
    ("linux/arm64/v8", "arm64v8", "arm64"),
    ("linux/arm/v7", "armv7", "armhf"),
    ("linux/ppc64le", "ppc64le", "ppc64el"),
    ("linux/s390x", "s390x", "s390x"),
)
OCI = "application/vnd.oci.image."
_CHUNK = 1 << 20


def random_file(path: Path, mib: int) -> None:
    """Write `mib` MiB of random (incompressible) bytes to `path`."""
    with path.open("wb") as f:
        for _ in range(mib):
            f.write(os.urandom(_CHUNK))


def _move_blob(layout: Path, path: Path, media_type: str) -> dict[str, object]:
    """Move `path` into the layout's blobs under its digest; its descriptor."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    size = path.stat().st_size
    path.replace(layout / "blobs" / "sha256" / h.hexdigest())
    return {"mediaType": media_type, "digest": f"sha256:{h.hexdigest()}", "size": size}


def _json_blob(layout: Path, media_type: str, doc: dict[str, object]) -> dict[str, object]:
    tmp = layout / "blobs" / "doc.tmp"
    tmp.write_bytes(json.dumps(doc, separators=(",", ":"), sort_keys=True).encode())
    return _move_blob(layout, tmp, media_type)


def _gzip_layer(layout: Path, name: str, mib: int) -> tuple[dict[str, object], str]:
    """A gzip layer of one random file `usr/lib/runtime/<name>`: (descriptor, diff_id).
    Random bytes do not compress, so the gzip stream is written with stored blocks (level 0):
    the same size any level would give, without the time."""
    data = layout / "blobs" / f"{name}.data"
    random_file(data, mib)
    tar_path = layout / "blobs" / f"{name}.tar"
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tar.gettarinfo(str(data), arcname=f"usr/lib/runtime/{name}")
        info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
        with data.open("rb") as f:
            tar.addfile(info, f)
    data.unlink()
    diff = hashlib.sha256()
    gz_path = layout / "blobs" / f"{name}.tar.gz"
    with tar_path.open("rb") as src, gzip.GzipFile(gz_path, "wb", compresslevel=zlib.Z_NO_COMPRESSION, mtime=0) as out:
        while chunk := src.read(_CHUNK):
            diff.update(chunk)
            out.write(chunk)
    tar_path.unlink()
    return _move_blob(layout, gz_path, OCI + "layer.v1.tar+gzip"), f"sha256:{diff.hexdigest()}"


def write_base(layout: Path) -> None:
    """An OCI layout tagged 1: an index of the five platforms, each BASE_MIB in three layers."""
    (layout / "blobs" / "sha256").mkdir(parents=True)
    children = []
    for platform, slug, _ in PLATFORMS:
        os_, arch, *variant = platform.split("/")
        plat = {"architecture": arch, "os": os_, **({"variant": variant[0]} if variant else {})}
        layers, diff_ids = [], []
        for n, mib in enumerate(BASE_MIB):
            descriptor, diff_id = _gzip_layer(layout, f"{slug}-{n}", mib)
            layers.append(descriptor)
            diff_ids.append(diff_id)
        config = {
            **plat,
            "created": "2023-11-14T22:13:20Z",
            "config": {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin"], "Cmd": ["/usr/local/bin/runtime"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created": "2023-11-14T22:13:20Z", "created_by": f"runtime layer {n}"} for n in range(3)],
        }
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI + "manifest.v1+json",
            "config": _json_blob(layout, OCI + "config.v1+json", config),
            "layers": layers,
        }
        children.append({**_json_blob(layout, OCI + "manifest.v1+json", manifest), "platform": plat})
    doc = {"schemaVersion": 2, "mediaType": OCI + "index.v1+json", "manifests": children}
    index = _json_blob(layout, OCI + "index.v1+json", doc)
    index["annotations"] = {"org.opencontainers.image.ref.name": "1"}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [index]}))
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')


def push_base(ctx: Context, reg: Any, repo: str, label: str) -> str:
    """Write the base and push it into `reg` as `repo:1` (skopeo); its reference."""
    layout = ctx.work.fresh(f"{label}-base")
    total = sum(BASE_MIB) * len(PLATFORMS)
    log(f"{label}: writing a {len(PLATFORMS)}-arch base of {' + '.join(map(str, BASE_MIB))} MiB per arch ({total} MiB)")
    write_base(layout)
    base = f"{reg.host}/{repo}:1"
    skopeo = ["skopeo", "--insecure-policy", "copy", "--quiet", "--all", "--preserve-digests", "--dest-tls-verify=false"]
    run([*skopeo, f"oci:{layout}:1", f"docker://{base}"], sandbox_env(ctx.work.fresh(f"{label}-skopeo")), timeout=1800)
    shutil.rmtree(layout, ignore_errors=True)
    return base


def copy_busybox(root: Path, name: str) -> None:
    """Put each platform's static busybox at `root/bin/<TARGETARCH><TARGETVARIANT>/<name>`."""
    from tests.support.images import busybox_path

    for _, slug, debian_arch in PLATFORMS:
        (root / "bin" / slug).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(busybox_path(debian_arch), root / "bin" / slug / name)
        (root / "bin" / slug / name).chmod(0o755)


def buildah_global(root: Path, driver: str) -> list[str]:
    """buildah with its storage under `root` (the storage driver `driver`), as the peer of a
    publish benchmark."""
    return ["buildah", "--root", str(root / "storage"), "--runroot", str(root / "run"), "--storage-driver", driver]


def buildah_driver(ctx: Context, label: str) -> str:
    """The storage driver of the benchmark's buildah peer: the one manifesto's buildah builder
    resolves to in the benchmark's work directory (manifesto/builders/storage.py: overlay where
    its probe works, else vfs; STORAGE_DRIVER wins), logged.

    Why: buildah itself picks overlay where it works, so a peer on vfs beside a manifesto on
    overlay (or the reverse) would not be doing the same work. Resolved by the library, not
    decided here; `check_driver` then confirms that manifesto's own stores used it.
    """
    from manifesto.builders.buildah import BuildahBuilder

    root = ctx.work.fresh(f"{label}-driver")
    try:
        verdict = BuildahBuilder(storage=root).storage_verdict
    finally:
        shutil.rmtree(root, ignore_errors=True)
    log(f"{label}: buildah storage driver {verdict.driver} for both sides ({verdict.reason})")
    return verdict.driver


def buildah_stores(cache_home: Path) -> list[str]:
    """The storage drivers of the buildah stores manifesto made under `cache_home` (the
    $XDG_CACHE_HOME it ran with): one directory per driver (manifesto.builders.cache.stores)."""
    from manifesto.builders.cache import stores

    return sorted(p.name for p in stores(cache_home / "manifesto") if p.parent.name == "buildah")


def check_driver(cache_home: Path, driver: str | None, what: str) -> None:
    """Fail unless manifesto's buildah stores under `cache_home` used exactly `driver` (the
    peer's), or, with None, unless there are none (a native publish runs no buildah)."""
    used = buildah_stores(cache_home)
    if used != ([driver] if driver else []):
        peer = f"the peer {driver}" if driver else "expected none"
        raise BenchError(f"{what}: manifesto's buildah stores used {used or 'no driver'}, {peer}: not the same work")
