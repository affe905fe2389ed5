"""Can manifesto build and publish here? Collect every Problem, optionally fix what root can.

Checks only; the CLI command that prints them belongs to the CLI. Combines the builder's own
check(), binfmt/qemu checks for the platforms this host does not run natively, and a registry
reachability check that the caller passes in (it needs credentials and a target), and, given
the plan, the coverage of its platforms by the base images (jobs/coverage.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from manifesto.builders import WRITES_ONLY, binfmt, get_builder
from manifesto.builders.base import Problem
from manifesto.builders.runner import Runner
from manifesto.jobs import coverage
from manifesto.log import get_logger
from manifesto.matrix.plan import Plan
from manifesto.oci.platform import Platform

log = get_logger("manifesto.jobs.doctor")

COVERAGE_FIX = "leave the platform out of the matrix, or use a base that has it (platforms: from-base builds exactly the base's)"


def run_checks(
    builder_name: str | Sequence[str],
    platforms: list[Platform],
    registry_check: Callable[[], list[Problem]] | None = None,
    fix: bool = False,
    *,
    runner: Runner | None = None,
    binfmt_root: Path = binfmt.PROC,
    builder_options: dict[str, object] | None = None,
    on_line: Callable[[str], None] | None = None,
    plan: Plan | None = None,
    insecure: bool = False,
) -> list[Problem]:
    """Every problem found, after running the automatic fixes when `fix` is true.

    `builder_name` is one builder or the builders a plan chose (each checked once); qemu is
    checked only when one of them executes the image's commands (native never does).

    With `fix`, the commands of fixable problems (missing packages, binfmt_misc mount and qemu
    handlers; see binfmt.run_fixes) run as root, their output streamed to `on_line`, and the
    checks run again: the result is what is still wrong afterwards. A problem whose fix failed
    (or was not run because we are not root) says so in its message, with the failing command's
    exit status and last output lines.

    With `plan`, every base each build pulls must provide that build's platform
    (jobs/coverage.py): checked before anything builds, the registry read as `insecure` says.
    """
    runner = runner or Runner()
    names = [builder_name] if isinstance(builder_name, str) else list(dict.fromkeys(builder_name))
    options = builder_options or {}  # for the tool builders; native takes none
    builders = [get_builder(name, runner=runner, **({} if name in WRITES_ONLY else options)) for name in names]
    executes = any(name not in WRITES_ONLY for name in names)  # only those run foreign binaries, under qemu

    def collect() -> list[Problem]:
        emulation = binfmt.check(platforms, root=binfmt_root) if executes else []
        return [p for b in builders for p in b.check()] + emulation

    problems = collect()
    if fix and any(p.commands for p in problems):
        failures = binfmt.run_fixes(problems, runner, on_line=on_line)
        for failure in failures:
            log.info("fix_failed", problem=failure.problem.message, argv=failure.argv, reason=failure.reason)
        problems = [_with_failures(p, failures) for p in collect()]
    if registry_check is not None:
        problems += list(registry_check())
    if plan is not None:
        problems += [Problem(gap.message, fix=COVERAGE_FIX) for gap in coverage.check(plan, insecure=insecure)]
    return problems


def _with_failures(problem: Problem, failures: list[binfmt.FixFailure]) -> Problem:
    """`problem` with the failed fixes that concern it appended to its message.

    A failure concerns a problem found again after the fixes when it is the same problem (same
    message) or when the problem's fix includes the command that failed (the install worked
    but the handler still cannot be enabled: the message changed, the failing step did not).
    """
    seen: set[str] = set()
    for failure in failures:
        same = failure.problem.message == problem.message
        if (same or (failure.argv is not None and failure.argv in problem.commands)) and failure.describe() not in seen:
            seen.add(failure.describe())
            problem = failure.annotate(problem)
    return problem
