"""`verify REF [-f platforms.yaml] [--run [--command CMD]]`: a table per platform; exit 0 or 1."""

from __future__ import annotations

import argparse
import asyncio
import sys

from manifesto.errors import UsageError, VerificationError
from manifesto.oci.reference import Reference, parse_location


def verify(args: argparse.Namespace) -> int:
    from manifesto.cli.render import short_digest, table
    from manifesto.jobs.verify import verify as run_verify

    if args.command and not args.run_images:
        raise UsageError("--command goes with --run")
    ref = parse_location(args.ref)  # a registry reference or oci:DIR[:TAG|@DIGEST]
    platforms = None
    if args.file:
        from manifesto.jobs.publish import plan

        matrix = plan(args.file, insecure=args.insecure)
        platforms = [s.platform for s in matrix.steps if s.platform is not None]
        unnamed = [s for s in matrix.steps if s.platform is None]
        if unnamed:
            from manifesto.cli.publishing import _stderr

            platforms += asyncio.run(_from_configs(unnamed, args.insecure, (lambda line: None) if args.quiet else _stderr))

    def run_one(image: Reference, platform) -> str:
        from manifesto.builders.trial import run_image

        if not args.quiet:
            sys.stderr.write(f"running {platform} ({image.digest}) ...\n")
        return run_image(image, platform, args.command, insecure=args.insecure)

    async def go():
        from manifesto.store.registry.pool import Registries

        async with Registries(insecure=args.insecure) as registries:
            return await run_verify(registries, ref, platforms=platforms, run=run_one if args.run_images else None)

    report = asyncio.run(go())
    rows = [[r.platform, short_digest(r.digest), r.status, "; ".join(r.notes)] for r in report.rows]
    print(table(["platform", "digest", "result", "notes"], rows))
    failed = report.failed
    if failed:
        names = ", ".join(r.platform for r in failed)
        raise VerificationError(f"{ref.familiar}: {len(failed)} of {len(report.rows)} entries failed verification ({names})")
    return 0


async def _from_configs(steps, insecure: bool, on_notice) -> list:
    """The platforms of a matrix's `image:` entries that name none: what their configs say
    (`on_notice` hears the attestations an entry leaves out, as publish says it)."""
    from manifesto.jobs.publish import read_assembled
    from manifesto.store.registry.pool import Registries

    async with Registries(insecure=insecure) as registries:
        found = [await read_assembled(registries, s, on_notice) for s in steps]
    return [e.platform for entries in found for e in entries if e.platform is not None and not e.descriptor.is_attestation]
