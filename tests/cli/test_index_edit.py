"""`manifesto index add|rm` against a real registry: what the list holds afterwards, byte for byte.

Images are written with raw HTTP (tests/support/content.py): tiny, any platform, their exact
bytes known, so the tests can check what stays untouched in the edited list.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.cli import DIGEST, OCI_INDEX, ok, plat, sha256_of
from tests.support.content import DOCKER_CONFIG, DOCKER_LIST, DOCKER_MANIFEST, OCI_MANIFEST, Content, config

PLATFORMS = {"amd64": ("amd64", None), "arm64": ("arm64", "v8"), "arm": ("arm", "v7"), "ppc64le": ("ppc64le", None), "s390x": ("s390x", None)}


def image(c: Content, arch: str, tag: str | None = None, *, docker: bool = False, salt: str = "") -> Any:
    architecture, variant = PLATFORMS[arch]
    extra = {"variant": variant} if variant else {}
    cfg = config("linux", architecture, **extra, **({"salt": salt} if salt else {}))
    if docker:
        return c.image(cfg, tag=tag, config_type=DOCKER_CONFIG, media_type=DOCKER_MANIFEST,
                       layers=[(b"layer " + arch.encode() + salt.encode(), "application/vnd.docker.image.rootfs.diff.tar.gzip", {})])
    return c.image(cfg, tag=tag, layers=[(b"layer " + arch.encode() + salt.encode(), "application/vnd.oci.image.layer.v1.tar", {})])


def platform_of(arch: str) -> dict[str, str]:
    architecture, variant = PLATFORMS[arch]
    return {"os": "linux", "architecture": architecture, **({"variant": variant} if variant else {})}


def attestation(c: Content, subject: Any) -> Any:
    """A buildkit-style attestation manifest of `subject` (by digest in the repo) and its descriptor."""
    cfg = json.dumps({"architecture": "unknown", "os": "unknown", "config": {}, "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    att = c.image(cfg, layers=[(b'{"_type":"https://in-toto.io/Statement/v0.1"}', "application/vnd.in-toto+json", {})])
    return att, att.descriptor(
        platform={"os": "unknown", "architecture": "unknown"},
        annotations={"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": subject.digest},
    )


@pytest.fixture
def content(registry, unique_repo):
    c = Content(registry, unique_repo)
    yield c
    c.close()


def listed(c: Content, tag: str) -> dict[str, Any]:
    r = c.get(tag)
    assert r.status_code == 200, r.text
    return json.loads(r.content)


def test_add_puts_an_image_into_a_list_and_keeps_everything_else(cli, registry, content):
    amd, arm = image(content, "amd64"), image(content, "arm64")
    first = amd.descriptor(platform=platform_of("amd64"), annotations={"org.example.note": "kept"}, urls=["https://x.example/l"])
    first["platform"]["features"] = ["sse4"]  # a field manifesto does not model: kept as it is
    content.index([first, arm.descriptor(platform=platform_of("arm64"))], tag="1",
                  annotations={"org.opencontainers.image.source": "https://example.com/src"}, subject=arm.descriptor())
    new = image(content.__class__(registry, content.repo + "-src"), "s390x", "1")
    rc, out, err = cli("index", "add", registry.ref(content.repo, "1"), new.ref)
    assert rc == 0, err
    digest = out.strip().splitlines()[-1]
    assert DIGEST.match(digest)
    doc = listed(content, "1")
    assert sha256_of(content.get("1").content) == digest
    assert doc["mediaType"] == OCI_INDEX
    assert doc["annotations"] == {"org.opencontainers.image.source": "https://example.com/src"}
    assert doc["subject"]["digest"] == arm.digest  # an unmodelled top-level field survives too
    assert doc["manifests"][0] == first  # untouched entries exactly as they were, in order
    assert [m["digest"] for m in doc["manifests"]] == [amd.digest, arm.digest, new.digest]
    assert plat(doc["manifests"][2]["platform"]) == "linux/s390x"
    assert content.get(new.digest).status_code == 200  # the child was copied into the target first
    assert "Updated" in err and "added 1" in err


def test_add_replaces_the_entry_of_the_same_platform_in_place_with_its_attestation(cli, registry, content):
    amd, arm = image(content, "amd64"), image(content, "arm64")
    _, att = attestation(content, amd)
    content.index([amd.descriptor(platform=platform_of("amd64")), att, arm.descriptor(platform=platform_of("arm64"))], tag="1")
    newer = image(content, "amd64", salt="2")
    ok(cli("index", "add", registry.ref(content.repo, "1"), f"{registry.host}/{content.repo}@{newer.digest}"))
    doc = listed(content, "1")
    assert [m["digest"] for m in doc["manifests"]] == [newer.digest, arm.digest]


def test_add_to_a_missing_tag_creates_the_list(cli, registry, content):
    amd = image(content, "amd64", docker=True)
    rc, out, err = cli("index", "add", registry.ref(content.repo, "new"), f"{registry.host}/{content.repo}@{amd.digest}")
    assert rc == 0, err
    doc = listed(content, "new")
    assert doc["mediaType"] == DOCKER_LIST  # every child is Docker: a Docker list, as create chooses
    assert [m["digest"] for m in doc["manifests"]] == [amd.digest]
    assert "Created" in err


def test_add_what_is_already_there_writes_nothing(cli, registry, content, probe):
    amd = image(content, "amd64")
    listed_before = content.index([amd.descriptor(platform=platform_of("amd64"))], tag="1")
    p = probe(registry)
    mark = p.mark()
    rc, out, err = cli("index", "add", registry.ref(content.repo, "1"), f"{registry.host}/{content.repo}@{amd.digest}")
    assert rc == 0, err
    assert out.strip() == listed_before.digest
    assert "unchanged" in err
    assert not [r for r in p.requests(mark) if r.method == "PUT" and "/manifests/" in r.path]


def test_add_a_platform_out_of_a_list_with_its_attestation_or_without(cli, registry, content):
    src = Content(registry, content.repo + "-src")
    amd, arm = image(src, "amd64"), image(src, "arm64")
    _, att = attestation(src, arm)
    src.index([amd.descriptor(platform=platform_of("amd64")), arm.descriptor(platform=platform_of("arm64")), att], tag="multi")
    base = image(content, "s390x")
    content.index([base.descriptor(platform=platform_of("s390x"))], tag="1")
    content.index([base.descriptor(platform=platform_of("s390x"))], tag="2")
    source = registry.ref(src.repo, "multi")

    rc, _, err = cli("index", "add", "--platform", "linux/arm64", registry.ref(content.repo, "1"), source)
    assert rc == 0, err
    assert [m["digest"] for m in listed(content, "1")["manifests"]] == [base.digest, arm.digest, att["digest"]]
    assert "attestation" not in err

    rc, _, err = cli("index", "add", "--attestations", "strip", "--platform", "linux/arm64", registry.ref(content.repo, "2"), source)
    assert rc == 0, err
    assert [m["digest"] for m in listed(content, "2")["manifests"]] == [base.digest, arm.digest]
    assert f"{src.repo}:multi: 1 attestation left out" in err
    src.close()


def test_rm_by_platform_and_by_digest_takes_attestations_along(cli, registry, content):
    amd, arm, s390 = image(content, "amd64"), image(content, "arm64"), image(content, "s390x")
    _, att = attestation(content, amd)
    descs = [amd.descriptor(platform=platform_of("amd64")), att, arm.descriptor(platform=platform_of("arm64")),
             s390.descriptor(platform=platform_of("s390x"))]
    content.index(descs, tag="1")
    ok(cli("index", "rm", registry.ref(content.repo, "1"), "--platform", "linux/amd64", "--digest", s390.digest))
    assert listed(content, "1")["manifests"] == [descs[2]]


def test_rm_of_what_is_not_there_is_not_found_and_changes_nothing(cli, registry, content, one_line_error):
    amd, arm = image(content, "amd64"), image(content, "arm64")
    before = content.index([amd.descriptor(platform=platform_of("amd64")), arm.descriptor(platform=platform_of("arm64"))], tag="1")
    result = cli("index", "rm", registry.ref(content.repo, "1"), "--platform", "linux/amd64", "--platform", "linux/s390x")
    one_line_error(result, 4, "linux/s390x")
    assert content.get("1").content == before.raw


def test_rm_of_every_entry_is_refused(cli, registry, content, one_line_error):
    amd = image(content, "amd64")
    before = content.index([amd.descriptor(platform=platform_of("amd64"))], tag="1")
    one_line_error(cli("index", "rm", registry.ref(content.repo, "1"), "--platform", "linux/amd64"), 2, "no entries left")
    assert content.get("1").content == before.raw


def test_add_to_a_tag_holding_an_image_is_refused(cli, registry, content, one_line_error):
    amd = image(content, "amd64", "img")
    arm = image(content, "arm64")
    one_line_error(cli("index", "add", registry.ref(content.repo, "img"), f"{registry.host}/{content.repo}@{arm.digest}"),
                   2, "holds an image, not a list")
    assert content.get("img").content == amd.raw


def test_an_oci_image_into_a_docker_list_needs_format_oci(cli, registry, content, one_line_error):
    amd = image(content, "amd64", docker=True)
    content.index([amd.descriptor(platform=platform_of("amd64"))], tag="1", media_type=DOCKER_LIST)
    arm = image(content, "arm64")
    target, source = registry.ref(content.repo, "1"), f"{registry.host}/{content.repo}@{arm.digest}"
    one_line_error(cli("index", "add", target, source), 2, "--format oci")
    ok(cli("index", "add", "--format", "oci", target, source))
    doc = listed(content, "1")
    assert doc["mediaType"] == OCI_INDEX and len(doc["manifests"]) == 2
    assert doc["manifests"][1]["mediaType"] == OCI_MANIFEST
