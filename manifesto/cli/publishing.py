"""`publish`, `build`, `assemble`, `doctor` and `copy`: the platforms.yaml side of the CLI."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from dataclasses import replace
from pathlib import Path

from manifesto.errors import UsageError
from manifesto.matrix import plan as planning
from manifesto.matrix.model import Target, arch_ref_problem
from manifesto.oci.platform import Platform
from manifesto.oci.reference import Reference, check_tag


def _platforms(values: list[str]) -> list[Platform]:
    return [Platform.parse(p) for v in values for p in v.split(",") if p.strip()]


def _load(args: argparse.Namespace, target: Target | None = None):
    from manifesto.matrix.spec import load

    matrix = load(Path(args.file))
    if getattr(args, "image", None):
        ref = Reference.parse(args.image)
        if ref.tag or ref.digest:
            raise UsageError(f"--image {args.image}: give a repository; tags come from --tag or platforms.yaml")
        matrix = replace(matrix, image=Target(reference=ref))
    if target is not None:
        matrix = replace(matrix, image=target)
    if getattr(args, "tag", None):
        matrix = replace(matrix, tags=tuple(dict.fromkeys(check_tag(t) for t in args.tag)))
    if matrix.arch_tag and matrix.image.reference is not None:  # --image/--tag may break it
        problem = arch_ref_problem(matrix.arch_tag, matrix.image.reference, matrix.tags, matrix.entries)
        if problem:
            raise UsageError(f"{args.file}: {problem}")
    return planning.make_plan(matrix, _platforms(getattr(args, "platform", []) or []))


def _epoch(args: argparse.Namespace) -> int | None:
    value = args.source_date_epoch if args.source_date_epoch is not None else os.environ.get("SOURCE_DATE_EPOCH")
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"SOURCE_DATE_EPOCH must be an integer, not {value!r}") from None


def _options(args: argparse.Namespace, plan: planning.Plan):
    from manifesto.build import get_builder
    from manifesto.matrix.publish import Options

    quiet = getattr(args, "quiet", False)

    def on_line(line: str) -> None:
        if not quiet:
            sys.stderr.write(line.rstrip("\n") + "\n")

    builder = get_builder(args.builder or plan.builder) if plan.build_steps else None
    if args.jobs is not None and args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    return Options(
        builder=builder,
        jobs=args.jobs or 0,
        source_date_epoch=_epoch(args),
        insecure=getattr(args, "insecure", False),
        keep_work=args.keep_work,
        on_line=on_line,
    )


def _finish(result, report: str | None) -> int:
    from manifesto.cli.render import table
    from manifesto.matrix.publish import write_json

    rows = [[str(c.platform), str(c.digest), str(c.size), c.source] for c in result.children]
    sys.stderr.write(table(["platform", "digest", "size", "source"], rows) + "\n")
    if report:
        write_json(Path(report), result.report())
    if result.index is not None:
        moved = ", ".join(result.tags_moved) or "none"
        kept = f" (unchanged: {', '.join(result.tags_unchanged)})" if result.tags_unchanged else ""
        sys.stderr.write(f"index {result.index.digest} -> {result.target} tags: {moved}{kept}\n")
        print(result.index.digest)
    return 0


def publish(args: argparse.Namespace) -> int:
    from manifesto.matrix.publish import publish as run

    plan = _load(args)
    if args.digest_file and not args.push_by_digest:
        raise UsageError("--digest-file goes with --push-by-digest")
    if args.dry_run:
        print(planning.render(plan))
        return 0
    if args.push_by_digest and plan.target.is_layout:
        raise UsageError("--push-by-digest needs a registry target")
    result = run(plan, _options(args, plan), push_index_too=not args.push_by_digest)
    if args.digest_file:
        from manifesto.matrix.publish import write_json

        write_json(Path(args.digest_file), result.report())
    return _finish(result, args.report)


def build(args: argparse.Namespace) -> int:
    from manifesto.matrix.publish import publish as run

    output = Path(args.output).resolve()
    plan = _load(args, Target(layout=output))
    if args.dry_run:
        print(planning.render(plan))
        return 0
    result = run(plan, _options(args, plan))
    sys.stderr.write(f"wrote OCI image layout {output}\n")
    return _finish(result, args.report)


def assemble(args: argparse.Namespace) -> int:
    from manifesto.matrix.publish import assemble_from_files

    plan = _load(args)
    result = assemble_from_files(plan, [Path(f) for f in args.digest_files], insecure=args.insecure)
    return _finish(result, args.report)


def doctor(args: argparse.Namespace) -> int:
    from manifesto.build.base import Problem
    from manifesto.doctor import run_checks

    builder = args.builder
    platforms: list[Platform] = _platforms(args.platform or [])
    registry_check = None
    if Path(args.file).exists() or args.file != "platforms.yaml":
        plan = _load(args)
        builder = builder or plan.builder
        platforms = platforms or [s.platform for s in plan.build_steps]
        ref = plan.target.reference
        if ref is not None:

            def registry_check() -> list[Problem]:
                from manifesto.errors import ManifestoError
                from manifesto.store.registry.pool import Registries

                async def ping() -> None:
                    async with Registries(insecure=args.insecure) as regs:
                        await regs.client(ref).check_login()

                try:
                    asyncio.run(ping())
                except ManifestoError as e:
                    return [Problem(f"registry {ref.registry}: {e}", fix=f"manifesto login {ref.registry}")]
                return []

    problems = run_checks(builder or "buildah", platforms, registry_check, fix=args.fix)
    names = ", ".join(str(p) for p in platforms) or "no platforms"
    if not problems:
        print(f"ok: {builder or 'buildah'} can build {names} here")
        return 0
    for p in problems:
        print(f"problem: {p.message}")
        if p.fix:
            print(f"    fix: {p.fix}")
    if args.fix:
        print(f"{len(problems)} problem(s) remain")
    elif any(p.commands for p in problems):  # only then can --fix do anything
        print(f"{len(problems)} problem(s); `manifesto doctor --fix` runs the fixes that need only root")
    else:
        print(f"{len(problems)} problem(s)")
    return 1


def copy(args: argparse.Namespace) -> int:
    from manifesto.copying import copy as run

    digest = run(args.source, args.destination, insecure=args.insecure)
    print(digest)
    return 0
