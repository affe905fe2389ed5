"""`inspect` shows anything valid a registry holds; `--raw` gives the stored bytes untouched.

The content is written byte for byte with raw HTTP into a real distribution 2.8 registry:
helm charts, cosign signatures, SBOM artifacts with a subject, `{}` configs (OCI and Docker),
a referrers-style index of artifacts, and a buildkit-style index with an attestation and an
entry without a platform. Facts the content does not give read "unknown" (JSON: null).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.support.cli import ok
from tests.support.content import (
    DOCKER_CONFIG,
    DOCKER_MANIFEST,
    OCI_EMPTY,
    Content,
    Pushed,
    config,
)

SBOM = "application/vnd.example.sbom.v1+json"
HELM = "application/vnd.cncf.helm.config.v1+json"
SIGNATURE_LAYER = "application/vnd.dev.cosign.simplesigning.v1+json"


@pytest.fixture(scope="module")
def things(registry) -> dict[str, Pushed]:
    c = Content(registry, "any/things")
    out: dict[str, Pushed] = {}
    out["image"] = c.image(config(), tag="image")
    out["oci-empty-config"] = c.image(b"{}", tag="oci-empty-config")
    out["docker-empty-config"] = c.image(
        b"{}",
        tag="docker-empty-config",
        config_type=DOCKER_CONFIG,
        media_type=DOCKER_MANIFEST,
        layers=[(b"docker layer", "application/vnd.docker.image.rootfs.diff.tar.gzip", {})],
    )
    out["sbom"] = c.image(
        b"{}",
        tag="sbom",
        config_type=OCI_EMPTY,
        layers=[(b'{"spdxVersion": "SPDX-2.3"}', "application/spdx+json", {})],
        artifactType=SBOM,
        subject=out["image"].descriptor(),
        annotations={"org.opencontainers.image.created": "2024-01-02T03:04:05Z"},
    )
    out["chart"] = c.image(
        json.dumps({"name": "demo", "version": "0.1.0", "apiVersion": "v2"}).encode(),
        tag="chart",
        config_type=HELM,
        layers=[(b"chart tarball", "application/vnd.cncf.helm.chart.content.v1.tar+gzip", {})],
    )
    signed = out["image"].digest.replace(":", "-")
    sig_config = {
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "ab" * 32]},
        "config": {},
    }
    out["signature"] = c.image(
        json.dumps(sig_config).encode(),
        tag=f"{signed}.sig",
        layers=[(b'{"critical": {}}', SIGNATURE_LAYER, {"dev.cosignproject.cosign/signature": "MEUCIQ=="})],
    )
    out["referrers"] = c.index(
        [
            out["sbom"].descriptor(artifactType=SBOM, annotations={"org.opencontainers.image.created": "2024-01-02T03:04:05Z"}),
            out["chart"].descriptor(artifactType=HELM),
        ],
        tag="referrers",
    )
    attestation = c.image(
        json.dumps({"architecture": "unknown", "os": "unknown", "config": {}}).encode(),
        tag=None,
        layers=[(b'{"_type": "https://in-toto.io/Statement/v0.1"}', "application/vnd.in-toto+json", {})],
    )
    out["attestation"] = attestation
    out["mixed"] = c.index(
        [
            out["image"].descriptor(platform={"architecture": "amd64", "os": "linux"}),
            attestation.descriptor(
                platform={"architecture": "unknown", "os": "unknown"},
                annotations={
                    "vnd.docker.reference.digest": out["image"].digest,
                    "vnd.docker.reference.type": "attestation-manifest",
                },
            ),
            out["oci-empty-config"].descriptor(),  # no platform at all
        ],
        tag="mixed",
        annotations={"org.opencontainers.image.source": "https://example.com/src"},
    )
    c.close()
    return out


SINGLE = ["image", "oci-empty-config", "docker-empty-config", "sbom", "chart", "signature"]
EVERYTHING = [*SINGLE, "referrers", "mixed"]


def _field(out: str, name: str) -> str | None:
    m = re.search(rf"^{name}:\s+(.*)$", out, re.M)
    return m.group(1) if m else None


def _blobs(raw: bytes) -> int:
    """An image's size as pulled: config and layers."""
    doc = json.loads(raw)
    return sum(d["size"] for d in [doc["config"], *doc["layers"]])


def _row(out: str, digest: str) -> str:
    return next(line for line in out.splitlines() if digest in line)


@pytest.mark.parametrize("kind", EVERYTHING)
def test_raw_is_the_stored_bytes_and_reads_nothing_else(kind, things, registry, cli_bytes, probe):
    pushed = things[kind]
    c = Content(registry, "any/things")
    stored = c.get(pushed.reference)
    c.close()
    assert stored.status_code == 200 and stored.content == pushed.raw
    p = probe(registry)
    mark = p.mark()
    rc, out, err = cli_bytes("inspect", "--raw", pushed.ref)
    assert rc == 0, err
    assert out == pushed.raw, f"{kind}: --raw is not the stored bytes"
    reads = [r for r in p.requests(since=mark) if "/blobs/" in r.path]
    assert reads == [], f"{kind}: --raw read blobs: {reads}"


@pytest.mark.parametrize(
    "kind, platform, artifact",
    [
        ("image", "linux/amd64", None),
        ("oci-empty-config", "unknown", None),
        ("docker-empty-config", "unknown", None),
        ("sbom", "unknown", SBOM),
        ("chart", "unknown", HELM),
        ("signature", "unknown", None),
    ],
)
def test_single_manifests_as_table_verbose_and_json(kind, platform, artifact, things, cli):
    pushed = things[kind]
    for flags in ([], ["-v"]):
        out = ok(cli("inspect", *flags, pushed.ref))
        assert _field(out, "Platform") == platform, out
        assert _field(out, "Artifact") == artifact, out
        assert _field(out, "Digest") == pushed.digest, out
        assert _field(out, "MediaType") == pushed.media_type, out
    doc = json.loads(ok(cli("inspect", "--json", pushed.ref)))
    stored = json.loads(pushed.raw)
    assert doc["digest"] == pushed.digest and doc["mediaType"] == pushed.media_type
    assert doc["platform"] == (None if platform == "unknown" else {"architecture": "amd64", "os": "linux"})
    assert doc["artifactType"] == artifact
    assert doc["config"] == stored["config"] and doc["layers"] == stored["layers"]


def test_an_artifact_shows_its_subject_and_annotations(things, cli):
    out = ok(cli("inspect", things["sbom"].ref))
    assert _field(out, "Subject") == things["image"].digest, out
    assert _field(out, "Annotation") == "org.opencontainers.image.created=2024-01-02T03:04:05Z", out
    doc = json.loads(ok(cli("inspect", "--json", things["sbom"].ref)))
    assert doc["subject"] == things["image"].descriptor()
    assert doc["annotations"] == {"org.opencontainers.image.created": "2024-01-02T03:04:05Z"}


def test_a_referrers_index_of_artifacts(things, cli):
    ref = things["referrers"].ref
    sbom, chart = things["sbom"].digest, things["chart"].digest
    for flags in ([], ["-v"]):
        out = ok(cli("inspect", "--no-trunc", *flags, ref))
        assert re.search(rf"^unknown\s+{sbom}\s.*oci manifest\s+{re.escape(SBOM)}", out, re.M), out
        assert re.search(rf"^unknown\s+{chart}\s.*oci manifest\s+{re.escape(HELM)}", out, re.M), out
        assert "config=" not in out, "an artifact's config was read as an image config"
    doc = json.loads(ok(cli("inspect", "--json", ref)))
    assert doc["manifests"] == [  # as stored, plus what was learned
        {**m, "attestationOf": None, "imageSize": _blobs(things[kind].raw)}
        for m, kind in zip(json.loads(things["referrers"].raw)["manifests"], ("sbom", "chart"))
    ]


def test_an_index_with_an_attestation_and_an_entry_without_platform(things, cli):
    ref = things["mixed"].ref
    image, att, bare = things["image"].digest, things["attestation"].digest, things["oci-empty-config"].digest
    out = ok(cli("inspect", "--no-trunc", ref))
    assert re.search(rf"^linux/amd64\s+{image}\s", out, re.M), out
    assert re.search(rf"^attestation of linux/amd64\s+{att}\s", out, re.M), out
    assert re.search(rf"^unknown\s+{bare}\s", out, re.M), out
    assert _field(out, "Annotation") == "org.opencontainers.image.source=https://example.com/src"

    verbose = ok(cli("inspect", "-v", "--no-trunc", ref))
    assert "config=linux/amd64 created=2024-01-02T03:04:05Z cmd=/bin/true" in _row(verbose, image)
    assert "config=unknown" in _row(verbose, bare)
    assert "config=" not in _row(verbose, att)

    doc = json.loads(ok(cli("inspect", "-v", "--json", ref)))
    stored = json.loads(things["mixed"].raw)["manifests"]
    by_digest: dict[str, Any] = {m["digest"]: m for m in doc["manifests"]}
    for entry in stored:  # every stored field as stored; what was learned is added beside it
        got = by_digest[entry["digest"]]
        assert {k: got[k] for k in entry} == entry
    assert by_digest[att]["attestationOf"] == image
    assert by_digest[bare]["config"]["platform"] is None
    assert by_digest[image]["config"]["platform"] == {"architecture": "amd64", "os": "linux"}


@pytest.mark.parametrize(
    "kind, says",
    [
        ("sbom", f"is an artifact ({SBOM})"),
        ("chart", f"is an artifact ({HELM})"),
        ("signature", "config names no os/architecture"),
        ("oci-empty-config", "config names no os/architecture"),
        ("referrers", f"is an artifact ({SBOM})"),
        ("mixed", "config names no os/architecture"),
    ],
)
def test_create_refuses_an_entry_without_a_platform(kind, says, things, registry, cli, one_line_error, tmp_home):
    target = registry.ref("any/list", kind)
    line = one_line_error(cli("create", target, things[kind].ref), 2, says, "needs a platform")
    assert "@sha256:" in line or kind in SINGLE, line  # a flattened list's entry is named by digest
    assert not tmp_home.drafts.exists() or not any(tmp_home.drafts.rglob("*.*")), "a refused create left files"


def test_create_keeps_an_attestation_beside_its_image(things, registry, cli):
    c = Content(registry, "any/things")
    attested = c.index(
        [
            things["image"].descriptor(platform={"architecture": "amd64", "os": "linux"}),
            json.loads(things["mixed"].raw)["manifests"][1],
        ],
        tag="attested",
    )
    c.close()
    target = registry.ref("any/list", "attested")
    ok(cli("create", target, attested.ref))
    doc = json.loads(ok(cli("inspect", "--json", target)))
    assert [m["digest"] for m in doc["manifests"]] == [things["image"].digest, things["attestation"].digest]
    assert doc["manifests"][1]["attestationOf"] == things["image"].digest
