"""lists.edit: a change applied to a list's JSON, and whether the list a tag holds still carries it."""

from __future__ import annotations

import json

import pytest

from manifesto.errors import UsageError
from manifesto.lists.edit import Change, apply, held
from manifesto.lists.entry import Entry
from manifesto.oci import mediatype
from manifesto.oci.descriptor import ATTESTATION_SUBJECT_KEY, ATTESTATION_TYPE_KEY, Descriptor
from manifesto.oci.digest import Digest
from manifesto.oci.manifest import ImageIndex
from manifesto.oci.platform import Platform
from manifesto.oci.reference import Reference


def desc(name: str, platform: str | None = None, **extra) -> dict:
    raw = name.encode()
    out = {"mediaType": mediatype.OCI_MANIFEST, "digest": str(Digest.of(raw)), "size": len(raw), **extra}
    if platform:
        os_, arch, *variant = platform.split("/")
        out["platform"] = {"os": os_, "architecture": arch, **({"variant": variant[0]} if variant else {})}
    return out


def att(name: str, subject: dict) -> dict:
    return desc(name, "unknown/unknown", annotations={ATTESTATION_TYPE_KEY: "attestation-manifest", ATTESTATION_SUBJECT_KEY: subject["digest"]})


def index(*entries: dict, **top) -> ImageIndex:
    raw = json.dumps({"schemaVersion": 2, "mediaType": mediatype.OCI_INDEX, "manifests": list(entries), **top}, indent=2).encode()
    return ImageIndex.parse(raw, mediatype.OCI_INDEX)


def entry(d: dict) -> Entry:
    return Entry(Reference.parse(f"r.example/src@{d['digest']}"), Descriptor.from_dict(d), d["digest"].encode())


def digests(i: ImageIndex) -> list[str]:
    return [str(d.digest) for d in i.manifests]


AMD, ARM, S390 = desc("amd", "linux/amd64"), desc("arm", "linux/arm64/v8"), desc("s390", "linux/s390x")


def test_add_keeps_untouched_entries_and_top_level_fields_as_parsed():
    odd = {**AMD, "urls": ["https://x.example"], "platform": {**AMD["platform"], "features": ["sse4"]}}
    base = index(odd, ARM, annotations={"a": "b"}, subject=ARM, custom={"x": 1})
    done = apply(base, Change(added=(entry(S390),)))
    doc = json.loads(done.index.raw)
    assert doc["manifests"] == [odd, ARM, S390]
    assert (doc["annotations"], doc["subject"], doc["custom"]) == ({"a": "b"}, ARM, {"x": 1})


def test_add_replaces_its_platform_in_place_and_drops_the_old_ones_attestation():
    newer = desc("amd2", "linux/amd64")
    done = apply(index(AMD, att("a1", AMD), ARM), Change(added=(entry(newer),)))
    assert digests(done.index) == [newer["digest"], ARM["digest"]]
    assert [str(d.digest) for d in done.removed] == [AMD["digest"], att("a1", AMD)["digest"]]


def test_an_arm64_image_replaces_arm64_v8():
    newer = desc("arm2", "linux/arm64")
    assert digests(apply(index(AMD, ARM), Change(added=(entry(newer),))).index) == [AMD["digest"], newer["digest"]]


def test_adding_what_is_there_changes_nothing():
    assert apply(index(AMD, ARM), Change(added=(entry(AMD),))).index is None


def test_rm_reports_selectors_that_name_nothing():
    done = apply(index(AMD, ARM), Change(platforms=(Platform.parse("linux/s390x"), Platform.parse("linux/amd64"))))
    assert done.unmatched == ("linux/s390x",)


def test_rm_of_the_last_entry_is_refused():
    with pytest.raises(UsageError, match="no entries left"):
        apply(index(AMD), Change(digests=(Digest.parse(AMD["digest"]),)))


def test_held_sees_a_lost_change_and_accepts_a_later_writers_replacement():
    base = index(AMD)
    done = apply(base, Change(added=(entry(ARM),)))
    assert held(done.index, done)
    assert held(index(AMD, ARM, S390), done)  # a later writer built on ours
    assert not held(index(AMD, S390), done)  # a writer who never saw ours: lost
    assert held(index(AMD, desc("arm2", "linux/arm64/v8")), done)  # arm64 replaced on purpose since
    assert not held(index(AMD, ARM), apply(index(AMD, ARM), Change(platforms=(Platform.parse("linux/arm64/v8"),))))
