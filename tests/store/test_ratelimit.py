"""Pull rate limits: the headers read (Docker Hub's form), a warning once per run when a run is
about to run out, and `manifesto ratelimit REF` from exactly one HEAD.

A real registry sends no rate-limit headers, so a fault proxy in front of it adds Docker Hub's
(tests/support/faultproxy.py: Headers) and logs every request that passes, which is how "one
HEAD" is counted.
"""

from __future__ import annotations

import json

import pytest

from manifesto.jobs.copy import copy
from manifesto.store.registry.ratelimit import RateLimit, describe_window, parse
from tests.support.faultproxy import FaultProxy, Headers

HUB = {"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "76;w=21600", "docker-ratelimit-source": "192.0.2.7"}
LOW = {**HUB, "ratelimit-remaining": "3;w=21600"}


# -- the headers -----------------------------------------------------------------------------


def test_parse_docker_hub_headers() -> None:
    assert parse(HUB) == RateLimit(100, 76, 21600, "192.0.2.7")


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"ratelimit-limit": "garbage", "ratelimit-remaining": ""}, None),
        ({"ratelimit-limit": "5000"}, RateLimit(5000, None, None, None)),
        ({"ratelimit-remaining": "0;w=60"}, RateLimit(None, 0, 60, None)),
        # the IETF draft's list of policies: the first number, the first window named
        ({"ratelimit-limit": "100, 100;w=21600, 1000;w=86400", "ratelimit-remaining": "99"}, RateLimit(100, 99, 21600)),
        ({"ratelimit-limit": "100;w=x", "ratelimit-remaining": "7;w=3600"}, RateLimit(100, 7, 3600)),
    ],
)
def test_parse_partial_and_odd_headers(headers: dict, expected: RateLimit | None) -> None:
    assert parse(headers) == expected


@pytest.mark.parametrize(
    ("limit", "remaining", "low"),
    [(100, 76, False), (100, 10, False), (100, 9, True), (5000, 499, True), (5000, 500, False), (None, 3, True), (200, None, False)],
)
def test_running_out_is_under_ten_pulls_or_a_tenth(limit, remaining, low) -> None:
    assert RateLimit(limit, remaining).low is low


def test_window_for_people() -> None:
    assert [describe_window(s) for s in (21600, 3600, 120, 90, None)] == ["6h", "1h", "2min", "90s", "unknown window"]


# -- against the real registry, through a header-adding proxy -------------------------------


@pytest.fixture
def image(registry, arch_images, unique_repo) -> tuple[str, str]:
    """(repository, tag) of an amd64 busybox image in the registry."""
    a = arch_images["amd64"]
    copy(f"oci:{a.layout}:{a.tag}", f"{registry.host}/{unique_repo}:1")
    return unique_repo, "1"


def manifest_requests(proxy: FaultProxy, method: str) -> list:
    return proxy.requests(method, r"/manifests/")


def test_ratelimit_shows_the_limit_from_one_head(registry, image, run_cli) -> None:
    repo, tag = image
    with FaultProxy(registry.host) as proxy:
        proxy.add(Headers(HUB), path=r"/manifests/")
        rc, out, err = run_cli("ratelimit", proxy.ref(repo, tag))
        heads, gets = manifest_requests(proxy, "HEAD"), manifest_requests(proxy, "GET")
    assert rc == 0, err
    assert len(heads) == 1 and gets == []
    assert out.splitlines() == [
        f"Registry:  {proxy.host}",
        "Limit:     100",
        "Remaining: 76",
        "Window:    6h (21600 s)",
        "Source:    192.0.2.7",
    ]
    assert "warning" not in err


def test_ratelimit_json_and_running_out(registry, image, run_cli) -> None:
    repo, tag = image
    with FaultProxy(registry.host) as proxy:
        proxy.add(Headers(LOW), path=r"/manifests/")
        rc, out, err = run_cli("ratelimit", "--json", proxy.ref(repo, tag))
        assert len(manifest_requests(proxy, "HEAD")) == 1
    assert rc == 0, err
    assert err == ""  # what it shows is the answer, not a warning
    assert json.loads(out) == {
        "registry": proxy.host, "announced": True, "limit": 100, "remaining": 3, "window": 21600, "source": "192.0.2.7",
    }  # fmt: skip


def test_ratelimit_without_headers_says_so_and_exits_0(registry, image, run_cli) -> None:
    repo, tag = image
    with FaultProxy(registry.host) as proxy:
        rc, out, err = run_cli("ratelimit", proxy.ref(repo, tag))
        assert len(manifest_requests(proxy, "HEAD")) == 1
    assert (rc, err) == (0, "")
    assert out.strip() == f"{proxy.host}: no rate limit announced (the registry sends no ratelimit-* headers)"


def test_ratelimit_of_a_missing_manifest_is_not_found(registry, image, run_cli) -> None:
    repo, _ = image
    rc, out, err = run_cli("ratelimit", f"{registry.host}/{repo}:nope")
    assert rc == 4 and out == ""
    assert err.startswith("manifesto: error: ") and len(err.splitlines()) == 1


def test_a_run_running_out_is_warned_once(registry, image, run_cli, unique_repo) -> None:
    # copy reads many manifests, each answered with "3 of 100 left": one warning, not one each
    repo, tag = image
    with FaultProxy(registry.host) as proxy:
        proxy.add(Headers(LOW), path=r"/manifests/")
        rc, out, err = run_cli("copy", proxy.ref(repo, tag), proxy.ref(f"{unique_repo}-copy", "1"))
        answered = len(manifest_requests(proxy, None))
    assert rc == 0, err
    assert answered >= 3
    warnings = [line for line in err.splitlines() if "rate limit" in line]
    assert len(warnings) == 1, err
    assert warnings[0].startswith("manifesto: warning:")
    for fact in ("remaining=3", "limit=100", "window=6h", proxy.host):
        assert fact in warnings[0]


def test_a_run_with_pulls_to_spare_is_not_warned(registry, image, run_cli, unique_repo) -> None:
    repo, tag = image
    with FaultProxy(registry.host) as proxy:
        proxy.add(Headers(HUB), path=r"/manifests/")
        rc, out, err = run_cli("copy", proxy.ref(repo, tag), proxy.ref(f"{unique_repo}-copy", "1"))
    assert rc == 0, err
    assert "rate limit" not in err
