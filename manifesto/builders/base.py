"""What every builder takes and gives: BuildRequest in, BuiltImage out, Problems from check().

A builder turns one (platform, context, Dockerfile) into one single-platform image in an OCI
image layout directory; publishing then copies that layout to a registry. Builders are
synchronous (they wait on a subprocess); the publish code runs several in threads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol, runtime_checkable

from manifesto.errors import UsageError, VerificationError
from manifesto.oci import mediatype
from manifesto.oci.config import ImageConfig
from manifesto.oci.digest import Digest
from manifesto.oci.manifest import ImageManifest
from manifesto.oci.platform import Platform, matches
from manifesto.store.layout import LayoutStore, valid_ref_name


@dataclass(frozen=True)
class Problem:
    """Something that stops a build from working here, and how to fix it.

    `fix` is the text shown to the user (usually a command); `commands` are the argv lists that
    an automatic fix (`doctor --fix`) may run as root, in order — empty when it needs a human.
    """

    message: str
    fix: str | None = None
    commands: tuple[tuple[str, ...], ...] = ()

    def __str__(self) -> str:
        return f"{self.message} (fix: {self.fix})" if self.fix else self.message


@dataclass(frozen=True)
class BuildRequest:
    """Build one platform of an image into the OCI layout at `output`, under `tag`."""

    platform: Platform
    context: Path
    dockerfile: Path
    args: dict[str, str]
    output: Path
    tag: str = "latest"
    source_date_epoch: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    # Manifest and config media types of the image: "oci" (OCI image manifest) or "docker"
    # (Docker schema 2, for `format: docker` matrices: a Docker manifest list may hold only those).
    media_format: str = "oci"
    # Pull bases from every registry without TLS verification (the run's --insecure); loopback
    # registries are reached over plain HTTP either way, as manifesto's own client does.
    insecure: bool = False
    # Build every step again (no cached layer is used); buildah and podman cache them otherwise.
    no_cache: bool = False
    # Registry repositories (no tag) buildah/podman read cached layers from and push them to.
    cache_from: str | None = None
    cache_to: str | None = None


@dataclass(frozen=True)
class BuiltImage:
    """A built single-platform image: where it is (layout + tag) and what it is (digest).

    `base` names where the blobs the layout lacks are: a natively built image's layout holds
    its new layers, config and manifest but not its base's layers (never downloaded to build),
    which stay in the base's repository (`host/repo`) or layout (`oci:DIR`). A buildah or
    podman layout holds every blob; its `base` (`host/repo@digest`, the base it was built from:
    builders/bases.py) says where those of its base's also are, so a push into that registry
    mounts them. None when there is no base to name. Copy it through store/overlay.py's
    built_place.
    """

    platform: Platform
    layout: Path
    tag: str
    digest: Digest
    media_type: str
    base: str | None = None


@runtime_checkable
class Builder(Protocol):
    """A way to build images (buildah, podman, docker buildx)."""

    name: str

    def check(self) -> list[Problem]:
        """What stops this builder from working here; empty when it is usable."""
        ...

    def build(self, request: BuildRequest, on_line: Callable[[str], None]) -> BuiltImage:
        """Build `request`, streaming log lines to `on_line`; raises BuildError/VerificationError."""
        ...

    def cancel(self) -> None:
        """Stop every running build, from any thread; builds started later stop at once.

        Why: builds run in threads and their tools in process groups of their own, which Ctrl-C
        does not reach; whoever runs builds calls this on KeyboardInterrupt. A builder with
        nothing to stop (no subprocess) does nothing.
        """
        ...


def verify_platform(requested: Platform, got: Platform, where: str) -> None:
    """Raise VerificationError unless an image config's platform is the one requested.

    oci.platform.matches: compared after normalization, so arm64, arm64/v8 and aarch64 (and
    arm and arm/v7) are the same.
    """
    if not matches(requested, got):
        raise VerificationError(f"{where}: built for {got}, but {requested} was requested")


def validate_request(request: BuildRequest) -> BuildRequest:
    """Check a request's paths and tag before any tool runs; return it with absolute paths."""
    context = request.context.resolve()
    dockerfile = request.dockerfile.resolve()
    output = request.output.resolve()
    if not context.is_dir():
        raise UsageError(f"build context {request.context} is not a directory")
    if not dockerfile.is_file():
        raise UsageError(f"Dockerfile {request.dockerfile} does not exist")
    if ":" in str(output):
        raise UsageError(f"output layout path {output} must not contain ':' (the oci: transport splits on it)")
    if not valid_ref_name(request.tag):
        raise UsageError(f"invalid tag {request.tag!r} for an OCI layout")
    for key in request.args:
        if not key or "=" in key:
            raise UsageError(f"invalid build arg name {key!r}")
    return replace(request, context=context, dockerfile=dockerfile, output=output)


def load_built(request: BuildRequest, builder: str) -> BuiltImage:
    """Read a just-built image back from its layout, verifying bytes and platform.

    The digest comes from the verified manifest bytes; the image config must say the platform
    that was requested (a builder silently building for the host is the classic failure).
    """
    store = LayoutStore(request.output)
    where = f"{request.platform}: {builder} image {request.output}:{request.tag}"
    fetched = store.manifest(request.tag)
    if not mediatype.is_image_manifest(fetched.media_type):
        raise VerificationError(f"{where}: expected an image manifest, got {fetched.media_type}")
    manifest = ImageManifest.parse(fetched.raw, fetched.media_type, where)
    config = ImageConfig.parse(store.read_bytes(manifest.config.digest, "config"), f"{where}: config")
    verify_platform(request.platform, config.platform, where)
    return BuiltImage(
        platform=request.platform,
        layout=request.output,
        tag=request.tag,
        digest=fetched.digest,
        media_type=fetched.media_type,
    )


def common_flags(request: BuildRequest, build_args: dict[str, str]) -> list[str]:
    """The `--build-arg`, `--label` and `--target` flags buildah, podman and buildx share."""
    flags: list[str] = []
    for key, value in build_args.items():
        flags += ["--build-arg", f"{key}={value}"]
    for key, value in request.labels.items():
        flags += ["--label", f"{key}={value}"]
    if request.target:
        flags += ["--target", request.target]
    return flags


MEDIA_FORMATS = {"oci": mediatype.OCI_MANIFEST, "docker": mediatype.DOCKER_MANIFEST}


def requested_format(request: BuildRequest) -> str:
    """The image format a request asks for ("oci" or "docker"); anything else is refused."""
    if request.media_format not in MEDIA_FORMATS:
        raise UsageError(f"unknown image format {request.media_format!r}: choose oci or docker")
    return request.media_format
