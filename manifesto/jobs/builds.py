"""Build every platform of a Plan in parallel, bounded; the first failure fails them all.

Each BuildStep names the builder build.builder asks for; choose_builders() resolves `auto` to
native or buildah per Dockerfile (builders.choose: the one place a Dockerfile is read for this,
also for `--dry-run`). One instance of each builder serves the whole run, unless Options.builder
gives the one instance every step uses. A step `auto` gave to the native builder that the native
builder then refuses (NeedsBuilder: a refusal that depends on the base or the context, which the
static check cannot see) is built again with buildah, with a one-line notice: `auto` never turns
a build buildah can do into a failure. After a build fails, builds still queued do not start
(running ones finish: their logs may matter too), so a publish that is going to fail fails
fast. Ctrl-C and SIGTERM cancel running builds through their builders (they run in their own
process groups, or their own event loops).
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from manifesto.builders import AUTO, Choice
from manifesto.builders.base import Builder, BuildRequest, BuiltImage
from manifesto.builders.native.source import NeedsBuilder
from manifesto.errors import BuildError, ManifestoError
from manifesto.jobs import progress
from manifesto.jobs.progress import OnEvent
from manifesto.log import get_logger
from manifesto.matrix.plan import BuildStep, Plan

log = get_logger("manifesto.builds")


def _ignore(line: str) -> None:
    pass


@dataclass(frozen=True)
class Options:
    builder: Builder | None = None  # every step's builder; None: each step's own, by name
    jobs: int = 0  # builds at once; 0: default_jobs
    source_date_epoch: int | None = None
    insecure: bool = False
    keep_work: bool = False
    no_cache: bool = False  # buildah/podman: build every step again, using no cached layer
    cache_from: str | None = None  # registry cache repositories; None: the matrix's build.cache
    cache_to: str | None = None
    on_line: Callable[[str], None] = field(default=_ignore)  # build output (quiet may drop it)
    on_notice: Callable[[str], None] = field(default=_ignore)  # what the user must see even with -q
    on_event: OnEvent = field(default=progress.ignore)  # phase changes (jobs/progress.py), from any thread


# ---- building -------------------------------------------------------------------------------


class _NotStarted(Exception):
    """A queued build that did not start because another one had already failed."""


class Crew:
    """The builders of one run, made before its builds, and the storage probes started for them.

    Why before: a buildah or podman build first needs its storage driver, which a cold run
    probes (storage.py: a few tool commands, one after the other); started in the background
    as soon as the plan is known, the probe runs while the run does its other work (the
    publish's preflight) instead of in front of every build. A build waits for its builder's
    probe, and a probe that raised fails the build with that error.
    """

    def __init__(self, plan: Plan, options: Options):
        steps = plan.build_steps
        given = options.builder
        self.choices = choose_builders(plan) if given is None else (Choice(given.name, ""),) * len(steps)
        self.credentials = _lookup_once() if given is None else None  # a fallback builder's too
        self.builders = builders_for([c.builder for c in self.choices], given, self.credentials)
        self._probes: dict[int, Future[object]] = {}

    def _each(self) -> list[Builder]:
        return list({id(b): b for b in self.builders.values()}.values())

    def start_probes(self) -> None:
        """Choose each builder's storage driver (probing where nothing is kept) in a thread of its own."""
        for builder in self._each():
            if id(builder) in self._probes or not _keeps_storage(builder):
                continue
            done: Future[object] = Future()
            self._probes[id(builder)] = done
            threading.Thread(target=_probe, args=(builder, done), name=f"probe-{builder.name}", daemon=True).start()

    def ready(self, builder: Builder) -> None:
        """Wait for `builder`'s probe, if one was started; raise what the probe raised."""
        if (done := self._probes.get(id(builder))) is not None:
            done.result()

    def close(self, *, cancel: bool = False) -> None:
        """Wait for every probe to end (`cancel`: stop the builders' commands first), so none
        is left mounting or writing after the run."""
        if cancel:
            for builder in self._each():
                builder.cancel()
        for done in self._probes.values():
            done.exception()  # waits; what it raised is the builds' to report


def _keeps_storage(builder: Builder) -> bool:
    """Whether `builder` chooses a storage driver (buildah, podman): its storage_verdict,
    looked up on the class, as reading it on the instance would probe."""
    return isinstance(getattr(type(builder), "storage_verdict", None), property)


def _probe(builder: Builder, done: Future[object]) -> None:
    try:
        done.set_result(builder.storage_verdict)  # type: ignore[attr-defined]
    except BaseException as e:  # handed to the builds, which raise it
        done.set_exception(e)


def build_all(
    plan: Plan,
    options: Options,
    work: Path,
    *,
    on_built: Callable[[BuildStep, BuiltImage], None] | None = None,
    stop: threading.Event | None = None,
    crew: Crew | None = None,
) -> list[BuiltImage]:
    """Build every BuildStep in parallel (bounded); raise the first failure.

    After a build fails, builds still queued do not start (running ones finish; they are not
    killed: their logs may matter too), so a publish that is going to fail fails fast.
    `on_built` is called in the build's thread as each build finishes (publish pushes it while
    the others build); `stop`, set by the caller (a push failed) or here (a build failed),
    keeps queued builds from starting. Phase changes go to options.on_event. `crew`: the
    builders made (and probing) before, for this plan and these options; default: made here.
    """
    steps = plan.build_steps
    if not steps:
        return []
    crew = crew or Crew(plan, options)
    choices, builders = crew.choices, crew.builders
    lock = threading.Lock()
    failed = stop if stop is not None else threading.Event()

    def notify(platform: object, phase: str, **fields: object) -> None:
        with lock:
            options.on_event(progress.event(platform, phase, **fields))

    for step in steps:
        notify(step.platform, progress.QUEUED)

    def fallback(name: str) -> Builder:
        with lock:
            if name not in builders:
                builders.update(builders_for([name], None, crew.credentials))
            return builders[name]

    def one(step: BuildStep, choice: Choice) -> BuiltImage:
        if failed.is_set():
            raise _NotStarted()
        builder = builders[choice.builder]
        prefix = f"[{step.platform}] "

        def emit(line: str) -> None:
            with lock:
                options.on_line(prefix + line)
            parsed = progress.parse_step(line)
            if parsed is not None:
                notify(step.platform, progress.STEP, step=parsed[0], steps=parsed[1], text=parsed[2])

        request = BuildRequest(
            platform=step.platform,
            context=step.context,
            dockerfile=step.dockerfile,
            args=step.args,
            output=work / str(step.platform).replace("/", "-"),
            source_date_epoch=options.source_date_epoch,
            media_format=plan.matrix.format,
            insecure=options.insecure,
            no_cache=options.no_cache,
            cache_from=registry_cache(plan, options)[0],
            cache_to=registry_cache(plan, options)[1],
        )
        log.info("build_started", platform=str(step.platform), builder=builder.name)
        started = time.monotonic()
        notify(step.platform, progress.BUILDING, text=builder.name)
        try:
            try:
                crew.ready(builder)
                built = builder.build(request, emit)
            except NeedsBuilder as e:
                if not (step.builder == AUTO and choice.builder == "native" and options.builder is None):
                    raise  # a builder named by the user is not second-guessed
                options.on_notice(f"{step.platform}: native builder cannot: {e.where}: {e.reason}; building with buildah")
                log.info("build_fallback", platform=str(step.platform), reason=str(e))
                builder = fallback("buildah")
                if failed.is_set():
                    raise _NotStarted() from None
                built = builder.build(request, emit)
        except BaseException as e:
            failed.set()  # set here, in the build's own thread, before its worker takes the next one
            if not isinstance(e, _NotStarted):
                notify(step.platform, progress.FAILED, text=(str(e).splitlines() or [type(e).__name__])[0])
            raise
        log.info("build_finished", platform=str(step.platform), digest=str(built.digest))
        notify(step.platform, progress.BUILT, digest=str(built.digest), seconds=time.monotonic() - started)
        if on_built is not None:
            on_built(step, built)
        return built

    jobs = options.jobs or default_jobs(len(steps))
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="build")
    futures = [pool.submit(one, s, c) for s, c in zip(steps, choices)]
    results: list[BuiltImage] = []
    failures: list[tuple[BuildStep, ManifestoError]] = []
    not_started = 0
    try:
        for step, fut in zip(steps, futures):
            try:
                results.append(fut.result())
            except (_NotStarted, CancelledError):
                not_started += 1
                notify(step.platform, progress.NOT_STARTED)
            except ManifestoError as e:  # BuildError, VerificationError, UsageError, a base that cannot be read
                failures.append((step, e))
                for other in futures:
                    other.cancel()  # only those not running yet
    except BaseException as e:
        failed.set()  # an interrupt or an unexpected error: start nothing more
        if isinstance(e, KeyboardInterrupt):
            with lock:
                running = list({id(b): b for b in builders.values()}.values())
            for builder in running:
                builder.cancel()  # builds run in their own process groups, which Ctrl-C does not reach
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        crew.close()  # a probe whose builds did not start
    if failures:
        step, first = failures[0]
        notes = []
        if len(failures) > 1:
            notes.append(f"{len(failures) - 1} more platform(s) failed too")
        if not_started:
            notes.append(f"{not_started} queued build(s) not started")
        others = f" ({'; '.join(notes)})" if notes else ""
        tail = first.log_tail if isinstance(first, BuildError) else ""
        raise BuildError(f"{step.platform}: build failed: {first}{others}" + (f"\n{tail}" if tail else ""), log_tail=tail)
    return results


def default_jobs(steps: int) -> int:
    """Builds at once unless --jobs says: one per step, at most four per core.

    Why more than one per core: a build spends much of its time waiting (the builder's own
    child processes, a layer commit written and synced to disk per step, pulls), so one build
    per core leaves the cores idle; measured on the five-platform hello example with the layer
    cache on 2 cores under other load, all five at once took 60-70% of the wall time of two at
    once. The bound keeps a large matrix from starting dozens of builder processes at once.
    """
    return max(1, min(steps, 4 * (os.cpu_count() or 1)))


def choose_builders(plan: Plan) -> tuple[Choice, ...]:
    """The builder each build step runs with, and why, in build-step order.

    builders.choose per step (`auto` reads each Dockerfile once; a named builder is taken as
    given). Used by the run and by `publish --dry-run` and doctor, so all three agree.
    """
    from manifesto.builders import choose

    seen: dict[tuple[str, Path], Choice] = {}
    out = []
    for step in plan.build_steps:
        key = (step.builder, step.dockerfile)
        if key not in seen:
            seen[key] = choose(step.builder, step.dockerfile)
        out.append(seen[key])
    return tuple(out)


def registry_cache(plan: Plan, options: Options) -> tuple[str | None, str | None]:
    """(cache from, cache to) repositories: --cache-from/--cache-to, else build.cache."""
    return options.cache_from or plan.matrix.build.cache_from, options.cache_to or plan.matrix.build.cache_to


def cache_lines(plan: Plan, choices: Sequence[Choice], options: Options) -> list[str]:
    """What `--dry-run` says of the build cache: per buildah/podman platform, its local layer
    store and the registry cache, then the one caveat on digests. Empty when no step caches.

    Why: a cached step is not run again, so a step whose output differs from run to run keeps
    its old output; the digests of a cached and an uncached build match only when it does not.
    """
    from manifesto.builders import get_builder
    from manifesto.builders.cache import TOOLS, platform_dir  # TOOLS: the builders that keep a local layer store

    steps = [(s, c.builder) for s, c in zip(plan.build_steps, choices) if c.builder in TOOLS]
    if not steps:
        return []
    cache_from, cache_to = registry_cache(plan, options)
    remote = ", ".join(f"{k} {v}" for k, v in (("from", cache_from), ("to", cache_to)) if v)
    tools = {name: get_builder(name) for name in dict.fromkeys(name for _, name in steps)}
    def store(step: BuildStep, name: str) -> str:
        """The step's store; its driver only when known without a probe (a dry run mounts nothing)."""
        builder = tools[name]
        known = builder.known_store(step.platform)  # type: ignore[attr-defined]
        unknown = "<overlay where it works, else vfs: probed at the first build>"
        return str(known or Path(builder.storage, unknown, platform_dir(step.platform)))  # type: ignore[attr-defined]

    rows = [(str(step.platform), name, store(step, name)) for step, name in steps]
    width = [max(len(r[i]) for r in rows) for i in range(2)]
    reuse = "rebuilds every step (--no-cache), then stores the layers in" if options.no_cache else "uses the local cache store"
    lines = ["build cache"]
    for platform, name, store in rows:
        where = f"  {platform:<{width[0]}}  {name:<{width[1]}}  {reuse} {store}"
        lines.append(where + (f"; registry cache {remote}" if remote else ""))
    lines.append(
        "  cached and uncached builds give the same digests under SOURCE_DATE_EPOCH only when every step is deterministic"
    )
    return lines


def builders_for(
    names: Sequence[str], given: Builder | None, credentials: Callable[[str], object] | None = None
) -> dict[str, Builder]:
    """Builder name → the one instance this run uses: `given` for every name when set, else
    get_builder(name) once per name.

    The buildah and podman builders look registry credentials up through `credentials`
    (default: a new lookup.OncePerHost): their builds start together and ask for the same
    hosts, and each lookup may load the keyring, so a run looks each host up once. The native
    builder reads each FROM reference once per run (base_image.FirstReads): every platform
    builds on the same base.
    """
    from manifesto.builders import get_builder
    from manifesto.builders.cache import TOOLS

    unique = dict.fromkeys(names)
    if given is not None:
        return {name: given for name in unique}
    if credentials is None and any(name in TOOLS for name in unique):
        credentials = _lookup_once()

    def make(name: str) -> Builder:
        if name in TOOLS:
            return get_builder(name, credentials=credentials)
        if name == "native":
            from manifesto.builders.native.base_image import FirstReads

            return get_builder(name, bases=FirstReads())
        return get_builder(name)

    return {name: make(name) for name in unique}


def _lookup_once() -> Callable[[str], object]:
    """manifesto's credential lookup, each host looked up once for the run (lookup.OncePerHost)."""
    from manifesto.store.registry.lookup import OncePerHost

    return OncePerHost()


def work_dir() -> Path:
    """A fresh directory for this run's per-platform layouts, under the user's cache."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "manifesto" / "work"
    try:
        base.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="publish-", dir=base))
    except OSError as e:
        raise ManifestoError(f"cannot create a work directory under {base}: {e.strerror or e}") from None
