"""Digests: strict parsing, hashing exact bytes, and mismatches reported as DigestMismatch."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from manifesto.cli.main import exit_code
from manifesto.errors import (
    ContentError,
    DigestMismatch,
    InvalidDigest,
    ManifestoError,
    UsageError,
)
from manifesto.oci.digest import Digest

HEX64 = "0123456789abcdef" * 4
HEX128 = HEX64 * 2
HELLO = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"


@pytest.mark.parametrize(
    "text, algorithm, hex_",
    [
        (f"sha256:{HEX64}", "sha256", HEX64),
        (f"sha512:{HEX128}", "sha512", HEX128),
        (HELLO, "sha256", HELLO.split(":")[1]),
    ],
)
def test_parse_valid_round_trips(text: str, algorithm: str, hex_: str) -> None:
    d = Digest.parse(text)
    assert (d.algorithm, d.hex) == (algorithm, hex_)
    assert str(d) == text
    assert Digest.parse(str(d)) == d


@pytest.mark.parametrize(
    "text, reason",
    [
        (f"sha256:{HEX64.upper()}", "lowercase hex"),  # uppercase hex never matches a registry's digest
        (f"SHA256:{HEX64}", "expected algorithm:hex"),  # uppercase algorithm
        ("sha256:abc", "sha256 needs 64 lowercase hex digits"),  # short
        (f"sha256:{HEX64}0", "sha256 needs 64"),  # long
        (f"sha512:{HEX64}", "sha512 needs 128"),  # sha256 length under sha512
        (f"md5:{HEX64[:32]}", "unsupported algorithm 'md5'"),
        (f"blake3:{HEX64}", "unsupported algorithm 'blake3'"),
        (f"sha256{HEX64}", "expected algorithm:hex"),  # missing colon
        (f":{HEX64}", "expected algorithm:hex"),  # missing algorithm
        ("sha256:", "expected algorithm:hex"),  # missing hex
        (f"sha256:{'g' * 64}", "lowercase hex"),  # not hex
        ("", "expected algorithm:hex"),
        (f" sha256:{HEX64}", "expected algorithm:hex"),
        (f"sha256:{HEX64} ", "expected algorithm:hex"),
        (f"sha256:{HEX64}\n", "expected algorithm:hex"),  # `$` would let a trailing newline through
        (f"sha256:{HEX64}@x", "expected algorithm:hex"),
    ],
)
def test_parse_invalid_names_the_problem(text: str, reason: str) -> None:
    with pytest.raises(InvalidDigest) as info:
        Digest.parse(text)
    assert reason in str(info.value)
    assert repr(text) in str(info.value)  # the message quotes what the user gave


def test_parse_none_is_invalid_not_a_crash() -> None:
    with pytest.raises(InvalidDigest):
        Digest.parse(None)  # type: ignore[arg-type]


def test_invalid_digest_is_a_usage_error() -> None:
    assert issubclass(InvalidDigest, UsageError)
    assert exit_code(InvalidDigest("x")) == 2


def test_of_hashes_exact_bytes() -> None:
    assert str(Digest.of(b"hello")) == HELLO
    assert Digest.of(b"hello\n") != Digest.of(b"hello")
    assert Digest.of(b"x", "sha512").hex == hashlib.sha512(b"x").hexdigest()


def test_verify_accepts_matching_bytes() -> None:
    Digest.parse(HELLO).verify(b"hello")


def test_verify_raises_digest_mismatch_naming_both_digests() -> None:
    want = Digest.parse(HELLO)
    with pytest.raises(DigestMismatch) as info:
        want.verify(b"hellO", "blob example.com/a")
    message = str(info.value)
    assert message.startswith("blob example.com/a: digest mismatch")
    assert HELLO in message
    assert str(Digest.of(b"hellO")) in message


def test_digest_mismatch_is_a_content_error() -> None:
    assert issubclass(DigestMismatch, ContentError)
    assert issubclass(DigestMismatch, ManifestoError)


def test_hasher_streams_to_the_same_digest() -> None:
    want = Digest.of(b"abcdef")
    h = want.hasher()
    for part in (b"ab", b"cd", b"ef"):
        h.update(part)
    assert h.hexdigest() == want.hex


def test_short_form_and_ordering() -> None:
    a, b = Digest.parse(f"sha256:{'a' * 64}"), Digest.parse(f"sha256:{'b' * 64}")
    assert a.short == "sha256:" + "a" * 12
    assert sorted([b, a]) == [a, b]
    assert len({a, Digest.parse(str(a))}) == 1  # hashable, equal by value


@given(st.binary(max_size=256))
def test_of_then_parse_then_verify(data: bytes) -> None:
    d = Digest.of(data)
    again = Digest.parse(str(d))
    assert again == d
    again.verify(data)
