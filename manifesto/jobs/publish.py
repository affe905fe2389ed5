"""Run a Plan: build every platform, push children by digest, verify them, push the index.

Order matters and is the contract: a preflight first (the target and every arch-tag repository
grant push; what each tag holds now is read), then all builds (in parallel, bounded), each
image pushed into the target BY DIGEST as soon as its build ends, while the others still build
(one event loop in a thread of its own, jobs/relay.py). If a build or a push fails the publish
fails (with that build's log tail), builds still queued do not start, no tag moves, and the
children already pushed stay there untagged, named in the error. Once every build is pushed,
each child is read back FROM THE TARGET (its descriptor is what the target serves, its config must say the
platform the entry claims, and a Docker list may hold only Docker manifests), and only then is
the index put under its tags (a tag that already holds the same digest is left alone, so an
unchanged republish moves nothing; one that moved since the preflight read it is not
overwritten: tags.py). The index lists its children in matrix order, however they arrived
(one runner, or digest files in any order), so a split publish and a single one give the
same index digest. From the children on, the push is lists/push.py's, shared with `push`
and `assemble`; this module builds, pushes what it built and names the matrix's entries.
With an `image:` list, built images go to the first target; lists/push.py takes every child
from there to the others, and moves the tags of all of them together, last.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from manifesto import tasks
from manifesto.builders.base import BuiltImage
from manifesto.errors import ManifestoError, UsageError, VerificationError
from manifesto.fileio import write_file
from manifesto.jobs import progress
from manifesto.jobs.builds import Crew, Options, build_all, work_dir
from manifesto.jobs.relay import LoopThread
from manifesto.lists import push as lists
from manifesto.lists.entry import Entry
from manifesto.lists.rules import Problem, dropped_text, problems, split_attestations
from manifesto.lists.sources import read_source
from manifesto.matrix.model import Target, arch_ref_problem
from manifesto.matrix.plan import AssembleStep, BuildStep, Plan, make_plan
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.manifest import ImageIndex, ImageManifest
from manifesto.oci.platform import Platform, matches
from manifesto.oci.reference import Reference, check_tag
from manifesto.store.layout import LayoutStore
from manifesto.store.overlay import built_place
from manifesto.store.registry.pool import Registries
from manifesto.tags import Snapshot
from manifesto.transfer import Copier, Place


@dataclass(frozen=True)
class Result:
    """What a publish did; `report()` is the JSON written by --report."""

    target: str
    children: tuple[Entry, ...]
    index: ImageIndex | None = None
    tags_moved: tuple[str, ...] = ()
    tags_unchanged: tuple[str, ...] = ()
    outcomes: tuple[progress.Outcome, ...] = ()  # per built platform: status, build and push times
    targets: tuple[lists.Landed, ...] = ()  # each target's tags, the first (`target`) first

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {"target": self.target, "platforms": [c.to_record() for c in self.children]}
        if self.targets:
            out["targets"] = [
                {"target": t.target, "tagsMoved": list(t.tags_moved), "tagsUnchanged": list(t.tags_unchanged)}
                for t in self.targets
            ]
        if self.outcomes:
            out["summary"] = [o.to_record() for o in self.outcomes]
        if self.index is not None:
            out["index"] = {
                "digest": str(self.index.digest),
                "mediaType": self.index.media_type,
                "size": self.index.size,
                "tags": list(self.tags_moved + self.tags_unchanged),
                "tagsMoved": list(self.tags_moved),
                "tagsUnchanged": list(self.tags_unchanged),
            }
        return out


# ---- the matrix's entries, into the target ----------------------------------------------------


def target_place(plan: Plan, registries: Registries, target: Target | None = None) -> Place:
    """Where `target` (default: the plan's first) is: a registry repository or a layout."""
    target = target or plan.target
    if target.is_layout:
        assert target.layout is not None
        return Place(LayoutStore(target.layout, create=True), "")
    assert target.reference is not None
    return Place(registries.client(target.reference), target.reference.repository)


def mirror_places(plan: Plan, registries: Registries) -> list[tuple[Place, str]]:
    """Each mirror of the plan (the other targets of an `image:` list) and its name."""
    return [(target_place(plan, registries, t), str(t)) for t in plan.mirrors]


async def push_built(
    copier: Copier,
    built: BuiltImage,
    step: BuildStep,
    registries: Registries,
    on_event: progress.OnEvent = progress.ignore,
    tally: progress.PushTally | None = None,
) -> Entry:
    """Push one built image into the target by digest; its arch tags move with the index.

    A natively built image's layout lacks its base layers (BuiltImage.base): they are taken
    from the base (store/overlay.py), mounted when it is in the target's registry. `on_event`
    hears pushing (the image's size; then bytes sent, through `tally`, the copier's on_bytes)
    and pushed (digest, size, seconds) or failed.
    """
    layout = LayoutStore(built.layout)
    fetched = layout.manifest(built.tag)
    manifest = ImageManifest.parse(fetched.raw, fetched.media_type, f"{step.platform} image")
    size = len(fetched.raw) + sum(blob.size for blob in manifest.blobs())
    on_event(progress.event(step.platform, progress.PUSHING, size=size))
    if tally is not None:
        tally.start(step.platform, [blob.digest for blob in manifest.blobs()], size)
    started = time.monotonic()
    try:
        await copier.manifest(Place(*built_place(built.layout, built.base, registries)), fetched)
    except Exception as e:
        on_event(progress.event(step.platform, progress.FAILED, text=(str(e).splitlines() or [type(e).__name__])[0]))
        raise
    finally:
        if tally is not None:
            tally.finish(step.platform)
    seconds = time.monotonic() - started
    on_event(progress.event(step.platform, progress.PUSHED, digest=str(fetched.digest), size=size, seconds=seconds))
    descriptor = Descriptor(fetched.media_type, fetched.digest, len(fetched.raw), step.platform)
    return Entry(None, descriptor, arch_refs=step.arch_refs)


async def read_assembled(
    registries: Registries, step: AssembleStep, on_notice: Callable[[str], None] = lambda line: None
) -> list[Entry]:
    """The images an `image:` entry gives, each named by its platform: the entry's `platform:`,
    which its config must say, else what its config says. Picking a `platform:` out of a list
    passes over entries no platform could pick (artifacts, signatures). The attestations of
    those images follow them under `attestations: keep`; left out (`on_notice` hears how many)
    under strip, the default."""
    entries = (await read_source(registries, step.source, skip_platformless=step.platform is not None)).entries
    images = [e for e in entries if not e.descriptor.is_attestation]
    if step.platform is not None:
        matching = [e for e in images if e.config_platform and matches(e.config_platform, step.platform)]
        if not matching:
            found = ", ".join(dict.fromkeys(str(e.config_platform) for e in images if e.config_platform)) or "nothing"
            raise VerificationError(
                f"{step.source.familiar}: no image for {step.platform} there (its config says {found}); index not pushed"
            )
        images = matching
    out = []
    for e in images:
        assert e.raw is not None
        platform = step.platform or e.config_platform or e.platform
        descriptor = Descriptor(e.media_type, e.digest, len(e.raw), platform)
        out.append(Entry(step.source, descriptor, e.raw, e.config_platform))
    picked = {str(e.digest) for e in images}
    attached = [e for e in entries if e.descriptor.attests in picked]
    kept, dropped = split_attestations(attached, step.attestations)
    if dropped:
        on_notice(dropped_text(len(dropped), f"image: {step.source.familiar}", "attestations: keep"))
    return out + kept


async def copy_assembled(
    copier: Copier, registries: Registries, step: AssembleStep, on_notice: Callable[[str], None] = lambda line: None
) -> list[Entry]:
    """read_assembled, then each image copied into the target by digest."""
    entries = await read_assembled(registries, step, on_notice)
    for e in entries:
        await lists.copy_entry(copier, registries, e)
    return entries


def refusal(plan: Plan) -> lists.Refuse:
    """How a publish says no to a list: every problem, with the matrix's way to ask for OCI."""
    hint = f"format: oci in {plan.matrix.path}"

    def refuse(found: list[Problem]) -> None:
        raise VerificationError(f"{'; '.join(p.text(hint) for p in found)}; index not pushed")

    return refuse


def in_matrix_order(plan: Plan, built: list[Entry], assembled: list[list[Entry]]) -> list[Entry]:
    """Built entries and each AssembleStep's entries, in the order of the matrix entries.

    The index lists its children in this order whatever order builds, pushes or digest files
    came in, so the same matrix always gives the same index bytes.
    """
    groups = iter(assembled)
    out: list[Entry] = []
    for step in plan.steps:
        if isinstance(step, BuildStep):
            out += [c for c in built if c.platform is not None and c.platform.same_as(step.platform)]
        else:
            out += next(groups)
    return out


async def push_index(
    registries: Registries, place: Place, plan: Plan, entries: list[Entry], seen: Snapshot | None, copier: Copier | None = None
) -> Result:
    """The matrix's entries, in matrix order, through the one push path (lists/push.py)."""
    target = str(plan.target)
    pushed = await lists.push(
        registries,
        place,
        target,
        entries,
        media_type=plan.index_media_type,
        annotations=plan.annotations,
        tags=plan.tags,
        seen=seen,
        copier=copier,
        refuse=refusal(plan),
        mirrors=mirror_places(plan, registries),
    )
    return Result(target, pushed.entries, pushed.index, pushed.tags_moved, pushed.tags_unchanged, targets=pushed.targets)


# ---- the whole job --------------------------------------------------------------------------


def plan(
    file: str | os.PathLike[str] = "platforms.yaml",
    *,
    image: str | Reference | Target | Sequence[str | Reference | Target] | None = None,
    tags: Sequence[str] = (),
    platforms: Sequence[str | Platform] = (),
    builder: str | None = None,
    env: Mapping[str, str] | None = None,
    insecure: bool = False,
) -> Plan:
    """Read a platforms.yaml and make the Plan that publish() runs; nothing is built or sent.

    Why one function: the CLI's `-f/--image/--tag/--builder/--platform` and a library caller
    override the matrix the same way, and the arch tags must be checked again after `image` or
    `tags` changed them. `image` replaces the target: a repository (`host/name`, no tag) or
    `oci:DIR` (an OCI image layout), or a list of them (the first, then its mirrors); `tags`
    replace the matrix's tags; `platforms` keep just those platforms (an unknown one is a
    UsageError); `builder` replaces build.builder; `env` feeds `${VAR}` in tags (default:
    os.environ). `platforms: from-base` is resolved here, reading the base from its registry
    (`insecure`: as --insecure) under asyncio.run.
    """
    from manifesto.jobs.coverage import resolve_from_base
    from manifesto.matrix.spec import load

    matrix = resolve_from_base(load(Path(file), os.environ if env is None else env), insecure=insecure)
    if image is not None:
        targets = _targets(image)
        matrix = replace(matrix, image=targets[0], mirrors=targets[1:])
    if tags:
        matrix = replace(matrix, tags=tuple(dict.fromkeys(check_tag(t) for t in tags)))
    if builder:  # the builder every step asks for (jobs.builds.choose_builders resolves auto)
        matrix = replace(matrix, build=replace(matrix.build, builder=builder))
    refs = tuple(t.reference for t in matrix.targets if t.reference is not None)
    if matrix.arch_tag and len(refs) == len(matrix.targets):  # image or tags may break it
        problem = arch_ref_problem(matrix.arch_tag, refs, matrix.tags, matrix.entries)
        if problem:
            raise UsageError(f"{os.fspath(file)}: {problem}")
    return make_plan(matrix, [p if isinstance(p, Platform) else Platform.parse(p) for p in platforms])


def _targets(image: str | Reference | Target | Sequence[str | Reference | Target]) -> tuple[Target, ...]:
    """A plan's `image` as targets: one, or a list (none twice, at least one)."""
    items = [image] if isinstance(image, (str, Reference, Target)) else list(image)
    if not items:
        raise UsageError("image: name at least one repository (or oci:DIR)")
    targets = tuple(_target(i) for i in items)
    twice = [str(t) for n, t in enumerate(targets) if t in targets[:n]]
    if twice:
        raise UsageError(f"image {twice[0]} is named twice; each target is pushed to once")
    return targets


def _target(image: str | Reference | Target) -> Target:
    """A plan's `image`: a Target as given, or as written (Target.parse: `oci:DIR` relative to
    the working directory, as `build -o DIR`, or a repository without a tag)."""
    if isinstance(image, Target):
        return image
    text = image.name if isinstance(image, Reference) and not (image.tag or image.digest) else str(image)
    return Target.parse(text, Path.cwd(), tags_from="tags= or platforms.yaml")


async def preflight(
    plan: Plan, registries: Registries, *, tags: bool = True, arch_refs: Sequence[Reference] | None = None
) -> Snapshot:
    """Before anything is built or written: may we push to the target and (with `tags`) every
    arch-tag repository, and what does each tag this run moves hold now? (lists.push.preflight;
    a layout target needs neither.) `arch_refs`: the arch tags the push will move, when the
    caller already holds its entries (default: those the plan renders for its builds)."""
    target = plan.target.reference
    if not tags:  # push-by-digest: the first target only (`assemble` fills the mirrors)
        return await lists.preflight(registries, target, ()) if target is not None else Snapshot()
    targets = [t.reference for t in plan.targets if t.reference is not None]
    if not targets:
        return Snapshot()
    if arch_refs is None:
        arch_refs = [r for s in plan.build_steps for r in s.arch_refs]
    return await lists.preflight(registries, targets, plan.tags, arch_refs)


def publish(plan: Plan, options: Options | None = None, *, push_index_too: bool = True) -> Result:
    """Build, push children, verify, and (unless push-by-digest) push the index under every tag.

    The sync wrapper library users call (and the CLI): it runs the preflight under asyncio.run,
    then the builds in threads while one event loop in a thread of its own (jobs/relay.py)
    pushes each image as its build ends, then verifies and pushes the index there. `options`
    default to Options() (each step's own builder, builds.default_jobs at once). With
    push_index_too=False (push-by-digest) only the built entries are pushed: `assemble` copies
    the `image:` entries itself, so a digest file holds just what this runner built. A failure
    raises the error of the build (or push) that failed, naming the children already pushed
    (untagged). The builders' storage probes start before the preflight (builds.Crew): they
    touch only the builders' own storage, and the builds wait for them.
    """
    options = options or Options()
    crew = _crew(plan, options)
    try:
        seen = asyncio.run(_preflight(plan, options, push_index_too))
        return _publish(plan, options, push_index_too, seen, crew)
    except BaseException as e:
        if crew is not None:  # the preflight failed or was interrupted: no probe is left running
            try:
                crew.close(cancel=isinstance(e, KeyboardInterrupt))
            except KeyboardInterrupt:  # Ctrl-C while waiting for a probe: stop it, then go
                crew.close(cancel=True)
                raise
        raise


def _publish(plan: Plan, options: Options, push_index_too: bool, seen: Snapshot, crew: Crew | None) -> Result:
    """publish() after its preflight: the work directory, the builds and the pushes."""
    work = work_dir()
    if options.keep_work:
        options.on_notice(f"keeping the work directory {work}")
    events: list[progress.Event] = []
    lock = threading.Lock()
    forward = options.on_event

    def record(event: progress.Event) -> None:
        with lock:
            events.append(event)
            forward(event)

    options = replace(options, on_event=record)
    try:
        with LoopThread() as loop:
            result = _run(plan, options, work, push_index_too, seen, loop, crew)
        with lock:
            done = list(events)
        return replace(result, outcomes=progress.summarize(done, [str(s.platform) for s in plan.build_steps]))
    finally:
        if not options.keep_work:
            shutil.rmtree(work, ignore_errors=True)


_DONE, _FAILED = "done", "failed"  # what the build side posts once build_all has returned or raised


def _crew(plan: Plan, options: Options) -> Crew | None:
    """The run's builders, their storage probes started (builds.Crew), before the preflight;
    None when choosing them fails: build_all then says why, after the preflight, as before."""
    if not plan.build_steps:
        return None
    try:
        crew = Crew(plan, options)
    except ManifestoError:
        return None
    crew.start_probes()
    return crew


def _run(
    plan: Plan, options: Options, work: Path, push_index_too: bool, seen: Snapshot, loop: LoopThread, crew: Crew | None = None
) -> Result:
    """build_all in this thread; each image handed to `loop` (which pushes it) as it is built."""
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    stop = threading.Event()  # a build or a push failed: start no more of either
    pushing = loop.submit(_push_as_built(plan, options, push_index_too, seen, inbox, stop))

    def on_built(step: BuildStep, built: BuiltImage) -> None:
        if not stop.is_set():  # built after something failed: not pushed
            loop.call(inbox.put_nowait, (step, built))

    try:
        build_all(plan, options, work, on_built=on_built, stop=stop, crew=crew)
    except ManifestoError as e:
        loop.call(inbox.put_nowait, _FAILED)
        pushed = loop.wait(pushing)
        assert isinstance(pushed, list)
        raise lists.untagged(e, pushed) from None
    loop.call(inbox.put_nowait, _DONE)
    result = loop.wait(pushing)
    assert isinstance(result, Result)
    return result


async def _preflight(plan: Plan, options: Options, tags: bool) -> Snapshot:
    async with Registries(insecure=options.insecure) as registries:
        return await preflight(plan, registries, tags=tags)


async def _push_as_built(
    plan: Plan, options: Options, push_index_too: bool, seen: Snapshot, inbox: asyncio.Queue[Any], stop: threading.Event
) -> Result | list[Entry]:
    """Push each (step, built) from `inbox` at once; after _DONE, verify and push the index.

    After _FAILED (a build failed) the pushes under way finish and the entries pushed are
    returned, for the error to name. A failed push sets `stop` (no queued build starts) and is
    raised, naming the others pushed, once the builds are over.
    """
    async with Registries(insecure=options.insecure) as registries:
        place = target_place(plan, registries)
        target = str(plan.target)
        tally = progress.PushTally(options.on_event)
        copier = Copier(place, on_bytes=tally)
        pushes: dict[str, asyncio.Task[Entry]] = {}

        def stop_on_failure(task: asyncio.Task[Entry]) -> None:
            if not task.cancelled() and task.exception() is not None:
                stop.set()

        while (item := await inbox.get()) not in (_DONE, _FAILED):
            step, built = item
            task = asyncio.ensure_future(push_built(copier, built, step, registries, options.on_event, tally))
            task.add_done_callback(stop_on_failure)
            pushes[str(step.platform)] = task
        await asyncio.gather(*pushes.values(), return_exceptions=True)
        pushed = [t.result() for t in pushes.values() if not t.cancelled() and t.exception() is None]
        if item == _FAILED:
            return pushed
        failed = [t.exception() for t in pushes.values() if not t.cancelled() and t.exception() is not None]
        if failed:
            error = failed[0]
            raise lists.untagged(error, pushed) if isinstance(error, ManifestoError) else error
        entries = [pushes[str(s.platform)].result() for s in plan.build_steps]
        if not push_index_too:  # push-by-digest: no tag moves; `assemble` pushes arch tags too
            for s in plan.assemble_steps:
                options.on_notice(f"{s.platform or '(from config)'}: image: {s.source.familiar} is left to `manifesto assemble`")
            children = await lists.verify(place, target, entries)
            found = problems(children, plan.index_media_type, plan.annotations)
            if found:
                refusal(plan)(found)
            _verified(options, children)
            return Result(target, tuple(replace(c, arch_refs=()) for c in children))
        assembled = await tasks.gather(*(copy_assembled(copier, registries, s, options.on_notice) for s in plan.assemble_steps))
        result = await push_index(registries, place, plan, in_matrix_order(plan, entries, list(assembled)), seen, copier)
        _verified(options, [c for c in result.children if c.source is None])
        return result


def _verified(options: Options, children: Sequence[Entry]) -> None:
    for c in children:
        options.on_event(progress.event(c.platform, progress.VERIFIED, digest=str(c.digest)))


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write a report or digest file atomically; a failure is a one-line ManifestoError."""
    write_file(path, (json.dumps(data, indent=2) + "\n").encode())


__all__ = ["Options", "Result", "build_all", "plan", "publish", "write_json"]
