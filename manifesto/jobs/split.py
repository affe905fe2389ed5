"""The second half of a split publish: `manifesto assemble` over the runners' digest files.

Each CI runner pushed its platform by digest and wrote a digest file; this checks the files
against the matrix, reads every child back from the target (sizes and media types come from
the registry, never from the file), copies the `image:` entries, and pushes the index.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

from manifesto import tasks
from manifesto.errors import UsageError
from manifesto.matrix.plan import Plan
from manifesto.jobs.publish import (
    Child,
    Result,
    check_unique,
    in_matrix_order,
    preflight,
    push_assembled,
    push_index,
    target_place,
    verify_children,
)
from manifesto.store.registry.pool import Registries
from manifesto.transfer import Copier


def read_digest_files(files: list[Path]) -> list[Child]:
    children: list[Child] = []
    for path in files:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise UsageError(f"{path}: cannot read digest file: {e}") from None
        items = data.get("platforms") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise UsageError(f"{path}: not a manifesto digest file (no 'platforms' list)")
        children += [Child.from_json(item, str(path)) for item in items]
    return children


def assemble_from_files(plan: Plan, files: list[Path], insecure: bool = False) -> Result:
    """The second half of a split publish: the built children named by digest files, plus the
    `image:` entries, which assemble copies itself (digest files hold only built children)."""
    children = read_digest_files(files)
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
    children = [
        replace(c, arch_refs=tuple(str(r) for s in built if s.platform.same_as(c.platform) for r in s.arch_refs))
        for c in children
    ]

    async def run() -> Result:
        async with Registries(insecure=insecure) as registries:
            seen = await preflight(plan, registries)  # push allowed? what the tags hold now
            place = target_place(plan, registries)
            target = str(plan.target)
            copier = Copier(place)
            verified = await verify_children(place, target, children)  # before anything is written
            check_unique(verified)
            groups = await tasks.gather(*(push_assembled(copier, registries, s) for s in plan.assemble_steps))
            assembled = [await verify_children(place, target, g) for g in groups]
            ordered = in_matrix_order(plan, verified, assembled)
            return await push_index(place, plan, ordered, registries, seen)

    return asyncio.run(run())
