"""Build with podman: BuildahBuilder's flow (podman build embeds buildah) with podman's flags.

Differences from buildah that matter here: podman keeps libpod state in a tmpdir (pointed into
our private storage so nothing lands in /run/libpod), and refuses a --runroot longer than 50
characters (then a short one in the temp dir is used). Layer caching (`--layers`, podman's
default too) works as in buildah: one persistent store per platform. podman 4.3's `push` has no
`--blob-cache`, so its exports compress every layer again (no blob cache is kept).
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from manifesto.builders.buildah import BuildahBuilder
from manifesto.builders.storage import PODMAN_PROBE
from manifesto.oci.platform import Platform

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
        return inside if len(str(inside)) <= MAX_RUNROOT else self._short()

    def runroot_of(self, store: Path) -> Path:
        """A platform store's runroot: inside it when short enough, else in the temp dir."""
        inside = super().runroot_of(store)
        if len(str(inside)) <= MAX_RUNROOT or store == self.storage_root:
            return inside
        return self._short() / store.name

    def _short(self) -> Path:
        key = hashlib.sha256(str(self.storage_root.resolve()).encode()).hexdigest()[:8]
        return Path(tempfile.gettempdir()) / f"manifesto-podman-{key}"

    probe_steps = PODMAN_PROBE

    def probe_args(self, root: Path, runroot: Path) -> list[str]:
        return [*super().probe_args(root, runroot), "--tmpdir", str(root / "tmp"), "--events-backend", "file"]

    def blob_cache(self, store: Path) -> Path | None:
        """None: podman 4.3's `push` has no `--blob-cache` (its `build` hides one, which alone
        would fill a cache nothing reads)."""
        return None

    def push_args(self, destination: str, authfile: Path, blobs: Path | None = None) -> list[str]:
        """podman compresses for a `dir:` destination only when asked (`--compress`)."""
        args = super().push_args(destination, authfile, blobs)
        return [args[0], "--compress", *args[1:]] if destination.startswith("dir:") else args

    def global_args(self, platform: Platform | None = None) -> list[str]:
        tmpdir = self.storage_root / "tmp"
        return [*super().global_args(platform), "--tmpdir", str(tmpdir), "--events-backend", "file"]
