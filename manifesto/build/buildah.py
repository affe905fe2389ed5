"""Build with buildah: `buildah build --platform ...`, then `buildah push` into an OCI layout.

Made to work unprivileged-container style on a plain host as root: a private storage root per
manifesto cache (never the system's /var/lib/containers), the vfs storage driver (overlay fails
inside many containers and on some filesystems; vfs works everywhere, at the cost of disk for
large images) and chroot isolation (no runc/crun or cgroups needed). buildah sets the build
args TARGETPLATFORM/TARGETOS/TARGETARCH/TARGETVARIANT and BUILDPLATFORM/BUILDOS/BUILDARCH
itself from --platform (checked on 1.28); passing them again makes it warn, so we don't.
With --timestamp (SOURCE_DATE_EPOCH) buildah clamps the config, history and layer file times,
so the same inputs give the same manifest digest.

PodmanBuilder (podman.py) is this class with a different tool name and a few flags.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from manifesto.build.base import (
    BuildRequest,
    BuiltImage,
    Problem,
    common_flags,
    load_built,
    validate_request,
)
from manifesto.build.runner import Runner, apt_package, missing_tool_message
from manifesto.errors import BuildError
from manifesto.log import get_logger
from manifesto.store.layout import LayoutStore

log = get_logger("manifesto.build")


def default_storage(tool: str) -> Path:
    """`$XDG_CACHE_HOME/manifesto/<tool>` (or ~/.cache/manifesto/<tool>)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "manifesto" / tool


class BuildahBuilder:
    """Builds with buildah into OCI layouts; safe to call from several threads at once."""

    name = "buildah"
    tool = "buildah"

    def __init__(
        self,
        runner: Runner | None = None,
        *,
        storage: Path | None = None,
        storage_driver: str = "vfs",
        isolation: str = "chroot",
        executable: str | None = None,
    ):
        self.runner = runner or Runner()
        self.executable = executable or self.tool
        self.storage = Path(storage) if storage else default_storage(self.tool)
        self.storage_driver = storage_driver
        self.isolation = isolation

    def __repr__(self) -> str:
        return f"{type(self).__name__}(storage={str(self.storage)!r}, driver={self.storage_driver!r})"

    # ---- command lines (one place each, so podman overrides only what differs) -------------

    @property
    def storage_root(self) -> Path:
        """One root per storage driver: c/storage refuses a root made by another driver."""
        return self.storage / self.storage_driver

    @property
    def runroot(self) -> Path:
        """Where the tool keeps run-time state (locks, mount points) for our storage."""
        return self.storage_root / "run"

    def global_args(self) -> list[str]:
        root = self.storage_root
        return ["--root", str(root / "root"), "--runroot", str(self.runroot), "--storage-driver", self.storage_driver]

    def command(self, *args: str) -> list[str]:
        return [self.executable, *self.global_args(), *args]

    def build_args(self, request: BuildRequest) -> list[str]:
        """One command that builds and writes the image straight into the OCI layout
        (`-t oci:DIR:TAG`): nothing is left in local storage to push or remove afterwards."""
        args = [
            "build",
            "--isolation", self.isolation,
            "--platform", str(request.platform),
            "--format", "oci",
            "--disable-compression=false",  # gzip layers, as a push would
            "-f", str(request.dockerfile),
        ]  # fmt: skip
        build_args = dict(request.args)
        if request.source_date_epoch is not None:
            args += ["--timestamp", str(request.source_date_epoch)]
            # BuildKit passes SOURCE_DATE_EPOCH as a build arg; do the same when the Dockerfile
            # can use it (an unused --build-arg makes buildah print a warning).
            if "SOURCE_DATE_EPOCH" in _read_text(request.dockerfile):
                build_args.setdefault("SOURCE_DATE_EPOCH", str(request.source_date_epoch))
        args += common_flags(request, build_args)
        args += ["-t", f"oci:{request.output}:{request.tag}", str(request.context)]
        return args

    def info_args(self) -> list[str]:
        return ["info"]

    # ---- the Builder protocol ------------------------------------------------------------

    def check(self) -> list[Problem]:
        """Tool installed, storage root writable, and the tool can open its storage there."""
        if shutil.which(self.executable) is None:
            pkg = apt_package(self.executable) or self.tool
            return [
                Problem(
                    f"{missing_tool_message(self.executable)}: the {self.name} builder needs it",
                    fix=f"apt-get install {pkg}",
                    commands=(("apt-get", "install", "-y", pkg),),
                )
            ]
        try:
            self.storage_root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            return [Problem(f"{self.name} storage {self.storage_root} cannot be created: {e.strerror}")]
        if not os.access(self.storage_root, os.W_OK):
            return [Problem(f"{self.name} storage {self.storage_root} is not writable")]
        try:
            done = self.runner.capture(self.command(*self.info_args()), check=False)
        except BuildError as e:
            return [Problem(f"{self.name}: {e}")]
        if done.returncode != 0:
            return [
                Problem(
                    f"{self.name} cannot use its storage at {self.storage_root} "
                    f"(driver {self.storage_driver}): {done.first_error_line()}"
                )
            ]
        return []

    def build(self, request: BuildRequest, on_line: Callable[[str], None]) -> BuiltImage:
        """Build into the layout at request.output, then verify what was written."""
        request = validate_request(request)
        label = str(request.platform)
        log.info("build_start", builder=self.name, platform=label, output=str(request.output), tag=request.tag)
        existed = request.output.exists()
        store = LayoutStore(request.output, create=True)
        try:
            # containers/image rewrites index.json without a lock: one writer per layout at a time.
            with store.lock():
                self.runner.run(self.command(*self.build_args(request)), on_line=on_line, label=label)
        except BaseException:
            if not existed:  # a failed build leaves nothing behind
                shutil.rmtree(request.output, ignore_errors=True)
            raise
        built = load_built(request, self.name)
        log.info("build_done", builder=self.name, platform=label, digest=str(built.digest))
        return built


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
