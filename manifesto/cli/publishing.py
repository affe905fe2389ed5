"""`publish`, `build`, `assemble`, `doctor` and `copy`: the platforms.yaml side of the CLI."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from manifesto.errors import UsageError
from manifesto.oci.platform import Platform
from manifesto.oci.reference import Reference

if TYPE_CHECKING:  # the matrix (PyYAML) is imported by the commands that read one: not `copy`
    from manifesto.matrix import plan as planning
    from manifesto.matrix.model import Target


def _platforms(values: list[str]) -> list[Platform]:
    """--platform values (repeatable, comma-separated). An empty one is refused, not read as
    "no filter": `--platform "$PLATFORM"` with the variable unset must not publish everything."""
    out = []
    for value in values:
        items = [p.strip() for p in value.split(",")]
        if not all(items):
            raise UsageError(
                f"--platform {value!r}: empty platform name (an unset variable?); name platforms like "
                "linux/amd64, or leave --platform out for every platform of the matrix"
            )
        out += [Platform.parse(p) for p in items]
    return out


def _target(text: str) -> Target:
    """--image: `oci:DIR` or a repository (Target.parse, worded for the command line)."""
    from manifesto.matrix.model import Target

    return Target.parse(text, Path.cwd(), name="--image", tags_from="--tag or platforms.yaml")


def _load(args: argparse.Namespace, target: Target | None = None) -> planning.Plan:
    """The plan of -f with --image (or `target`), --tag, --builder and --platform (jobs.publish.plan)."""
    from manifesto.jobs.publish import plan

    if target is None and getattr(args, "image", None):
        target = _target(args.image)
    return plan(
        args.file,
        image=target,
        tags=getattr(args, "tag", None) or (),
        platforms=_platforms(getattr(args, "platform", []) or []),
        builder=getattr(args, "builder", None),
    )


def _epoch(args: argparse.Namespace) -> int | None:
    """--source-date-epoch, else $SOURCE_DATE_EPOCH; set but empty is an error, not "unset":
    a CI line that failed to compute it must not silently give up reproducibility."""
    if args.source_date_epoch is not None:
        value, name = str(args.source_date_epoch), "--source-date-epoch"
    elif "SOURCE_DATE_EPOCH" in os.environ:
        value, name = os.environ["SOURCE_DATE_EPOCH"], "SOURCE_DATE_EPOCH"
        if not value.strip():
            raise UsageError("SOURCE_DATE_EPOCH is set but empty (unset it, or set it to a Unix time)")
    else:
        return None
    try:
        epoch = int(value)
    except ValueError:
        raise UsageError(f"{name} must be an integer, not {value!r}") from None
    if epoch < 0:
        raise UsageError(f"{name} must not be negative, got {epoch}")
    return epoch


def _stderr(line: str) -> None:
    sys.stderr.write(line.rstrip("\n") + "\n")


def _options(args: argparse.Namespace, plan: planning.Plan, epoch: int | None, on_event=None, on_line=None):
    from manifesto.jobs.publish import Options

    quiet = getattr(args, "quiet", False)
    more = {"on_event": on_event} if on_event is not None else {}
    if on_line is None:
        on_line = (lambda line: None) if quiet else _stderr
    return Options(
        builder=None,  # each build step's own (jobs.builds.choose_builders: `auto` per Dockerfile)
        jobs=args.jobs or 0,
        source_date_epoch=epoch,
        insecure=getattr(args, "insecure", False),
        keep_work=args.keep_work,
        no_cache=args.no_cache,
        cache_from=_cache_repo(args.cache_from, "--cache-from"),
        cache_to=_cache_repo(args.cache_to, "--cache-to"),
        on_line=on_line,
        on_notice=_stderr,
        **more,
    )


def _cache_repo(text: str | None, flag: str) -> str | None:
    """--cache-from/--cache-to: a registry repository (matrix.buildcache's rule) or None."""
    from manifesto.matrix.buildcache import cache_repository

    return cache_repository(text, flag) if text else None


def _render(plan: planning.Plan, args: argparse.Namespace, *, push_by_digest: bool = False) -> str:
    """The plan `--dry-run` prints, each build step with the builder that runs it and why
    (jobs.builds.choose_builders, as the run itself chooses), then the build cache it uses."""
    from manifesto.jobs.builds import Options, cache_lines, choose_builders
    from manifesto.matrix.plan import render

    choices = choose_builders(plan)
    text = render(plan, push_by_digest=push_by_digest, builders=[str(choice) for choice in choices])
    options = Options(
        no_cache=args.no_cache,
        cache_from=_cache_repo(args.cache_from, "--cache-from"),
        cache_to=_cache_repo(args.cache_to, "--cache-to"),
    )
    cache = cache_lines(plan, choices, options)
    return text + ("\n" + "\n".join(cache) + "\n" if cache else "")


def _check_args(args: argparse.Namespace) -> int | None:
    """What can be refused before a plan is made or anything is built; returns the epoch."""
    if args.jobs is not None and args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    return _epoch(args)


def _check_outputs(*outputs: tuple[str, str | None]) -> None:
    """Refuse an unwritable --report / --digest-file now, not after the push."""
    for flag, value in outputs:
        if value:
            _check_writable(Path(value), flag)


def _check_writable(path: Path, flag: str) -> None:
    """The file must not be a directory; the nearest existing ancestor must be a directory this
    process can write in (the missing ones are created when the file is written)."""
    if path.is_dir():
        raise UsageError(f"{flag} {path}: is a directory")
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"{flag} {path}: not writable")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        if ancestor.is_symlink():  # dangling
            raise UsageError(f"{flag} {path}: {ancestor} is a broken symbolic link")
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"{flag} {path}: {ancestor} is not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path}: cannot write in {ancestor}")


def _finish(result, report: str | None, quiet: bool = False) -> int:
    """The summary table (not with -q), the --report, and the result: the index digest."""
    from manifesto.cli.progress import summary
    from manifesto.jobs.publish import write_json

    if not quiet:
        sys.stderr.write(summary(result.outcomes, result.children) + "\n")
    if report:
        write_json(Path(report), result.report())
    if result.index is not None:
        if not quiet:
            moved = ", ".join(result.tags_moved) or "none"
            kept = f" (unchanged: {', '.join(result.tags_unchanged)})" if result.tags_unchanged else ""
            sys.stderr.write(f"index {result.index.digest} -> {result.target} tags: {moved}{kept}\n")
        print(result.index.digest)
    return 0


def _run(args: argparse.Namespace, plan: planning.Plan, epoch: int | None, **kwargs):
    """jobs.publish.publish with phase lines on stderr (not with -q) and, when it fails, the
    summary table and the --report (what was pushed, untagged) before the error is raised."""
    from manifesto.cli.progress import summary
    from manifesto.errors import ManifestoError
    from manifesto.jobs.progress import summarize
    from manifesto.jobs.publish import publish, write_json

    quiet = getattr(args, "quiet", False)
    events: list = []
    show = _watcher(plan, quiet)
    board = show if hasattr(show, "line") else None

    def on_event(event) -> None:
        events.append(event)
        if not quiet:
            show(event)

    try:
        with show:
            options = _options(args, plan, epoch, on_event, board.line if board is not None else None)
            return publish(plan, options, **kwargs)
    except ManifestoError as e:
        outcomes = summarize(list(events), [str(s.platform) for s in plan.build_steps])
        if events and not quiet:  # a run refused before any build has no table
            sys.stderr.write(summary(outcomes) + "\n")
        if args.report and events:
            pushed = [o.to_record() for o in outcomes if o.status == "pushed"]
            first = (str(e).splitlines() or [type(e).__name__])[0]
            data = {"target": str(plan.target), "error": first, "summary": [o.to_record() for o in outcomes], "pushed": pushed}
            write_json(Path(args.report), data)
        raise


def _watcher(plan: planning.Plan, quiet: bool):
    """Who shows the run: a live board on a terminal (cli/board.py, which loads rich), else plain
    phase lines with a heartbeat (the CI log's way)."""
    if not quiet and sys.stderr.isatty():
        from manifesto.cli.board import Board

        return Board([str(s.platform) for s in plan.build_steps], sys.stderr)
    from manifesto.cli.progress import Lines

    return Lines(_stderr, interval=_heartbeat())


def _heartbeat() -> float:
    """Seconds between heartbeat lines: $MANIFESTO_HEARTBEAT (tests set it short), else 10."""
    from manifesto.cli.progress import HEARTBEAT

    value = os.environ.get("MANIFESTO_HEARTBEAT", "")
    try:
        return float(value) if value and float(value) > 0 else HEARTBEAT
    except ValueError:
        raise UsageError(f"MANIFESTO_HEARTBEAT must be a number of seconds, not {value!r}") from None


def _refuse_partial(args: argparse.Namespace, plan: planning.Plan) -> None:
    """`--platform` without --push-by-digest would move every tag to an index of just those
    platforms: refuse unless --allow-partial says that is really wanted."""
    if not plan.filtered or args.push_by_digest or args.allow_partial:
        return
    chosen = [s.platform for s in plan.steps if s.platform is not None]
    left = [
        str(e.platform) if e.platform is not None else f"image: {e.image.familiar if e.image else '?'}"
        for e in plan.matrix.entries
        if e.platform is None or not any(e.platform.same_as(p) for p in chosen)
    ]
    raise UsageError(
        f"--platform {', '.join(map(str, chosen))} leaves out {', '.join(left)} of {plan.matrix.path}, "
        f"so {'tags' if len(plan.tags) > 1 else 'tag'} {', '.join(plan.tags)} would move to an index without them; "
        "for a split publish add "
        "--push-by-digest --digest-file FILE (then `manifesto assemble`), or pass --allow-partial "
        "to publish an index of just these platforms"
    )


def publish(args: argparse.Namespace) -> int:
    plan = _load(args)
    if args.digest_file and not args.push_by_digest:
        raise UsageError("--digest-file goes with --push-by-digest")
    if args.push_by_digest and plan.target.is_layout:
        raise UsageError("--push-by-digest needs a registry target")
    _refuse_partial(args, plan)  # --dry-run too: the plan it prints is one that can run
    epoch = _check_args(args)
    _check_outputs(("--report", args.report), ("--digest-file", args.digest_file))
    if args.dry_run:
        print(_render(plan, args, push_by_digest=args.push_by_digest))
        return 0
    result = _run(args, plan, epoch, push_index_too=not args.push_by_digest)
    if args.digest_file:
        from manifesto.jobs.publish import write_json

        write_json(Path(args.digest_file), result.report())
    return _finish(result, args.report, args.quiet)


def build(args: argparse.Namespace) -> int:
    from manifesto.matrix.model import Target

    output = Path(args.output).resolve()
    plan = _load(args, Target(layout=output))
    epoch = _check_args(args)
    _check_outputs(("--report", args.report))
    if args.dry_run:
        print(_render(plan, args))
        return 0
    result = _run(args, plan, epoch)
    if not args.quiet:
        sys.stderr.write(f"wrote OCI image layout {output}\n")
    return _finish(result, args.report, args.quiet)


def assemble(args: argparse.Namespace) -> int:
    from manifesto.jobs.split import assemble as run

    plan = _load(args)
    _check_outputs(("--report", args.report))
    result = run(plan, args.digest_files, insecure=args.insecure)
    return _finish(result, args.report)


def _registry_problems(ref: Reference, insecure: bool) -> list:
    """Can the stored credentials push to `ref`'s repository? The probe publish runs first
    (RegistryClient.check_push), its failure turned into a Problem with its fix."""
    from manifesto.builders.base import Problem
    from manifesto.errors import AuthError, ManifestoError, NetworkError
    from manifesto.store.registry.pool import Registries

    host = ref.registry

    async def probe() -> None:
        async with Registries(insecure=insecure) as regs:
            await regs.client(ref).check_push(ref.repository, ref.name)

    try:
        asyncio.run(probe())
    except AuthError as e:
        return [Problem(f"registry {host}: cannot push to {ref.name}: {e}", fix=f"manifesto login {host}")]
    except NetworkError as e:  # says itself what happened: cannot reach, TLS, connection lost
        return [Problem(str(e))]
    except ManifestoError as e:
        return [Problem(f"registry {host}: cannot push to {ref.name}: {e}")]
    return []


def doctor(args: argparse.Namespace) -> int:
    from manifesto.jobs.builds import choose_builders
    from manifesto.jobs.doctor import run_checks

    builders: tuple[str, ...] = (args.builder,) if args.builder and args.builder != "auto" else ("buildah",)
    platforms: list[Platform] = _platforms(args.platform or [])
    ref = _target(args.image).reference if args.image else None
    if Path(args.file).exists() or args.file != "platforms.yaml":
        plan = _load(args)
        chosen = tuple(dict.fromkeys(c.builder for c in choose_builders(plan)))
        builders = chosen or builders  # what the run will use (auto: per Dockerfile)
        platforms = platforms or [s.platform for s in plan.build_steps]
        ref = plan.target.reference
    registry_check = (lambda: _registry_problems(ref, args.insecure)) if ref is not None else None

    problems = run_checks(
        builders, platforms, registry_check, fix=args.fix, on_line=lambda line: print(line, file=sys.stderr)
    )
    builder = ", ".join(builders)
    names = ", ".join(str(p) for p in platforms) or "no platforms"
    if not problems:
        where = f" and push to {ref.name}" if ref is not None else ""
        print(f"ok: {builder or 'buildah'} can build {names} here{where}")
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
    from manifesto.jobs.copy import copy as run

    if sys.stderr.isatty() and not getattr(args, "quiet", False):  # a live line per blob
        from manifesto.cli.board import BlobBars

        with BlobBars(sys.stderr) as bars:
            digest = run(args.source, args.destination, insecure=args.insecure, on_bytes=bars)
    else:
        digest = run(args.source, args.destination, insecure=args.insecure)
    print(digest)
    return 0
