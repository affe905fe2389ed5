"""Requests and their order for `create --push` and `copy` of a five-platform list.

Counted through the fault proxy in front of a real registry. What is left out and what is
overlapped: `create --push` reads its sources while it reads the tag and, the tag being absent
(it cannot hold the list), asks for push access; an image whose blobs all mount is mounted and
put without a HEAD first; `copy` reads the children while it asks whether the target has the
index, puts the index under its tag only (not by digest first). What stays: no write before the
push-access answer (create) or before the target's answer about the index (copy), and an
identical run writes nothing.
"""

from __future__ import annotations

from collections import Counter

import pytest

from manifesto.jobs.copy import copy
from tests.support import ARCHES
from tests.support.cli import ok, pushed_digest
from tests.support.faultproxy import Delay, FaultProxy, Passed
from tests.cli.test_preflight import docker_login, one_error, target_requests


def _kind(r: Passed, target: str) -> str:
    """'METHOD what' for a request: what = tag, child, blob, mount, probe, session, source..."""
    if f"/v2/{target}/" not in r.path:
        return f"{r.method} source-{'blob' if '/blobs/' in r.path else 'manifest'}"
    if r.path.endswith("/blobs/uploads/"):
        return f"{r.method} {'mount' if 'mount=' in r.query else 'probe'}"
    if "/blobs/uploads/" in r.path:
        return f"{r.method} session"
    return f"{r.method} {'by-digest' if '/manifests/sha256:' in r.path else 'tag'}"


def _writes(log: list[Passed]) -> list[Passed]:
    return [r for r in log if r.method in ("PUT", "PATCH") or "mount=" in r.query]


@pytest.fixture(scope="module")
def source_list(registry, library_repos, module_cli) -> str:
    """A five-platform index, rt/list:1, to copy from."""
    ref = registry.ref("rt/list", "1")
    ok(module_cli("create", "--push", ref, *[library_repos[a].ref for a in ARCHES]))
    return "rt/list"


# ---- create --push ------------------------------------------------------------------------


def test_create_push_reads_its_tag_with_the_sources_and_asks_no_child_or_access_first(
    cli, registry, library_repos, unique_repo
):
    with FaultProxy(registry.host) as proxy:
        # the configs come back late: the tag read is answered first
        proxy.add(Delay(0.5), method="GET", path=r"/blobs/sha256:")
        sources = [proxy.ref(library_repos[a].repo, library_repos[a].tag) for a in ARCHES]
        digest = pushed_digest(cli("create", "--push", "--insecure", proxy.ref(unique_repo, "1"), *sources))
        log = proxy.requests()
    kinds = [_kind(r, unique_repo) for r in log]
    first_config = kinds.index("GET source-blob")
    assert kinds.index("HEAD tag") < first_config, kinds  # read while the sources are read
    last_read = max(i for i, k in enumerate(kinds) if k.startswith("GET source"))
    assert all(log.index(w) > last_read for w in _writes(log)), kinds  # every write after every read
    assert Counter(kinds) == {
        "GET source-manifest": 5, "GET source-blob": 5,  # each source, then its config
        "HEAD tag": 3,  # what it holds (preflight), again right before the PUT, read back after
        "POST mount": 10, "PUT by-digest": 5, "PUT tag": 1,  # no HEAD of a child, no access probe
    }, kinds  # fmt: skip
    assert digest.startswith("sha256:")


def test_an_identical_create_push_writes_nothing(cli, registry, library_repos, unique_repo):
    sources = [library_repos[a].ref for a in ARCHES]
    digest = pushed_digest(cli("create", "--push", registry.ref(unique_repo, "1"), *sources))
    with FaultProxy(registry.host) as proxy:
        sources = [proxy.ref(library_repos[a].repo, library_repos[a].tag) for a in ARCHES]
        result = cli("create", "--push", "--insecure", proxy.ref(unique_repo, "1"), *sources)
        log = proxy.requests()
    assert pushed_digest(result) == digest and "unchanged" in result.stderr
    assert [r for r in log if r.method in ("POST", "PUT", "PATCH", "DELETE")] == [], log


def test_create_push_without_push_access_writes_nothing(run_cli, tmp_home, token_registry, arch_images) -> None:
    from tests.support import push_library_repos

    sources = push_library_repos({a: arch_images[a] for a in ("amd64", "arm64")}, token_registry)
    docker_login(tmp_home, token_registry.host, *token_registry.creds)
    token_registry.token_server.configure(acl=lambda user, repo: {"pull"})
    mark = len(token_registry.log_text().splitlines())
    rc, _, err = run_cli("create", "--push", token_registry.ref("lists/no-push", "1"), *[r.ref for r in sources.values()])
    assert rc == 3, err
    assert f"push to {token_registry.host}/lists/no-push" in one_error(err)
    seen = target_requests(token_registry, "lists/no-push", mark)
    assert [r for r in seen if r.startswith(("PUT", "PATCH"))] == [], seen
    # the refused mounts and uploads made nothing there: no blob link, no upload, no repository
    assert not (token_registry.storage / "docker/registry/v2/repositories/lists/no-push").exists()


# ---- copy -----------------------------------------------------------------------------------


def test_copy_reads_the_children_while_asking_for_the_index_and_puts_it_once(registry, source_list, unique_repo):
    with FaultProxy(registry.host) as proxy:
        held = proxy.add(Delay(0.5), method="HEAD", path=r"/manifests/sha256:")  # does the target hold the index?
        digest = copy(proxy.ref(source_list, "1"), proxy.ref(unique_repo, "1"), insecure=True)
        log = proxy.requests()
    assert held.hits == 1
    kinds = [_kind(r, unique_repo) for r in log]
    answered = kinds.index("HEAD by-digest")
    assert kinds[:answered].count("GET source-manifest") == 6, kinds  # the children were read meanwhile
    assert all(log.index(w) > answered for w in _writes(log)), kinds  # nothing written before the answer
    assert Counter(kinds) == {
        "GET source-manifest": 6,  # the index, its five children
        "HEAD by-digest": 1,  # the index: nothing else is asked for
        "POST mount": 10, "PUT by-digest": 5,  # the children: no HEAD of any, no PUT of the index by digest
        "HEAD tag": 2, "PUT tag": 1,  # right before the PUT, read back after
    }, kinds  # fmt: skip
    with registry.client() as http:
        r = http.head(f"/v2/{unique_repo}/manifests/{digest}", headers={"Accept": "application/vnd.oci.image.index.v1+json"})
        assert r.status_code == 200 and r.headers["docker-content-digest"] == str(digest)


def test_copy_of_an_index_the_target_holds_writes_only_the_tag(registry, source_list, unique_repo):
    copy(registry.ref(source_list, "1"), registry.ref(unique_repo, "1"), insecure=True)
    with FaultProxy(registry.host) as proxy:
        copy(proxy.ref(source_list, "1"), proxy.ref(unique_repo, "2"), insecure=True)
        log = proxy.requests()
    kinds = [_kind(r, unique_repo) for r in log]
    assert [k for k in kinds if not k.startswith(("GET", "HEAD"))] == ["PUT tag"], kinds
    assert "POST mount" not in kinds and "PUT by-digest" not in kinds
