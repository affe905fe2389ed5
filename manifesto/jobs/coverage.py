"""Coverage against the base image: which matrix platforms a build's base does not provide.

Why: a base without a platform fails that build late (after the others ran), or worse, a tool
pulls another architecture's image in its place. `publish --dry-run` and `doctor` read each
build step's Dockerfile (the native builder's parser and its ARG substitution: FROM sees the
automatic platform args and the global ARGs), resolve every base the build pulls for its target
platform (stages with `--platform=$BUILDPLATFORM` run on this machine and are left out; stage
names and `scratch` name no image) and check it with the one rule for picking a child
(oci.platform.pick). `platforms: from-base` makes the matrix exactly the platforms of the
final stage's base, resolved here (the matrix package is pure) before the plan is made.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from manifesto import tasks
from manifesto.builders.native import source
from manifesto.errors import ManifestoError, UsageError
from manifesto.matrix.model import Matrix, with_platforms
from manifesto.matrix.plan import Plan
from manifesto.oci.config import ImageConfig
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.manifest import ImageIndex, ImageManifest, parse
from manifesto.oci.platform import Platform, duplicates, normalized, pick
from manifesto.oci.reference import parse_location
from manifesto.store.places import manifest_reference, offered, open_store
from manifesto.store.registry.pool import Registries


@dataclass(frozen=True)
class StageBase:
    """An image one stage of a Dockerfile starts from: None for scratch. `final`: the stage
    the built image is (or a stage it names by alias); `for_target`: pulled for the platform
    being built (no `--platform`, or one naming that platform)."""

    image: str | None
    final: bool
    for_target: bool


@dataclass(frozen=True)
class Offer:
    """What a base reference provides: its platform images (attestations and unknown/unknown
    left out), as an index names them or as a single image's config says."""

    label: str
    images: tuple[Descriptor, ...]

    @property
    def platforms(self) -> tuple[Platform, ...]:
        return tuple(d.platform for d in self.images if d.platform is not None and not d.platform.is_unknown)

    def provides(self, platform: Platform) -> bool:
        return bool(pick(self.images, platform))


@dataclass(frozen=True)
class Gap:
    """A matrix platform a base does not provide (or a base that could not be read)."""

    platform: Platform
    message: str


# ---- the Dockerfile's bases ------------------------------------------------------------------


def stage_bases(text: str, file: str, args: Mapping[str, str], platform: Platform) -> list[StageBase]:
    """Every stage's base for `platform`, in stage order, global ARGs substituted as FROM sees them."""
    src = source.parse(text, file)
    scope = source.global_scope(src, args, platform)
    aliases: dict[str, int] = {}
    found: list[tuple[str | None, bool, int | None]] = []  # (image, for_target, stage it names)
    for i, (cmd, _) in enumerate(src.stages):
        value = list(cmd.value)
        image = source.expanded(src, cmd, value[0], scope) if value else ""
        if len(value) == 3 and value[1].upper() == "AS":
            aliases[value[2].lower()] = i
        given = source.flag_values(src, cmd, {"platform"}).get("platform")
        for_target = True
        if given:
            try:
                for_target = Platform.parse(source.expanded(src, cmd, given, scope)).same_as(platform)
            except UsageError:
                for_target = False
        named = aliases.get(image.lower()) if image.lower() not in ("", "scratch") else None
        if named is not None and named < i:
            found.append((None, for_target, named))
        else:
            found.append((None if image in ("", "scratch") else image, for_target, None))
    final = {len(found) - 1}
    at = len(found) - 1
    while found[at][2] is not None:  # FROM an earlier stage: that stage's base is the image's
        at = found[at][2]  # type: ignore[assignment]
        final.add(at)
    return [StageBase(image, i in final, for_target) for i, (image, for_target, named) in enumerate(found) if named is None]


def _read(dockerfile: Path) -> str:
    try:
        return dockerfile.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {dockerfile}: {e}") from None


# ---- what a base provides ---------------------------------------------------------------------


async def offer(registries: Registries, image: str) -> Offer:
    """The platforms `image` (a registry reference or `oci:DIR[:TAG]`) provides."""
    location = parse_location(image)
    store, repo = open_store(registries, location)
    label = location.familiar
    fetched = await store.get_manifest(repo, manifest_reference(location, f"FROM {image}"))
    doc = parse(fetched.raw, fetched.media_type, label)
    if isinstance(doc, ImageIndex):
        return Offer(label, doc.images())
    assert isinstance(doc, ImageManifest)
    platform = None
    if doc.has_image_config:
        raw = await store.read_blob_bytes(repo, doc.config.digest)
        platform = ImageConfig.parse(raw, f"config of {label}", require_platform=False).platform
    return Offer(label, (fetched.descriptor().with_(platform=platform),))


async def coverage(plan: Plan, registries: Registries) -> list[Gap]:
    """Each build step's platform that a base it pulls for that platform does not provide.

    Every distinct base is read once; one that cannot be read (missing, refused) is a Gap too,
    for each platform that needs it, with the reason.
    """
    needs: list[tuple[Platform, str]] = []
    gaps: list[Gap] = []
    for step in plan.build_steps:
        try:
            bases = stage_bases(_read(step.dockerfile), str(step.dockerfile), step.args, step.platform)
        except ManifestoError as e:
            gaps.append(Gap(step.platform, f"{step.platform}: cannot read the base: {e}"))
            continue
        needs += [(step.platform, b.image) for b in bases if b.image is not None and b.for_target]
    images = list(dict.fromkeys(image for _, image in needs))

    async def one(image: str) -> Offer | ManifestoError:
        try:
            return await offer(registries, image)
        except ManifestoError as e:
            return e

    offers = dict(zip(images, await tasks.gather(*(one(i) for i in images))))
    for platform, image in needs:
        found = offers[image]
        if isinstance(found, ManifestoError):
            first = (str(found).splitlines() or [type(found).__name__])[0]
            gaps.append(Gap(platform, f"{platform}: base image {image} cannot be read: {first}"))
        elif not found.provides(platform):
            gaps.append(Gap(platform, f"{platform}: base image {found.label} has no {platform} image (it has {offered(found.images)})"))
    return gaps


def check(plan: Plan, *, insecure: bool = False) -> list[Gap]:
    """coverage() for a sync caller (the CLI's --dry-run and doctor): its own event loop."""

    async def run() -> list[Gap]:
        async with Registries(insecure=insecure) as registries:
            return await coverage(plan, registries)

    return asyncio.run(run())


# ---- platforms: from-base ---------------------------------------------------------------------

# Two platforms the final base is read for: a FROM that differs between them depends on the
# platform, and then no one base can say which platforms to build.
_PROBES = (Platform("linux", "amd64"), Platform("linux", "s390x"))


def final_base(matrix: Matrix) -> str:
    """The image the built images start from (the final stage's base), which must not depend on
    the target platform."""
    build = matrix.build
    where = f"{matrix.path}: platforms: from-base"
    text = _read(build.dockerfile)
    seen = []
    for probe in _PROBES:
        bases = [b for b in stage_bases(text, str(build.dockerfile), build.args, probe) if b.final]
        seen.append(bases[0].image if bases else None)
    if seen[0] != seen[1]:
        raise UsageError(f"{where}: the base named by {build.dockerfile.name} depends on the target platform ({seen[0]}, {seen[1]})")
    if seen[0] is None:
        raise UsageError(f"{where}: {build.dockerfile.name} builds FROM scratch, which has no platforms; list them")
    return seen[0]


async def base_platforms(registries: Registries, matrix: Matrix) -> tuple[Platform, ...]:
    """The platforms of the matrix's base: normalized, attestations and unknown/unknown left
    out, each once (os.version variants of one platform count once), in the base's order."""
    image = final_base(matrix)
    found = await offer(registries, image)
    platforms: list[Platform] = []
    for p in found.platforms:
        platforms.append(normalized(Platform(p.os, p.architecture, p.variant)))
        if duplicates(platforms):
            platforms.pop()
    if not platforms:
        raise UsageError(f"{matrix.path}: platforms: from-base: base image {found.label} names no platform")
    return tuple(platforms)


def resolve_from_base(matrix: Matrix, *, insecure: bool = False) -> Matrix:
    """A `platforms: from-base` matrix with the base's platforms as its entries (any other
    matrix as it is). Reads the registry: the sync entry point, called by jobs.publish.plan."""
    if not matrix.from_base:
        return matrix

    async def run() -> tuple[Platform, ...]:
        async with Registries(insecure=insecure) as registries:
            return await base_platforms(registries, matrix)

    return with_platforms(matrix, asyncio.run(run()))

