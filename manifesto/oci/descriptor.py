"""Descriptors: what points at content (media type, digest, size, platform, annotations).

OCI image spec descriptor.md. Fields we do not model (urls, data, artifactType, ...) are kept in
`extra` and written back unchanged, so an index assembled from fetched entries loses nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from manifesto.errors import ContentError
from manifesto.oci.digest import Digest
from manifesto.oci.platform import Platform

ATTESTATION_TYPE_KEY = "vnd.docker.reference.type"
ATTESTATION_SUBJECT_KEY = "vnd.docker.reference.digest"
KEEP, STRIP = "keep", "strip"
ATTESTATIONS = (KEEP, STRIP)  # `--attestations` and platforms.yaml `attestations:` (lists.rules.split_attestations)
_MODELLED = {"mediaType", "digest", "size", "platform", "annotations"}


@dataclass(frozen=True)
class Descriptor:
    """A content descriptor. Immutable: use `with_()` for a changed copy."""

    media_type: str
    digest: Digest
    size: int
    platform: Platform | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any, where: str = "descriptor") -> Descriptor:
        """Read a descriptor object from a fetched document, checking the required fields."""
        if not isinstance(data, dict):
            raise ContentError(f"{where}: not a JSON object")
        media_type, digest, size = data.get("mediaType"), data.get("digest"), data.get("size")
        if not isinstance(media_type, str) or not media_type:
            raise ContentError(f"{where}: missing mediaType")
        if not isinstance(digest, str):
            raise ContentError(f"{where}: missing digest")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ContentError(f"{where}: size must be a non-negative integer")
        annotations = data.get("annotations") or {}
        if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
            raise ContentError(f"{where}: annotations must map strings to strings")
        try:
            parsed = Digest.parse(digest)
        except Exception as e:
            raise ContentError(f"{where}: {e}") from None
        return cls(
            media_type=media_type,
            digest=parsed,
            size=size,
            platform=Platform.from_dict(data.get("platform")),
            annotations=dict(annotations),
            extra={k: v for k, v in data.items() if k not in _MODELLED},
        )

    def to_dict(self) -> dict[str, Any]:
        """The descriptor object as written in a manifest or index."""
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": str(self.digest), "size": self.size}
        out.update(self.extra)
        if self.platform is not None:
            out["platform"] = self.platform.to_dict()
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    def with_(self, **changes: Any) -> Descriptor:
        """A copy with some fields changed."""
        return replace(self, **changes)

    @property
    def is_attestation(self) -> bool:
        """True for buildkit's attestation manifests (unknown/unknown, reference type annotation)."""
        return self.annotations.get(ATTESTATION_TYPE_KEY) == "attestation-manifest"

    @property
    def artifact_type(self) -> str | None:
        """The `artifactType` an index gives for an artifact entry (referrers indexes do)."""
        value = self.extra.get("artifactType")
        return value if isinstance(value, str) and value else None

    @property
    def attests(self) -> str | None:
        """The digest of the image an attestation describes."""
        return self.annotations.get(ATTESTATION_SUBJECT_KEY) if self.is_attestation else None
