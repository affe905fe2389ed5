"""The typed result of reading platforms.yaml: Matrix, its entries, and arch_tag rendering.

Why a module of its own: the plan, publish and the CLI use these types without caring how the
YAML was validated (that lives in spec.py, which re-exports everything here). Pure data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from manifesto.errors import InvalidReference, UsageError
from manifesto.oci.descriptor import STRIP
from manifesto.oci.platform import Platform
from manifesto.oci.reference import LAYOUT_PREFIX, Reference


# arch_tag placeholders, in the order the docs list them.
PLACEHOLDERS = ("registry", "repository", "name", "tag", "os", "arch", "variant", "arch_ns", "platform_slug")


# ---- the typed result -------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where the index goes: a registry repository (no tag) or an OCI image layout directory."""

    reference: Reference | None = None
    layout: Path | None = None

    @classmethod
    def parse(cls, text: str, base: Path, *, name: str = "image", tags_from: str = "'tags'") -> Target:
        """A target as written (`oci:DIR`, relative to `base`, or a repository without tag or
        digest); `name` and `tags_from` word the error for the surface it came from.

        Raises InvalidReference for a reference that does not parse, UsageError otherwise.
        """
        if text.startswith(LAYOUT_PREFIX):
            folder = text[len(LAYOUT_PREFIX) :]
            if not folder.strip():
                raise UsageError(f"{name} {text!r} needs a directory after 'oci:', e.g. oci:out/hello")
            if ":" in folder:
                raise UsageError(f"{name} {text!r} must not carry a tag; tags come from {tags_from}")
            return cls(layout=Path(os.path.abspath(base / folder)))
        ref = Reference.parse(text)
        if ref.digest is not None:
            raise UsageError(f"{name} {text!r} must not carry a digest; it names the repository to publish to")
        if ref.tag is not None:
            raise UsageError(f"{name} {text!r} must not carry a tag ({ref.tag!r}); tags come from {tags_from}")
        return cls(reference=ref)

    @property
    def is_layout(self) -> bool:
        """True for an `oci:DIR` target."""
        return self.layout is not None

    def tagged(self, tag: str) -> str:
        """How one tag of the index is addressed, for display."""
        if self.reference is not None:
            return str(self.reference.with_tag(tag))
        return f"{LAYOUT_PREFIX}{self.layout}:{tag}"

    def __str__(self) -> str:
        return self.reference.name if self.reference is not None else f"{LAYOUT_PREFIX}{self.layout}"


@dataclass(frozen=True)
class BuildSettings:
    """The `build:` section with defaults applied; paths are absolute."""

    builder: str
    context: Path
    dockerfile: Path
    args: dict[str, str]
    # build.cache: registry repositories buildah/podman read cached layers from / push them to
    cache_from: str | None = None
    cache_to: str | None = None


@dataclass(frozen=True)
class Entry:
    """One item of `platforms:`: built from a Dockerfile, or (with `image`) assembled as is.

    For built entries context, dockerfile and args are the effective ones (global settings
    with this entry's overrides; args without the TARGET* platform args, which the plan adds).
    Assemble-only entries carry the global context/dockerfile and no args; nothing uses them.
    """

    platform: Platform | None
    image: Reference | None
    context: Path
    dockerfile: Path
    args: dict[str, str]
    line: int
    # an `image:` entry's `attestations:` (keep|strip): what its source's attestation manifests
    # do in the index. strip by default, as before the key existed: the same matrix gives the
    # same index digest.
    attestations: str = STRIP

    @property
    def builds(self) -> bool:
        """True when this entry is built (it has no `image:`)."""
        return self.image is None


@dataclass(frozen=True)
class Matrix:
    """A validated platforms.yaml.

    `image` is the first target; `mirrors` are the others when `image:` is a list (a registry
    and its mirror, other registries, other repositories): each gets the same children, index
    and tags, the tags last everywhere.
    """

    path: Path
    image: Target
    tags: tuple[str, ...]
    format: str
    index_media_type: str
    annotations: dict[str, str]
    build: BuildSettings
    arch_tag: str | None
    entries: tuple[Entry, ...]
    # `platforms: from-base`: the entries are the base image's platforms, which only a registry
    # can say; jobs.coverage resolves them (with_platforms) before a plan is made.
    from_base: bool = False
    platforms_line: int = 0
    mirrors: tuple[Target, ...] = ()

    @property
    def targets(self) -> tuple[Target, ...]:
        """Every target the index goes to: `image` first, then the mirrors."""
        return (self.image, *self.mirrors)

    @property
    def platforms(self) -> tuple[Platform, ...]:
        """The platforms the matrix declares (assemble entries without `platform:` have none)."""
        return tuple(e.platform for e in self.entries if e.platform is not None)

    def arch_refs(self, platform: Platform) -> tuple[Reference, ...]:
        """The per-architecture references `arch_tag` gives a platform, one per tag and target
        (or none); a template that gives several targets the same reference gives it once."""
        refs = [r.reference for r in self.targets if r.reference is not None]
        if self.arch_tag is None or len(refs) < len(self.targets):
            return ()
        rendered = (render_arch_tag(self.arch_tag, ref, platform, t) for ref in refs for t in self.tags)
        return tuple(dict.fromkeys(rendered))


def with_platforms(matrix: Matrix, platforms: tuple[Platform, ...]) -> Matrix:
    """A `platforms: from-base` matrix with `platforms` (the base's) as built entries, each
    with the build section's context, Dockerfile and args, as a platform written as a string."""
    build = matrix.build
    entries = tuple(Entry(p, None, build.context, build.dockerfile, dict(build.args), matrix.platforms_line) for p in platforms)
    return replace(matrix, entries=entries)


# ---- arch_tag ---------------------------------------------------------------------------------


def arch_tag_values(target: Reference, platform: Platform, tag: str) -> dict[str, str]:
    """The values of every arch_tag placeholder for one platform and tag."""
    return {
        "registry": target.registry,
        "repository": target.repository,
        "name": target.repository.rsplit("/", 1)[-1],
        "tag": tag,
        "os": platform.os,
        "arch": platform.architecture,
        "variant": platform.variant or "",
        "arch_ns": platform.namespace or "",
        "platform_slug": str(platform).replace("/", "-"),
    }


def render_arch_tag(template: str, target: Reference, platform: Platform, tag: str) -> Reference:
    """Fill an arch_tag template and parse the result (InvalidReference if it is not one)."""
    return Reference.parse(template.format_map(arch_tag_values(target, platform, tag)))


def arch_ref_problem(
    template: str, targets: tuple[Reference, ...], tags: tuple[str, ...], entries: tuple[Entry, ...]
) -> str | None:
    """Why `arch_tag` cannot work for these targets and tags (None when it can).

    Every built platform and tag must render, for each target, to a tagged reference of its
    own that is not one of any target's index references (two targets may share one, as a
    template naming a fixed registry gives); checked when platforms.yaml loads and again when
    --image/--tag override it.
    """
    index_refs = {str(target.with_tag(t)) for target in targets for t in tags}
    seen: dict[str, str] = {}
    for entry, target in ((e, t) for e in entries for t in targets):
        if not entry.builds or entry.platform is None:
            continue
        for tag in tags:
            rendered = template.format_map(arch_tag_values(target, entry.platform, tag))
            try:
                ref = Reference.parse(rendered)
            except InvalidReference as e:
                return f"arch_tag gives an invalid reference for {entry.platform}, tag {tag!r}: {e}"
            if ref.tag is None or ref.digest is not None:
                return f"arch_tag must give a tagged reference (end it with :{{tag}}), got {rendered!r}"
            label = f"{entry.platform} tag {tag}"
            if str(ref) in index_refs:
                return f"arch_tag gives {label} the index's own reference {str(ref)!r}"
            if seen.get(str(ref), label) != label:
                return (
                    f"arch_tag gives {seen[str(ref)]} and {label} the same reference {str(ref)!r} "
                    "(use {tag} and {arch_ns} or {platform_slug})"
                )
            seen[str(ref)] = label
    return None
