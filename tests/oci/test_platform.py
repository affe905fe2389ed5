"""Platforms: containerd-style aliases, arm64 ≡ arm64/v8, impossible combinations, duplicates."""

from __future__ import annotations

import pytest

from manifesto.errors import InvalidPlatform, UsageError
from manifesto.oci.platform import Platform, contrast, parse_all

ALIASES = [
    # given, expected str()
    ("x86_64", "linux/amd64"),
    ("x86-64", "linux/amd64"),
    ("amd64", "linux/amd64"),
    ("linux/x86_64", "linux/amd64"),
    ("aarch64", "linux/arm64"),
    ("linux/aarch64", "linux/arm64"),
    ("arm64", "linux/arm64"),
    ("arm64v8", "linux/arm64/v8"),
    ("linux/arm64v8", "linux/arm64/v8"),
    ("armhf", "linux/arm/v7"),
    ("linux/armhf", "linux/arm/v7"),
    ("armel", "linux/arm/v6"),
    ("armv7", "linux/arm/v7"),
    ("armv7l", "linux/arm/v7"),
    ("armv6l", "linux/arm/v6"),
    ("arm32v7", "linux/arm/v7"),
    ("arm32v6", "linux/arm/v6"),
    ("arm", "linux/arm/v7"),  # bare arm means arm/v7, as in containerd
    ("linux/arm", "linux/arm/v7"),
    ("i386", "linux/386"),
    ("i686", "linux/386"),
    ("ppc64el", "linux/ppc64le"),
    ("linux/ppc64el", "linux/ppc64le"),
    ("ppc64le", "linux/ppc64le"),
    ("s390x", "linux/s390x"),
    ("mips64el", "linux/mips64le"),
    ("LINUX/AMD64", "linux/amd64"),
    ("  linux/arm64/v8  ", "linux/arm64/v8"),
    ("macos/arm64", "darwin/arm64"),
]


@pytest.mark.parametrize("given, expected", ALIASES)
def test_aliases_normalize(given: str, expected: str) -> None:
    p = Platform.parse(given)
    assert str(p) == expected
    assert Platform.parse(str(p)) == p  # the normal form is a fixed point


@pytest.mark.parametrize("a, b", [("linux/arm64", "linux/arm64/v8"), ("aarch64", "arm64v8"), ("arm64", "linux/arm64/v8")])
def test_arm64_is_arm64_v8(a: str, b: str) -> None:
    pa, pb = Platform.parse(a), Platform.parse(b)
    assert pa.same_as(pb) and pb.same_as(pa)
    assert pa.key() == pb.key()


def test_v8_kept_in_str_when_given_and_not_invented() -> None:
    assert str(Platform.parse("linux/arm64/v8")) == "linux/arm64/v8"
    assert Platform.parse("linux/arm64/v8").variant == "v8"
    assert str(Platform.parse("linux/arm64")) == "linux/arm64"
    assert Platform.parse("linux/arm64").variant is None
    assert Platform.parse("linux/arm64/v8").to_dict() == {"architecture": "arm64", "os": "linux", "variant": "v8"}


def test_arm_variants_are_distinct_platforms() -> None:
    v6, v7 = Platform.parse("linux/arm/v6"), Platform.parse("linux/arm/v7")
    assert not v6.same_as(v7)
    assert Platform.parse("linux/arm").same_as(v7)
    # a fetched descriptor that leaves out arm's variant is arm/v7 too
    assert Platform.from_dict({"os": "linux", "architecture": "arm"}).same_as(v7)  # type: ignore[union-attr]


def test_arm64_v9_is_not_v8() -> None:
    assert not Platform.parse("linux/arm64/v9").same_as(Platform.parse("linux/arm64"))


@pytest.mark.parametrize(
    "text, reason",
    [
        ("linux/arm64/v7", "arm64 has no variant 'v7'"),
        ("linux/amd64/v9", "amd64 has no variant 'v9'"),
        ("linux/ppc64le/v2", "ppc64le has no variant 'v2'"),
        ("linux/s390x/v1", "s390x has no variant 'v1'"),
        ("linux/arm/v9", "arm has no variant 'v9'"),
        ("linux/arm64v8/v7", "v8 implied by the name contradicts v7"),
        ("linux/armhf/v6", "v7 implied by the name contradicts v6"),
        ("linux/armel/v7", "v6 implied by the name contradicts v7"),
    ],
)
def test_impossible_combinations(text: str, reason: str) -> None:
    with pytest.raises(InvalidPlatform) as info:
        Platform.parse(text)
    assert reason in str(info.value)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize(
    "text", ["", "   ", "linux", "nonsense", "linux//amd64", "linux/amd64/", "/amd64", "linux/amd64/v3/x", "lin ux/amd64", "linux/am$d64"]
)
def test_malformed(text: str) -> None:
    with pytest.raises(InvalidPlatform):
        Platform.parse(text)


def test_invalid_platform_is_a_usage_error() -> None:
    assert issubclass(InvalidPlatform, UsageError)


@pytest.mark.parametrize(
    "texts",
    [
        ["linux/arm64", "linux/arm64/v8"],
        ["aarch64", "arm64v8"],
        ["armhf", "linux/arm"],
        ["linux/arm/v7", "arm"],
        ["x86_64", "linux/amd64"],
        ["ppc64el", "linux/ppc64le"],
        ["i686", "linux/386"],
        ["linux/amd64", "linux/s390x", "LINUX/AMD64"],
    ],
)
def test_parse_all_refuses_duplicates_after_normalization(texts: list[str]) -> None:
    with pytest.raises(InvalidPlatform) as info:
        parse_all(texts)
    message = str(info.value)
    assert "duplicate platform" in message
    assert repr(texts[-1]) in message  # names the second spelling ...
    assert "same as" in message  # ... and the first


def test_parse_all_keeps_order_of_distinct_platforms() -> None:
    texts = ["linux/amd64", "linux/arm64/v8", "linux/arm/v7", "linux/arm/v6", "linux/ppc64le", "linux/s390x"]
    assert [str(p) for p in parse_all(texts)] == texts


FIVE = [
    # platform, docker-library namespace, uname -m
    ("linux/amd64", "amd64", "x86_64"),
    ("linux/arm64/v8", "arm64v8", "aarch64"),
    ("linux/arm/v7", "arm32v7", "armv7l"),
    ("linux/ppc64le", "ppc64le", "ppc64le"),
    ("linux/s390x", "s390x", "s390x"),
]


@pytest.mark.parametrize("text, namespace, machine", FIVE)
def test_namespace_and_uname_machine(text: str, namespace: str, machine: str) -> None:
    p = Platform.parse(text)
    assert p.namespace == namespace
    assert p.uname_machine == machine


def test_namespace_and_uname_of_other_arms_and_oses() -> None:
    assert Platform.parse("linux/arm64").namespace == "arm64v8"  # v8 implied
    assert Platform.parse("linux/arm/v6").namespace == "arm32v6"
    assert Platform.parse("linux/arm/v6").uname_machine == "armv6l"
    assert Platform.parse("linux/386").namespace == "i386"
    assert Platform.parse("windows/amd64").namespace == "winamd64"
    assert Platform.parse("darwin/arm64").namespace is None
    assert Platform.parse("linux/loong64").namespace is None


def test_from_dict_takes_fetched_platforms_as_they_are() -> None:
    unknown = Platform.from_dict({"architecture": "unknown", "os": "unknown"})
    assert unknown is not None and unknown.is_unknown
    assert str(unknown) == "unknown/unknown"
    assert unknown.namespace is None and unknown.uname_machine is None
    assert not Platform.parse("linux/amd64").is_unknown


@pytest.mark.parametrize("data", [None, {}, {"os": "linux"}, {"architecture": "amd64"}, [], "linux/amd64"])
def test_from_dict_without_os_and_architecture_is_none(data: object) -> None:
    assert Platform.from_dict(data) is None  # type: ignore[arg-type]


def test_from_dict_to_dict_round_trip_with_os_version_and_features() -> None:
    data = {
        "architecture": "amd64",
        "os": "windows",
        "os.version": "10.0.17763.5329",
        "os.features": ["win32k"],
    }
    p = Platform.from_dict(data)
    assert p is not None
    assert p.os_version == "10.0.17763.5329" and p.os_features == ("win32k",)
    assert p.to_dict() == data


def test_same_as_compares_os_version_only_when_both_have_it() -> None:
    a = Platform.from_dict({"os": "windows", "architecture": "amd64", "os.version": "10.0.1"})
    b = Platform.from_dict({"os": "windows", "architecture": "amd64", "os.version": "10.0.2"})
    bare = Platform.parse("windows/amd64")
    assert a is not None and b is not None
    assert not a.same_as(b)
    assert a.same_as(bare) and bare.same_as(b)


def test_with_returns_a_new_object() -> None:
    p = Platform.parse("linux/arm/v7")
    q = p.with_(variant="v6")
    assert str(p) == "linux/arm/v7" and str(q) == "linux/arm/v6"
    with pytest.raises(AttributeError):
        p.variant = "v5"  # type: ignore[misc]


@pytest.mark.parametrize(
    "a, b, expected",
    [
        (Platform("linux", "s390x"), Platform("linux", "arm64", "v8"), ("linux/s390x", "linux/arm64/v8")),
        (
            Platform("windows", "amd64", os_version="10.0.17763.1"),
            Platform("windows", "amd64", os_version="10.0.20348.2"),
            ("windows/amd64 (os.version 10.0.17763.1)", "windows/amd64 (os.version 10.0.20348.2)"),
        ),
        (
            Platform("linux", "amd64", os_features=("sse4",)),
            Platform("linux", "s390x"),
            ("linux/amd64 (os.features sse4)", "linux/s390x (os.features none)"),
        ),
        (
            Platform("windows", "amd64", os_version="1", os_features=("win32k",)),
            Platform("windows", "arm64", os_version="2", os_features=("win32k",)),
            ("windows/amd64 (os.version 1)", "windows/arm64 (os.version 2)"),
        ),
    ],
)
def test_contrast_shows_the_fields_that_differ(a, b, expected) -> None:
    assert contrast(a, b) == expected
