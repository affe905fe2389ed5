"""Build with podman: BuildahBuilder's flow (podman build embeds buildah) with podman's flags.

Differences from buildah that matter here: podman keeps libpod state in a tmpdir (pointed into
our private storage so nothing lands in /run/libpod), caches intermediate layers by default
(turned off: each platform is built once, straight into the layout, and nothing is kept in local
storage), and refuses a --runroot longer than 50 characters (then a short one in the temp dir
is used).
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from manifesto.builders.base import BuildRequest
from manifesto.builders.buildah import BuildahBuilder

MAX_RUNROOT = 50  # podman 4.3 refuses a longer --runroot ("longer than 50 characters")


class PodmanBuilder(BuildahBuilder):
    """Builds with podman into OCI layouts."""

    name = "podman"
    tool = "podman"

    @property
    def runroot(self) -> Path:
        """Under the storage dir when short enough, else a short path in the temp dir.

        The fallback name is derived from the storage path, so one storage keeps one runroot.
        """
        inside = super().runroot
        if len(str(inside)) <= MAX_RUNROOT:
            return inside
        key = hashlib.sha256(str(self.storage_root.resolve()).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"manifesto-podman-{key}"

    def global_args(self) -> list[str]:
        return [*super().global_args(), "--tmpdir", str(self.storage_root / "tmp"), "--events-backend", "file"]

    def build_args(
        self, request: BuildRequest, destination: str | None = None, authfile: Path | None = None
    ) -> list[str]:
        args = super().build_args(request, destination, authfile)
        return [args[0], "--layers=false", *args[1:]]
