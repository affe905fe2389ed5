"""Manifests and indexes: raw bytes are the truth, unknown fields survive, authored JSON is canonical."""

from __future__ import annotations

import json

import pytest

from manifesto.errors import ContentError
from manifesto.oci import canonical, mediatype
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.digest import Digest
from manifesto.oci.config import ImageConfig
from manifesto.oci.manifest import (
    MAX_MANIFEST_BYTES,
    ImageIndex,
    ImageManifest,
    detect_media_type,
    parse,
)
from manifesto.oci.platform import Platform

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
C = "sha256:" + "c" * 64

# Deliberately not canonical: odd spacing, key order, a trailing newline. Re-serializing would
# change the digest; the parsed document must keep exactly these bytes.
MANIFEST_RAW = (
    b'{\n   "schemaVersion": 2,\n   "mediaType": "application/vnd.oci.image.manifest.v1+json",\n'
    b'   "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 7, "digest": "' + A.encode() + b'"},\n'
    b'   "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": 9, "digest": "'
    + B.encode()
    + b'"}],\n   "annotations": {"org.opencontainers.image.source": "https://example.com/x"}\n}\n'
)

ENTRY_EXTRA = {
    "mediaType": mediatype.OCI_MANIFEST,
    "digest": A,
    "size": 100,
    "urls": ["https://mirror.example.com/blob"],
    "artifactType": "application/vnd.example+type",
    "data": "e30=",
    "x-vendor": {"nested": [1, 2, 3]},
    "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
    "annotations": {"org.opencontainers.image.ref.name": "1.0"},
}
ATTESTATION = {
    "mediaType": mediatype.OCI_MANIFEST,
    "digest": C,
    "size": 50,
    "platform": {"architecture": "unknown", "os": "unknown"},
    "annotations": {
        "vnd.docker.reference.digest": A,
        "vnd.docker.reference.type": "attestation-manifest",
    },
}


def _index_raw(entries: list[dict], media_type: str | None = mediatype.OCI_INDEX, **extra: object) -> bytes:
    doc: dict = {"schemaVersion": 2, "manifests": entries, **extra}
    if media_type:
        doc["mediaType"] = media_type
    return json.dumps(doc, indent=3).encode() + b"\n"


# ---- raw bytes -----------------------------------------------------------------------------


def test_parsed_manifest_keeps_its_exact_bytes() -> None:
    m = ImageManifest.parse(MANIFEST_RAW, mediatype.OCI_MANIFEST)
    assert m.raw is MANIFEST_RAW
    assert m.digest == Digest.of(MANIFEST_RAW)
    assert m.size == len(MANIFEST_RAW)
    assert m.digest != Digest.of(canonical.dumps(json.loads(MANIFEST_RAW)))  # proves bytes were not re-made
    assert [str(d.digest) for d in m.blobs()] == [A, B]
    assert m.annotations == {"org.opencontainers.image.source": "https://example.com/x"}


def test_parsed_index_keeps_its_exact_bytes() -> None:
    raw = _index_raw([ENTRY_EXTRA, ATTESTATION])
    ix = parse(raw, mediatype.OCI_INDEX)
    assert isinstance(ix, ImageIndex)
    assert ix.raw is raw
    assert ix.digest == Digest.of(raw)
    assert ix.size == len(raw)


def test_parse_dispatches_on_media_type() -> None:
    assert isinstance(parse(MANIFEST_RAW, mediatype.OCI_MANIFEST), ImageManifest)
    assert isinstance(parse(_index_raw([], mediatype.DOCKER_LIST), mediatype.DOCKER_LIST), ImageIndex)
    with pytest.raises(ContentError, match="unsupported manifest media type"):
        parse(MANIFEST_RAW, "application/json")


# ---- unknown fields --------------------------------------------------------------------------


def test_unknown_descriptor_fields_survive_to_dict() -> None:
    ix = ImageIndex.parse(_index_raw([ENTRY_EXTRA]), mediatype.OCI_INDEX)
    (d,) = ix.manifests
    assert d.extra == {
        "urls": ENTRY_EXTRA["urls"],
        "artifactType": ENTRY_EXTRA["artifactType"],
        "data": ENTRY_EXTRA["data"],
        "x-vendor": ENTRY_EXTRA["x-vendor"],
    }
    assert d.to_dict() == ENTRY_EXTRA
    assert str(d.platform) == "linux/arm64/v8"


def test_unknown_fields_survive_into_a_built_index() -> None:
    (d,) = ImageIndex.parse(_index_raw([ENTRY_EXTRA]), mediatype.OCI_INDEX).manifests
    built = ImageIndex.build(mediatype.OCI_INDEX, [d])
    assert json.loads(built.raw)["manifests"] == [ENTRY_EXTRA]


def test_os_version_and_features_survive() -> None:
    entry = dict(ENTRY_EXTRA, platform={"architecture": "amd64", "os": "windows", "os.version": "10.0.20348.2113", "os.features": ["win32k"]})
    (d,) = ImageIndex.parse(_index_raw([entry]), mediatype.OCI_INDEX).manifests
    assert d.to_dict()["platform"] == entry["platform"]


# ---- attestations ----------------------------------------------------------------------------


def test_attestations_are_detected_and_kept_apart() -> None:
    ix = ImageIndex.parse(_index_raw([ENTRY_EXTRA, ATTESTATION]), mediatype.OCI_INDEX)
    image, att = ix.manifests
    assert not image.is_attestation and image.attests is None
    assert att.is_attestation
    assert att.attests == A
    assert att.platform is not None and att.platform.is_unknown
    assert ix.images() == (image,)
    assert ix.attestations() == (att,)


def test_unknown_platform_alone_is_not_an_attestation() -> None:
    entry = dict(ATTESTATION, annotations={})
    (d,) = ImageIndex.parse(_index_raw([entry]), mediatype.OCI_INDEX).manifests
    assert not d.is_attestation


# ---- authoring -------------------------------------------------------------------------------


def _descriptors() -> list[Descriptor]:
    return [
        Descriptor(mediatype.OCI_MANIFEST, Digest.parse(A), 100, Platform.parse("linux/amd64"), {"z": "1", "a": "2"}),
        Descriptor(mediatype.OCI_MANIFEST, Digest.parse(B), 200, Platform.parse("linux/arm64/v8")),
    ]


def test_build_is_canonical_and_deterministic() -> None:
    one = ImageIndex.build(mediatype.OCI_INDEX, _descriptors(), {"k2": "v", "k1": "v"})
    two = ImageIndex.build(mediatype.OCI_INDEX, _descriptors(), {"k1": "v", "k2": "v"})
    assert one.raw == two.raw
    assert one.digest == two.digest == Digest.of(one.raw)
    doc = json.loads(one.raw)
    assert one.raw == canonical.dumps(doc)
    assert one.raw == json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    assert b" " not in one.raw and b"\n" not in one.raw
    assert doc["schemaVersion"] == 2 and doc["mediaType"] == mediatype.OCI_INDEX
    assert doc["annotations"] == {"k1": "v", "k2": "v"}
    assert [m["platform"] for m in doc["manifests"]] == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux", "variant": "v8"},
    ]


def test_build_keeps_entry_order_and_parses_back() -> None:
    built = ImageIndex.build(mediatype.DOCKER_LIST, list(reversed(_descriptors())))
    back = ImageIndex.parse(built.raw, mediatype.DOCKER_LIST)
    assert [d.digest for d in back.manifests] == [Digest.parse(B), Digest.parse(A)]
    assert "annotations" not in json.loads(built.raw)  # none given, none written


def test_build_refuses_a_non_index_media_type() -> None:
    with pytest.raises(ContentError, match="not an index media type"):
        ImageIndex.build(mediatype.OCI_MANIFEST, _descriptors())


def test_build_refuses_more_than_4_mib() -> None:
    big = [
        Descriptor(mediatype.OCI_MANIFEST, Digest.of(str(i).encode()), 1, annotations={"pad": "x" * 1024})
        for i in range(4200)
    ]
    with pytest.raises(ContentError, match="4 MiB"):
        ImageIndex.build(mediatype.OCI_INDEX, big)


def test_build_just_under_the_limit_is_fine() -> None:
    one = Descriptor(mediatype.OCI_MANIFEST, Digest.parse(A), 1, annotations={"pad": ""})
    overhead = len(ImageIndex.build(mediatype.OCI_INDEX, [one]).raw)
    fits = one.with_(annotations={"pad": "x" * (MAX_MANIFEST_BYTES - overhead)})
    assert len(ImageIndex.build(mediatype.OCI_INDEX, [fits]).raw) == MAX_MANIFEST_BYTES
    too_big = one.with_(annotations={"pad": "x" * (MAX_MANIFEST_BYTES - overhead + 1)})
    with pytest.raises(ContentError):
        ImageIndex.build(mediatype.OCI_INDEX, [too_big])


# ---- media type detection ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type, raw, expected",
    [
        (mediatype.OCI_INDEX, b"", mediatype.OCI_INDEX),
        (f"{mediatype.DOCKER_MANIFEST}; charset=utf-8", b"{}", mediatype.DOCKER_MANIFEST),
        (f" {mediatype.DOCKER_LIST} ", b"{}", mediatype.DOCKER_LIST),
        # Content-Type that names no manifest type: look at the document
        ("application/json", json.dumps({"mediaType": mediatype.DOCKER_LIST, "manifests": []}).encode(), mediatype.DOCKER_LIST),
        ("application/octet-stream", b'{"schemaVersion":2,"manifests":[]}', mediatype.OCI_INDEX),
        (None, b'{"schemaVersion":2,"config":{},"layers":[]}', mediatype.OCI_MANIFEST),
        ("", MANIFEST_RAW, mediatype.OCI_MANIFEST),
        ("text/plain", b'{"schemaVersion":1,"fsLayers":[]}', mediatype.DOCKER_SCHEMA1_SIGNED),
    ],
)
def test_detect_media_type(content_type: str | None, raw: bytes, expected: str) -> None:
    assert detect_media_type(raw, content_type) == expected


@pytest.mark.parametrize("raw", [b"", b"not json", b"[]", b'{"schemaVersion":2}', b"\xff\xfe"])
def test_detect_media_type_gives_up_with_a_content_error(raw: bytes) -> None:
    with pytest.raises(ContentError, match="cannot tell the manifest type"):
        detect_media_type(raw, "application/json")


# ---- refusals --------------------------------------------------------------------------------


def test_declared_media_type_must_match_what_was_served() -> None:
    raw = _index_raw([ENTRY_EXTRA], mediatype.OCI_INDEX)
    with pytest.raises(ContentError) as info:
        ImageIndex.parse(raw, mediatype.DOCKER_LIST)
    assert "document says mediaType" in str(info.value)
    assert mediatype.OCI_INDEX in str(info.value) and mediatype.DOCKER_LIST in str(info.value)
    with pytest.raises(ContentError, match="document says mediaType"):
        ImageManifest.parse(MANIFEST_RAW, mediatype.DOCKER_MANIFEST)


def test_absent_declared_media_type_is_fine() -> None:
    raw = _index_raw([ENTRY_EXTRA], media_type=None)
    assert ImageIndex.parse(raw, mediatype.OCI_INDEX).media_type == mediatype.OCI_INDEX


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b'{"schemaVersion": 1, "name": "x", "fsLayers": []}', "unsupported schemaVersion 1"),
        (b'{"manifests": []}', "unsupported schemaVersion None"),
        (b'{"schemaVersion": "2", "manifests": []}', "unsupported schemaVersion '2'"),
        (b'{"schemaVersion": true, "manifests": []}', "unsupported schemaVersion True"),
        (b"<html>nope</html>", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"\xff\xfe{}", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'"schemaVersion"', "not a JSON object"),
        (b'{"schemaVersion": 2}', "manifests must be a list"),
        (b'{"schemaVersion": 2, "manifests": {}}', "manifests must be a list"),
        (b'{"schemaVersion": 2, "manifests": [1]}', "manifests[0]: not a JSON object"),
        (b'{"schemaVersion": 2, "manifests": [{"mediaType": "x", "digest": "sha256:abc", "size": 1}]}', "manifests[0]: invalid digest"),
        (b'{"schemaVersion": 2, "manifests": [{"mediaType": "x", "digest": "' + A.encode() + b'", "size": -1}]}', "size must be a non-negative integer"),
        (b'{"schemaVersion": 2, "manifests": [{"mediaType": "x", "digest": "' + A.encode() + b'", "size": true}]}', "size must be a non-negative integer"),
        (b'{"schemaVersion": 2, "manifests": [{"digest": "' + A.encode() + b'", "size": 1}]}', "missing mediaType"),
        (b'{"schemaVersion": 2, "manifests": [{"mediaType": "x", "size": 1}]}', "missing digest"),
        (b'{"schemaVersion": 2, "manifests": [{"mediaType": "x", "digest": "' + A.encode() + b'", "size": 1, "annotations": {"k": 1}}]}', "annotations must map strings to strings"),
        (b'{"schemaVersion": 2, "manifests": [], "annotations": "x"}', "annotations must map strings to strings"),
        (b'{"schemaVersion": 2, "manifests": [], "annotations": {"k": 1}}', "annotations must map strings to strings"),
        (b'{"schemaVersion": 2, "manifests": [], "annotations": ["k"]}', "annotations must map strings to strings"),
    ],
)
def test_bad_indexes_are_content_errors(raw: bytes, reason: str) -> None:
    with pytest.raises(ContentError) as info:
        ImageIndex.parse(raw, mediatype.OCI_INDEX, where="golang:alpine")
    assert str(info.value).startswith("golang:alpine")
    assert reason in str(info.value)


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b'{"schemaVersion": 2, "layers": []}', "config: not a JSON object"),
        (b'{"schemaVersion": 2, "config": {"mediaType": "x", "digest": "' + A.encode() + b'", "size": 1}}', "layers must be a list"),
        (b'{"schemaVersion": 2, "config": {"mediaType": "x", "digest": "' + A.encode() + b'", "size": 1}, "layers": [{}]}', "layer 0: missing mediaType"),
        (b'{"schemaVersion": 2, "config": {"mediaType": "x", "digest": "' + A.encode() + b'", "size": 1}, "layers": [], "annotations": 5}', "annotations must map strings to strings"),
    ],
)
def test_bad_manifests_are_content_errors(raw: bytes, reason: str) -> None:
    with pytest.raises(ContentError) as info:
        ImageManifest.parse(raw, mediatype.OCI_MANIFEST)
    assert reason in str(info.value)


def test_subject_is_read() -> None:
    doc = json.loads(MANIFEST_RAW)
    doc["subject"] = {"mediaType": mediatype.OCI_MANIFEST, "digest": C, "size": 3}
    m = ImageManifest.parse(json.dumps(doc).encode(), mediatype.OCI_MANIFEST)
    assert m.subject is not None and str(m.subject.digest) == C


def test_an_unknown_manifest_type_names_what_was_read() -> None:
    with pytest.raises(ContentError, match=r"^manifest example\.com/r:1: cannot tell the manifest type \(no Content-Type"):
        detect_media_type(b"[]", None, "manifest example.com/r:1")


@pytest.mark.parametrize("raw", [b"[" * 100_000, b'{"a":' * 100_000])
def test_a_document_nested_beyond_any_real_one_is_bad_content(raw: bytes) -> None:
    with pytest.raises(ContentError):
        detect_media_type(raw, None, "manifest example.com/r:1")
    with pytest.raises(ContentError):
        parse(raw, mediatype.OCI_INDEX, "manifest example.com/r:1")
    with pytest.raises(ContentError):
        ImageConfig.parse(raw, "config of example.com/r:1")
