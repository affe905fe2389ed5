"""Referrers: the manifests that name another as their `subject` (signatures, SBOMs, attestations).

OCI distribution spec 1.1, "Listing Referrers" and "Referrers Tag Schema": a registry with the
referrers API lists them as an image index of descriptors; a registry without it (distribution
2.8) holds that same index under the tag `<alg>-<hex>` of the subject's digest, which the writers
of referrers keep up to date. cosign's tags `sha256-<hex>.sig`, `.att` and `.sbom` predate both:
each names one manifest that refers to the image by convention alone. Pure: naming, describing
and merging; the reading and writing are the store's and the jobs' business.
"""

from __future__ import annotations

from collections.abc import Sequence

from manifesto.oci import mediatype
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.digest import Digest
from manifesto.oci.manifest import ImageIndex, ImageManifest

COSIGN_SUFFIXES = (".sig", ".att", ".sbom")  # signature, attestation, SBOM
API, TAG = "api", "tag"  # how a referrer was found: the referrers API, or a tag


def fallback_tag(digest: Digest) -> str:
    """The tag holding the referrers index of `digest` where there is no API: `sha256-<hex>`.

    The spec truncates the algorithm to 32 and the encoded part to 64 characters, so the tag
    stays within the 128 a tag may have (a sha512 digest's tag names only part of it).
    """
    return f"{digest.algorithm[:32]}-{digest.hex[:64]}"


def cosign_tags(digest: Digest) -> tuple[str, ...]:
    """cosign's tags for the signature, attestation and SBOM of `digest`."""
    return tuple(fallback_tag(digest) + suffix for suffix in COSIGN_SUFFIXES)


def describe(doc: ImageManifest | ImageIndex) -> Descriptor:
    """The descriptor a referrers index lists for `doc` (spec: "Listing Referrers").

    Its media type, digest and size; `artifactType` (the manifest's own, else its config's media
    type); and the manifest's annotations.
    """
    kind = doc.artifact_type
    if kind is None and isinstance(doc, ImageManifest):
        kind = doc.config.media_type
    extra = {"artifactType": kind} if kind else {}
    return Descriptor(doc.media_type, doc.digest, doc.size, annotations=dict(doc.annotations), extra=extra)


def kind_of(listed: Descriptor, doc: ImageManifest | ImageIndex | None = None) -> str:
    """What a referrer is, for people: its `artifactType`, else (a cosign signature, whose config
    is a plain image config) the media type of its first layer, else its own media type."""
    if listed.artifact_type and listed.artifact_type not in mediatype.CONFIG_TYPES:
        return listed.artifact_type
    if isinstance(doc, ImageManifest):
        if doc.artifact:
            return doc.artifact
        if doc.layers:
            return doc.layers[0].media_type
    return listed.artifact_type or listed.media_type


def merged(existing: ImageIndex | None, ours: Sequence[Descriptor]) -> ImageIndex | None:
    """The referrers index `existing` with `ours` added: its entries (and annotations) kept as they
    are, ours appended unless their digest is there already. None when nothing is to be added."""
    have = {d.digest for d in existing.manifests} if existing is not None else set()
    new: list[Descriptor] = []
    for d in ours:
        if d.digest not in have:
            have.add(d.digest)
            new.append(d)
    if not new:
        return None
    kept = existing.manifests if existing is not None else ()
    annotations = existing.annotations if existing is not None else None
    return ImageIndex.build(mediatype.OCI_INDEX, (*kept, *new), annotations)
