"""`publish --check`: would a publish move any tag? Build (or resolve) everything, push nothing.

Why: with reproducible builds (SOURCE_DATE_EPOCH, the native builder) the same commit gives the
same images and so the same index digest; comparing it with what the tags hold answers "does
this commit need a release?" without writing anything. The index is the one a publish would
push: the same entries in matrix order (jobs.publish.in_matrix_order), the same rules and the
same bytes (lists.rules.build_index); arch tags count too (each holds its child). Tags are only
read, so pull access is enough.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass

from manifesto import tasks
from manifesto.jobs.builds import Options, build_all, work_dir
from manifesto.jobs.publish import in_matrix_order, read_assembled, refusal
from manifesto.lists.entry import Entry
from manifesto.lists.rules import build_index, problems
from manifesto.matrix.model import Target
from manifesto.matrix.plan import Plan
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.digest import Digest
from manifesto.oci.manifest import ImageIndex
from manifesto.oci.reference import Reference
from manifesto.store.layout import LayoutStore
from manifesto.store.registry.pool import Registries


@dataclass(frozen=True)
class TagState:
    """One tag a publish moves: what it holds now (None: absent) and what it would hold."""

    name: str
    now: Digest | None
    wanted: Digest

    @property
    def changes(self) -> bool:
        return self.now != self.wanted


@dataclass(frozen=True)
class Check:
    """The index a publish would push and, per tag (the index's, then arch tags), from → to."""

    target: str
    index: ImageIndex
    children: tuple[Entry, ...]
    tags: tuple[TagState, ...]

    @property
    def would_change(self) -> bool:
        return any(t.changes for t in self.tags)


def check(plan: Plan, options: Options | None = None) -> Check:
    """Build every platform into a work directory (removed after, unless keep_work), compute
    the index, and read every tag it would move. The sync wrapper: asyncio.run inside."""
    options = options or Options()
    work = work_dir()
    if options.keep_work:
        options.on_notice(f"keeping the work directory {work}")
    try:
        built = build_all(plan, options, work)
        entries = []
        for step, image in zip(plan.build_steps, built):
            fetched = LayoutStore(image.layout).manifest(image.tag)
            descriptor = Descriptor(fetched.media_type, fetched.digest, len(fetched.raw), step.platform)
            entries.append(Entry(None, descriptor, arch_refs=step.arch_refs))
        return asyncio.run(_compare(plan, options, entries))
    finally:
        if not options.keep_work:
            shutil.rmtree(work, ignore_errors=True)


async def _compare(plan: Plan, options: Options, built: list[Entry]) -> Check:
    async with Registries(insecure=options.insecure) as registries:
        assembled = await tasks.gather(*(read_assembled(registries, s, options.on_notice) for s in plan.assemble_steps))
        entries = in_matrix_order(plan, built, list(assembled))
        found = problems(entries, plan.index_media_type, plan.annotations)
        if found:
            refusal(plan)(found)
        index = build_index(entries, plan.index_media_type, plan.annotations)
        wanted = [(target.tagged(t), _tag_reader(target, registries, t), index.digest) for target in plan.targets for t in plan.tags]
        for entry in entries:
            wanted += [(str(r), _arch_reader(registries, r), entry.digest) for r in entry.arch_refs]
        now = await tasks.gather(*(read() for _, read, _ in wanted))
    states = tuple(TagState(name, digest, want) for (name, _, want), digest in zip(wanted, now))
    return Check(str(plan.target), index, tuple(entries), states)


def _tag_reader(target: Target, registries: Registries, tag: str):
    """A coroutine function giving what one of the index's tags in `target` (one of the plan's
    targets: each is compared) holds now (None: absent)."""

    async def read() -> Digest | None:
        if target.reference is not None:
            ref = target.reference
            found = await registries.client(ref).head_manifest(ref.repository, tag)
        else:
            assert target.layout is not None
            if not (target.layout / "index.json").is_file():
                return None
            found = await LayoutStore(target.layout).head_manifest("", tag)
        return found.digest if found is not None else None

    return read


def _arch_reader(registries: Registries, ref: Reference):
    async def read() -> Digest | None:
        found = await registries.client(ref).head_manifest(ref.repository, ref.tag or "latest")
        return found.digest if found is not None else None

    return read
