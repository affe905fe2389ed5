"""What makes an index valid: its media type, its problems (as values), its bytes, its tags.

Why one module: `push`, `publish` and `assemble` refuse the same lists for the same reasons.
A rule returns `Problem` values, not text: each surface decides what to do with them (`push`
refuses unless `--force`, a publish refuses) and names its own way out (`--format oci` on the
command line, `format: oci in FILE` in a matrix). Platform-vs-config (`config_problem`) and
duplicate platforms (`duplicate_problems`, over oci.platform.duplicates) live here alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from manifesto.errors import UsageError
from manifesto.lists.entry import Entry
from manifesto.oci import mediatype
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
        return mediatype.FORMATS[requested]
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
    """Every platform named twice (attestations left out: they are not platforms)."""
    return list(_duplicates([e for e in entries if not e.descriptor.is_attestation]).values())


def _duplicates(images: list[Entry]) -> dict[int, Problem]:
    """Duplicate-platform problems by the position of the entry that repeats a platform."""
    return {
        i: Problem(DUPLICATE_PLATFORM, "", f"duplicate platform {images[i].platform}: {images[first].name} and {images[i].name}")
        for first, i in duplicates(e.platform for e in images)
    }


def problems(entries: Sequence[Entry], media_type: str, annotations: dict[str, str]) -> list[Problem]:
    """Everything that makes this list wrong or lossy, entry by entry, then the format's."""
    found: list[Problem] = []
    images = [e for e in entries if not e.descriptor.is_attestation]
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
