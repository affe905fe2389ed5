"""Run one platform's image once, in a private buildah store, to see what machine it runs on.

Why: a config can say arm64 while its binaries are amd64 (a cross-build that copied the wrong
file); only running it tells. The image is pulled by digest into a throw-away vfs store (never
the build cache, never the system's storage) and run with chroot isolation, under qemu when it is
foreign, with the registry settings builds use (access.py: manifesto's credentials in a private
auth file, loopback registries over plain HTTP). The store is removed afterwards, however it ends.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from manifesto.builders.access import Resolve, registry_access
from manifesto.builders.base import BuildRequest
from manifesto.builders.buildah import BuildahBuilder
from manifesto.builders.runner import Runner
from manifesto.errors import BuildError
from manifesto.oci.platform import Platform
from manifesto.oci.reference import Reference

DEFAULT_COMMAND = ("uname", "-m")
PULL_SECONDS = 600.0
RUN_SECONDS = 300.0


def run_image(
    ref: Reference,
    platform: Platform,
    command: str | None = None,
    *,
    runner: Runner | None = None,
    insecure: bool = False,
    credentials: Resolve | None = None,
) -> str:
    """What `ref` (an image by digest) prints on stdout when run as `platform`: `uname -m`, or
    `command` through `/bin/sh -c`. A failure to pull or to run is a BuildError with its tail."""
    runner = runner or Runner()
    label = str(platform)
    root = Path(tempfile.mkdtemp(prefix="manifesto-run-"))
    try:
        tool = BuildahBuilder(runner, storage=root / "store", credentials=credentials)
        dockerfile = root / "Dockerfile"  # names the image, so access.py knows its registry
        dockerfile.write_text(f"FROM {ref}\n")
        request = BuildRequest(platform, root, dockerfile, {}, root / "out", insecure=insecure)
        name = "manifesto-run-" + label.replace("/", "-")
        with registry_access(request, {}, credentials) as access:
            pulled = runner.capture(
                tool.command("from", "--quiet", "--name", name, "--authfile", str(access.authfile),
                             "--platform", label, f"docker://{ref}"),
                label=label, env=access.env, check=False, timeout=PULL_SECONDS,
            )  # fmt: skip
        if pulled.returncode != 0:
            raise BuildError(f"{label}: buildah from failed: {pulled.first_error_line()}")
        argv = list(DEFAULT_COMMAND) if command is None else ["/bin/sh", "-c", command]
        done = runner.capture(
            tool.command("run", "--isolation", tool.isolation, name, "--", *argv),
            label=label, check=False, timeout=RUN_SECONDS,
        )  # fmt: skip
        if done.returncode != 0:
            raise BuildError(f"{label}: {' '.join(argv)} exited {done.returncode}: {done.first_error_line()}")
        return done.stdout
    finally:
        shutil.rmtree(root, ignore_errors=True)
