"""`manifesto inspect`: lists, single manifests and local drafts as a table, JSON or raw bytes."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass, field
from typing import Any

from manifesto import assemble
from manifesto.cli.render import printable, size, table
from manifesto.errors import ManifestoError
from manifesto.oci import mediatype
from manifesto.oci.config import ImageConfig
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.manifest import ImageIndex, ImageManifest, parse
from manifesto.oci.reference import Reference
from manifesto.store.drafts import DraftStore
from manifesto.store.registry.pool import Registries


@dataclass
class Shown:
    """Everything one REF's output needs, gathered before anything is printed."""

    ref: Reference
    raw: bytes
    media_type: str
    local: bool = False
    configs: dict[str, ImageConfig] = field(default_factory=dict)  # child digest -> config
    config: ImageConfig | None = None  # for a single image


async def _gather_remote(regs: Registries, ref: Reference, verbose: bool) -> Shown:
    client = regs.client(ref)
    fetched = await client.get_manifest(ref.repository, ref.reference)
    shown = Shown(ref, fetched.raw, fetched.media_type)
    doc = parse(fetched.raw, fetched.media_type, ref.familiar)
    if isinstance(doc, ImageManifest):
        if _is_image(doc):  # artifacts (helm charts, signatures) have no platform config
            shown.config = await assemble.read_config(regs, ref, doc)
    elif verbose:

        async def one(d: Descriptor) -> None:
            child = await client.get_manifest(ref.repository, str(d.digest))
            child_doc = parse(child.raw, child.media_type, f"{ref.familiar}@{d.digest}")
            if isinstance(child_doc, ImageManifest) and not d.is_attestation and _is_image(child_doc):
                shown.configs[str(d.digest)] = await assemble.read_config(regs, ref.with_digest(d.digest), child_doc)

        await asyncio.gather(*(one(d) for d in doc.manifests))
    return shown


async def _gather_local(regs: Registries, ref: Reference, verbose: bool) -> Shown:
    draft = DraftStore().load(ref)
    media_type = assemble.choose_media_type(draft.entries, draft.format)
    index = assemble.build_index(draft.entries, media_type, draft.annotations)
    shown = Shown(ref, index.raw, media_type, local=True)
    if verbose:

        async def one(entry) -> None:
            doc = parse(entry.raw, entry.descriptor.media_type, entry.source.familiar)
            if isinstance(doc, ImageManifest) and not entry.descriptor.is_attestation and _is_image(doc):
                shown.configs[str(entry.descriptor.digest)] = await assemble.read_config(regs, entry.source, doc)

        await asyncio.gather(*(one(e) for e in draft.entries))
    return shown


def _is_image(doc: ImageManifest) -> bool:
    return doc.config.media_type in mediatype.CONFIG_TYPES


def inspect_refs(args: argparse.Namespace) -> int:
    refs = [Reference.parse(r) for r in args.refs]
    store = DraftStore()
    verbose = bool(getattr(args, "verbose", 0))

    async def run() -> list[Shown | ManifestoError]:
        async with Registries(insecure=args.insecure) as regs:

            async def one(ref: Reference) -> Shown | ManifestoError:
                try:
                    if not ref.digest and store.exists(ref):
                        return await _gather_local(regs, ref, verbose)
                    return await _gather_remote(regs, ref, verbose)
                except ManifestoError as e:
                    return e

            return list(await asyncio.gather(*(one(r) for r in refs)))

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
    return max((e.exit_code for e in errors), default=0)


def _platform_label(d: Descriptor, doc: ImageIndex) -> str:
    if d.is_attestation:
        subject = next((m for m in doc.manifests if str(m.digest) == d.attests), None)
        of = str(subject.platform) if subject and subject.platform else (d.attests or "?")[:19]
        return f"attestation of {of}"
    return str(d.platform) if d.platform else "-"


def _as_text(shown: Shown, verbose: bool) -> str:
    doc = parse(shown.raw, shown.media_type, shown.ref.familiar)
    head = [
        ("Name", str(shown.ref) + ("  (local draft)" if shown.local else "")),
        ("MediaType", shown.media_type),
        ("Digest", str(doc.digest)),
        ("Size", f"{doc.size} B"),
    ]
    if isinstance(doc, ImageManifest):
        cfg = shown.config
        if cfg:
            head.insert(1, ("Platform", str(cfg.platform)))
        layers = sum(d.size for d in doc.layers)
        head.append(("Layers", f"{len(doc.layers)} ({size(layers)})"))
        if cfg and verbose:
            head += _config_lines(cfg)
        return "\n".join(f"{k + ':':<11}{printable(v)}" for k, v in head)
    assert isinstance(doc, ImageIndex)
    for k, v in doc.annotations.items():
        head.append(("Annotation", f"{k}={v}"))
    rows = []
    for d in doc.manifests:
        row = [_platform_label(d, doc), str(d.digest), size(d.size), mediatype.format_name(d.media_type)]
        if verbose:
            cfg = shown.configs.get(str(d.digest))
            row.append(_facts(cfg) if cfg else "")
        rows.append(row)
    headers = ["platform", "digest", "size", "media type"] + (["config"] if verbose else [])
    return "\n".join(f"{k + ':':<11}{printable(v)}" for k, v in head) + "\n\n" + table(headers, rows)


def _facts(cfg: ImageConfig) -> str:
    parts = [f"config={cfg.platform}"]
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
    doc = parse(shown.raw, shown.media_type, shown.ref.familiar)
    out: dict[str, Any] = {
        "reference": str(shown.ref),
        "local": shown.local,
        "mediaType": shown.media_type,
        "digest": str(doc.digest),
        "size": doc.size,
    }
    if isinstance(doc, ImageManifest):
        if shown.config:
            out["platform"] = shown.config.platform.to_dict()
        out["layers"] = [d.to_dict() for d in doc.layers]
        out["config"] = doc.config.to_dict()
        return out
    assert isinstance(doc, ImageIndex)
    out["annotations"] = doc.annotations
    entries = []
    for d in doc.manifests:
        e = d.to_dict()
        if d.is_attestation:
            e["attestationOf"] = d.attests
        cfg = shown.configs.get(str(d.digest))
        if cfg:
            e["config"] = {"platform": cfg.platform.to_dict(), "created": cfg.created}
        entries.append(e)
    out["manifests"] = entries
    return out
