"""A copy of this project as a fresh clone has it, for tests that run its docs, dist or action.

Why: "works from a fresh clone" must not lean on what a developer's tree has lying around (the
venv, the busybox cache, prepared example binaries, build output). The files are the ones git
tracks plus the new ones it would track (not ignored), as `git ls-files` lists them.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .tools import REPO_ROOT, require


def clone_files() -> list[str]:
    """Paths (relative to the repository) a fresh clone would have: tracked or not ignored."""
    git = require("git")
    done = subprocess.run(
        [git, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT, capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    names = sorted({n for n in done.stdout.decode().split("\0") if n})
    return [n for n in names if (REPO_ROOT / n).is_file() or (REPO_ROOT / n).is_symlink()]


def fresh_clone(dest: Path) -> Path:
    """Copy the clone's files (modes kept, symlinks as symlinks) into `dest`; return it."""
    for name in clone_files():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, target, follow_symlinks=False)
    return dest
