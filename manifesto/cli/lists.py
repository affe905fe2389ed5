"""`create`, `annotate`, `push`, `inspect`, `rm`: the `docker manifest` verbs.

The registry stack (httpx, asyncio) is imported by the verbs that talk to registries only:
`annotate` and `rm` edit local drafts and should start as fast as the interpreter does.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from manifesto.cli.render import entry_count
from manifesto.errors import NotFound, UsageError
from manifesto.lists.drafts import Draft, DraftStore, find_entry, source_location
from manifesto.log import get_logger
from manifesto.oci import mediatype
from manifesto.oci.platform import Platform
from manifesto.oci.reference import Reference

log = get_logger("manifesto.cli")


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def _features(current: tuple[str, ...], given: list[str]) -> tuple[str, ...]:
    """`--os-features` as docker applies it: every value adds its features once; '' clears."""
    out = list(current)
    for value in given:
        if not value:
            out = []
        out += [f for f in dict.fromkeys(value.split(",")) if f and f not in out]
    return tuple(out)


# ---- create ---------------------------------------------------------------------------------


def create(args: argparse.Namespace) -> int:
    name = Reference.parse(args.list)  # the list goes to a registry; its SOURCEs may be layouts
    sources = [source_location(s) for s in args.sources]
    store = DraftStore()
    pushing = getattr(args, "push", False)
    if pushing and args.amend:
        raise UsageError("--push builds the list from SOURCEs alone; --amend edits a local draft (push it with `push`)")
    if not pushing and getattr(args, "tag", None):
        raise UsageError("--tag needs --push (or give the tags to `push`)")
    for flag in ("report", "report_env"):
        if not pushing and getattr(args, flag, None):
            raise UsageError(f"--{flag.replace('_', '-')} needs --push (or give it to `push`)")
    if pushing:
        from manifesto.cli.publishing import _check_outputs
        from manifesto.cli.report import Recorder

        _check_outputs(("--report", getattr(args, "report", None)), ("--report-env", getattr(args, "report_env", None)))
        with Recorder("create", args, name.name) as rec:  # a failed read is reported too
            return _create_pushed(args, name, sources, rec)
    _refuse_existing(store, name, args.amend)  # before any network work; again under the lock below
    read = _read(args, sources)
    found = _with_attestations(getattr(args, "attestations", "keep"), sources, read)
    with store.locked(name):
        _refuse_existing(store, name, args.amend)
        draft = store.load(name) if store.exists(name) else Draft(name)
        entries = {e.descriptor.digest: e for e in draft.entries}
        entries.update((e.descriptor.digest, e) for e in found)
        draft = replace(
            draft.with_entries(list(entries.values())),
            format=args.format or draft.format,
            insecure=args.insecure or draft.insecure,
            annotations=_kept_annotations(draft.annotations, zip(sources, (s.annotations for s in read))),
        )
        store.save(draft)
    print(f"Created manifest list {name} ({entry_count(len(draft.entries))})")
    return 0


def _refuse_existing(store: DraftStore, name: Reference, amend: bool) -> None:
    if store.exists(name) and not amend:
        raise UsageError(f"local list {name.familiar} already exists; use --amend to add to it")


def _read(args: argparse.Namespace, sources: list) -> list:
    """Every SOURCE read (registries or OCI layouts): lists.sources.Source each."""
    import asyncio

    from manifesto.store.registry.pool import Registries

    async def read_all():
        async with Registries(insecure=args.insecure) as regs:
            return await _read_with(regs, args, sources)

    return asyncio.run(read_all())


async def _read_with(regs, args: argparse.Namespace, sources: list) -> list:  # noqa: ANN001 — a Registries
    from manifesto.lists.sources import read_sources

    return await read_sources(regs, sources, keep_nested=getattr(args, "keep_nested", False))


def _create_pushed(args: argparse.Namespace, name: Reference, sources: list, rec) -> int:  # noqa: ANN001
    """`create --push`: one process, no draft on disk; the list goes straight down push's one path.

    The sources are read under the push's own registries, while the push asks what the tags
    hold and whether it may push (lists.push.preflight): no round trip waits for another
    it does not need."""

    async def reading(regs) -> Draft:  # noqa: ANN001 — a Registries
        read = await _read_with(regs, args, sources)
        found = _with_attestations(getattr(args, "attestations", "keep"), sources, read)
        entries = list({e.descriptor.digest: e for e in found}.values())
        kept = _kept_annotations({}, zip(sources, (s.annotations for s in read)))
        return Draft(name, format=args.format, insecure=args.insecure, annotations=kept).with_entries(entries)

    return _push(argparse.Namespace(**{**vars(args), "purge": False}), name, rec, reading)


def _with_attestations(how: str, sources: list, read) -> list:
    """Every source's entries, its attestations left out under `--attestations strip` (said on stderr)."""
    from manifesto.lists.rules import dropped_text, split_attestations

    found = []
    for source, got in zip(sources, read):
        kept, dropped = split_attestations(got.entries, how)
        if dropped:
            print(dropped_text(len(dropped), source.familiar), file=sys.stderr)
        found += kept
    return found


def _kept_annotations(current: dict[str, str], flattened) -> dict[str, str]:
    """The list's annotations plus those of every list flattened into it.

    `push` then carries them, or refuses as for any index annotation a Docker list cannot
    carry. A key the list (or an earlier source) already gives another value keeps that value,
    with a warning naming what was left out.
    """
    out = dict(current)
    for source, given in flattened:
        for key, value in given.items():
            if key not in out:
                out[key] = value
            elif out[key] != value:
                log.warning("index_annotation_not_kept", key=key, kept=out[key], ignored=value, source=source.familiar)
    return out


# ---- annotate -------------------------------------------------------------------------------


def annotate(args: argparse.Namespace) -> int:
    name = Reference.parse(args.list)
    source = source_location(args.source)
    store = DraftStore()
    with store.locked(name):
        draft = store.load(name)
        i = find_entry(draft, source)
        entry = draft.entries[i]
        d = entry.descriptor
        platform = d.platform or Platform("linux", "amd64")
        if args.os or args.arch or args.variant is not None:  # --variant "" removes it
            arch = args.arch or platform.architecture
            variant = args.variant if args.variant is not None else (None if args.arch else platform.variant)
            platform = Platform.normalize_parts(args.os or platform.os, arch, variant or None).with_(
                os_version=platform.os_version, os_features=platform.os_features
            )
        if args.os_version is not None:
            platform = platform.with_(os_version=args.os_version or None)
        if args.os_features is not None:
            platform = platform.with_(os_features=_features(platform.os_features, args.os_features))
        annotations = {**d.annotations, **_pairs(args.annotation, "--annotation")}
        entries = list(draft.entries)
        entries[i] = replace(entry, descriptor=d.with_(platform=platform, annotations=annotations))
        before = draft
        draft = draft.with_entries(entries)
        index_annotations = _pairs(args.index_annotation, "--index-annotation")
        if index_annotations:
            draft = replace(draft, annotations={**draft.annotations, **index_annotations})
        changes = _changes(d.platform, platform, d.annotations, annotations, before.annotations, draft.annotations)
        if changes:
            store.save(draft)
    what = f"{entry.name} ({d.digest.short}…)"
    print(f"Annotated {what}: {', '.join(changes)}" if changes else f"Nothing changed in {what}: it already says so")
    return 0


_PLATFORM_FIELDS = (("os", "os"), ("arch", "architecture"), ("variant", "variant"),
                    ("os.version", "os_version"), ("os.features", "os_features"))  # fmt: skip


def _changes(
    was: Platform | None,
    now: Platform,
    was_annotations: dict[str, str],
    now_annotations: dict[str, str],
    was_list: dict[str, str],
    now_list: dict[str, str],
) -> list[str]:
    """What `annotate` changed, in words: `arch arm64 → arm`, `variant → v7`, `annotation k=v`."""

    def text(value: object) -> str:
        return ",".join(value) if isinstance(value, tuple) else str(value or "")

    out = []
    for label, attr in _PLATFORM_FIELDS:
        old, new = text(getattr(was, attr, None)), text(getattr(now, attr))
        if old != new:
            out.append(f"{label} {old + ' ' if old else ''}→ {new or '(none)'}")
    out += [f"annotation {k}={v}" for k, v in now_annotations.items() if was_annotations.get(k) != v]
    out += [f"list annotation {k}={v}" for k, v in now_list.items() if was_list.get(k) != v]
    return out


# ---- push -----------------------------------------------------------------------------------


def push(args: argparse.Namespace) -> int:
    from manifesto.cli.publishing import _check_outputs
    from manifesto.cli.report import Recorder

    name = Reference.parse(args.list)
    _check_outputs(("--report", getattr(args, "report", None)), ("--report-env", getattr(args, "report_env", None)))
    with Recorder("push", args, name.name) as rec:
        return _push(args, name, rec)


def _push(args: argparse.Namespace, name: Reference, rec, reading=None) -> int:  # noqa: ANN001
    """push() within its Recorder (cli/report.py): the report and CI outputs, success or not.

    The list is the local draft named `name`, unless `reading` (`create --push`) builds it
    from the registries the push uses, while the push's preflight runs."""
    import asyncio

    from manifesto.cli.publishing import blob_bars
    from manifesto.lists import push as lists
    from manifesto.lists.rules import build_index, choose_media_type, ensure_tags, problems
    from manifesto.oci.digest import Digest
    from manifesto.store.registry.pool import Registries
    from manifesto.transfer import Copier, Place

    def checked(draft: Draft):  # noqa: ANN202 — (media type, index)
        if not draft.entries:
            raise UsageError(f"local list {name.familiar} has no entries")
        media_type = choose_media_type(draft.entries, args.format or draft.format)
        found = [p.text("--format oci") for p in problems(draft.entries, media_type, draft.annotations)]
        if found and not args.force:
            raise UsageError(f"refusing to push {name.familiar}: {'; '.join(found)} (--force to push anyway)")
        for p in found:
            log.warning("push_forced", problem=p)
        return media_type, build_index(draft.entries, media_type, draft.annotations)

    draft: Draft | None = None
    if reading is None:
        draft = DraftStore().load(name)
        media_type, index = checked(draft)
    tags = ensure_tags(name, args.tag)

    async def run(bars) -> lists.Pushed:  # noqa: ANN001 — a BlobBars, or None off a terminal
        async with Registries(insecure=args.insecure or (draft is not None and draft.insecure)) as regs:

            async def built() -> Digest:
                nonlocal draft, media_type, index
                draft = await reading(regs)
                media_type, index = checked(draft)
                return index.digest

            # No push-access probe: nothing but reads comes before the first write (a blob mount
            # or upload of the first child), which a registry refuses as early, writing nothing.
            seen = await lists.preflight(
                regs, name, tags, unchanged=index.digest if reading is None else built(), access=False
            )
            client = regs.client(name)
            place = Place(client, name.repository)
            moving = any(seen.get(client, name.repository, t) != index.digest for t in tags)
            return await lists.push(
                regs, place, name.name, draft.entries, media_type=media_type, annotations=draft.annotations,
                tags=tags, seen=seen, read_back=False, copier=Copier(place, on_bytes=bars, eager=moving),
            )  # fmt: skip

    with blob_bars(args) as bars:  # a live line per blob, as copy shows
        result = asyncio.run(run(bars))
    if args.purge:
        DraftStore().delete(name)
    moved = ", ".join(result.tags_moved) or "none"
    kept = f"; unchanged: {', '.join(result.tags_unchanged)}" if result.tags_unchanged else ""
    print(f"Pushed {name.name} ({mediatype.format_name(result.index.media_type)}, {entry_count(len(result.index.manifests))}); tags: {moved}{kept}", file=sys.stderr)
    rec.succeeded(_pushed_facts(rec.command, name, result, rec.report is not None))
    if not rec.owns_stdout:  # `--report -`: the report is stdout, the digest in it
        print(result.index.digest)
    return 0


def _pushed_facts(command: str, name: Reference, result, body: bool):  # noqa: ANN001 — a lists.push.Pushed
    """What `push` (or `create --push`) did, for the report and CI outputs; the report body (a
    publish report's `platforms` and `index`, jobs.publish.Result) only when a report is written."""
    from manifesto.cli.report import Facts, Row

    rows = tuple(Row(str(e.platform), "ok", str(e.digest), e.size, e.source_label) for e in result.entries)
    fields = {}
    if body:
        from manifesto.jobs.publish import Result

        done = Result(name.name, result.entries, result.index, result.tags_moved, result.tags_unchanged)
        fields = {k: v for k, v in done.report().items() if k != "target"}
    digest = str(result.index.digest)
    return Facts(command, name.name, digest, result.tags_moved, result.tags_unchanged, rows, fields)


# ---- rm -------------------------------------------------------------------------------------


def rm(args: argparse.Namespace) -> int:
    store = DraftStore()
    missing = []
    for text in args.lists:
        name = Reference.parse(text)
        try:
            store.delete(name)
        except NotFound:
            missing.append(name.familiar)
    if missing:
        raise NotFound(f"no local manifest list {', '.join(missing)}")
    return 0


# ---- inspect --------------------------------------------------------------------------------


def inspect(args: argparse.Namespace) -> int:
    from manifesto.cli.inspect import inspect_refs

    return inspect_refs(args)
