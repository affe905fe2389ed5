"""The rules of a list: format choice, what makes a list wrong or lossy (as values), Docker vs OCI."""

from __future__ import annotations

import json

import pytest

from manifesto.errors import InvalidReference, UsageError
from manifesto.lists import rules
from manifesto.lists.entry import Entry
from manifesto.lists.rules import build_index, choose_media_type, ensure_tags
from manifesto.oci import mediatype
from manifesto.oci.descriptor import (
    ATTESTATION_SUBJECT_KEY,
    ATTESTATION_TYPE_KEY,
    Descriptor,
)
from manifesto.oci.digest import Digest
from manifesto.oci.platform import Platform
from manifesto.oci.reference import Reference

DOCKER = mediatype.DOCKER_MANIFEST
OCI = mediatype.OCI_MANIFEST


def entry(
    name: str,
    platform: str | None,
    *,
    media_type: str = OCI,
    config: str | None = "same",
    annotations: dict[str, str] | None = None,
    attestation_of: Entry | None = None,
) -> Entry:
    raw = json.dumps({"schemaVersion": 2, "mediaType": media_type, "name": name}).encode()
    if attestation_of is not None:
        plat = Platform.from_dict({"os": "unknown", "architecture": "unknown"})
        annotations = {
            ATTESTATION_TYPE_KEY: "attestation-manifest",
            ATTESTATION_SUBJECT_KEY: str(attestation_of.descriptor.digest),
        }
        config_platform = None
    else:
        plat = Platform.parse(platform) if platform else None
        config_platform = plat if config == "same" else (Platform.parse(config) if config else None)
    return Entry(
        source=Reference.parse(f"localhost:5000/{name}:1"),
        descriptor=Descriptor(media_type, Digest.of(raw), len(raw), plat, dict(annotations or {})),
        raw=raw,
        config_platform=config_platform,
    )


def problems(entries: list[Entry], media_type: str, annotations: dict[str, str]) -> list[str]:
    """The problems as `push` words them (its way to ask for OCI is `--format oci`)."""
    return [p.text("--format oci") for p in rules.problems(entries, media_type, annotations)]


# ---- choose_media_type ----------------------------------------------------------------------------


def test_all_docker_children_make_a_docker_list() -> None:
    entries = [entry("a", "linux/amd64", media_type=DOCKER), entry("b", "linux/arm64", media_type=DOCKER)]
    assert choose_media_type(entries, None) == mediatype.DOCKER_LIST


def test_mixed_children_make_an_oci_index() -> None:
    entries = [entry("a", "linux/amd64", media_type=DOCKER), entry("b", "linux/arm64", media_type=OCI)]
    assert choose_media_type(entries, None) == mediatype.OCI_INDEX


def test_all_oci_or_nothing_make_an_oci_index() -> None:
    assert choose_media_type([entry("a", "linux/amd64")], None) == mediatype.OCI_INDEX
    assert choose_media_type([], None) == mediatype.OCI_INDEX


@pytest.mark.parametrize("children", [DOCKER, OCI])
def test_requested_format_wins(children: str) -> None:
    entries = [entry("a", "linux/amd64", media_type=children)]
    assert choose_media_type(entries, "docker") == mediatype.DOCKER_LIST
    assert choose_media_type(entries, "oci") == mediatype.OCI_INDEX


# ---- problems -------------------------------------------------------------------------------------


def test_a_clean_list_has_no_problems() -> None:
    entries = [
        entry("a", "linux/amd64"),
        entry("b", "linux/arm64/v8"),
        entry("c", "linux/arm/v7"),
        entry("d", "linux/arm/v6"),
        entry("e", "linux/ppc64le"),
        entry("f", "linux/s390x"),
    ]
    assert problems(entries, mediatype.OCI_INDEX, {"org.opencontainers.image.title": "x"}) == []


def test_lying_annotation_is_reported() -> None:
    liar = entry("liar", "linux/arm64", config="linux/amd64")
    (problem,) = problems([liar], mediatype.OCI_INDEX, {})
    assert problem == "localhost:5000/liar:1: annotated as linux/arm64 but its config says linux/amd64"


def test_arm64_descriptor_with_arm64_v8_config_is_not_a_lie() -> None:
    assert problems([entry("a", "linux/arm64/v8", config="linux/arm64")], mediatype.OCI_INDEX, {}) == []
    assert problems([entry("a", "linux/arm64", config="linux/arm64/v8")], mediatype.OCI_INDEX, {}) == []


def test_arm_variant_lie_is_reported() -> None:
    assert problems([entry("a", "linux/arm/v7", config="linux/arm/v6")], mediatype.OCI_INDEX, {})


def test_entry_without_config_platform_is_taken_at_its_word() -> None:
    assert problems([entry("a", "linux/amd64", config=None)], mediatype.OCI_INDEX, {}) == []


def test_entry_without_platform_is_reported() -> None:
    (problem,) = problems([entry("a", None, config=None)], mediatype.OCI_INDEX, {})
    assert "no platform" in problem


@pytest.mark.parametrize(
    "first, second",
    [
        ("linux/amd64", "linux/amd64"),
        ("linux/arm64", "linux/arm64/v8"),  # one platform, two spellings
        ("linux/arm64/v8", "linux/arm64"),
        ("linux/arm", "linux/arm/v7"),
    ],
)
def test_duplicate_platforms_are_reported(first: str, second: str) -> None:
    entries = [entry("one", first), entry("two", second)]
    (problem,) = problems(entries, mediatype.OCI_INDEX, {})
    assert problem.startswith("duplicate platform ")
    assert "localhost:5000/one:1" in problem and "localhost:5000/two:1" in problem


def test_different_os_versions_are_not_duplicates() -> None:
    a, b = entry("a", "windows/amd64"), entry("b", "windows/amd64")
    a = Entry(a.source, a.descriptor.with_(platform=a.descriptor.platform.with_(os_version="10.0.1")), a.raw, None)
    b = Entry(b.source, b.descriptor.with_(platform=b.descriptor.platform.with_(os_version="10.0.2")), b.raw, None)
    assert problems([a, b], mediatype.OCI_INDEX, {}) == []


def test_attestations_are_ignored_for_duplicates_and_platforms() -> None:
    amd, arm = entry("a", "linux/amd64"), entry("b", "linux/arm64/v8")
    entries = [amd, arm, entry("att-a", None, attestation_of=amd), entry("att-b", None, attestation_of=arm)]
    assert entries[2].descriptor.is_attestation and entries[3].descriptor.is_attestation
    assert problems(entries, mediatype.OCI_INDEX, {}) == []


def test_docker_list_refuses_index_annotations() -> None:
    entries = [entry("a", "linux/amd64", media_type=DOCKER)]
    (problem,) = problems(entries, mediatype.DOCKER_LIST, {"org.opencontainers.image.title": "x"})
    assert "cannot carry index annotations" in problem and "--format oci" in problem


def test_docker_list_refuses_entry_annotations() -> None:
    entries = [entry("a", "linux/amd64", media_type=DOCKER, annotations={"k": "v"})]
    (problem,) = problems(entries, mediatype.DOCKER_LIST, {})
    assert problem == "localhost:5000/a:1: a Docker manifest list drops entry annotations (use --format oci)"


def test_docker_list_refuses_oci_children() -> None:
    entries = [entry("a", "linux/amd64", media_type=DOCKER), entry("b", "linux/arm64", media_type=OCI)]
    (problem,) = problems(entries, mediatype.DOCKER_LIST, {})
    assert problem == "localhost:5000/b:1: an OCI manifest in a Docker manifest list (use --format oci)"


def test_oci_index_takes_docker_children_and_annotations() -> None:
    entries = [entry("a", "linux/amd64", media_type=DOCKER, annotations={"k": "v"})]
    assert problems(entries, mediatype.OCI_INDEX, {"k": "v"}) == []


def test_every_problem_is_reported_not_just_the_first() -> None:
    entries = [
        entry("a", "linux/amd64", config="linux/arm64", annotations={"k": "v"}),
        entry("b", "linux/amd64"),
    ]
    found = problems(entries, mediatype.DOCKER_LIST, {"x": "y"})
    assert len(found) == 6  # lie, duplicate, index annotations, entry annotations, 2 OCI children


# ---- build_index ------------------------------------------------------------------------------------


def test_build_index_for_docker_drops_annotations() -> None:
    entries = [entry("a", "linux/amd64", media_type=DOCKER, annotations={"k": "v"}), entry("b", "linux/arm64/v8", media_type=DOCKER)]
    index = build_index(entries, mediatype.DOCKER_LIST, {"org.opencontainers.image.title": "x"})
    doc = json.loads(index.raw)
    assert doc["mediaType"] == mediatype.DOCKER_LIST
    assert "annotations" not in doc
    assert all("annotations" not in m for m in doc["manifests"])
    assert index.annotations == {}
    assert [m["platform"] for m in doc["manifests"]] == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux", "variant": "v8"},
    ]


def test_build_index_for_oci_keeps_annotations_and_attestations() -> None:
    amd = entry("a", "linux/amd64", annotations={"k": "v"})
    entries = [amd, entry("att", None, attestation_of=amd)]
    index = build_index(entries, mediatype.OCI_INDEX, {"org.opencontainers.image.title": "x"})
    doc = json.loads(index.raw)
    assert doc["annotations"] == {"org.opencontainers.image.title": "x"}
    assert doc["manifests"][0]["annotations"] == {"k": "v"}
    assert doc["manifests"][1]["annotations"][ATTESTATION_TYPE_KEY] == "attestation-manifest"
    assert doc["manifests"][1]["platform"] == {"architecture": "unknown", "os": "unknown"}
    assert [d.digest for d in index.manifests] == [e.descriptor.digest for e in entries]


def test_build_index_is_deterministic() -> None:
    entries = [entry("a", "linux/amd64"), entry("b", "linux/s390x")]
    one = build_index(entries, mediatype.OCI_INDEX, {"b": "2", "a": "1"})
    two = build_index(list(entries), mediatype.OCI_INDEX, {"a": "1", "b": "2"})
    assert one.raw == two.raw and one.digest == two.digest


def test_build_index_does_not_change_the_entries() -> None:
    e = entry("a", "linux/amd64", media_type=DOCKER, annotations={"k": "v"})
    build_index([e], mediatype.DOCKER_LIST, {})
    assert e.descriptor.annotations == {"k": "v"}


# ---- ensure_tags ------------------------------------------------------------------------------------


def test_ensure_tags() -> None:
    target = Reference.parse("localhost:5000/app:1.0")
    assert ensure_tags(target, ["1", "latest", "1.0", "1"]) == ["1.0", "1", "latest"]
    assert ensure_tags(Reference.parse("localhost:5000/app"), []) == ["latest"]
    with pytest.raises(InvalidReference):
        ensure_tags(target, ["-bad"])
    with pytest.raises(UsageError, match="not a digest"):
        ensure_tags(Reference.parse(f"localhost:5000/app@{Digest.of(b'x')}"), [])


def test_a_contradiction_in_os_version_names_the_field() -> None:
    e = entry("win", "windows/amd64")
    e = Entry(
        e.source,
        e.descriptor.with_(platform=e.descriptor.platform.with_(os_version="10.0.17763.1")),
        e.raw,
        e.config_platform.with_(os_version="10.0.20348.2"),
    )
    (problem,) = problems([e], mediatype.OCI_INDEX, {})
    assert problem == (
        "localhost:5000/win:1: annotated as windows/amd64 (os.version 10.0.17763.1)"
        " but its config says windows/amd64 (os.version 10.0.20348.2)"
    )


# ---- problems are values: a code, a subject, a message; each surface words the way out ------------


def test_problems_are_values_with_codes() -> None:
    entries = [
        entry("a", "linux/amd64", config="linux/arm64", annotations={"k": "v"}),
        entry("b", "linux/amd64"),
        entry("c", None, config=None),
    ]
    found = rules.problems(entries, mediatype.DOCKER_LIST, {"x": "y"})
    assert [p.code for p in found] == [
        rules.CONFIG_CONTRADICTS,
        rules.DUPLICATE_PLATFORM,
        rules.NO_PLATFORM,
        rules.DOCKER_INDEX_ANNOTATIONS,
        rules.DOCKER_ENTRY_ANNOTATIONS,
        rules.DOCKER_OCI_CHILD,
        rules.DOCKER_OCI_CHILD,
        rules.DOCKER_OCI_CHILD,
    ]
    assert found[0].subject == "localhost:5000/a:1" and found[3].subject == ""


def test_each_surface_names_its_own_way_to_ask_for_oci() -> None:
    (problem,) = rules.problems([entry("b", "linux/arm64")], mediatype.DOCKER_LIST, {})
    assert str(problem) == "localhost:5000/b:1: an OCI manifest in a Docker manifest list"
    assert problem.text("--format oci").endswith("(use --format oci)")
    assert problem.text("format: oci in platforms.yaml").endswith("(use format: oci in platforms.yaml)")
    lie = rules.config_problem(entry("a", "linux/arm64", config="linux/amd64"))
    assert lie is not None and lie.text("--format oci") == str(lie)  # no format fixes a lie


def test_config_problem_is_the_one_platform_check() -> None:
    assert rules.config_problem(entry("a", "linux/arm64/v8", config="linux/arm64")) is None
    assert rules.config_problem(entry("a", "linux/amd64", config=None)) is None
    assert rules.config_problem(entry("a", None, config="linux/amd64")) is None
    found = rules.config_problem(entry("a", "linux/arm/v7", config="linux/arm/v6"))
    assert found is not None and found.code == rules.CONFIG_CONTRADICTS


def test_duplicates_is_the_one_duplicate_rule() -> None:
    """oci.platform.duplicates: what parse_all, the index rules and publish all ask."""
    from manifesto.oci.platform import duplicates

    parsed = [Platform.parse(p) for p in ("linux/arm64", "linux/amd64", "linux/arm64/v8", "linux/arm64")]
    assert duplicates(parsed) == [(0, 2), (2, 3)]
    assert duplicates([None, Platform.parse("linux/amd64"), None]) == []
    win = Platform.parse("windows/amd64")
    assert duplicates([win.with_(os_version="10.0.1"), win.with_(os_version="10.0.2")]) == []


def test_an_unknown_list_format_is_a_usage_error_not_a_key_error() -> None:
    """Library callers (index_add, create) get the CLI's one-line error, not a KeyError."""
    from manifesto.errors import UsageError
    from manifesto.lists.rules import choose_media_type

    with pytest.raises(UsageError, match="format 'weird': use one of oci, docker"):
        choose_media_type([], "weird")
    assert choose_media_type([], "docker") == "application/vnd.docker.distribution.manifest.list.v2+json"
