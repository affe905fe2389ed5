"""What makes an index valid: its media type, its problems (as values), its bytes, its tags.

Why one module: `push`, `publish` and `assemble` refuse the same lists for the same reasons.
A rule returns `Problem` values, not text: each surface decides what to do with them (`push`
refuses unless `--force`, a publish refuses) and names its own way out (`--format oci` on the
command line, `format: oci in FILE` in a matrix). Platform-vs-config (`config_problem`) and
duplicate platforms (`duplicate_problems`, over oci.platform.duplicates) live here alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from manifesto.errors import UsageError
from manifesto.lists.entry import Entry
from manifesto.oci import mediatype
from manifesto.oci.descriptor import ATTESTATIONS, KEEP, Descriptor
from manifesto.oci.manifest import ImageIndex
from manifesto.oci.platform import contrast, duplicates, matches
from manifesto.oci.reference import Reference, check_tag

# Problem codes
NO_PLATFORM = "no-platform"
CONFIG_CONTRADICTS = "config-contradicts"
DUPLICATE_PLATFORM = "duplicate-platform"
DOCKER_INDEX_ANNOTATIONS = "docker-index-annotations"
DOCKER_ENTRY_ANNOTATIONS = "docker-entry-annotations"
DOCKER_OCI_CHILD = "docker-oci-child"

# Problems an OCI index instead of a Docker manifest list would not have.
FIXED_BY_OCI = frozenset({DOCKER_INDEX_ANNOTATIONS, DOCKER_ENTRY_ANNOTATIONS, DOCKER_OCI_CHILD})


@dataclass(frozen=True)
class Problem:
    """One thing that makes a list wrong or lossy: what rule (`code`), about what, and why."""

    code: str
    subject: str  # the entry it is about ("" for the list as a whole)
    message: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.message}" if self.subject else self.message

    def text(self, oci_hint: str) -> str:
        """The problem in words, naming `oci_hint` (how this surface asks for OCI) where that fixes it."""
        return f"{self} (use {oci_hint})" if self.code in FIXED_BY_OCI else str(self)


def choose_media_type(entries: Sequence[Entry], requested: str | None) -> str:
    """`oci`/`docker` as asked; by default a Docker list when every child is Docker schema 2."""
    if requested:
        return mediatype.index_type(requested)
    if entries and all(e.media_type == mediatype.DOCKER_MANIFEST for e in entries):
        return mediatype.DOCKER_LIST
    return mediatype.OCI_INDEX


def config_problem(entry: Entry) -> Problem | None:
    """Does the entry's platform contradict what its config says? (Not known: taken at its word.)
    Compared by oci.platform.matches, as a build's own output is: a config saying aarch64 is arm64."""
    claimed, config = entry.platform, entry.config_platform
    if claimed is None or config is None or matches(claimed, config):
        return None
    said, actual = contrast(claimed, config)
    return Problem(CONFIG_CONTRADICTS, entry.name, f"annotated as {said} but its config says {actual}")


def duplicate_problems(entries: Sequence[Entry]) -> list[Problem]:
    """Every platform named twice (attestations and nested indexes left out: they are not platforms)."""
    return list(_duplicates(_platform_images(entries)).values())


def _platform_images(entries: Sequence[Entry]) -> list[Entry]:
    """The entries that must name a platform: not attestations, not indexes kept as entries
    (`create --keep-nested`: an index entry's platform is optional, OCI image-index.md)."""
    return [e for e in entries if not e.descriptor.is_attestation and not mediatype.is_index(e.media_type)]


T = TypeVar("T")


def split_attestations(
    items: Sequence[T], how: str, descriptor: Callable[[T], Descriptor] = lambda e: e.descriptor  # type: ignore[attr-defined]
) -> tuple[list[T], list[T]]:
    """(kept, dropped) under `--attestations keep|strip` (oci.descriptor.ATTESTATIONS).

    Why one function: `create`, `index add`, `copy` and a matrix's `image:` entries each keep or
    strip attestations (Descriptor.is_attestation) the same way, and each says what it dropped.
    `descriptor` reads an item's descriptor (default: an Entry's).
    """
    if how not in ATTESTATIONS:
        raise UsageError(f"attestations: {how!r} is not one of {', '.join(ATTESTATIONS)}")
    if how == KEEP:
        return list(items), []
    kept = [i for i in items if not descriptor(i).is_attestation]
    return kept, [i for i in items if descriptor(i).is_attestation]


def dropped_text(count: int, where: str, keep_hint: str = "--attestations keep") -> str:
    """The line a surface shows when it stripped attestations, naming how to keep them."""
    return f"{where}: {count} attestation{'s' if count != 1 else ''} left out (keep with {keep_hint})"


def _duplicates(images: list[Entry]) -> dict[int, Problem]:
    """Duplicate-platform problems by the position of the entry that repeats a platform."""
    return {
        i: Problem(DUPLICATE_PLATFORM, "", f"duplicate platform {images[i].platform}: {images[first].name} and {images[i].name}")
        for first, i in duplicates(e.platform for e in images)
    }


def problems(entries: Sequence[Entry], media_type: str, annotations: dict[str, str]) -> list[Problem]:
    """Everything that makes this list wrong or lossy, entry by entry, then the format's."""
    found: list[Problem] = []
    images = _platform_images(entries)
    repeats = _duplicates(images)
    for i, e in enumerate(images):
        if e.platform is None:
            found.append(Problem(NO_PLATFORM, e.name, "no platform"))
        lie = config_problem(e)
        found += [p for p in (lie, repeats.get(i)) if p is not None]
    if media_type == mediatype.DOCKER_LIST:
        if annotations:
            found.append(Problem(DOCKER_INDEX_ANNOTATIONS, "", "a Docker manifest list cannot carry index annotations"))
        for e in entries:  # an attestation is an OCI manifest too
            if e.descriptor.annotations and not e.descriptor.is_attestation:
                found.append(Problem(DOCKER_ENTRY_ANNOTATIONS, e.name, "a Docker manifest list drops entry annotations"))
            if e.media_type not in (mediatype.DOCKER_MANIFEST, mediatype.DOCKER_LIST):
                found.append(Problem(DOCKER_OCI_CHILD, e.name, "an OCI manifest in a Docker manifest list"))
    return found


def build_index(entries: Sequence[Entry], media_type: str, annotations: dict[str, str]) -> ImageIndex:
    """The index naming `entries` in order; a Docker list carries no annotations at all."""
    descriptors = [e.descriptor for e in entries]
    if media_type == mediatype.DOCKER_LIST:
        descriptors = [d.with_(annotations={}) for d in descriptors]
        annotations = {}
    return ImageIndex.build(media_type, descriptors, annotations)


def ensure_tags(target: Reference, extra: Sequence[str]) -> list[str]:
    """The list's own tag (default latest) and every --tag, validated, without repeats."""
    if target.digest:
        raise UsageError(f"{target}: a list is pushed under a tag, not a digest")
    return list(dict.fromkeys(check_tag(t) for t in [target.tag or "latest", *extra]))
