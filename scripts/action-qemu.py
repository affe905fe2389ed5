"""Make this machine able to run the matrix's foreign platforms under qemu (the GitHub Action's step).

Usage: python scripts/action-qemu.py [-f platforms.yaml] [--platform P]...   (as root to fix)

Why a script and not `manifesto doctor --fix`: doctor also checks the builder and the target
registry (a probe push that needs the job's login, which root's environment does not have),
and a command like `inspect` has no matrix at all. This reads the matrix with manifesto
itself, keeps the platforms whose builder executes the image's commands (the native builder
never does), and runs manifesto's own binfmt check and fixes for them: installs
qemu-user-static and binfmt-support when missing, mounts binfmt_misc, enables the handlers.
Exit 0 when every platform can run (or there is nothing to set up), 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="action-qemu", description=__doc__.splitlines()[0])
    parser.add_argument("-f", "--file", default="platforms.yaml")
    parser.add_argument("--platform", action="append", default=[])
    parser.add_argument("--check", action="store_true", help="only report, change nothing")
    args = parser.parse_args(argv)

    from manifesto.builders import WRITES_ONLY, binfmt
    from manifesto.builders.runner import Runner
    from manifesto.errors import ManifestoError
    from manifesto.jobs.builds import choose_builders
    from manifesto.jobs.publish import plan

    if not Path(args.file).is_file():
        print(f"qemu: no {args.file} here: nothing to set up")
        return 0
    try:
        platforms = [p.strip() for value in args.platform for p in value.split(",") if p.strip()]
        the_plan = plan(args.file, platforms=platforms)
        choices = choose_builders(the_plan)
    except ManifestoError as e:
        print(f"qemu: {args.file}: {e}", file=sys.stderr)
        return 1
    executed = [s.platform for s, c in zip(the_plan.build_steps, choices) if c.builder not in WRITES_ONLY]
    foreign = [p for p in dict.fromkeys(executed) if not binfmt.is_native(p)]
    if not foreign:
        print("qemu: not needed (every build runs natively or with the native builder)")
        return 0
    names = ", ".join(str(p) for p in foreign)
    problems = binfmt.check(foreign)
    if problems and not args.check:
        for failure in binfmt.run_fixes(problems, Runner(), on_line=lambda line: print(f"  {line}")):
            print(f"qemu: {failure.describe().strip()}", file=sys.stderr)
        problems = binfmt.check(foreign)
    if problems:
        for problem in problems:
            print(f"qemu: {problem.message}", file=sys.stderr)
            if problem.fix:
                print(f"    fix: {problem.fix}", file=sys.stderr)
        return 1
    print(f"qemu: ready for {names}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
