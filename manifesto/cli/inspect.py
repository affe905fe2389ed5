"""`manifesto inspect`: lists, single manifests and local drafts as a table, JSON or raw bytes.

Anything valid a registry holds is shown: images, artifacts (helm charts, signatures, SBOMs),
platform-less configs, referrers-style indexes, buildkit attestations. A fact the content does
not give reads "unknown" (null in JSON), never an error. `--raw` fetches the manifest alone and
prints its bytes as stored, without reading anything else.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass, field
from typing import Any

from manifesto import tasks
from manifesto.cli.main import exit_code
from manifesto.cli.render import printable, size, table
from manifesto.errors import ManifestoError
from manifesto.lists.drafts import DraftStore
from manifesto.lists.rules import build_index, choose_media_type
from manifesto.lists.sources import read_config
from manifesto.oci import mediatype
from manifesto.oci.config import ImageConfig
from manifesto.oci.descriptor import ATTESTATION_SUBJECT_KEY, ATTESTATION_TYPE_KEY, Descriptor
from manifesto.oci.manifest import ImageIndex, ImageManifest, parse
from manifesto.oci.platform import Platform
from manifesto.oci.reference import Reference
from manifesto.store.registry.pool import Registries

UNKNOWN = "unknown"


@dataclass
class Shown:
    """Everything one REF's output needs, gathered before anything is printed."""

    ref: Reference
    raw: bytes
    media_type: str
    local: bool = False
    configs: dict[str, ImageConfig] = field(default_factory=dict)  # child digest -> config (-v)
    artifacts: dict[str, str] = field(default_factory=dict)  # child digest -> artifact type (-v)
    config: ImageConfig | None = None  # for a single image


async def _gather_remote(regs: Registries, ref: Reference, verbose: bool, raw_only: bool) -> Shown:
    client = regs.client(ref)
    fetched = await client.get_manifest(ref.repository, ref.reference)
    shown = Shown(ref, fetched.raw, fetched.media_type)
    if raw_only:
        return shown
    doc = parse(fetched.raw, fetched.media_type, ref.familiar)
    if isinstance(doc, ImageManifest):
        if doc.has_image_config:  # artifacts (helm charts, SBOMs) have no image config to read
            shown.config = await read_config(regs, ref, doc, require_platform=False)
    elif verbose:

        async def one(d: Descriptor) -> None:
            if d.is_attestation or not mediatype.is_image_manifest(d.media_type):
                return
            child = await client.get_manifest(ref.repository, str(d.digest))
            await _describe_child(regs, ref.with_digest(d.digest), child.raw, child.media_type, shown)

        await tasks.gather(*(one(d) for d in doc.manifests), in_order=True)
    return shown


async def _gather_local(regs: Registries, ref: Reference, verbose: bool, raw_only: bool) -> Shown:
    draft = DraftStore().load(ref)
    media_type = choose_media_type(draft.entries, draft.format)
    index = build_index(draft.entries, media_type, draft.annotations)
    shown = Shown(ref, index.raw, media_type, local=True)
    if verbose and not raw_only:

        async def one(entry) -> None:
            if not entry.descriptor.is_attestation:
                await _describe_child(regs, entry.source, entry.raw, entry.descriptor.media_type, shown)

        await tasks.gather(*(one(e) for e in draft.entries), in_order=True)
    return shown


async def _describe_child(regs: Registries, ref: Reference, raw: bytes, media_type: str, shown: Shown) -> None:
    """Record what an index entry is: an image's config, or an artifact's type."""
    doc = parse(raw, media_type, ref.familiar)
    if not isinstance(doc, ImageManifest):
        return
    digest = str(doc.digest)
    if doc.artifact:
        shown.artifacts[digest] = doc.artifact
    if doc.has_image_config:
        shown.configs[digest] = await read_config(regs, ref, doc, require_platform=False)


def inspect_refs(args: argparse.Namespace) -> int:
    refs = [Reference.parse(r) for r in args.refs]
    store = DraftStore()
    verbose = bool(getattr(args, "verbose", 0))

    async def run() -> list[Shown | ManifestoError]:
        async with Registries(insecure=args.insecure) as regs:

            async def one(ref: Reference) -> Shown | ManifestoError:
                try:
                    if not ref.digest and store.exists(ref):
                        return await _gather_local(regs, ref, verbose, args.raw)
                    return await _gather_remote(regs, ref, verbose, args.raw)
                except ManifestoError as e:
                    return e

            return list(await tasks.gather(*(one(r) for r in refs)))

    results = asyncio.run(run())
    errors = [r for r in results if isinstance(r, ManifestoError)]
    if len(refs) == 1 and errors:
        raise errors[0]
    out = sys.stdout
    if args.raw:
        for i, r in enumerate(results):
            if isinstance(r, Shown):
                out.flush()
                sys.stdout.buffer.write(r.raw)
                if len(refs) > 1 and i < len(results) - 1:
                    sys.stdout.buffer.write(b"\n")
        sys.stdout.buffer.flush()
    elif args.json:
        docs = [_as_json(r) for r in results if isinstance(r, Shown)]
        print(json.dumps(docs[0] if len(refs) == 1 else docs, indent=2))
    else:
        blocks = [_as_text(r, verbose) for r in results if isinstance(r, Shown)]
        print("\n\n".join(blocks))
    for e in errors:
        sys.stderr.write(f"manifesto: error: {e}\n")
    return max((exit_code(e) for e in errors), default=0)


def _platform(p: Platform | None) -> str:
    return str(p) if p is not None and p.os and p.architecture else UNKNOWN


def _platform_label(d: Descriptor, doc: ImageIndex) -> str:
    """An entry's platform, or what it refers to (buildkit's vnd.docker.reference.* entries)."""
    kind = d.annotations.get(ATTESTATION_TYPE_KEY)
    if kind:
        target = d.annotations.get(ATTESTATION_SUBJECT_KEY)
        subject = next((m for m in doc.manifests if str(m.digest) == target), None)
        of = _platform(subject.platform) if subject else (target[:19] if target else UNKNOWN)
        return f"{'attestation' if d.is_attestation else kind} of {of}"
    return _platform(d.platform)


def _as_text(shown: Shown, verbose: bool) -> str:
    doc = parse(shown.raw, shown.media_type, shown.ref.familiar)
    head = [
        ("Name", str(shown.ref) + ("  (local draft)" if shown.local else "")),
        ("MediaType", shown.media_type),
    ]
    artifact = doc.artifact if isinstance(doc, ImageManifest) else doc.artifact_type
    if artifact:
        head.append(("Artifact", artifact))
    head += [("Digest", str(doc.digest)), ("Size", f"{doc.size} B")]
    if doc.subject is not None:
        head.append(("Subject", str(doc.subject.digest)))
    for k, v in doc.annotations.items():
        head.append(("Annotation", f"{k}={v}"))
    if isinstance(doc, ImageManifest):
        cfg = shown.config
        head.insert(1, ("Platform", _platform(cfg.platform if cfg else None)))
        layers = sum(d.size for d in doc.layers)
        head.append(("Layers", f"{len(doc.layers)} ({size(layers)})"))
        if cfg and verbose:
            head += _config_lines(cfg)
        return _lines(head)
    assert isinstance(doc, ImageIndex)
    kinds = {str(d.digest): d.artifact_type or shown.artifacts.get(str(d.digest), "") for d in doc.manifests}
    with_kinds = any(kinds.values())
    rows = []
    for d in doc.manifests:
        row = [_platform_label(d, doc), str(d.digest), size(d.size), mediatype.format_name(d.media_type)]
        if with_kinds:
            row.append(kinds[str(d.digest)])
        if verbose:
            cfg = shown.configs.get(str(d.digest))
            row.append(_facts(cfg) if cfg else "")
        rows.append(row)
    headers = ["platform", "digest", "size", "media type"] + (["artifact type"] if with_kinds else [])
    headers += ["config"] if verbose else []
    return _lines(head) + "\n\n" + table(headers, rows)


def _lines(head: list[tuple[str, str]]) -> str:
    return "\n".join(f"{k + ':':<10} {printable(v)}" for k, v in head)


def _facts(cfg: ImageConfig) -> str:
    parts = [f"config={_platform(cfg.platform)}"]
    if cfg.created:
        parts.append(f"created={cfg.created}")
    cmd = cfg.entrypoint + cfg.cmd
    if cmd:
        parts.append("cmd=" + " ".join(cmd))
    return " ".join(parts)


def _config_lines(cfg: ImageConfig) -> list[tuple[str, str]]:
    out = []
    if cfg.created:
        out.append(("Created", cfg.created))
    if cfg.entrypoint:
        out.append(("Entrypoint", " ".join(cfg.entrypoint)))
    if cfg.cmd:
        out.append(("Cmd", " ".join(cfg.cmd)))
    for k, v in cfg.labels.items():
        out.append(("Label", f"{k}={v}"))
    return out


def _as_json(shown: Shown) -> dict[str, Any]:
    """The document's own fields as stored (no re-serialized descriptors), plus what was learned."""
    doc = parse(shown.raw, shown.media_type, shown.ref.familiar)
    stored = json.loads(shown.raw)
    out: dict[str, Any] = {
        "reference": str(shown.ref),
        "local": shown.local,
        "mediaType": shown.media_type,
        "digest": str(doc.digest),
        "size": doc.size,
    }
    if isinstance(doc, ImageManifest):
        cfg = shown.config
        out["platform"] = cfg.platform.to_dict() if cfg and cfg.platform else None
        out["artifactType"] = doc.artifact
    else:
        out["artifactType"] = doc.artifact_type
    out["annotations"] = doc.annotations
    if "subject" in stored:
        out["subject"] = stored["subject"]
    if isinstance(doc, ImageManifest):
        out["layers"] = stored["layers"]
        out["config"] = stored["config"]
        return out
    entries = []
    for d, e in zip(doc.manifests, stored["manifests"]):
        e = dict(e)
        if d.is_attestation:
            e["attestationOf"] = d.attests
        cfg = shown.configs.get(str(d.digest))
        if cfg:
            e["config"] = {"platform": cfg.platform.to_dict() if cfg.platform else None, "created": cfg.created}
        entries.append(e)
    out["manifests"] = entries
    return out
