"""A signed two-platform image with an SBOM, written byte for byte (tests/support/content.py).

Why: referrers (OCI distribution spec 1.1) need content that names a `subject`, and cosign's
tag convention; distribution 2.8 has no referrers API, so its tag-schema index tags are written
here too when asked. Every byte is fixed (no times, no randomness), so the digests are the same
in every run: a recorded referrers API answer (tests/store/fixtures/) can name them.

    index  (tag v1: amd64 + arm64)
      ├─ sbom       artifactType SBOM, subject = index           (listed: API / sha256-<index>)
      │    └─ sbom_sig   artifactType SIG, subject = sbom        (listed: API / sha256-<sbom>)
      └─ amd64 ── amd64_sig   cosign `sha256-<amd64>.sig` tag, no subject
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .content import OCI_EMPTY, OCI_INDEX, OCI_MANIFEST, Content, Pushed, config

SBOM = "application/spdx+json"
SIG = "application/vnd.dev.cosign.artifact.sig.v1+json"
SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"


def dashed(digest: str) -> str:
    """`sha256:<hex>` → `sha256-<hex>`: the tag-schema name of a digest."""
    return digest.replace(":", "-")


@dataclass(frozen=True)
class Signed:
    amd64: Pushed
    arm64: Pushed
    index: Pushed
    sbom: Pushed
    sbom_sig: Pushed
    amd64_sig: Pushed

    def listing(self, of: Pushed) -> list[dict]:
        """What a referrers list names for `of` (spec: artifactType and annotations of each)."""
        if of == self.index:
            return [self.sbom.descriptor(artifactType=SBOM, annotations={"org.example.kind": "sbom"})]
        if of == self.sbom:
            return [self.sbom_sig.descriptor(artifactType=SIG)]
        return []


def write(content: Content, *, tag_schema: bool) -> Signed:
    """Push the image, its referrers and the cosign tag; with `tag_schema`, the referrers index
    tags too (what a client writes on a registry without the API)."""
    amd64 = content.image(config("linux", "amd64"), tag="amd64")
    arm64 = content.image(config("linux", "arm64"), tag="arm64")
    index = content.index(
        [
            amd64.descriptor(platform={"os": "linux", "architecture": "amd64"}),
            arm64.descriptor(platform={"os": "linux", "architecture": "arm64", "variant": "v8"}),
        ],
        tag="v1",
    )
    sbom = _artifact(content, SBOM, b'{"spdxVersion": "SPDX-2.3", "name": "app"}', index, {"org.example.kind": "sbom"})
    sbom_sig = _artifact(content, SIG, b'{"critical": {"image": "sbom"}}', sbom, {})
    sig_config = {"architecture": "", "os": "", "rootfs": {"type": "layers", "diff_ids": []}, "config": {}}
    amd64_sig = content.image(
        json.dumps(sig_config).encode(),
        tag=dashed(amd64.digest) + ".sig",
        layers=[(b'{"critical": {"image": "amd64"}}', SIMPLESIGNING, {"dev.cosignproject.cosign/signature": "MEUCIQ=="})],
    )
    signed = Signed(amd64, arm64, index, sbom, sbom_sig, amd64_sig)
    if tag_schema:
        for subject in (index, sbom):
            content.index(signed.listing(subject), tag=dashed(subject.digest))
    return signed


def _artifact(content: Content, kind: str, payload: bytes, subject: Pushed, annotations: dict[str, str]) -> Pushed:
    """An OCI 1.1 artifact manifest about `subject`, pushed by digest: empty config, one layer."""
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": kind,
        "config": content.blob(b"{}", OCI_EMPTY),
        "layers": [content.blob(payload, kind)],
        "subject": subject.descriptor(),
    }
    if annotations:
        doc["annotations"] = annotations
    return content.manifest(doc)


def api_answer(listed: list[dict]) -> bytes:
    """A referrers API answer listing `listed` (an OCI image index)."""
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": listed}).encode()


def replay_api(proxy: Any, fixture: Path) -> list[str]:
    """Make `proxy` (tests/support/faultproxy.py) answer the referrers API from a recorded
    fixture, and every other digest with an empty list, as a registry with the API does. The
    digests the fixture answers for."""
    from .faultproxy import Respond

    recorded = json.loads(fixture.read_text())["exchanges"]
    digests = []
    for exchange in recorded:
        digest = exchange["request"].rsplit("/", 1)[1]
        body = json.dumps(exchange["body"]).encode()
        proxy.add(Respond(exchange["status"], body, exchange["headers"]), method="GET", path=re.escape(f"/referrers/{digest}"))
        digests.append(digest)
    proxy.add(Respond(200, api_answer([]), {"Content-Type": OCI_INDEX}), method="GET", path="/referrers/")
    return digests
