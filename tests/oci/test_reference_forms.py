"""Every reference form a verb takes, told apart in one place: `oci:DIR[:TAG|@DIGEST]`, `docker://REF`, REF."""

from __future__ import annotations

import pytest

from manifesto.errors import InvalidReference
from manifesto.oci.digest import Digest
from manifesto.oci.reference import LayoutReference, Reference, parse_location

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    "text, path, tag, digest",
    [
        ("oci:out", "out", None, None),
        ("oci:./out:1.0", "./out", "1.0", None),
        ("oci:/tmp/x:y:latest", "/tmp/x:y", "latest", None),  # the last ':' + valid tag is the tag
        ("oci:/tmp/a:b/c", "/tmp/a:b/c", None, None),  # ':' + no valid tag belongs to the directory
        (f"oci:/tmp/out@{D}", "/tmp/out", None, D),
        (f"oci:/tmp/a@b/out@{D}", "/tmp/a@b/out", None, D),
        ("oci:/tmp/a@b", "/tmp/a@b", None, None),  # '@' + no digest belongs to the directory
    ],
)
def test_layout_forms(text: str, path: str, tag: str | None, digest: str | None) -> None:
    loc = parse_location(text)
    assert loc == LayoutReference(path, tag, Digest.parse(digest) if digest else None)
    assert str(loc) == text
    assert loc.reference == (digest or tag)  # what is read in the layout


def test_a_layout_digest_must_be_a_digest() -> None:
    with pytest.raises(InvalidReference, match="sha256:abc"):
        parse_location("oci:/tmp/out@sha256:abc")
    with pytest.raises(InvalidReference, match="needs a directory"):
        parse_location("oci::1")


def test_docker_transport_prefix_is_a_registry_reference() -> None:
    plain = Reference.parse("127.0.0.1:5000/a/b:1")
    assert parse_location("docker://127.0.0.1:5000/a/b:1") == plain
    assert Reference.parse("docker://127.0.0.1:5000/a/b:1") == plain
    assert Reference.parse("docker://golang:alpine") == Reference.parse("golang:alpine")


def test_a_layout_where_a_registry_reference_is_needed_says_so() -> None:
    with pytest.raises(InvalidReference) as e:
        Reference.parse("oci:./out:1")
    assert "OCI layout" in str(e.value) and "port" not in str(e.value)
    # a registry host that happens to be named `oci` is still a registry reference
    assert Reference.parse("oci:5000/repo:1").registry == "oci:5000"
    assert isinstance(parse_location("oci:5000/repo:1"), LayoutReference)  # as skopeo reads it


def test_with_digest_pins_a_layout_reference() -> None:
    loc = parse_location("oci:out:1")
    assert isinstance(loc, LayoutReference)
    pinned = loc.with_digest(Digest.parse(D))
    assert pinned.reference == D and str(pinned) == f"oci:out@{D}"
    assert parse_location("oci:out").reference is None
