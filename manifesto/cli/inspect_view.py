"""What `inspect` prints for one REF: the text view (head lines, a table for a list) and the JSON model.

The JSON model is one shape for every REF (docs/cli.md, "inspect"): every key is always
present, null where it does not apply, and `--format` templates read the same object, so
`--format '{{json .}}'` is `--json` on one line.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from manifesto.cli.render import fit_width, printable, short_digest, size, table
from manifesto.oci import mediatype
from manifesto.oci.config import ImageConfig
from manifesto.oci.descriptor import ATTESTATION_SUBJECT_KEY, ATTESTATION_TYPE_KEY, Descriptor
from manifesto.oci.manifest import ImageIndex, ImageManifest, parse
from manifesto.oci.platform import Platform

if TYPE_CHECKING:
    from manifesto.cli.inspect import Shown

UNKNOWN = "unknown"


def _platform(p: Platform | None) -> str:
    return str(p) if p is not None and p.os and p.architecture else UNKNOWN


def _platform_label(d: Descriptor, doc: ImageIndex) -> str:
    """An entry's platform, or what it refers to (buildkit's vnd.docker.reference.* entries)."""
    kind = d.annotations.get(ATTESTATION_TYPE_KEY)
    if kind:
        target = d.annotations.get(ATTESTATION_SUBJECT_KEY)
        subject = next((m for m in doc.manifests if str(m.digest) == target), None)
        of = _platform(subject.platform) if subject else (short_digest(target) if target else UNKNOWN)
        return f"{'attestation' if d.is_attestation else kind} of {of}"
    return _platform(d.platform)


def attested_order(entries: tuple[Descriptor, ...]) -> list[Descriptor]:
    """Entries in index order, each attestation moved right under the image it attests
    (attestations of no entry of this index stay where they are)."""
    subjects = {str(d.digest) for d in entries if not d.is_attestation}
    under: dict[str, list[Descriptor]] = {}
    for d in entries:
        if d.is_attestation and d.attests in subjects:
            under.setdefault(d.attests or "", []).append(d)
    out: list[Descriptor] = []
    for d in entries:
        if d.is_attestation and d.attests in subjects:
            continue
        out.append(d)
        out.extend(under.get(str(d.digest), []) if not d.is_attestation else [])
    return out


def image_size(doc: ImageManifest | None) -> int | None:
    """An image's size as pulled: its config and layers (not the manifest's own bytes)."""
    return None if doc is None else sum(d.size for d in doc.blobs())


def _annotations(d: Descriptor) -> str:
    shown = {k: v for k, v in d.annotations.items() if not k.startswith("vnd.docker.reference.")}
    return ", ".join(f"{k}={v}" for k, v in shown.items())


def as_text(shown: Shown, verbose: bool, no_trunc: bool = False) -> str:
    doc = parse(shown.raw, shown.media_type, shown.ref.familiar)
    head = [
        ("Name", str(shown.ref) + ("  (local draft)" if shown.local else "")),
        ("MediaType", shown.media_type),
    ]
    artifact = doc.artifact if isinstance(doc, ImageManifest) else doc.artifact_type
    if artifact:
        head.append(("Artifact", artifact))
    head += [("Digest", str(doc.digest)), ("Size", f"{doc.size} B")]
    if shown.index is not None:
        head.append(("Index", str(shown.index.digest)))
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
    notes = {str(d.digest): _annotations(d) for d in doc.manifests}
    with_kinds, with_notes = any(kinds.values()), any(notes.values())
    rows = []
    for d in attested_order(doc.manifests):
        total = image_size(shown.children.get(str(d.digest)))
        digest = str(d.digest) if no_trunc else short_digest(str(d.digest))
        shown_size = size(total) if total is not None else UNKNOWN
        row = [_platform_label(d, doc), digest, shown_size, mediatype.format_name(d.media_type)]
        if with_kinds:
            row.append(kinds[str(d.digest)])
        if with_notes:
            row.append(notes[str(d.digest)])
        if verbose:
            cfg = shown.configs.get(str(d.digest))
            row.append(_facts(cfg) if cfg else "")
        rows.append(row)
    headers = ["platform", "digest", "size", "media type"]
    headers += (["artifact type"] if with_kinds else []) + (["annotations"] if with_notes else [])
    headers += ["config"] if verbose else []
    width = None if no_trunc else fit_width()
    shrink = [i for i, h in enumerate(headers) if h in ("artifact type", "annotations", "config", "media type")]
    return _lines(head) + "\n\n" + table(headers, rows, width=width, shrink=shrink)


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


def as_json(shown: Shown, record: bool = False) -> dict[str, Any]:
    """The one JSON shape of a REF: its stored fields untouched, plus what was learned.

    With `record`, the top-level object is a template Record (an unknown field is an error).
    """
    doc = parse(shown.raw, shown.media_type, shown.ref.familiar)
    stored = json.loads(shown.raw)
    image = isinstance(doc, ImageManifest)
    cfg = shown.config
    out: dict[str, Any] = {
        "name": str(shown.ref),
        "local": shown.local,
        "mediaType": shown.media_type,
        "digest": str(doc.digest),
        "size": doc.size,
        "artifactType": doc.artifact if isinstance(doc, ImageManifest) else doc.artifact_type,
        "annotations": doc.annotations,
        "subject": stored.get("subject"),
        "platform": cfg.platform.to_dict() if image and cfg and cfg.platform else None,
        "config": stored["config"] if image else None,
        "layers": stored["layers"] if image else None,
        "imageSize": image_size(doc) if isinstance(doc, ImageManifest) else None,
        "manifests": None if image else _entries(shown, doc, stored),
        "index": None,
        "manifest": stored,
        "image": shown.config_doc,
    }
    if shown.index is not None:
        out["index"] = {"mediaType": shown.index.media_type, "digest": str(shown.index.digest), "size": len(shown.index.raw)}
    if record:
        from manifesto.cli.template_values import Record

        return Record(out)
    return out


def _entries(shown: Shown, doc: ImageIndex | ImageManifest, stored: dict[str, Any]) -> list[dict[str, Any]]:
    assert isinstance(doc, ImageIndex)
    entries = []
    for d, e in zip(doc.manifests, stored["manifests"]):
        e = dict(e)
        e["attestationOf"] = d.attests
        e["imageSize"] = image_size(shown.children.get(str(d.digest)))
        cfg = shown.configs.get(str(d.digest))
        if cfg:
            e["config"] = {"platform": cfg.platform.to_dict() if cfg.platform else None, "created": cfg.created}
        entries.append(e)
    return entries
