"""Can manifesto build and publish here? Collect every Problem, optionally fix what root can.

Checks only; the CLI command that prints them belongs to the CLI. Combines the builder's own
check(), binfmt/qemu checks for the platforms this host does not run natively, and a registry
reachability check that the caller passes in (it needs credentials and a target).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from manifesto.build import binfmt, get_builder
from manifesto.build.base import Problem
from manifesto.build.runner import Runner
from manifesto.oci.platform import Platform


def run_checks(
    builder_name: str,
    platforms: list[Platform],
    registry_check: Callable[[], list[Problem]] | None = None,
    fix: bool = False,
    *,
    runner: Runner | None = None,
    binfmt_root: Path = binfmt.PROC,
    builder_options: dict[str, object] | None = None,
) -> list[Problem]:
    """Every problem found, after running the automatic fixes when `fix` is true.

    With `fix`, the commands of fixable problems (binfmt, missing packages) run (as root) and the checks run again,
    so the result is what is still wrong afterwards.
    """
    runner = runner or Runner()
    builder = get_builder(builder_name, runner=runner, **(builder_options or {}))

    def collect() -> tuple[list[Problem], list[Problem]]:
        emulation = binfmt.check(platforms, root=binfmt_root)
        return list(builder.check()), emulation

    builder_problems, emulation = collect()
    if fix and any(p.commands for p in builder_problems + emulation):
        binfmt.fix(builder_problems + emulation, runner)
        builder_problems, emulation = collect()
    problems = builder_problems + emulation
    if registry_check is not None:
        problems += list(registry_check())
    return problems
