"""`manifesto ratelimit REF`: the pull limit a registry announces, read from ONE HEAD.

Docker Hub counts GETs of manifests, not HEADs, and answers both with its rate-limit headers,
so one HEAD of the manifest REF names tells how many pulls are left without spending one (as
regctl's `image ratelimit` does). A registry that sends no such headers announces no limit: that
is said, and the exit code is 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from manifesto.errors import UsageError
from manifesto.oci.reference import LAYOUT_PREFIX, Reference
from manifesto.store.registry.pool import Registries
from manifesto.store.registry.ratelimit import RateLimit, describe_window


def ratelimit(args: argparse.Namespace) -> int:
    text = args.ref.removeprefix("docker://")
    if text.startswith(LAYOUT_PREFIX):
        raise UsageError(f"{args.ref}: an OCI layout has no rate limit; name a registry reference")
    ref = Reference.parse(text)

    async def read() -> RateLimit | None:
        async with Registries(insecure=args.insecure) as regs:
            return await regs.client(ref).read_rate_limit(ref.repository, ref.reference)

    found = asyncio.run(read())
    if args.json:
        doc = {"registry": ref.registry, "announced": found is not None}
        doc |= {k: getattr(found, k, None) for k in ("limit", "remaining", "window", "source")}
        print(json.dumps(doc, indent=2))
    elif found is None:
        print(f"{ref.registry}: no rate limit announced (the registry sends no ratelimit-* headers)")
    else:
        print(_table(ref.registry, found))
    return 0


def _table(registry: str, found: RateLimit) -> str:
    def number(n: int | None) -> str:
        return "not announced" if n is None else str(n)

    window = "not announced" if found.window is None else f"{describe_window(found.window)} ({found.window} s)"
    rows = [
        ("Registry:", registry),
        ("Limit:", number(found.limit)),
        ("Remaining:", number(found.remaining) + ("  (running out)" if found.low else "")),
        ("Window:", window),
        ("Source:", found.source or "not announced"),
    ]
    return "\n".join(f"{k:<11}{v}" for k, v in rows)
