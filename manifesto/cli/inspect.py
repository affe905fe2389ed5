"""`manifesto inspect`: lists, single manifests and local drafts as a table, JSON, a template or raw bytes.

Anything valid a registry or an OCI layout holds is shown: images, artifacts (helm charts,
signatures, SBOMs), platform-less configs, referrers-style indexes, buildkit attestations. A
fact the content does not give reads "unknown" (null in JSON), never an error. `--raw` fetches
the manifest alone and prints its bytes as stored, without reading anything else (with
`--platform`, the chosen image's bytes). Every reference form goes through
oci.reference.parse_location: `REF`, `docker://REF`, `oci:DIR[:TAG|@DIGEST]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass, field
from typing import Any

from manifesto import tasks
from manifesto.cli.main import exit_code, show_error
from manifesto.errors import ManifestoError, NotFound
from manifesto.lists.drafts import DraftStore
from manifesto.lists.rules import build_index, choose_media_type
from manifesto.oci import mediatype
from manifesto.oci.config import ImageConfig
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.manifest import ImageManifest, parse
from manifesto.oci.platform import Platform, matches, pick
from manifesto.oci.reference import LayoutReference, Reference, parse_location
from manifesto.store.places import manifest_reference, offered, open_store, platform_image
from manifesto.store.protocol import Fetched, Store
from manifesto.store.registry.pool import Registries

CHILD_FETCHES = 8  # child manifests read at once for one list (sizes, -v config facts)


@dataclass
class Shown:
    """Everything one REF's output needs, gathered before anything is printed."""

    ref: Reference | LayoutReference
    raw: bytes
    media_type: str
    local: bool = False
    children: dict[str, ImageManifest] = field(default_factory=dict)  # child digest -> its manifest
    configs: dict[str, ImageConfig] = field(default_factory=dict)  # child digest -> config (-v)
    artifacts: dict[str, str] = field(default_factory=dict)  # child digest -> artifact type (-v)
    config: ImageConfig | None = None  # for a single image
    config_doc: Any = None  # a single image's config JSON, as stored
    index: Fetched | None = None  # with --platform: the list the image was picked from


@dataclass(frozen=True)
class Want:
    """What the output needs read, besides the manifest itself."""

    verbose: bool
    raw_only: bool
    platform: Platform | None


async def _read_config(store: Store, repo: str, doc: ImageManifest, where: str) -> tuple[ImageConfig, Any]:
    raw = await store.read_blob_bytes(repo, doc.config.digest)
    cfg = ImageConfig.parse(raw, f"config of {where}", require_platform=False)
    return cfg, json.loads(raw)


async def _pick_platform(
    store: Store, repo: str, ref: Reference | LayoutReference, fetched: Fetched, platform: Platform
) -> tuple[Fetched, Fetched | None]:
    """The image for `platform`: from a list by the one rule (store.places.platform_image);
    a single image must itself be that platform."""
    fetched, index = await platform_image(store, repo, fetched, platform, ref.familiar)
    doc = parse(fetched.raw, fetched.media_type, ref.familiar)
    if index is None and isinstance(doc, ImageManifest):
        cfg = (await _read_config(store, repo, doc, ref.familiar))[0] if doc.has_image_config else None
        if cfg is None or cfg.platform is None or not matches(cfg.platform, platform):
            raise NotFound(f"{ref.familiar} is {cfg.platform if cfg and cfg.platform else 'no platform image'}, not {platform}")
    return fetched, index


async def _gather_stored(regs: Registries, ref: Reference | LayoutReference, want: Want) -> Shown:
    store, repo = open_store(regs, ref)
    fetched = await store.get_manifest(repo, manifest_reference(ref))
    index = None
    if want.platform is not None:
        fetched, index = await _pick_platform(store, repo, ref, fetched, want.platform)
    shown = Shown(ref, fetched.raw, fetched.media_type, index=index)
    if want.raw_only:
        return shown
    doc = parse(fetched.raw, fetched.media_type, ref.familiar)
    if isinstance(doc, ImageManifest):
        if doc.has_image_config:  # artifacts (helm charts, SBOMs) have no image config to read
            shown.config, shown.config_doc = await _read_config(store, repo, doc, ref.familiar)
        return shown
    limit = asyncio.Semaphore(CHILD_FETCHES)

    async def one(d: Descriptor) -> None:
        if not mediatype.is_image_manifest(d.media_type):
            return
        async with limit:
            try:
                child = await store.get_manifest(repo, d.digest)
            except NotFound:  # a list naming a missing child is still shown; its size reads unknown
                return
            await _describe_child(store, repo, ref.with_digest(d.digest), child.raw, child.media_type, shown, want, d)

    await tasks.gather(*(one(d) for d in doc.manifests), in_order=True)
    return shown


async def _gather_draft(regs: Registries, ref: Reference, want: Want) -> Shown:
    draft = DraftStore().load(ref)
    if want.platform is not None:
        found = pick(draft.entries, want.platform)
        if not found or found[0].source is None:
            have = offered(e.descriptor for e in draft.entries)
            raise NotFound(f"local list {ref.familiar} has no {want.platform} image (it has {have})")
        source = found[0].source.with_digest(found[0].descriptor.digest)
        shown = await _gather_stored(regs, source, Want(want.verbose, want.raw_only, None))
        media_type = choose_media_type(draft.entries, draft.format)
        built = build_index(draft.entries, media_type, draft.annotations)
        shown.index = Fetched(built.raw, media_type, built.digest)
        return shown
    media_type = choose_media_type(draft.entries, draft.format)
    index = build_index(draft.entries, media_type, draft.annotations)
    shown = Shown(ref, index.raw, media_type, local=True)
    if want.raw_only:
        return shown

    async def one(entry) -> None:
        d = entry.descriptor
        if entry.raw is None or entry.source is None or not mediatype.is_image_manifest(d.media_type):
            return
        store, repo = open_store(regs, entry.source)  # a registry, or an OCI layout it was read from
        await _describe_child(store, repo, entry.source, entry.raw, d.media_type, shown, want, d)

    await tasks.gather(*(one(e) for e in draft.entries), in_order=True)
    return shown


async def _describe_child(
    store: Store,
    repo: str,
    ref: Reference | LayoutReference,
    raw: bytes,
    media_type: str,
    shown: Shown,
    want: Want,
    entry: Descriptor,
) -> None:
    """Record what an index entry is: its manifest (for its size), with -v its config or artifact type."""
    doc = parse(raw, media_type, ref.familiar)
    if not isinstance(doc, ImageManifest):
        return
    digest = str(doc.digest)
    shown.children[digest] = doc
    if not want.verbose or entry.is_attestation:
        return
    if doc.artifact:
        shown.artifacts[digest] = doc.artifact
    if doc.has_image_config:
        shown.configs[digest] = (await _read_config(store, repo, doc, ref.familiar))[0]


def inspect_refs(args: argparse.Namespace) -> int:
    if getattr(args, "referrers", False):  # a listing of its own: cli/referrers.py
        from manifesto.cli.referrers import show

        return show(args)
    template = None
    if getattr(args, "format", None) is not None:
        from manifesto.cli import template as go_template  # only when asked: start-up stays cheap

        template = go_template.parse(args.format)  # a bad template fails before any fetch
    refs = [parse_location(r) for r in args.refs]
    platform = Platform.parse(args.platform) if getattr(args, "platform", None) else None
    want = Want(bool(getattr(args, "verbose", 0)), args.raw, platform)
    drafts = DraftStore()

    async def run() -> list[Shown | ManifestoError]:
        async with Registries(insecure=args.insecure) as regs:

            async def one(ref: Reference | LayoutReference) -> Shown | ManifestoError:
                try:
                    if isinstance(ref, Reference) and not ref.digest and drafts.exists(ref):
                        return await _gather_draft(regs, ref, want)
                    return await _gather_stored(regs, ref, want)
                except ManifestoError as e:
                    return e

            return list(await tasks.gather(*(one(r) for r in refs)))

    results = asyncio.run(run())
    errors = [r for r in results if isinstance(r, ManifestoError)]
    if len(refs) == 1 and errors:
        raise errors[0]
    shown = [r for r in results if isinstance(r, Shown)]
    _print(args, shown, template, len(refs))
    for e in errors:
        show_error(e)  # as the one error of a command is shown: scrubbed, annotated in CI
    return max((exit_code(e) for e in errors), default=0)


def _print(args: argparse.Namespace, shown: list[Shown], template: Any, n_refs: int) -> None:
    from manifesto.cli import inspect_view as view

    out = sys.stdout
    if args.raw:
        for i, r in enumerate(shown):
            out.flush()
            sys.stdout.buffer.write(r.raw)
            if n_refs > 1 and i < len(shown) - 1:
                sys.stdout.buffer.write(b"\n")
        sys.stdout.buffer.flush()
    elif template is not None:
        from manifesto.cli.template import render

        for r in shown:
            text = render(template, view.as_json(r, record=True))
            out.write(text if not text or text.endswith("\n") else text + "\n")
    elif args.json:
        docs = [view.as_json(r) for r in shown]
        print(json.dumps(docs[0] if n_refs == 1 else docs, indent=2))
    else:
        no_trunc = bool(getattr(args, "no_trunc", False))
        blocks = [view.as_text(r, bool(getattr(args, "verbose", 0)), no_trunc) for r in shown]
        print("\n\n".join(blocks))
