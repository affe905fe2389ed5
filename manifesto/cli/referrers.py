"""`manifesto inspect --referrers REF...`: what refers to an image and to each of its children.

A table per REF (subject, artifact type, digest, size, how it was found: `api` for the referrers
API, `tag` for the tag schema or a cosign tag), or with `--json` a list of objects. Found the
way `copy --referrers` finds what it carries (jobs/referrers.py), so both show the same set.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from manifesto import tasks
from manifesto.cli.main import exit_code, show_error
from manifesto.cli.render import fit_width, short_digest, size, table
from manifesto.errors import ManifestoError, UsageError
from manifesto.jobs.referrers import end, find
from manifesto.oci.manifest import ImageIndex, parse
from manifesto.oci.reference import parse_location
from manifesto.oci.referrers import kind_of
from manifesto.store.places import manifest_reference
from manifesto.store.protocol import Fetched
from manifesto.store.referrers import Referrer
from manifesto.store.registry.pool import Registries


def show(args: argparse.Namespace) -> int:
    """List the referrers of every REF; the exit code of the worst failure (0 when none)."""
    for flag in ("raw", "format", "platform"):
        if getattr(args, flag, None):
            raise UsageError(f"--referrers does not go with --{flag}")

    async def run() -> list[tuple[str, Fetched, list[Referrer]] | ManifestoError]:
        async with Registries(insecure=args.insecure) as regs:

            async def one(text: str) -> tuple[str, Fetched, list[Referrer]] | ManifestoError:
                try:
                    return (text, *await _find(regs, text))
                except ManifestoError as e:
                    return e

            return list(await tasks.gather(*(one(t) for t in args.refs)))

    results = asyncio.run(run())
    errors = [r for r in results if isinstance(r, ManifestoError)]
    if len(args.refs) == 1 and errors:
        raise errors[0]
    found = [r for r in results if not isinstance(r, ManifestoError)]
    if args.json:
        docs = [[_as_json(r) for r in referrers] for _, _, referrers in found]
        print(json.dumps(docs[0] if len(args.refs) == 1 else docs, indent=2))
    elif found:
        width = None if getattr(args, "no_trunc", False) else fit_width()
        print("\n\n".join(_as_text(text, top, referrers, width) for text, top, referrers in found))
    for e in errors:
        show_error(e)  # as the one error of a command is shown: scrubbed, annotated in CI
    return max((exit_code(e) for e in errors), default=0)


async def _find(regs: Registries, text: str) -> tuple[Fetched, list[Referrer]]:
    where = parse_location(text)
    source = end(regs, where)
    top = await source.place.store.get_manifest(source.place.repo, manifest_reference(where, text))
    return top, await find(source, top)


def _subjects(top: Fetched) -> dict[str, str]:
    """What each subject digest is called: the image (or index) itself, or a child's platform."""
    doc = parse(top.raw, top.media_type)
    names = {str(top.digest): "index" if isinstance(doc, ImageIndex) else "image"}
    if isinstance(doc, ImageIndex):
        for d in doc.manifests:
            names.setdefault(str(d.digest), str(d.platform) if d.platform and d.platform.os else short_digest(str(d.digest)))
    return names


def _kind(r: Referrer) -> str:
    doc = parse(r.fetched.raw, r.fetched.media_type) if r.fetched is not None else None
    return kind_of(r.descriptor, doc)


def _as_json(r: Referrer) -> dict[str, Any]:
    d = r.descriptor
    return {
        "subject": str(r.subject),
        "artifactType": _kind(r),
        "mediaType": d.media_type,
        "digest": str(d.digest),
        "size": d.size,
        "found": r.found,
        "tags": list(r.tags),
        "depth": r.depth,
    }


def _as_text(text: str, top: Fetched, referrers: list[Referrer], width: int | None) -> str:
    if not referrers:
        return f"{text}: no referrers"
    names = _subjects(top)
    rows = []
    for r in referrers:
        subject = names.get(str(r.subject)) or short_digest(str(r.subject))
        digest = str(r.descriptor.digest) if width is None else short_digest(str(r.descriptor.digest))
        cosign = ", ".join(t[t.rindex(".") :] for t in r.tags)  # the whole tag is in --json
        rows.append([subject, _kind(r), digest, size(r.descriptor.size), r.found + (f" ({cosign})" if cosign else "")])
    return f"{text}\n" + table(["subject", "artifact type", "digest", "size", "found"], rows, width=width, shrink=(1,))
