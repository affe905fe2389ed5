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
    """The plan of -f with --image (or `target`), --tag, --builder and --platform (jobs.publish.plan);
    --image repeated publishes to each (the first, then its mirrors)."""
    from manifesto.jobs.publish import plan

    images = getattr(args, "image", None) or []  # doctor's --image is one, publish's repeatable
    targets = [target] if target is not None else [_target(i) for i in ([images] if isinstance(images, str) else images)]
    return plan(
        args.file,
        image=targets or None,
        tags=getattr(args, "tag", None) or (),
        platforms=_platforms(getattr(args, "platform", []) or []),
        builder=getattr(args, "builder", None),
        insecure=getattr(args, "insecure", False),
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
    """A line on stderr (build output, a notice, a phase line) scrubbed of secrets: a RUN step
    may print a token."""
    from manifesto.redact import scrub

    sys.stderr.write(scrub(line.rstrip("\n")) + "\n")


def _options(args: argparse.Namespace, epoch: int | None, on_event=None, on_line=None):
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


def _would_change(args: argparse.Namespace, plan: planning.Plan, epoch: int | None) -> int:
    """`publish --check`: build, compute the index, push nothing (jobs/check.py); per tag
    `TAG: FROM → TO` (or unchanged) on stdout (on stderr with `--report -`); the report and CI
    outputs say the same (cli/report.check_facts); exit 0 when no tag would move, else 8."""
    from manifesto.cli.main import EXIT_WOULD_CHANGE
    from manifesto.cli.report import check_facts
    from manifesto.jobs.check import check

    for flag, value in {"--dry-run": args.dry_run, "--push-by-digest": args.push_by_digest}.items():
        if value:
            raise UsageError(f"--check does not go with {flag} (it pushes nothing; stdout says what would move)")
    from manifesto.cli import ci

    # under GitHub Actions the build logs are folded, with workflow commands off, as publish's are
    groups = ci.Groups(_stderr) if not args.quiet and ci.github() else None
    with _recorder("publish --check", args, str(plan.target)) as rec:
        try:
            result = check(plan, _options(args, epoch, groups and groups.event, groups and groups.line))
        finally:
            if groups is not None:
                groups.close()
        rec.succeeded(check_facts(result))
    out = sys.stderr if rec.owns_stdout else sys.stdout
    for t in result.tags:
        print(f"{t.name}: {t.now or 'absent'} → {t.wanted}" if t.changes else f"{t.name}: {t.wanted} (unchanged)", file=out)
    moving = [t for t in result.tags if t.changes]
    if not args.quiet:
        _stderr(f"index {result.index.digest}: {len(moving)} of {len(result.tags)} tag(s) would move; nothing pushed")
    return EXIT_WOULD_CHANGE if moving else 0


def _warn_coverage(plan: planning.Plan, args: argparse.Namespace) -> None:
    """A warning line per matrix platform a base image does not provide (jobs/coverage.py)."""
    from manifesto.jobs.coverage import check

    for gap in check(plan, insecure=getattr(args, "insecure", False)):
        _stderr(f"manifesto: warning: {gap.message}")


def _check_args(args: argparse.Namespace) -> int | None:
    """What can be refused before a plan is made or anything is built; returns the epoch."""
    if args.jobs is not None and args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    return _epoch(args)


def _check_outputs(*outputs: tuple[str, str | None]) -> None:
    """Refuse an unwritable --report / --report-env / --digest-file now, not after the push
    (`--report -` is stdout)."""
    for flag, value in outputs:
        if value and not (flag == "--report" and value == "-"):
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


def blob_bars(args: argparse.Namespace):
    """A live line per uploaded blob on a terminal (not with -q): a BlobBars to pass as
    `on_bytes` (cli/board.py, which loads rich); elsewhere a context giving None."""
    if sys.stderr.isatty() and not getattr(args, "quiet", False):
        from manifesto.cli.board import BlobBars

        return BlobBars(sys.stderr)
    import contextlib

    return contextlib.nullcontext()


def _recorder(command: str, args: argparse.Namespace, image: str):
    """The run's Recorder (cli/report.py): --report, --report-env and GitHub Actions outputs."""
    from manifesto.cli.report import Recorder

    return Recorder(command, args, image)


def _facts(command: str, result):
    """A publish or assemble Result as the report and CI outputs say it; without an index
    (push-by-digest) the digest is the one image's when just one platform was built."""
    from manifesto.cli.report import Facts, outcome_rows

    digest = result.index.digest if result.index is not None else None
    if digest is None and len(result.children) == 1:
        digest = result.children[0].digest
    rows = outcome_rows(result.outcomes, result.children)
    return Facts(command, result.target, str(digest) if digest else None, result.tags_moved, result.tags_unchanged, rows, result.report())


def _landed(result) -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
    """(target, tags moved, tags unchanged) of each target a Result names, else of its one target."""
    if result.targets:
        return [(t.target, t.tags_moved, t.tags_unchanged) for t in result.targets]
    return [(result.target, result.tags_moved, result.tags_unchanged)]


def _finish(result, rec, quiet: bool = False) -> int:
    """The summary table (not with -q), the facts for `rec` (the report, CI outputs), and the
    result: the index digest (not with `--report -`, whose document holds it)."""
    from manifesto.cli.progress import summary

    if not quiet:
        sys.stderr.write(summary(result.outcomes, result.children) + "\n")
    rec.succeeded(_facts(rec.command, result))
    if result.index is not None:
        if not quiet:  # a line per target (an `image:` list has several), the first first
            for target, tags_moved, tags_unchanged in _landed(result):
                moved = ", ".join(tags_moved) or "none"
                kept = f" (unchanged: {', '.join(tags_unchanged)})" if tags_unchanged else ""
                sys.stderr.write(f"index {result.index.digest} -> {target} tags: {moved}{kept}\n")
        if not rec.owns_stdout:
            print(result.index.digest)
    return 0


def _run(args: argparse.Namespace, plan: planning.Plan, epoch: int | None, rec=None, **kwargs):
    """jobs.publish.publish with phase lines on stderr (not with -q), each platform's build log
    in a group under GitHub Actions, the phase timings for `rec`, and, when it fails, the
    summary table and what was pushed (untagged) for `rec` before the error is raised."""
    import time

    from manifesto.cli import ci
    from manifesto.cli.progress import summary
    from manifesto.cli.report import Facts, outcome_rows, publish_phases
    from manifesto.errors import ManifestoError
    from manifesto.jobs.progress import summarize
    from manifesto.jobs.publish import publish

    quiet = getattr(args, "quiet", False)
    events: list = []
    show = _watcher(plan, quiet)
    board = show if hasattr(show, "line") else None
    groups = ci.Groups(_stderr) if board is None and not quiet and ci.github() else None

    def on_event(event) -> None:
        events.append(event)
        if groups is not None:
            groups.event(event)
        if not quiet:
            show(event)

    line = board.line if board is not None else groups.line if groups is not None else None
    try:
        with show:
            options = _options(args, epoch, on_event, line)
            return publish(plan, options, **kwargs)
    except ManifestoError:
        outcomes = summarize(list(events), [str(s.platform) for s in plan.build_steps])
        if events and not quiet:  # a run refused before any build has no table
            sys.stderr.write(summary(outcomes) + "\n")
        if rec is not None:
            pushed = [o.to_record() for o in outcomes if o.status == "pushed"]
            body = {"summary": [o.to_record() for o in outcomes], "pushed": pushed, "targets": [{"target": str(t)} for t in plan.targets]}
            rec.failed_with(Facts(rec.command, str(plan.target), rows=outcome_rows(outcomes), body=body))
        raise
    finally:
        if groups is not None:
            groups.close()
        if rec is not None:
            rec.phases = publish_phases(events, rec.started, time.time())


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
    _check_outputs(("--report", args.report), ("--report-env", args.report_env), ("--digest-file", args.digest_file))
    if getattr(args, "check", False):
        return _would_change(args, plan, epoch)
    if args.dry_run:
        from manifesto.cli.report import refuse_dry_run

        refuse_dry_run(args)  # --report / --report-env: nothing to report
        print(_render(plan, args, push_by_digest=args.push_by_digest))
        _warn_coverage(plan, args)
        return 0
    with _recorder("publish", args, str(plan.target)) as rec:
        result = _run(args, plan, epoch, rec, push_index_too=not args.push_by_digest)
        if args.digest_file:
            from manifesto.jobs.publish import write_json

            write_json(Path(args.digest_file), result.report())
        return _finish(result, rec, args.quiet)


def build(args: argparse.Namespace) -> int:
    from manifesto.matrix.model import Target

    output = Path(args.output).resolve()
    plan = _load(args, Target(layout=output))
    epoch = _check_args(args)
    _check_outputs(("--report", args.report))
    if args.dry_run:
        from manifesto.cli.report import refuse_dry_run

        refuse_dry_run(args)
        print(_render(plan, args))
        return 0
    with _recorder("build", args, str(plan.target)) as rec:
        result = _run(args, plan, epoch, rec)
        if not args.quiet:
            sys.stderr.write(f"wrote OCI image layout {output}\n")
        return _finish(result, rec, args.quiet)


def assemble(args: argparse.Namespace) -> int:
    from manifesto.jobs.split import assemble as run

    plan = _load(args)
    _check_outputs(("--report", args.report), ("--report-env", args.report_env))
    with _recorder("assemble", args, str(plan.target)) as rec:
        result = run(plan, args.digest_files, insecure=args.insecure, on_notice=_stderr)
        return _finish(result, rec)


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
    refs = [r] if args.image and (r := _target(args.image).reference) is not None else []
    plan = None
    if Path(args.file).exists() or args.file != "platforms.yaml":
        plan = _load(args)
        chosen = tuple(dict.fromkeys(c.builder for c in choose_builders(plan)))
        builders = chosen or builders  # what the run will use (auto: per Dockerfile)
        platforms = platforms or [s.platform for s in plan.build_steps]
        refs = [t.reference for t in plan.targets if t.reference is not None]  # every registry target
    registry_check = (lambda: [p for r in refs for p in _registry_problems(r, args.insecure)]) if refs else None

    problems = run_checks(
        builders, platforms, registry_check, fix=args.fix, on_line=lambda line: print(line, file=sys.stderr),
        plan=plan, insecure=args.insecure,
    )  # fmt: skip
    names = ", ".join(str(p) for p in platforms) or "no platforms"
    if not problems:
        from manifesto.builders.storage import describe  # with the storage driver builds use

        builder = ", ".join(describe(name) for name in builders)
        where = f" and push to {', '.join(r.name for r in refs)}" if refs else ""
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
    from manifesto.cli.report import Facts
    from manifesto.jobs.copy import copy as run
    from manifesto.oci.reference import LAYOUT_PREFIX, parse_location

    _check_outputs(("--report", args.report), ("--report-env", args.report_env))
    dst = parse_location(args.destination)
    image = dst.name if isinstance(dst, Reference) else f"{LAYOUT_PREFIX}{Path(dst.path)}"
    tags: list[str] = []
    with _recorder("copy", args, image) as rec:
        rec.failed_with(Facts("copy", image, body={"source": args.source}))
        with blob_bars(args) as bars:
            digest = run(
                args.source, args.destination, insecure=args.insecure, on_bytes=bars, on_tag=tags.append,
                attestations=args.attestations, referrers=args.referrers,
                on_notice=_stderr,  # what --attestations strip left out, how many --referrers copied
            )  # fmt: skip
        body = {"source": args.source, "digest": str(digest), "tags": tags}
        rec.succeeded(Facts("copy", image, str(digest), tuple(tags), body=body))
        if not rec.owns_stdout:
            print(digest)
    return 0
