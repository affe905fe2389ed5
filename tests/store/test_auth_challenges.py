"""WWW-Authenticate parsing (RFC 7235 §4.1) on headers real registries send, and scope merging."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from manifesto.store.registry.auth import (
    Challenge,
    merge_scopes,
    parse_challenges,
    repository_scope,
)


def _pairs(header: str) -> list[tuple[str, dict[str, str]]]:
    return [(c.scheme, c.params) for c in parse_challenges(header)]


@pytest.mark.parametrize(
    "header, expected",
    [
        # Docker Hub
        (
            'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/golang:pull"',
            [("bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io", "scope": "repository:library/golang:pull"})],
        ),
        # distribution with htpasswd
        ('Basic realm="Registry Realm"', [("basic", {"realm": "Registry Realm"})]),
        # GHCR-style, insufficient scope with an error parameter
        (
            'Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:o/r:pull,push",error="insufficient_scope"',
            [("bearer", {"realm": "https://ghcr.io/token", "service": "ghcr.io", "scope": "repository:o/r:pull,push", "error": "insufficient_scope"})],
        ),
        # two challenges in one header
        ('Basic realm="x", Bearer realm="y",service="z"', [("basic", {"realm": "x"}), ("bearer", {"realm": "y", "service": "z"})]),
        ('Bearer realm="y",service="z", Basic realm="x"', [("bearer", {"realm": "y", "service": "z"}), ("basic", {"realm": "x"})]),
        # escaped quote and comma inside a quoted string
        ('Bearer realm="a\\"b,c",service="s"', [("bearer", {"realm": 'a"b,c', "service": "s"})]),
        ('Bearer realm="back\\\\slash"', [("bearer", {"realm": "back\\slash"})]),
        ('Basic realm="x, Bearer realm=y"', [("basic", {"realm": "x, Bearer realm=y"})]),
        # token68
        ("Basic abc==", [("basic", {})]),
        ("Basic abc==, Bearer realm=y", [("basic", {}), ("bearer", {"realm": "y"})]),
        # unquoted values (RFC tokens), and bare URLs some registries send unquoted
        ("Bearer realm=y, service=z", [("bearer", {"realm": "y", "service": "z"})]),
        ("Bearer realm=https://auth.example.com/token,service=example.com", [("bearer", {"realm": "https://auth.example.com/token", "service": "example.com"})]),
        # odd spacing and case
        ('  Bearer   realm = "y" ,  service="z"  ', [("bearer", {"realm": "y", "service": "z"})]),
        ('bearer REALM="x"', [("bearer", {"realm": "x"})]),
        ('BEARER realm="x",,service="y"', [("bearer", {"realm": "x", "service": "y"})]),
        ('Bearer\trealm="x",\tservice="y"', [("bearer", {"realm": "x", "service": "y"})]),
        # a scheme alone, and several
        ("Basic", [("basic", {})]),
        ('Basic, Bearer realm="r"', [("basic", {}), ("bearer", {"realm": "r"})]),
        ("Negotiate", [("negotiate", {})]),
        # empty value, unterminated quote: take what is there
        ('Bearer realm=""', [("bearer", {"realm": ""})]),
        ('Bearer realm="unterminated', [("bearer", {"realm": "unterminated"})]),
        ("", []),
        ("   ", []),
    ],
)
def test_parse_challenges(header: str, expected: list[tuple[str, dict[str, str]]]) -> None:
    assert _pairs(header) == expected


def test_scopes_are_space_separated() -> None:
    (ch,) = parse_challenges('Bearer realm="r",scope="repository:a:pull repository:b:pull,push"')
    assert ch.scopes == frozenset({"repository:a:pull", "repository:b:pull,push"})
    assert Challenge("bearer").scopes == frozenset()


_value = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@given(_value, _value, _value)
def test_any_quoted_values_round_trip(realm: str, service: str, scope: str) -> None:
    header = f"Bearer realm={_quote(realm)},service={_quote(service)}, scope={_quote(scope)}, Basic realm={_quote(service)}"
    assert _pairs(header) == [
        ("bearer", {"realm": realm, "service": service, "scope": scope}),
        ("basic", {"realm": service}),
    ]


# ---- scopes -----------------------------------------------------------------------------------


def test_repository_scope() -> None:
    assert repository_scope("library/golang", "pull") == "repository:library/golang:pull"
    assert repository_scope("a", "pull", "push") == "repository:a:pull,push"


def test_actions_compare_as_sets() -> None:
    assert merge_scopes({"repository:a:push,pull"}) == merge_scopes({"repository:a:pull,push"})
    assert merge_scopes({"repository:a:push,pull"}) == frozenset({"repository:a:pull,push"})


def test_same_resource_scopes_merge() -> None:
    merged = merge_scopes({"repository:a:pull"}, {"repository:a:push"}, {"repository:b:pull"})
    assert merged == frozenset({"repository:a:pull,push", "repository:b:pull"})


def test_merge_dedupes_actions_and_drops_empty_ones() -> None:
    assert merge_scopes({"repository:a:pull,pull,", "repository:a:pull"}) == frozenset({"repository:a:pull"})


def test_repository_names_with_a_port_keep_their_colons() -> None:
    # the resource is everything before the last colon
    assert merge_scopes({"repository:localhost:5000/a:pull"}, {"repository:localhost:5000/a:push"}) == frozenset(
        {"repository:localhost:5000/a:pull,push"}
    )


def test_other_resource_types_pass_through() -> None:
    assert merge_scopes({"registry:catalog:*"}) == frozenset({"registry:catalog:*"})


def test_merge_of_nothing_is_empty() -> None:
    assert merge_scopes() == frozenset()
    assert merge_scopes(set()) == frozenset()
