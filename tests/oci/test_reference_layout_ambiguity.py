"""`oci:NAME` where a registry reference is needed: refused, never read as Docker Hub's `oci` image."""

from __future__ import annotations

import pytest

from manifesto.errors import InvalidReference
from manifesto.oci.reference import LayoutReference, Reference, parse_location


@pytest.mark.parametrize("text", ["oci:out", "oci:l-arm64", "oci:out@sha256:" + "ab" * 32])
def test_a_layout_that_also_parses_as_a_hub_image_is_refused(text: str) -> None:
    # `oci:out` is a valid Docker Hub reference (image `oci`, tag `out`): a verb that takes
    # registry references only must not go to the network for it
    with pytest.raises(InvalidReference) as e:
        Reference.parse(text)
    assert "OCI layout" in str(e.value) and f"docker://{text}" in str(e.value)
    assert isinstance(parse_location(text), LayoutReference)


def test_the_hub_image_named_oci_is_reachable_and_prints_back_as_itself() -> None:
    ref = Reference.parse("docker://oci:out")
    assert (ref.registry, ref.repository, ref.tag) == ("docker.io", "library/oci", "out")
    # its short form must not read back as a layout
    assert parse_location(ref.familiar) == ref
    assert Reference.parse("oci@sha256:" + "ab" * 32).familiar.startswith("oci@")
