"""The second half of a split publish: `manifesto assemble` over the runners' digest files.

Each CI runner pushed its platform by digest and wrote a digest file; this checks the files
against the matrix, reads every child back from the target (sizes and media types come from
the registry, never from the file), copies the `image:` entries, and pushes the index. With an
`image:` list the runners pushed to the first target only: the push copies every child from
there into the other targets before any tag moves (lists/push.py).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from manifesto import tasks
from manifesto.errors import UsageError
from manifesto.jobs.publish import Result, in_matrix_order, preflight, push_index, read_assembled, target_place
from manifesto.lists.entry import Entry
from manifesto.matrix.plan import Plan
from manifesto.store.registry.pool import Registries


def read_digest_files(files: list[Path]) -> list[Entry]:
    children: list[Entry] = []
    for path in files:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise UsageError(f"{path}: cannot read digest file: {e}") from None
        items = data.get("platforms") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise UsageError(f"{path}: not a manifesto digest file (no 'platforms' list)")
        children += [Entry.from_record(item, str(path)) for item in items]
    return children


def assemble(
    plan: Plan,
    digest_files: Sequence[str | os.PathLike[str]],
    *,
    insecure: bool = False,
    on_notice: Callable[[str], None] = lambda line: None,
) -> Result:
    """The second half of a split publish: the built children named by digest files, plus the
    `image:` entries, which assemble copies itself (digest files hold only built children).

    The sync wrapper library users call (and the CLI): the files are checked against the plan
    before anything is sent, then push_children runs under asyncio.run with Registries of its own.
    `on_notice` hears what was left out (an `image:` entry's attestations under strip).
    """
    children = plan_children(plan, read_digest_files([Path(f) for f in digest_files]))

    async def run() -> Result:
        async with Registries(insecure=insecure) as registries:
            return await push_children(registries, plan, children, on_notice)

    return asyncio.run(run())


def plan_children(plan: Plan, children: list[Entry]) -> list[Entry]:
    """The digest files' children checked against the plan: each one a platform it builds,
    every platform it builds covered, and each with the arch tags this plan renders."""
    built = plan.build_steps
    for c in children:
        if any(c.platform.same_as(s.platform) for s in built):
            continue
        if any(s.platform is not None and c.platform.same_as(s.platform) for s in plan.assemble_steps):
            raise UsageError(
                f"{c.origin}: {c.platform} is an image: entry of {plan.matrix.path}, not a built one; "
                "`manifesto assemble` copies image: entries itself (drop it from the digest file)"
            )
        has = ", ".join(str(s.platform) for s in built) or "nothing"
        raise UsageError(f"{c.origin}: {c.platform} is not a platform {plan.matrix.path} builds (it builds {has})")
    missing = [s.platform for s in built if not any(c.platform.same_as(s.platform) for c in children)]
    if missing:
        raise UsageError(f"no digest file covers {', '.join(map(str, missing))}; index not pushed")
    # arch tags as this plan renders them (its --image/--tag), not as the digest files say
    return [
        replace(c, arch_refs=tuple(r for s in built if s.platform.same_as(c.platform) for r in s.arch_refs))
        for c in children
    ]


async def push_children(
    registries: Registries, plan: Plan, children: list[Entry], on_notice: Callable[[str], None] = lambda line: None
) -> Result:
    """The async core of assemble(): preflight, then the children with the `image:` entries
    in matrix order through the one push path, with the caller's Registries.

    The arch tags asked about before anything is written are exactly those the push moves:
    the children's own (plan_children renders them from the plan; image: entries have none).
    """
    arch_refs = [r for c in children for r in c.arch_refs]
    seen = await preflight(plan, registries, arch_refs=arch_refs)  # push allowed? what the tags hold now
    place = target_place(plan, registries)
    # the image: entries are read here and copied by lists.push, after the digest
    # files' children are verified (a refused file writes nothing)
    groups = await tasks.gather(*(read_assembled(registries, s, on_notice) for s in plan.assemble_steps))
    ordered = in_matrix_order(plan, children, list(groups))
    return await push_index(registries, place, plan, ordered, seen)
