"""Run a Plan: build every platform, push children by digest, verify them, push the index.

Order matters and is the contract: all builds first (in parallel, bounded); if any fails the
publish fails with that build's log tail and nothing is pushed. Then every child goes into the
target repository by digest, each child's config is read back FROM THE TARGET and must say
the platform the entry claims, and only then is the index put under its tags (a tag that
already holds the same digest is left alone, so an unchanged republish moves nothing).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from manifesto import assemble
from manifesto.build.base import Builder, BuildRequest, BuiltImage
from manifesto.errors import (
    BuildError,
    InvalidDigest,
    InvalidPlatform,
    UsageError,
    VerificationError,
)
from manifesto.fileio import write_atomic
from manifesto.log import get_logger
from manifesto.matrix.plan import AssembleStep, BuildStep, Plan
from manifesto.oci.config import ImageConfig
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.digest import Digest
from manifesto.oci.manifest import ImageIndex, ImageManifest, parse
from manifesto.oci.platform import Platform
from manifesto.oci.reference import Reference
from manifesto.store.base import Fetched
from manifesto.store.layout import LayoutStore
from manifesto.store.registry.pool import Registries
from manifesto.transfer import Copier, Place

log = get_logger("manifesto.publish")


@dataclass(frozen=True)
class Child:
    """One image of the index, pushed by digest into the target."""

    platform: Platform
    digest: Digest
    size: int
    media_type: str
    source: str  # "built" or the reference it was assembled from
    arch_refs: tuple[str, ...] = ()

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


@dataclass
class Options:
    builder: Builder | None = None
    jobs: int = 0
    source_date_epoch: int | None = None
    insecure: bool = False
    work_dir: Path | None = None
    keep_work: bool = False
    on_line: Callable[[str], None] = field(default=lambda line: None)


# ---- building -------------------------------------------------------------------------------


def build_all(plan: Plan, options: Options, work: Path) -> list[BuiltImage]:
    """Build every BuildStep in parallel (bounded); raise the first failure after all finish."""
    steps = plan.build_steps
    if not steps:
        return []
    if options.builder is None:
        raise UsageError("no builder")
    builder = options.builder
    lock = threading.Lock()

    def one(step: BuildStep) -> BuiltImage:
        prefix = f"[{step.platform}] "

        def emit(line: str) -> None:
            with lock:
                options.on_line(prefix + line)

        request = BuildRequest(
            platform=step.platform,
            context=step.context,
            dockerfile=step.dockerfile,
            args=step.args,
            output=work / str(step.platform).replace("/", "-"),
            source_date_epoch=options.source_date_epoch,
        )
        log.info("build_started", platform=str(step.platform), builder=builder.name)
        built = builder.build(request, emit)
        log.info("build_finished", platform=str(step.platform), digest=str(built.digest))
        return built

    jobs = options.jobs or min(len(steps), os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="build") as pool:
        futures = [pool.submit(one, s) for s in steps]
        results, failures = [], []
        try:
            for step, fut in zip(steps, futures):
                try:
                    results.append(fut.result())
                except (BuildError, VerificationError, UsageError) as e:
                    failures.append((step, e))
        except KeyboardInterrupt:
            runner = getattr(builder, "runner", None)  # builds run in their own process groups
            if runner is not None:
                runner.cancel()
            raise
    if failures:
        step, first = failures[0]
        others = f" ({len(failures) - 1} more platform(s) failed too)" if len(failures) > 1 else ""
        tail = getattr(first, "log_tail", "")
        raise BuildError(f"{step.platform}: build failed: {first}{others}" + (f"\n{tail}" if tail else ""), log_tail=tail)
    return results


# ---- pushing children -----------------------------------------------------------------------


def target_place(plan: Plan, registries: Registries) -> Place:
    if plan.target.is_layout:
        assert plan.target.layout is not None
        return Place(LayoutStore(plan.target.layout, create=True), "")
    assert plan.target.reference is not None
    return Place(registries.client(plan.target.reference), plan.target.reference.repository)


async def push_built(copier: Copier, registries: Registries, built: BuiltImage, step: BuildStep) -> Child:
    """Push one built image into the target by digest; its arch tags come later (push_arch_tags)."""
    layout = LayoutStore(built.layout)
    fetched = layout.manifest(built.tag)
    await copier.manifest(Place(layout, ""), fetched)
    arch_refs = tuple(str(ref) for ref in step.arch_refs)
    return Child(step.platform, fetched.digest, len(fetched.raw), fetched.media_type, "built", arch_refs)


async def push_arch_tags(registries: Registries, place: Place, children: list[Child]) -> None:
    """Docker-library style per-arch tags (arm64v8/hello:1.0), pushed only once every child is
    verified, so a refused publish moves no tag at all. Copied from the target repository, where
    each child already is (blobs are mounted across repositories of one registry)."""

    async def one(child: Child, repository: str, refs: list[Reference]) -> None:
        fetched = await place.store.get_manifest(place.repo, str(child.digest))
        copier = Copier(Place(registries.client(refs[0]), repository))
        await copier.manifest(place, fetched)
        for ref in refs:
            await copier.tag(ref.tag or "latest", fetched.raw, fetched.media_type)

    jobs = []
    for child in children:
        by_repo: dict[tuple[str, str], list[Reference]] = {}
        for text in child.arch_refs:
            ref = Reference.parse(text)
            by_repo.setdefault((ref.registry, ref.repository), []).append(ref)
        jobs += [one(child, repo, refs) for (_, repo), refs in by_repo.items()]
    await asyncio.gather(*jobs)


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


async def verify_children(place: Place, children: list[Child]) -> None:
    """Read each child back from the target; its config must say its platform."""

    async def one(child: Child) -> None:
        fetched = await place.store.get_manifest(place.repo, str(child.digest))
        doc = parse(fetched.raw, fetched.media_type, f"{child.platform} child {child.digest}")
        if not isinstance(doc, ImageManifest):
            raise VerificationError(f"{child.platform}: {child.digest} is not an image manifest")
        parts = [c async for c in place.store.read_blob(place.repo, doc.config.digest)]
        config = ImageConfig.parse(b"".join(parts), f"{child.platform} config")
        if not child.platform.same_as(config.platform):
            raise VerificationError(
                f"{child.digest}: claims {child.platform} but its config says {config.platform}; index not pushed"
            )

    await asyncio.gather(*(one(c) for c in children))


def check_unique(children: list[Child]) -> None:
    seen: dict[tuple, Child] = {}
    for c in children:
        if c.platform.key() in seen:
            raise VerificationError(f"duplicate platform {c.platform} ({seen[c.platform.key()].source} and {c.source})")
        seen[c.platform.key()] = c


async def push_index(place: Place, plan: Plan, children: list[Child], registries: Registries) -> Result:
    await verify_children(place, children)
    check_unique(children)
    await push_arch_tags(registries, place, children)
    index = ImageIndex.build(plan.index_media_type, [c.descriptor() for c in children], plan.annotations)
    copier = Copier(place)
    moved, unchanged = [], []
    for tag in plan.tags:
        (moved if await copier.tag(tag, index.raw, index.media_type) else unchanged).append(tag)
    log.info("index_pushed", target=str(plan.target), digest=str(index.digest), tags=moved, unchanged=unchanged)
    return Result(str(plan.target), tuple(children), index, tuple(moved), tuple(unchanged))


# ---- the whole job --------------------------------------------------------------------------


def _work_dir(options: Options) -> Path:
    base = options.work_dir or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "manifesto" / "work"
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="publish-", dir=base))


def publish(plan: Plan, options: Options, *, push_index_too: bool = True) -> Result:
    """Build, push children, verify, and (unless push-by-digest) push the index under every tag."""
    work = _work_dir(options)
    try:
        built = build_all(plan, options, work)
        return asyncio.run(_push(plan, options, built, push_index_too))
    finally:
        if not options.keep_work:
            shutil.rmtree(work, ignore_errors=True)


async def _push(plan: Plan, options: Options, built: list[BuiltImage], push_index_too: bool) -> Result:
    async with Registries(insecure=options.insecure) as registries:
        place = target_place(plan, registries)
        copier = Copier(place)
        built_for = {str(b.platform): b for b in built}

        async def step(s: BuildStep | AssembleStep) -> list[Child]:
            if isinstance(s, BuildStep):
                return [await push_built(copier, registries, built_for[str(s.platform)], s)]
            return await push_assembled(copier, registries, s)

        groups = await asyncio.gather(*(step(s) for s in plan.steps))  # children in matrix order
        children = [c for g in groups for c in g]
        if not push_index_too:  # push-by-digest: no tag moves; `assemble` pushes arch tags too
            await verify_children(place, children)
            return Result(str(plan.target), tuple(replace(c, arch_refs=()) for c in children))
        return await push_index(place, plan, children, registries)


def assemble_from_files(plan: Plan, files: list[Path], insecure: bool = False) -> Result:
    """The second half of a split publish: children named by digest files, plus assemble entries."""
    children: list[Child] = []
    for path in files:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise UsageError(f"{path}: cannot read digest file: {e}") from None
        items = data.get("platforms") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise UsageError(f"{path}: not a manifesto digest file (no 'platforms' list)")
        children += [Child.from_json(item, str(path)) for item in items]
    missing = [s.platform for s in plan.build_steps if not any(c.platform.same_as(s.platform) for c in children)]
    if missing:
        raise UsageError(f"no digest file covers {', '.join(map(str, missing))}; index not pushed")
    extra = [c.platform for c in children if not any(c.platform.same_as(s.platform) for s in plan.build_steps)]
    if extra:
        raise UsageError(f"digest files name platforms not in {plan.matrix.path}: {', '.join(map(str, extra))}")
    # arch tags as this plan renders them (its --image/--tag), not as the digest files say
    children = [
        replace(c, arch_refs=tuple(str(r) for s in plan.build_steps if s.platform.same_as(c.platform) for r in s.arch_refs))
        for c in children
    ]

    async def run() -> Result:
        async with Registries(insecure=insecure) as registries:
            place = target_place(plan, registries)
            copier = Copier(place)
            for c in children:
                if await place.store.head_manifest(place.repo, str(c.digest)) is None:
                    raise VerificationError(f"{c.platform}: {c.digest} is not in {plan.target}; index not pushed")
            groups = await asyncio.gather(*(push_assembled(copier, registries, s) for s in plan.assemble_steps))
            return await push_index(place, plan, children + [c for g in groups for c in g], registries)

    return asyncio.run(run())


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, (json.dumps(data, indent=2) + "\n").encode())



__all__ = ["Child", "Options", "Result", "assemble_from_files", "build_all", "publish", "write_json"]
