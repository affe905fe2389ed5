"""`tags`, `digest`, `tag`, `delete`, `config`: the registry verbs people otherwise keep crane for.

Each takes the references every verb takes (`[docker://]REF`, and `oci:DIR[:TAG|@DIGEST]`
where a layout makes sense: all but `delete`), the same credentials and --insecure, and fails with the
same one-line errors and exit codes. Only `tags` and `delete` need more than the Store protocol
(store/registry/catalog.py); the rest work on any place through it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from manifesto.cli.render import printable
from manifesto.errors import ManifestoError, NotFound, UsageError
from manifesto.oci.digest import Digest
from manifesto.oci.manifest import ImageIndex, ImageManifest, parse
from manifesto.oci.platform import Platform, matches
from manifesto.oci.reference import LayoutReference, check_tag, is_digest, parse_location, valid_tag
from manifesto.store.layout import LayoutStore
from manifesto.store.places import Location, manifest_reference, open_store, platform_image
from manifesto.store.protocol import Fetched
from manifesto.store.registry.pool import Registries
from manifesto.transfer import Place

T = TypeVar("T")


def _run(args: argparse.Namespace, work: Callable[[Registries], Awaitable[T]]) -> T:
    async def main() -> T:
        async with Registries(insecure=getattr(args, "insecure", False)) as regs:
            return await work(regs)

    return asyncio.run(main())


def _place(regs: Registries, location: Location) -> Place:
    return Place(*open_store(regs, location))


def _label(location: Location, reference: str) -> str:
    """The location pinned to `reference` (a tag or digest), as people write it."""
    if isinstance(location, LayoutReference):
        base = LayoutReference(location.path)
        return str(base.with_digest(Digest.parse(reference)) if is_digest(reference) else replace(base, tag=reference))
    if is_digest(reference):
        return location.with_digest(Digest.parse(reference)).familiar
    return location.with_tag(reference).familiar


def _repository(location: Location) -> str:
    return str(LayoutReference(location.path)) if isinstance(location, LayoutReference) else location.name


# ---- tags -----------------------------------------------------------------------------------


def tags(args: argparse.Namespace) -> int:
    """Every tag of a repository (or an OCI layout), one a line, as the place lists them."""
    location = parse_location(args.repository)
    if location.tag or location.digest:
        raise UsageError(f"{args.repository}: `tags` takes a repository, without a tag or digest")
    if isinstance(location, LayoutReference):  # `ref.name`s: some tools write whole references there
        from manifesto.cli import ci

        for name in sorted(LayoutStore(Path(location.path)).tags()):
            print(ci.guard(printable(name)))
        return 0
    if args.page_size is not None and args.page_size < 1:
        raise UsageError("--page-size must be at least 1")
    from manifesto.store.registry.catalog import list_tags

    ref = location
    names = _run(args, lambda regs: list_tags(regs.client(ref), ref.repository, page_size=args.page_size))
    for name in _valid_tags(names, ref.name):
        print(name)
    return 0


def _valid_tags(names: list[str], repository: str) -> list[str]:
    """The names that are tags by the one tag grammar (oci/reference.py), with a warning for the
    rest: a name outside it (`::set-output ...`, a line break, ...) is no tag anyone could pull,
    and printed as it came it could pass for a workflow command in a CI log or break a script
    reading one tag a line."""
    from manifesto.cli import ci

    bad = [name for name in names if not valid_tag(name)]
    if bad:
        shown = ", ".join(map(repr, bad[:5])) + (", ..." if len(bad) > 5 else "")  # repr: escaped
        warning = f"manifesto: warning: {repository}: skipped {len(bad)} name(s) that are not valid tags: {shown}"
        sys.stderr.write(ci.guard(warning) + "\n")
    return [name for name in names if valid_tag(name)]


# ---- digest ---------------------------------------------------------------------------------


def digest(args: argparse.Namespace) -> int:
    """The digest of the manifest a reference names: one HEAD (a GET, verified, if it says none)."""
    location = parse_location(args.ref)

    async def work(regs: Registries) -> Digest:
        place = _place(regs, location)
        reference = manifest_reference(location)
        found = await place.store.head_manifest(place.repo, reference)
        if found is None:
            raise NotFound(f"{_label(location, reference)}: manifest not found")
        return found.digest

    print(_run(args, work))
    return 0


# ---- tag ------------------------------------------------------------------------------------


def _new_tag(location: Location, text: str) -> str:
    """A NEWTAG: a bare tag, or a reference to the same repository (or layout) with a tag."""
    if valid_tag(text):
        return text
    if not any(ch in text for ch in "/:@"):  # meant as a bare tag: say what a tag may be
        check_tag(text)
    other = parse_location(text)
    if other.digest:
        raise UsageError(f"{text}: a new tag is a tag, not a digest")
    if _repository(other) != _repository(location) or type(other) is not type(location):
        where = _repository(location)
        raise UsageError(f"{text}: `tag` adds tags in the same repository ({where}); `manifesto copy` copies elsewhere")
    if not other.tag:
        raise UsageError(f"{text}: no tag given")
    return other.tag


def tag(args: argparse.Namespace) -> int:
    """PUT the exact manifest bytes a reference names under each new tag: nothing re-uploaded.

    Each tag moves as publish moves tags (tags.move_tags): a tag already holding the manifest
    is left alone, and one that another writer moves meanwhile is not overwritten.
    """
    from manifesto.tags import TagMove, move_tags

    location = parse_location(args.ref)
    new = list(dict.fromkeys(_new_tag(location, t) for t in args.tags))

    async def work(regs: Registries) -> tuple[Fetched, list[bool]]:
        place = _place(regs, location)
        fetched = await place.store.get_manifest(place.repo, manifest_reference(location))
        moves = [TagMove(place.store, place.repo, t, fetched.raw, fetched.media_type) for t in new]
        return fetched, await move_tags(moves)

    fetched, moved = _run(args, work)
    for t, changed in zip(new, moved):
        state = "tagged" if changed else "unchanged (it already held this manifest)"
        print(f"{_label(location, t)}: {state}", file=sys.stderr)
    print(fetched.digest)
    return 0


# ---- delete ---------------------------------------------------------------------------------


def _confirm(question: str) -> bool:
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def delete(args: argparse.Namespace) -> int:
    """Delete a manifest from a registry by digest (a tag is resolved to its digest first).

    Deleting is for good and takes every tag naming the manifest with it: on a terminal the
    user is asked, anywhere else `--yes` must say so.
    """
    from manifesto.store.registry.catalog import delete_manifest

    location = parse_location(args.ref)
    if isinstance(location, LayoutReference):
        raise UsageError(f"{args.ref}: `delete` deletes from a registry, not from an OCI layout")
    ref = location
    interactive = sys.stdin.isatty() and sys.stderr.isatty()

    async def work(regs: Registries) -> None:
        client = regs.client(ref)
        found = await client.head_manifest(ref.repository, ref.reference)
        if found is None:
            raise NotFound(f"{ref.familiar}: manifest not found")
        target = ref.with_digest(found.digest).familiar
        what = target + (f" (tag {ref.tag}, and every other tag naming it)" if not ref.digest else " (and every tag naming it)")
        if not args.yes:
            if not interactive:
                raise UsageError(f"refusing to delete {what} without --yes (not on a terminal)")
            if not await asyncio.to_thread(_confirm, f"Delete {what}?"):
                raise ManifestoError(f"{target}: not deleted (not confirmed)")
        await delete_manifest(client, ref.repository, found.digest)
        print(f"Deleted {what}", file=sys.stderr)

    _run(args, work)
    return 0


# ---- config ---------------------------------------------------------------------------------


def _wanted(args: argparse.Namespace) -> tuple[Platform, bool]:
    """The platform asked for (--platform), else this host's; and whether it was asked for."""
    if args.platform:
        return Platform.parse(args.platform), True
    from manifesto.builders.binfmt import host_platform_of

    return host_platform_of() or Platform("linux", "amd64"), False


def config(args: argparse.Namespace) -> int:
    """The exact bytes of an image's config blob, digest-verified.

    A list resolves to the entry for --platform, or, without it, for this host's platform (as
    `docker pull` and regctl pick), saying which on stderr; a single image is taken as it is,
    unless --platform names another platform than its config says.
    """
    location = parse_location(args.ref)
    platform, asked = _wanted(args)

    async def work(regs: Registries) -> bytes:
        place = _place(regs, location)
        reference = manifest_reference(location)
        label = _label(location, reference)
        fetched = await place.store.get_manifest(place.repo, reference)
        doc = parse(fetched.raw, fetched.media_type, label)
        single = isinstance(doc, ImageManifest)
        if isinstance(doc, ImageIndex):
            how = "" if asked else " (this host's platform; choose one with --platform)"
            child, _ = await platform_image(place.store, place.repo, fetched, platform, label, hint=how)
            if not asked:
                print(f"manifesto: {label}: the config of its {platform} image (this host's platform)", file=sys.stderr)
            doc = parse(child.raw, child.media_type, f"{label} {platform}")
            assert isinstance(doc, ImageManifest)  # platform_image follows nested lists
        raw = await place.store.read_blob_bytes(place.repo, doc.config.digest)
        if asked and single:
            _check_platform(raw, platform, label)
        return raw

    raw = _run(args, work)
    sys.stdout.flush()
    sys.stdout.buffer.write(raw)
    if sys.stdout.isatty() and not raw.endswith(b"\n"):
        sys.stdout.buffer.write(b"\n")
    sys.stdout.buffer.flush()
    return 0


def _check_platform(raw: bytes, platform: Platform, label: str) -> None:
    """A single image asked for by --platform must be that platform (as its config says)."""
    from manifesto.oci.config import ImageConfig

    found = ImageConfig.parse(raw, f"config of {label}", require_platform=False).platform
    if found is not None and not matches(found, platform):
        raise NotFound(f"{label}: the image is {found}, not {platform}")
