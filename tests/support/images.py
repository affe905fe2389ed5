"""Per-architecture test images built from Debian's busybox-static, in pure Python.

Why: tests need real, tiny, genuinely foreign-architecture images (five arches) that
are byte-for-byte reproducible and built without docker/buildah. The busybox
binaries come from Debian packages fetched once into a cache by
``scripts/fetch-busybox.sh`` (private apt config; the system dpkg is untouched).

An image is one gzip layer (deterministic tar: mtime 0, uid/gid 0, sorted):
``bin/busybox`` plus symlinks ``bin/sh`` and ``bin/uname`` -> busybox; a config with
architecture/os/variant and ``Cmd ["/bin/uname", "-m"]``; an OCI or Docker schema 2
manifest; written as an OCI image layout (image-layout spec: oci-layout,
index.json, blobs/sha256/...).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from .tools import REPO_ROOT, SCRIPTS, missing, run

ARCHES = ("amd64", "arm64", "armhf", "ppc64el", "s390x")
"""Debian architecture names of the five test images."""

# Debian arch -> (OCI architecture, variant or None, docker-library namespace, `uname -m`)
PLATFORMS: dict[str, tuple[str, str | None, str, str]] = {
    "amd64": ("amd64", None, "amd64", "x86_64"),
    "arm64": ("arm64", "v8", "arm64v8", "aarch64"),
    "armhf": ("arm", "v7", "arm32v7", "armv7l"),
    "ppc64el": ("ppc64le", None, "ppc64le", "ppc64le"),
    "s390x": ("s390x", None, "s390x", "s390x"),
}

# ELF e_machine expected for each Debian arch
ELF_MACHINE = {"amd64": 0x3E, "arm64": 0xB7, "armhf": 0x28, "ppc64el": 0x15, "s390x": 0x16}

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

CREATED = "1970-01-01T00:00:00Z"

Format = Literal["oci", "docker"]


def cache_dir() -> Path:
    """Where the busybox .debs and extracted binaries live ($MANIFESTO_TEST_CACHE)."""
    return Path(os.environ.get("MANIFESTO_TEST_CACHE") or REPO_ROOT / ".cache" / "busybox")


def busybox_path(arch: str, *, fetch: bool = True) -> Path:
    """Path of the cached busybox binary for Debian *arch*; fetch the cache if empty.

    Skips the test (fails under CI) if it cannot be fetched.
    """
    path = cache_dir() / arch / "busybox"
    if path.exists() or not fetch:
        return path
    script = SCRIPTS / "fetch-busybox.sh"
    proc = subprocess.run(
        ["bash", str(script), *ARCHES],
        capture_output=True,
        text=True,
        timeout=900,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0 or not path.exists():
        missing(
            f"could not fetch busybox-static:{arch} into {cache_dir()} "
            f"(exit {proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    return path


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def platform_of(arch: str) -> str:
    """Debian arch -> "os/arch[/variant]" as in an image index (armhf -> linux/arm/v7)."""
    oci_arch, variant, _, _ = PLATFORMS[arch]
    return f"linux/{oci_arch}" + (f"/{variant}" if variant else "")


def library_namespace(arch: str) -> str:
    """Debian arch -> docker-library namespace (arm64 -> arm64v8, armhf -> arm32v7)."""
    return PLATFORMS[arch][2]


@dataclasses.dataclass(frozen=True)
class ArchImage:
    """A single-arch image written as an OCI image layout."""

    arch: str  # Debian arch (amd64, arm64, armhf, ppc64el, s390x)
    layout: Path  # OCI image layout directory
    tag: str  # ref name in index.json: use f"oci:{layout}:{tag}" with skopeo
    format: Format  # "oci" or "docker" (schema 2)
    manifest_digest: str
    manifest_bytes: bytes
    manifest_media_type: str
    config_digest: str
    config_bytes: bytes
    layer_digest: str
    layer_size: int
    diff_id: str
    platform: str  # "linux/arm64/v8"

    @property
    def manifest(self) -> dict[str, Any]:
        return json.loads(self.manifest_bytes)

    @property
    def config(self) -> dict[str, Any]:
        return json.loads(self.config_bytes)

    @property
    def oci_ref(self) -> str:
        """skopeo source reference, e.g. ``oci:/tmp/x/layout:latest``."""
        return f"oci:{self.layout}:{self.tag}"

    def skopeo_source(self) -> str:
        """A skopeo source reference that yields exactly ``manifest_bytes``.

        OCI images: ``oci:LAYOUT:TAG``. Docker schema 2 images: skopeo 1.9's oci:
        transport only looks up OCI media types in index.json ("no descriptor found
        for reference"), so a ``dir:`` view of the same blobs (hard links) is made
        next to the layout and used instead.
        """
        if self.format == "oci":
            return self.oci_ref
        d = self.layout.parent / f"{self.layout.name}.{self.tag}.skopeo-dir"
        if not (d / "manifest.json").exists():
            tmp = self.layout.parent / f".{d.name}.{os.getpid()}"
            tmp.mkdir(parents=True, exist_ok=True)
            for digest in (self.config_digest, self.layer_digest):
                hexd = digest.split(":", 1)[1]
                target = tmp / hexd
                if not target.exists():
                    src = self.layout / "blobs" / "sha256" / hexd
                    try:
                        os.link(src, target)
                    except OSError:
                        target.write_bytes(src.read_bytes())
            (tmp / "manifest.json").write_bytes(self.manifest_bytes)
            (tmp / "version").write_text("Directory Transport Version: 1.1\n")
            try:
                tmp.rename(d)
            except OSError:  # another process won the race
                import shutil

                shutil.rmtree(tmp, ignore_errors=True)
        return f"dir:{d}"

    @property
    def platform_dict(self) -> dict[str, str]:
        """The ``platform`` object an index descriptor for this image carries."""
        oci_arch, variant, _, _ = PLATFORMS[self.arch]
        d = {"architecture": oci_arch, "os": "linux"}
        if variant:
            d["variant"] = variant
        return d

    def descriptor(self) -> dict[str, Any]:
        """An index descriptor (mediaType, digest, size, platform) for this image."""
        return {
            "mediaType": self.manifest_media_type,
            "digest": self.manifest_digest,
            "size": len(self.manifest_bytes),
            "platform": self.platform_dict,
        }

    def blob(self, digest: str) -> bytes:
        return (self.layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()


def layer_tar(busybox: bytes) -> bytes:
    """Deterministic tar of bin/busybox (+ sh, uname symlinks)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:

        def add(name: str, *, type: bytes, mode: int, data: bytes = b"", link: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type = type
            info.mode = mode
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.linkname = link
            info.size = len(data) if type == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if type == tarfile.REGTYPE else None)

        add("bin/", type=tarfile.DIRTYPE, mode=0o755)
        add("bin/busybox", type=tarfile.REGTYPE, mode=0o755, data=busybox)
        add("bin/sh", type=tarfile.SYMTYPE, mode=0o777, link="busybox")
        add("bin/uname", type=tarfile.SYMTYPE, mode=0o777, link="busybox")
    return buf.getvalue()


def _write_blob(layout: Path, data: bytes) -> str:
    digest = sha256_digest(data)
    path = layout / "blobs" / "sha256" / digest.split(":", 1)[1]
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return digest


def build_image(
    arch: str,
    layout: str | Path,
    *,
    format: Format = "oci",
    tag: str = "latest",
    config_overrides: Mapping[str, Any] | None = None,
    annotations: Mapping[str, str] | None = None,
    busybox: bytes | None = None,
) -> ArchImage:
    """Write a single-arch busybox image for Debian *arch* into OCI layout *layout*.

    *format*: "oci" (OCI manifest/config/layer media types) or "docker" (schema 2).
    *config_overrides* are merged into the config's top level (e.g.
    ``{"architecture": "s390x"}`` to make an image that lies about its platform).
    *annotations* go into the manifest (OCI format only).
    Adding to an existing layout appends to its index.json (replacing *tag*).
    """
    if arch not in PLATFORMS:
        raise ValueError(f"unknown arch {arch!r}; known: {', '.join(PLATFORMS)}")
    layout = Path(layout)
    layout.mkdir(parents=True, exist_ok=True)
    oci_arch, variant, _, _ = PLATFORMS[arch]
    if busybox is None:
        busybox = busybox_path(arch).read_bytes()

    tar_bytes = layer_tar(busybox)
    diff_id = sha256_digest(tar_bytes)
    layer = gzip.compress(tar_bytes, compresslevel=6, mtime=0)

    config: dict[str, Any] = {
        "architecture": oci_arch,
        "os": "linux",
        "created": CREATED,
        "config": {"Cmd": ["/bin/uname", "-m"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": CREATED, "created_by": f"manifesto tests: busybox-static {arch}"}],
    }
    if variant:
        config["variant"] = variant
    config.update(config_overrides or {})
    config_bytes = canonical_json(config)

    if format == "oci":
        mt_manifest, mt_config, mt_layer = MT_OCI_MANIFEST, MT_OCI_CONFIG, MT_OCI_LAYER_GZIP
    elif format == "docker":
        mt_manifest, mt_config, mt_layer = MT_DOCKER_MANIFEST, MT_DOCKER_CONFIG, MT_DOCKER_LAYER_GZIP
        if annotations:
            raise ValueError("annotations need format='oci'")
    else:
        raise ValueError(f"unknown format {format!r}")

    layer_digest = _write_blob(layout, layer)
    config_digest = _write_blob(layout, config_bytes)
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mt_manifest,
        "config": {"mediaType": mt_config, "digest": config_digest, "size": len(config_bytes)},
        "layers": [{"mediaType": mt_layer, "digest": layer_digest, "size": len(layer)}],
    }
    if annotations:
        manifest["annotations"] = dict(annotations)
    manifest_bytes = canonical_json(manifest)
    manifest_digest = _write_blob(layout, manifest_bytes)

    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    index_path = layout / "index.json"
    index = (
        json.loads(index_path.read_text())
        if index_path.exists()
        else {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": []}
    )
    index["manifests"] = [
        m
        for m in index["manifests"]
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag
    ]
    img = ArchImage(
        arch=arch,
        layout=layout,
        tag=tag,
        format=format,
        manifest_digest=manifest_digest,
        manifest_bytes=manifest_bytes,
        manifest_media_type=mt_manifest,
        config_digest=config_digest,
        config_bytes=config_bytes,
        layer_digest=layer_digest,
        layer_size=len(layer),
        diff_id=diff_id,
        platform=platform_of(arch),
    )
    desc = img.descriptor()
    desc["annotations"] = {"org.opencontainers.image.ref.name": tag}
    index["manifests"].append(desc)
    tmp = index_path.with_suffix(".tmp")
    tmp.write_bytes(canonical_json(index))
    tmp.replace(index_path)
    return img


# ---------------------------------------------------------------------------
# pushing with skopeo


def skopeo_env(tmpdir: Path | None = None) -> dict[str, str]:
    """Environment for skopeo that never reads the user's credentials."""
    env = {k: v for k, v in os.environ.items() if k not in ("REGISTRY_AUTH_FILE", "DOCKER_CONFIG")}
    base = Path(tmpdir) if tmpdir else Path(os.environ.get("TMPDIR", "/tmp"))
    auth = base / "manifesto-empty-auth.json"
    if not auth.exists():
        tmp = auth.with_name(f"{auth.name}.{os.getpid()}")
        tmp.write_text("{}")
        tmp.replace(auth)
    env["REGISTRY_AUTH_FILE"] = str(auth)
    return env


def skopeo(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run skopeo (insecure policy, no user credentials)."""
    from .tools import require

    exe = require("skopeo")
    return run([exe, "--insecure-policy", *args], env=skopeo_env(), timeout=timeout, check=check)


def _creds_args(prefix: str, registry: Any, creds: tuple[str, str] | None | Literal[False]) -> list[str]:
    if creds is False:
        return [f"--{prefix}-no-creds"]
    if creds is None and registry is not None:
        creds = getattr(registry, "creds", None)
    return [f"--{prefix}-creds", f"{creds[0]}:{creds[1]}"] if creds else []


def push_image(
    image: ArchImage,
    ref_in_registry: str,
    registry: Any,
    creds: tuple[str, str] | None | Literal[False] = None,
) -> str:
    """Push *image* to ``registry.host/ref_in_registry`` (``repo:tag`` or ``repo``) with skopeo.

    *creds*: (user, password); None uses ``registry.creds``; False pushes anonymously.
    Uses ``--preserve-digests`` and asserts the registry holds exactly the layout's
    manifest bytes. Returns the full pushed reference (``host/repo:tag``).
    """
    if ":" not in ref_in_registry.rsplit("/", 1)[-1] and "@" not in ref_in_registry:
        ref_in_registry += ":latest"
    dest = f"{registry.host}/{ref_in_registry}"
    skopeo(
        "copy",
        "--quiet",
        "--preserve-digests",
        "--dest-tls-verify=false",
        *_creds_args("dest", registry, creds),
        image.skopeo_source(),
        f"docker://{dest}",
    )
    raw = inspect_raw(dest, registry, creds)
    assert raw == image.manifest_bytes, (
        f"pushed manifest differs from layout: {sha256_digest(raw)} != {image.manifest_digest}"
    )
    return dest


def inspect_raw(
    ref: str, registry: Any = None, creds: tuple[str, str] | None | Literal[False] = None
) -> bytes:
    """``skopeo inspect --raw docker://ref`` as bytes (exact, not re-encoded)."""
    args = ["inspect", "--raw", "--tls-verify=false"]
    if creds is False:
        args.append("--no-creds")
    else:
        if creds is None and registry is not None:
            creds = getattr(registry, "creds", None)
        if creds:
            args += ["--creds", f"{creds[0]}:{creds[1]}"]
    from .tools import require

    exe = require("skopeo")
    proc = subprocess.run(
        [exe, "--insecure-policy", *args, f"docker://{ref}"],
        env=skopeo_env(),
        capture_output=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        raise AssertionError(f"skopeo inspect --raw {ref} failed: {proc.stderr.decode()[-3000:]}")
    return proc.stdout


# ---------------------------------------------------------------------------
# docker-library style repositories


@dataclasses.dataclass(frozen=True)
class LibraryRepo:
    """One pushed docker-library style repo, e.g. ``arm64v8/busybox:1``."""

    arch: str
    repo: str  # "arm64v8/busybox"
    tag: str  # "1"
    ref: str  # "127.0.0.1:PORT/arm64v8/busybox:1"
    image: ArchImage

    @property
    def digest(self) -> str:
        return self.image.manifest_digest

    @property
    def by_digest(self) -> str:
        return self.ref.rsplit(":", 1)[0] + "@" + self.image.manifest_digest


def push_library_repos(
    images: Mapping[str, ArchImage],
    registry: Any,
    *,
    name: str = "busybox",
    tag: str = "1",
    creds: tuple[str, str] | None | Literal[False] = None,
) -> dict[str, LibraryRepo]:
    """Push each image as ``<namespace>/<name>:<tag>`` (amd64/busybox:1, arm64v8/busybox:1, ...).

    Returns {Debian arch: LibraryRepo}.
    """
    out: dict[str, LibraryRepo] = {}
    for arch, img in images.items():
        repo = f"{library_namespace(arch)}/{name}"
        ref = push_image(img, f"{repo}:{tag}", registry, creds)
        out[arch] = LibraryRepo(arch, repo, tag, ref, img)
    return out
