"""Hand-made registry content pushed with raw HTTP: artifacts, odd configs, indexes of anything.

Why: busybox images cover what builders make; what else registries hold (helm charts, cosign
signatures, SBOMs with a subject, referrers indexes, buildkit attestations, `{}` configs) is
written here byte for byte, so tests can check manifesto against the exact stored bytes.
Anonymous registries only (tests/support/registry.py, auth="none").
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import httpx

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def dumps(doc: Any) -> bytes:
    """Deliberately not canonical (indented, unsorted): --raw must give these bytes back."""
    return json.dumps(doc, indent=3).encode()


@dataclass(frozen=True)
class Pushed:
    """A manifest as stored: where, its bytes and media type, and a descriptor for an index."""

    ref: str
    raw: bytes
    media_type: str
    reference: str  # the tag, or the digest for a manifest pushed by digest

    @property
    def digest(self) -> str:
        return sha256(self.raw)

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.raw), **extra}


class Content:
    """Push blobs and manifests into one repository of a running anonymous registry."""

    def __init__(self, registry: Any, repo: str):
        self.registry = registry
        self.repo = repo
        self.http = httpx.Client(base_url=registry.url, timeout=30)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Content:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def blob(self, data: bytes, media_type: str, **extra: Any) -> dict[str, Any]:
        """Upload `data` (monolithic POST+PUT); its descriptor."""
        r = self.http.post(f"/v2/{self.repo}/blobs/uploads/")
        r.raise_for_status()
        url = httpx.URL(self.registry.url).join(r.headers["location"]).copy_merge_params({"digest": sha256(data)})
        self.http.put(url, content=data, headers={"Content-Type": "application/octet-stream"}).raise_for_status()
        return {"mediaType": media_type, "digest": sha256(data), "size": len(data), **extra}

    def manifest(self, doc: dict[str, Any], tag: str | None = None) -> Pushed:
        """PUT the manifest (by tag, else by digest) as `dumps(doc)`; what the registry stores."""
        return self.put(dumps(doc), doc["mediaType"], tag)

    def put(self, raw: bytes, media_type: str, tag: str | None = None) -> Pushed:
        """PUT exactly these manifest bytes (by tag, else by digest); what the registry stores."""
        where = tag or sha256(raw)
        r = self.http.put(f"/v2/{self.repo}/manifests/{where}", content=raw, headers={"Content-Type": media_type})
        assert r.status_code == 201, f"PUT {where}: {r.status_code} {r.text}"
        sep = ":" if tag else "@"
        return Pushed(f"{self.registry.host}/{self.repo}{sep}{where}", raw, media_type, where)

    def image(
        self,
        config: bytes,
        *,
        tag: str | None = None,
        config_type: str = OCI_CONFIG,
        media_type: str = OCI_MANIFEST,
        layers: list[tuple[bytes, str, dict[str, str]]] | None = None,
        **fields: Any,
    ) -> Pushed:
        """A manifest naming `config` and `layers` ((data, media type, annotations)); extra top-level fields."""
        if layers is None:
            layers = [(b"layer of " + (tag or "x").encode(), "application/vnd.oci.image.layer.v1.tar", {})]
        doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type, **fields}
        doc["config"] = self.blob(config, config_type)
        doc["layers"] = [self.blob(data, mt, **({"annotations": a} if a else {})) for data, mt, a in layers]
        return self.manifest(doc, tag)

    def index(self, manifests: list[dict[str, Any]], *, tag: str, media_type: str = OCI_INDEX, **fields: Any) -> Pushed:
        return self.manifest({"schemaVersion": 2, "mediaType": media_type, "manifests": manifests, **fields}, tag)

    def arch_image(self, image: Any) -> dict[str, Any]:
        """A busybox test image (tests.support.images.ArchImage): its blobs and exact manifest
        bytes, by digest; its index entry."""
        self.blob(image.config_bytes, "x")
        self.blob(image.blob(image.layer_digest), "x")
        self.put(image.manifest_bytes, image.manifest_media_type)
        return image.descriptor()

    def attestation(self, subject: str) -> dict[str, Any]:
        """A buildkit-style attestation manifest for the image `subject` (an in-toto layer, a `{}`
        config), pushed by digest; its index entry (unknown/unknown, the reference annotations)."""
        pushed = self.manifest(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": self.blob(b"{}", OCI_CONFIG),
                "layers": [self.blob(b'{"predicateType": "https://slsa.dev/provenance/v0.2"}', "application/vnd.in-toto+json")],
            }
        )
        return pushed.descriptor(
            platform={"architecture": "unknown", "os": "unknown"},
            annotations={"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": subject},
        )

    def get(self, reference: str) -> httpx.Response:
        accept = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))
        return self.http.get(f"/v2/{self.repo}/manifests/{reference}", headers={"Accept": accept})


def config(os: str = "linux", arch: str = "amd64", **top: Any) -> bytes:
    """An image config JSON with a platform and a command."""
    doc = {"architecture": arch, "os": os, "created": "2024-01-02T03:04:05Z", "config": {"Cmd": ["/bin/true"]}, **top}
    return json.dumps(doc).encode()
