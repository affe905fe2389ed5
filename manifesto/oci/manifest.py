"""Manifests and indexes parsed from raw bytes, and indexes authored from descriptors.

OCI image spec manifest.md and image-index.md; Docker manifest v2 schema 2. A parsed document
keeps the bytes it came from: they are what gets pushed, hashed and printed by `--raw`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from manifesto.errors import ContentError
from manifesto.oci import canonical, mediatype
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.digest import Digest

MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # distribution refuses larger manifests (400 MANIFEST_INVALID)


def _load(raw: bytes, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:  # RecursionError: nested beyond any real document
        raise ContentError(f"{where}: not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise ContentError(f"{where}: not a JSON object")
    if doc.get("schemaVersion") != 2:
        raise ContentError(f"{where}: unsupported schemaVersion {doc.get('schemaVersion')!r} (need 2)")
    return doc


def _annotations(doc: dict[str, Any], where: str) -> dict[str, str]:
    """The document's annotations, checked like a descriptor's (OCI annotations.md: string to string)."""
    annotations = doc.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
        raise ContentError(f"{where}: annotations must map strings to strings")
    return dict(annotations)


def _artifact_type(doc: dict[str, Any], where: str) -> str | None:
    """The document's `artifactType` (OCI manifest.md, image-index.md), checked to be a string."""
    value = doc.get("artifactType")
    if value is not None and not isinstance(value, str):
        raise ContentError(f"{where}: artifactType must be a string")
    return value or None


def detect_media_type(raw: bytes, content_type: str | None = None, what: str = "manifest") -> str:
    """The manifest media type: from Content-Type if it names one, else from the document
    (`what` names it in the error when neither does)."""
    if content_type:
        ct = content_type.split(";")[0].strip()
        if ct in mediatype.MANIFESTS:
            return ct
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        doc = None
    if isinstance(doc, dict):
        if doc.get("mediaType") in mediatype.MANIFESTS:
            return doc["mediaType"]
        if isinstance(doc.get("manifests"), list):
            return mediatype.OCI_INDEX
        if "config" in doc and "layers" in doc:
            return mediatype.OCI_MANIFEST
        if doc.get("schemaVersion") == 1:
            return mediatype.DOCKER_SCHEMA1_SIGNED
    served = f"Content-Type {content_type!r}" if content_type else "no Content-Type"
    raise ContentError(f"{what}: cannot tell the manifest type ({served}, and the body names none)")


@dataclass(frozen=True)
class _Document:
    """What every parsed manifest keeps: the exact bytes and the media type they were served as."""

    raw: bytes
    media_type: str

    @property
    def digest(self) -> Digest:
        return Digest.of(self.raw)

    @property
    def size(self) -> int:
        return len(self.raw)


@dataclass(frozen=True)
class ImageManifest(_Document):
    """A single-image manifest: config and layers (or an artifact's, see `artifact`)."""

    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: dict[str, str] = field(default_factory=dict)
    subject: Descriptor | None = None
    artifact_type: str | None = None  # as declared by `artifactType`

    @classmethod
    def parse(cls, raw: bytes, media_type: str, where: str = "manifest") -> ImageManifest:
        doc = _load(raw, where)
        _check_declared_type(doc, media_type, where)
        layers = doc.get("layers")
        if not isinstance(layers, list):
            raise ContentError(f"{where}: layers must be a list")
        subject = doc.get("subject")
        return cls(
            raw=raw,
            media_type=media_type,
            config=Descriptor.from_dict(doc.get("config"), f"{where}: config"),
            layers=tuple(Descriptor.from_dict(d, f"{where}: layer {i}") for i, d in enumerate(layers)),
            annotations=_annotations(doc, where),
            subject=Descriptor.from_dict(subject, f"{where}: subject") if subject else None,
            artifact_type=_artifact_type(doc, where),
        )

    @property
    def has_image_config(self) -> bool:
        """True if the config is an image config (one that may name a platform)."""
        return self.config.media_type in mediatype.CONFIG_TYPES

    @property
    def artifact(self) -> str | None:
        """The artifact type, None for an image.

        OCI manifest.md: `artifactType`, else the config media type when that is not an image
        config (a helm chart's, the empty config). A cosign signature has an image config that
        names no platform: that is an image without a platform, not an artifact type.
        """
        return self.artifact_type or (None if self.has_image_config else self.config.media_type)

    def blobs(self) -> tuple[Descriptor, ...]:
        """Every blob the manifest references: config first, then layers."""
        return (self.config, *self.layers)


@dataclass(frozen=True)
class ImageIndex(_Document):
    """An OCI image index or Docker manifest list."""

    manifests: tuple[Descriptor, ...]
    annotations: dict[str, str] = field(default_factory=dict)
    subject: Descriptor | None = None
    artifact_type: str | None = None  # as declared by `artifactType`

    @classmethod
    def parse(cls, raw: bytes, media_type: str, where: str = "index") -> ImageIndex:
        doc = _load(raw, where)
        _check_declared_type(doc, media_type, where)
        entries = doc.get("manifests")
        if not isinstance(entries, list):
            raise ContentError(f"{where}: manifests must be a list")
        subject = doc.get("subject")
        return cls(
            raw=raw,
            media_type=media_type,
            manifests=tuple(Descriptor.from_dict(d, f"{where}: manifests[{i}]") for i, d in enumerate(entries)),
            annotations=_annotations(doc, where),
            subject=Descriptor.from_dict(subject, f"{where}: subject") if subject else None,
            artifact_type=_artifact_type(doc, where),
        )

    @classmethod
    def build(
        cls, media_type: str, manifests: list[Descriptor] | tuple[Descriptor, ...], annotations: dict[str, str] | None = None
    ) -> ImageIndex:
        """Author an index from descriptors in hand, serialized canonically."""
        if media_type not in mediatype.INDEXES:
            raise ContentError(f"not an index media type: {media_type}")
        doc: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": [d.to_dict() for d in manifests],
        }
        if annotations:
            doc["annotations"] = dict(annotations)
        raw = canonical.dumps(doc)
        if len(raw) > MAX_MANIFEST_BYTES:
            raise ContentError(f"index would be {len(raw)} bytes; registries refuse manifests over 4 MiB")
        return cls(raw=raw, media_type=media_type, manifests=tuple(manifests), annotations=dict(annotations or {}))

    def images(self) -> tuple[Descriptor, ...]:
        """Entries that are platform images (attestations left out)."""
        return tuple(d for d in self.manifests if not d.is_attestation)

    def attestations(self) -> tuple[Descriptor, ...]:
        return tuple(d for d in self.manifests if d.is_attestation)


def _check_declared_type(doc: dict[str, Any], media_type: str, where: str) -> None:
    declared = doc.get("mediaType")
    if declared is not None and declared != media_type:
        raise ContentError(f"{where}: document says mediaType {declared!r} but was served as {media_type!r}")


def parse(raw: bytes, media_type: str, where: str = "manifest") -> ImageManifest | ImageIndex:
    """Parse raw manifest bytes of a known media type into the right class."""
    if mediatype.is_index(media_type):
        return ImageIndex.parse(raw, media_type, where)
    if mediatype.is_image_manifest(media_type):
        return ImageManifest.parse(raw, media_type, where)
    raise ContentError(f"{where}: unsupported manifest media type {media_type!r}")
