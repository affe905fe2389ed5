"""The one entry type: its two JSON forms stay what files on disk already hold."""

from __future__ import annotations

import json

import pytest

from manifesto.errors import UsageError
from manifesto.lists.entry import Entry
from manifesto.oci import mediatype
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.digest import Digest
from manifesto.oci.platform import Platform
from manifesto.oci.reference import Reference

DIGEST = Digest.of(b"a manifest")


def test_a_record_is_what_digest_files_and_reports_hold() -> None:
    entry = Entry(
        None,
        Descriptor(mediatype.OCI_MANIFEST, DIGEST, 10, Platform.parse("linux/arm64/v8")),
        arch_refs=(Reference.parse("registry.example.com/arm64v8/hello:1.4.2"),),
    )
    assert json.dumps(entry.to_record()) == json.dumps({
        "platform": "linux/arm64/v8",
        "digest": str(DIGEST),
        "size": 10,
        "mediaType": mediatype.OCI_MANIFEST,
        "source": "built",
        "archRefs": ["registry.example.com/arm64v8/hello:1.4.2"],
    })  # fmt: skip
    back = Entry.from_record(entry.to_record(), "out/arm64.json")
    assert back == entry and back.origin == "out/arm64.json"
    assert entry.name == "linux/arm64/v8 (built)" and entry.source_label == "built"


def test_a_record_of_an_image_entry_names_its_source() -> None:
    source = Reference.parse("localhost:5000/golang:alpine")
    entry = Entry(source, Descriptor(mediatype.DOCKER_MANIFEST, DIGEST, 10, Platform.parse("linux/amd64")), b"x")
    assert entry.to_record()["source"] == "localhost:5000/golang:alpine"
    assert entry.name == "localhost:5000/golang:alpine"


@pytest.mark.parametrize(
    "item, says",
    [
        ({"platform": "linux/amd64"}, "an entry has no 'digest'"),
        ({"platform": "linux/amd64", "digest": "sha256:abc", "size": 1, "mediaType": "x"}, "not a manifesto digest file"),
        ({"platform": "linux/arm64/v7", "digest": str(DIGEST), "size": 1, "mediaType": "x"}, "not a manifesto digest file"),
        ("linux/amd64", "not a manifesto digest file"),
    ],
)
def test_a_bad_record_is_a_usage_error_naming_the_file(item: object, says: str) -> None:
    with pytest.raises(UsageError) as e:
        Entry.from_record(item, "out/x.json")  # type: ignore[arg-type]
    assert str(e.value).startswith("out/x.json: not a manifesto digest file") and says in str(e.value)


def test_a_draft_entry_keeps_its_exact_bytes() -> None:
    raw = b'{"schemaVersion": 2}'
    entry = Entry(
        Reference.parse("localhost:5000/src/img:1"),
        Descriptor(mediatype.OCI_MANIFEST, Digest.of(raw), len(raw), Platform.parse("linux/amd64")),
        raw,
        Platform.parse("linux/amd64"),
    )
    data = entry.to_draft()
    assert list(data) == ["source", "descriptor", "manifest", "config_platform"]
    assert Entry.from_draft(json.loads(json.dumps(data))) == entry
