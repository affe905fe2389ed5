"""Run a Plan: build every platform, push children by digest, verify them, push the index.

Order matters and is the contract: a preflight first (the target and every arch-tag repository
grant push; what each tag holds now is read), then all builds (in parallel, bounded); if any
fails the publish fails with that build's log tail, builds still queued do not start, and
nothing is pushed. Then every child goes into the target repository by digest, each child is
read back FROM THE TARGET (its descriptor is what the target serves, its config must say the
platform the entry claims, and a Docker list may hold only Docker manifests), and only then is
the index put under its tags (a tag that already holds the same digest is left alone, so an
unchanged republish moves nothing; one that moved since the preflight read it is not
overwritten: tags.py). The index lists its children in matrix order, however they arrived
(one runner, or digest files in any order), so a split publish and a single one give the
same index digest.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from manifesto import assemble, tasks
from manifesto.builders.base import BuiltImage
from manifesto.errors import (
    InvalidDigest,
    InvalidPlatform,
    ManifestoError,
    NotFound,
    UsageError,
    VerificationError,
)
from manifesto.fileio import write_atomic
from manifesto.jobs.builds import Options, build_all, work_dir
from manifesto.log import get_logger
from manifesto.matrix.plan import AssembleStep, BuildStep, Plan
from manifesto.oci.config import ImageConfig
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.digest import Digest
from manifesto.oci.manifest import ImageIndex, ImageManifest, parse
from manifesto.oci.platform import Platform, contrast
from manifesto.oci.reference import Reference
from manifesto.store.protocol import Fetched
from manifesto.store.layout import LayoutStore
from manifesto.store.registry.pool import Registries
from manifesto.tags import Snapshot, TagMove, move_tags
from manifesto.transfer import Copier, Place

log = get_logger("manifesto.publish")


@dataclass(frozen=True)
class Child:
    """One image of the index, pushed by digest into the target.

    `origin` says where a claim about the child came from (a digest file), for messages only.
    """

    platform: Platform
    digest: Digest
    size: int
    media_type: str
    source: str  # "built" or the reference it was assembled from
    arch_refs: tuple[str, ...] = ()
    origin: str = field(default="", compare=False)

    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, self.size, self.platform)

    def to_json(self) -> dict[str, Any]:
        return {
            "platform": str(self.platform),
            "digest": str(self.digest),
            "size": self.size,
            "mediaType": self.media_type,
            "source": self.source,
            "archRefs": list(self.arch_refs),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str) -> Child:
        try:
            return cls(
                platform=Platform.parse(data["platform"]),
                digest=Digest.parse(data["digest"]),
                size=int(data["size"]),
                media_type=str(data["mediaType"]),
                source=str(data.get("source", "built")),
                arch_refs=tuple(data.get("archRefs") or ()),
                origin=where,
            )
        except KeyError as e:
            raise UsageError(f"{where}: not a manifesto digest file (an entry has no {e.args[0]!r})") from None
        except (TypeError, ValueError, InvalidDigest, InvalidPlatform) as e:
            raise UsageError(f"{where}: not a manifesto digest file ({e})") from None


@dataclass(frozen=True)
class Result:
    """What a publish did; `report()` is the JSON written by --report."""

    target: str
    children: tuple[Child, ...]
    index: ImageIndex | None = None
    tags_moved: tuple[str, ...] = ()
    tags_unchanged: tuple[str, ...] = ()

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {"target": self.target, "platforms": [c.to_json() for c in self.children]}
        if self.index is not None:
            out["index"] = {
                "digest": str(self.index.digest),
                "mediaType": self.index.media_type,
                "size": self.index.size,
                "tags": list(self.tags_moved + self.tags_unchanged),
                "tagsMoved": list(self.tags_moved),
                "tagsUnchanged": list(self.tags_unchanged),
            }
        return out


# ---- pushing children -----------------------------------------------------------------------


def target_place(plan: Plan, registries: Registries) -> Place:
    if plan.target.is_layout:
        assert plan.target.layout is not None
        return Place(LayoutStore(plan.target.layout, create=True), "")
    assert plan.target.reference is not None
    return Place(registries.client(plan.target.reference), plan.target.reference.repository)


async def push_built(copier: Copier, built: BuiltImage, step: BuildStep) -> Child:
    """Push one built image into the target by digest; its arch tags come later (push_arch_tags)."""
    layout = LayoutStore(built.layout)
    fetched = layout.manifest(built.tag)
    await copier.manifest(Place(layout, ""), fetched)
    arch_refs = tuple(str(ref) for ref in step.arch_refs)
    return Child(step.platform, fetched.digest, len(fetched.raw), fetched.media_type, "built", arch_refs)


async def push_arch_children(registries: Registries, place: Place, children: list[Child]) -> list[TagMove]:
    """Docker-library style per-arch tags (arm64v8/hello:1.0): each child copied by digest into
    its arch repositories (from the target repository, where it already is: blobs are mounted
    across repositories of one registry); returns the tag moves, which push_index makes with
    the index's own, only once every child is verified, so a refused publish moves no tag."""

    async def one(child: Child, repository: str, refs: list[Reference]) -> list[TagMove]:
        fetched = await place.store.get_manifest(place.repo, str(child.digest))
        client = registries.client(refs[0])
        await Copier(Place(client, repository)).manifest(place, fetched)
        return [TagMove(client, repository, ref.tag or "latest", fetched.raw, fetched.media_type) for ref in refs]

    jobs = []
    for child in children:
        by_repo: dict[tuple[str, str], list[Reference]] = {}
        for text in child.arch_refs:
            ref = Reference.parse(text)
            by_repo.setdefault((ref.registry, ref.repository), []).append(ref)
        jobs += [one(child, repo, refs) for (_, repo), refs in by_repo.items()]
    return [move for moves in await tasks.gather(*jobs) for move in moves]


async def push_assembled(copier: Copier, registries: Registries, step: AssembleStep) -> list[Child]:
    entries = await assemble.read_entries(registries, step.source)
    images = [e for e in entries if not e.descriptor.is_attestation]
    if step.platform is not None:
        matching = [e for e in images if e.config_platform and e.config_platform.same_as(step.platform)]
        if not matching:
            found = ", ".join(dict.fromkeys(str(e.config_platform) for e in images if e.config_platform)) or "nothing"
            raise VerificationError(
                f"{step.source.familiar}: no image for {step.platform} there (its config says {found}); index not pushed"
            )
        images = matching
    children = []
    for e in images:
        src = Place(registries.client(e.source), e.source.repository)
        await copier.manifest(src, Fetched(e.raw, e.descriptor.media_type, e.descriptor.digest))
        platform = step.platform or e.config_platform or e.descriptor.platform
        assert platform is not None
        children.append(Child(platform, e.descriptor.digest, len(e.raw), e.descriptor.media_type, str(step.source)))
    return children


async def verify_children(place: Place, target: str, children: list[Child]) -> list[Child]:
    """Read each child back from the target by digest; return them as the target serves them.

    A child's media type and size in the index come from the bytes the target serves, never
    from a claim (a digest file can be edited): a claim that disagrees is refused. Its config
    must say its platform.
    """

    async def one(child: Child) -> Child:
        try:
            fetched = await place.store.get_manifest(place.repo, str(child.digest))
        except NotFound:
            raise VerificationError(f"{child.platform}: {child.digest} is not in {target}; index not pushed") from None
        size = len(fetched.raw)
        if (child.media_type, child.size) != (fetched.media_type, size):
            if child.origin:  # a claim from a digest file that the registry contradicts
                raise VerificationError(
                    f"{child.origin}: {child.platform} {child.digest} is {fetched.media_type}, {size} bytes in "
                    f"{target}, not {child.media_type}, {child.size} bytes as the file says; index not pushed"
                )
            log.warning("child_descriptor_differs", digest=str(child.digest), pushed=child.media_type, served=fetched.media_type)
        doc = parse(fetched.raw, fetched.media_type, f"{child.platform} child {child.digest}")
        if not isinstance(doc, ImageManifest):
            raise VerificationError(f"{child.platform}: {child.digest} is not an image manifest; index not pushed")
        raw = await place.store.read_blob_bytes(place.repo, doc.config.digest)
        config = ImageConfig.parse(raw, f"{child.platform} config")
        if not child.platform.same_as(config.platform):
            claimed, found = contrast(child.platform, config.platform)
            raise VerificationError(f"{child.digest}: claims {claimed} but its config says {found}; index not pushed")
        return replace(child, media_type=fetched.media_type, size=size)

    return list(await tasks.gather(*(one(c) for c in children)))


def check_unique(children: list[Child]) -> None:
    seen: dict[tuple, Child] = {}
    for c in children:
        if c.platform.key() in seen:
            raise VerificationError(f"duplicate platform {c.platform} ({seen[c.platform.key()].source} and {c.source})")
        seen[c.platform.key()] = c


@dataclass(frozen=True)
class _Named:
    familiar: str


@dataclass(frozen=True)
class _Entry:
    """A child as assemble.problems() reads list entries."""

    source: _Named
    descriptor: Descriptor
    config_platform: Platform | None = None


def check_format(plan: Plan, children: list[Child]) -> None:
    """The checks `manifesto push` makes (assemble.problems), over the index's children.

    A Docker manifest list can hold only Docker schema 2 manifests and carries no annotations;
    with `format: docker` an OCI child (built by a builder that ignored the format, or an
    `image:` entry that is OCI) is refused before any tag moves.
    """
    entries = [_Entry(_Named(f"{c.platform} ({c.source})"), c.descriptor()) for c in children]
    found = assemble.problems(entries, plan.index_media_type, plan.annotations)
    if found:
        hint = f"format: oci in {plan.matrix.path}"
        text = "; ".join(p.replace("--format oci", hint) for p in found)
        raise VerificationError(f"{text}; index not pushed")


def in_matrix_order(plan: Plan, children: list[Child], assembled: list[list[Child]]) -> list[Child]:
    """Built `children` and each AssembleStep's children, in the order of the matrix entries.

    The index lists its children in this order whatever order builds, pushes or digest files
    came in, so the same matrix always gives the same index bytes.
    """
    groups = iter(assembled)
    out: list[Child] = []
    for step in plan.steps:
        if isinstance(step, BuildStep):
            out += [c for c in children if c.platform.same_as(step.platform)]
        else:
            out += next(groups)
    return out


async def push_index(
    place: Place, plan: Plan, children: list[Child], registries: Registries, seen: Snapshot | None = None
) -> Result:
    """Verified children, in matrix order → checks → arch tags → the index under every tag.

    Every tag move (arch tags, then the index's) is a compare-and-swap against what `seen` read
    before the run started (see `preflight`); all are checked before any moves.
    """
    check_unique(children)
    check_format(plan, children)
    arch_moves = await push_arch_children(registries, place, children)
    index = ImageIndex.build(plan.index_media_type, [c.descriptor() for c in children], plan.annotations)
    index_moves = [TagMove(place.store, place.repo, tag, index.raw, index.media_type) for tag in plan.tags]
    done = (await move_tags(arch_moves + index_moves, seen))[len(arch_moves) :]
    moved = [tag for tag, changed in zip(plan.tags, done) if changed]
    unchanged = [tag for tag, changed in zip(plan.tags, done) if not changed]
    log.info("index_pushed", target=str(plan.target), digest=str(index.digest), tags=moved, unchanged=unchanged)
    return Result(str(plan.target), tuple(children), index, tuple(moved), tuple(unchanged))


# ---- the whole job --------------------------------------------------------------------------


async def preflight(plan: Plan, registries: Registries, *, tags: bool = True) -> Snapshot:
    """Before anything is built or written: may we push to the target and (with `tags`) every
    arch-tag repository, and what does each tag this run moves hold now?

    An auth problem is an AuthError in seconds, not after every build; the tags read here are
    what push_index's compare-and-swap checks against. A layout target needs neither.
    """
    seen = Snapshot()
    target = plan.target.reference
    if target is None:
        return seen
    refs = [target.with_tag(t) for t in plan.tags] if tags else [target]
    if tags:
        refs += [r for s in plan.build_steps for r in s.arch_refs]
    repos = {(r.registry, r.repository): r for r in refs}
    await tasks.gather(*(registries.client(r).check_push(r.repository, r.name) for r in repos.values()))
    if tags:
        reads = [(r, [x.tag or "latest" for x in refs if (x.registry, x.repository) == key]) for key, r in repos.items()]
        await tasks.gather(*(seen.take(registries.client(r), r.repository, names) for r, names in reads))
    return seen




def publish(plan: Plan, options: Options, *, push_index_too: bool = True) -> Result:
    """Build, push children, verify, and (unless push-by-digest) push the index under every tag.

    With push-by-digest only the built entries are pushed: `assemble` copies the `image:`
    entries itself, so a digest file holds just what this runner built.
    """
    seen = asyncio.run(_preflight(plan, options, push_index_too))
    work = work_dir()
    if options.keep_work:
        options.on_notice(f"keeping the work directory {work}")
    try:
        built = build_all(plan, options, work)
        return asyncio.run(_push(plan, options, built, push_index_too, seen))
    finally:
        if not options.keep_work:
            shutil.rmtree(work, ignore_errors=True)


async def _preflight(plan: Plan, options: Options, tags: bool) -> Snapshot:
    async with Registries(insecure=options.insecure) as registries:
        return await preflight(plan, registries, tags=tags)


async def _push(plan: Plan, options: Options, built: list[BuiltImage], push_index_too: bool, seen: Snapshot) -> Result:
    async with Registries(insecure=options.insecure) as registries:
        place = target_place(plan, registries)
        target = str(plan.target)
        copier = Copier(place)
        built_for = {str(b.platform): b for b in built}
        pushes = [push_built(copier, built_for[str(s.platform)], s) for s in plan.build_steps]
        if not push_index_too:  # push-by-digest: no tag moves; `assemble` pushes arch tags too
            for s in plan.assemble_steps:
                options.on_notice(f"{s.platform or '(from config)'}: image: {s.source.familiar} is left to `manifesto assemble`")
            children = await verify_children(place, target, list(await tasks.gather(*pushes)))
            check_format(plan, children)
            return Result(target, tuple(replace(c, arch_refs=()) for c in children))
        copies = [push_assembled(copier, registries, s) for s in plan.assemble_steps]
        done = await tasks.gather(*pushes, *copies)
        children = in_matrix_order(plan, list(done[: len(pushes)]), list(done[len(pushes) :]))
        children = await verify_children(place, target, children)
        return await push_index(place, plan, children, registries, seen)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write a report or digest file atomically; a failure is a one-line ManifestoError."""
    try:
        write_atomic(path, (json.dumps(data, indent=2) + "\n").encode())
    except OSError as e:
        raise ManifestoError(f"cannot write {path}: {e.strerror or e}") from None


__all__ = ["Child", "Options", "Result", "build_all", "publish", "write_json"]
