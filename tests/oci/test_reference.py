"""Image references: Docker Hub defaults, registries with ports and IPv6, exact error reasons."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from manifesto.cli.main import exit_code
from manifesto.errors import InvalidReference, UsageError
from manifesto.oci.digest import Digest
from manifesto.oci.reference import Reference, is_loopback_host, split_host_port

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    "text, registry, repository, tag, digest, full",
    [
        ("golang", "docker.io", "library/golang", None, None, "docker.io/library/golang"),
        ("golang:alpine", "docker.io", "library/golang", "alpine", None, "docker.io/library/golang:alpine"),
        ("library/golang", "docker.io", "library/golang", None, None, "docker.io/library/golang"),
        ("arm64v8/busybox:1", "docker.io", "arm64v8/busybox", "1", None, "docker.io/arm64v8/busybox:1"),
        ("docker.io/golang", "docker.io", "library/golang", None, None, "docker.io/library/golang"),
        ("index.docker.io/golang", "docker.io", "library/golang", None, None, "docker.io/library/golang"),
        ("index.docker.io/library/golang:1.22", "docker.io", "library/golang", "1.22", None, "docker.io/library/golang:1.22"),
        ("registry-1.docker.io/foo/bar", "docker.io", "foo/bar", None, None, "docker.io/foo/bar"),
        ("localhost/a", "localhost", "a", None, None, "localhost/a"),
        ("localhost:5000/a/b/c:v1.2", "localhost:5000", "a/b/c", "v1.2", None, "localhost:5000/a/b/c:v1.2"),
        ("127.0.0.1:5000/x", "127.0.0.1:5000", "x", None, None, "127.0.0.1:5000/x"),
        ("[::1]:5000/a:b", "[::1]:5000", "a", "b", None, "[::1]:5000/a:b"),
        ("[::1]/a", "[::1]", "a", None, None, "[::1]/a"),
        ("example.com:443/team/app", "example.com:443", "team/app", None, None, "example.com:443/team/app"),
        ("ghcr.io/o/r:latest", "ghcr.io", "o/r", "latest", None, "ghcr.io/o/r:latest"),
        (f"golang@{D}", "docker.io", "library/golang", None, D, f"docker.io/library/golang@{D}"),
        (f"golang:1.22@{D}", "docker.io", "library/golang", "1.22", D, f"docker.io/library/golang:1.22@{D}"),
        (f"localhost:5000/a:t@{D}", "localhost:5000", "a", "t", D, f"localhost:5000/a:t@{D}"),
        ("a__b/c-d.e--f:T_ag-1.x", "docker.io", "a__b/c-d.e--f", "T_ag-1.x", None, "docker.io/a__b/c-d.e--f:T_ag-1.x"),
    ],
)
def test_parse_valid(text: str, registry: str, repository: str, tag: str | None, digest: str | None, full: str) -> None:
    ref = Reference.parse(text)
    assert ref.registry == registry
    assert ref.repository == repository
    assert ref.tag == tag
    assert (str(ref.digest) if ref.digest else None) == digest
    assert str(ref) == full
    assert Reference.parse(str(ref)) == ref
    assert Reference.parse(ref.familiar) == ref


def test_reference_is_digest_when_both_given_else_tag_else_latest() -> None:
    assert Reference.parse(f"golang:1.22@{D}").reference == D
    assert Reference.parse("golang:1.22").reference == "1.22"
    assert Reference.parse("golang").reference == "latest"


@pytest.mark.parametrize(
    "text, reason",
    [
        ("Golang", "repository name must be lowercase"),
        ("example.com/Team/app", "repository name must be lowercase"),
        ("golang:-bad", "bad tag '-bad'"),
        ("golang:.bad", "bad tag '.bad'"),
        ("golang:a/b", "bad registry port 'a'"),  # `golang:a` is read as a registry host:port
        ("golang:" + "t" * 129, "bad tag"),
        ("golang:", "bad tag ''"),
        ("example.com:99999/a", "bad registry port '99999'"),
        ("example.com:0/a", "bad registry port '0'"),
        ("example.com:abc/a", "bad registry port 'abc'"),
        ("example.com:/a", "bad registry port ''"),
        ("exa_mple.com/a", "bad registry host 'exa_mple.com'"),
        ("[zz]:5000/a", "bad registry address '[zz]'"),
        ("", "empty or surrounded by spaces"),
        ("golang ", "empty or surrounded by spaces"),
        (" golang", "empty or surrounded by spaces"),
        ("golang\n", "empty or surrounded by spaces"),
        ("example.com/" + "a" * 300, "name longer than 255 characters"),
        ("example.com/", "missing repository name"),
        (":tag", "missing repository name"),
        ("example.com/a//b", "bad repository component ''"),
        ("example.com/a/-b", "bad repository component '-b'"),
        ("example.com/a_", "bad repository component 'a_'"),
        ("golang@sha256:abc", "invalid digest"),
        ("golang@md5:" + "a" * 32, "unsupported algorithm"),
        ("golang@", "invalid digest"),
    ],
)
def test_parse_invalid_names_the_reason(text: str, reason: str) -> None:
    with pytest.raises(InvalidReference) as info:
        Reference.parse(text)
    message = str(info.value)
    assert message.startswith(f"invalid reference {text!r}: ")
    assert reason in message
    assert "\n" not in message.replace(repr(text), "")  # one line (bar the quoted input)


def test_name_length_counts_registry_and_repository() -> None:
    ok = "example.com/" + "a" * (255 - len("example.com/"))
    assert Reference.parse(ok).repository == "a" * (255 - len("example.com/"))
    with pytest.raises(InvalidReference, match="longer than 255"):
        Reference.parse(ok + "a")


def test_invalid_reference_is_a_usage_error() -> None:
    assert issubclass(InvalidReference, UsageError)
    assert exit_code(InvalidReference("x")) == 2


@pytest.mark.parametrize(
    "text, familiar",
    [
        ("docker.io/library/golang:alpine", "golang:alpine"),
        ("index.docker.io/library/golang", "golang"),
        ("docker.io/arm64v8/busybox:1", "arm64v8/busybox:1"),
        ("localhost:5000/a:b", "localhost:5000/a:b"),
        (f"ghcr.io/o/r@{D}", f"ghcr.io/o/r@{D}"),
        # the short form must read back as the same reference
        ("docker.io/library/a/b", "library/a/b"),
        ("docker.io/0.0/x:1", "docker.io/0.0/x:1"),
    ],
)
def test_familiar(text: str, familiar: str) -> None:
    ref = Reference.parse(text)
    assert ref.familiar == familiar
    assert Reference.parse(ref.familiar) == ref


@pytest.mark.parametrize(
    "text, api_host",
    [
        ("golang", "registry-1.docker.io"),
        ("index.docker.io/x/y", "registry-1.docker.io"),
        ("localhost:5000/a", "localhost:5000"),
        ("[::1]:5000/a", "[::1]:5000"),
        ("quay.io/a/b", "quay.io"),
    ],
)
def test_api_host(text: str, api_host: str) -> None:
    assert Reference.parse(text).api_host == api_host


@pytest.mark.parametrize(
    "text, loopback",
    [
        ("localhost/a", True),
        ("localhost:5000/a", True),
        ("127.0.0.1:5000/a", True),
        ("127.1.2.3/a", True),
        ("[::1]:5000/a", True),
        ("[::1]/a", True),
        ("10.0.0.1:5000/a", False),
        ("192.168.1.1/a", False),
        ("example.com/a", False),
        ("example.com:5000/a", False),
        ("golang", False),
        ("notlocalhost.com/a", False),
    ],
)
def test_is_loopback(text: str, loopback: bool) -> None:
    assert Reference.parse(text).is_loopback is loopback


def test_is_loopback_host_directly() -> None:
    assert is_loopback_host("LOCALHOST:5000")
    assert not is_loopback_host("registry.localhost")  # resolved by DNS: may be anywhere
    assert not is_loopback_host("[::2]:5000")


@pytest.mark.parametrize(
    "registry, parts",
    [
        ("example.com", ("example.com", None)),
        ("example.com:5000", ("example.com", "5000")),
        ("[::1]:5000", ("[::1]", "5000")),
        ("[::1]", ("[::1]", None)),
    ],
)
def test_split_host_port(registry: str, parts: tuple[str, str | None]) -> None:
    assert split_host_port(registry) == parts


def test_with_tag_with_digest_in_repository() -> None:
    ref = Reference.parse(f"localhost:5000/a:1@{D}")
    assert str(ref.with_tag("2")) == "localhost:5000/a:2"
    assert str(ref.with_digest(Digest.parse(D))) == f"localhost:5000/a@{D}"
    other = Reference.parse("example.com/b:9")
    assert str(ref.in_repository(other)) == f"example.com/b:1@{D}"
    with pytest.raises(InvalidReference, match="invalid tag"):
        ref.with_tag("-x")
    assert ref.tag == "1"  # unchanged: frozen


_component = st.from_regex(r"[a-z0-9]{1,8}(?:[._-][a-z0-9]{1,8}){0,2}", fullmatch=True)
_tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
_registry = st.sampled_from([None, "localhost", "localhost:5000", "127.0.0.1:5000", "[::1]:5000", "example.com", "index.docker.io"])


@given(_registry, st.lists(_component, min_size=1, max_size=3), st.none() | _tag, st.none() | st.binary(max_size=8))
def test_generated_references_round_trip(registry: str | None, path: list[str], tag: str | None, blob: bytes | None) -> None:
    if registry is None:
        assume("." not in path[0])  # a first component with a dot names a registry
    text = (f"{registry}/" if registry else "") + "/".join(path)
    if tag:
        text += f":{tag}"
    if blob is not None:
        text += f"@{Digest.of(blob)}"
    ref = Reference.parse(text)
    assert ref.tag == tag
    assert ref.digest == (Digest.of(blob) if blob is not None else None)
    assert Reference.parse(str(ref)) == ref
    assert Reference.parse(ref.familiar) == ref
