"""End to end: login/logout, credentials, Basic and Bearer-token auth, and secrets in logs.

Registries: htpasswd (Basic) and token (a real JWT token server with per-user ACLs, a request
log, configurable token lifetime). CLI runs are subprocesses in a private HOME with the file
login store (MANIFESTO_KEYRING=file); the token-expiry and mount-fallback checks also drive
the library in-process (RegistryClient + Credential), where time and the token cache are
observable.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from manifesto.oci.descriptor import Descriptor
from manifesto.oci.digest import Digest
from manifesto.store.registry.auth import Authenticator
from manifesto.store.registry.client import RegistryClient
from manifesto.store.registry.lookup import Credential
from tests.support import inspect_raw, push_library_repos
from tests.support.cli import ok, pushed_digest, sha256_of
from tests.support.tokenserver import default_acl

ALICE = ("alice", "alice-secret")
BOB = ("bob", "bob-secret")


def basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def write_docker_config(tmp_home: Any, host: str, user: str, password: str) -> None:
    (tmp_home.docker_config / "config.json").write_text(
        json.dumps({"auths": {host: {"auth": basic(user, password)}}})
    )


def credentials_file(tmp_home: Any) -> Path:
    return tmp_home.config / "manifesto" / "credentials.json"


def stored_hosts(tmp_home: Any) -> set[str]:
    path = credentials_file(tmp_home)
    if not path.exists():
        return set()
    return set(json.loads(path.read_text())["logins"])


@pytest.fixture(scope="module")
def basic_libs(htpasswd_registry, arch_images):
    """amd64/busybox:1 and arm64v8/busybox:1 in the htpasswd registry."""
    return push_library_repos({a: arch_images[a] for a in ("amd64", "arm64")}, htpasswd_registry)


@pytest.fixture(scope="module")
def token_libs(_token_registry_module, arch_images):
    """amd64/busybox:1 and arm64v8/busybox:1 in the token registry (pushed as alice)."""
    return push_library_repos({a: arch_images[a] for a in ("amd64", "arm64")}, _token_registry_module, creds=ALICE)


@pytest.fixture
def issued_tokens(token_registry, monkeypatch) -> list[str]:
    """Every token the token server signs during the test."""
    ts = token_registry.token_server
    tokens: list[str] = []
    original = ts.issue

    def issue(*args: Any, **kwargs: Any) -> str:
        token = original(*args, **kwargs)
        tokens.append(token)
        return token

    monkeypatch.setattr(ts, "issue", issue)
    return tokens


# ---------------------------------------------------------------------------------------------
# 8a. htpasswd: login, logout, docker config


def test_login_push_logout_basic(cli, htpasswd_registry, basic_libs, unique_repo, tmp_home, probe, one_line_error):
    reg = htpasswd_registry
    target = reg.ref(unique_repo, "v1")
    sources = [basic_libs[a].ref for a in ("amd64", "arm64")]
    one_line_error(cli("create", target, *sources), 3, "manifesto login")

    out = ok(cli("login", "--username", "alice", "--password-stdin", reg.host, input="alice-secret\n"))
    assert "Login Succeeded" in out
    assert stored_hosts(tmp_home) == {reg.host}
    assert credentials_file(tmp_home).stat().st_mode & 0o077 == 0, "credentials file readable by others"

    ok(cli("create", target, *sources))
    digest = pushed_digest(cli("push", "--purge", target))
    assert sha256_of(inspect_raw(target, reg)) == digest
    probe(reg).assert_complete(unique_repo, inspect_raw(target, reg))
    assert digest in ok(cli("inspect", target))  # remote now (purged draft), with the stored login

    out = ok(cli("logout", reg.host))
    assert "Removing login credentials" in out
    assert reg.host not in stored_hosts(tmp_home)
    one_line_error(cli("inspect", target), 3)
    assert "Not logged in" in ok(cli("logout", reg.host))


def test_login_wrong_password_stores_nothing(cli, htpasswd_registry, tmp_home, one_line_error):
    reg = htpasswd_registry
    rc, out, err = cli("login", "-u", "alice", "--password-stdin", reg.host, input="wrong-password\n")
    one_line_error((rc, out, err), 3, reg.host)
    assert "Login Succeeded" not in out
    assert stored_hosts(tmp_home) == set()
    one_line_error(cli("login", "-u", "mallory", "--password-stdin", reg.host, input="x-secret\n"), 3)
    assert stored_hosts(tmp_home) == set()


def test_docker_config_auths_are_used(cli, htpasswd_registry, basic_libs, unique_repo, tmp_home):
    reg = htpasswd_registry
    write_docker_config(tmp_home, reg.host, *BOB)
    target = reg.ref(unique_repo, "v1")
    out = ok(cli("inspect", basic_libs["arm64"].ref))
    assert basic_libs["arm64"].digest in out
    ok(cli("create", target, basic_libs["amd64"].ref, basic_libs["arm64"].ref))
    digest = pushed_digest(cli("push", target))
    assert sha256_of(inspect_raw(target, reg)) == digest
    assert stored_hosts(tmp_home) == set(), "docker's config was copied into manifesto's store"

    # `manifesto login` wins over docker's config
    write_docker_config(tmp_home, reg.host, "bob", "stale-password")
    ok(cli("login", "-u", "alice", "--password-stdin", reg.host, input="alice-secret"))
    assert basic_libs["amd64"].digest in ok(cli("inspect", basic_libs["amd64"].ref))
    ok(cli("logout", reg.host))
    rc, _, err = cli("inspect", basic_libs["amd64"].ref)
    assert rc == 3, "the stale docker config entry should be used (and refused) after logout"


# ---------------------------------------------------------------------------------------------
# 8b. token auth


def test_token_push_with_least_privilege(cli, token_registry, token_libs, unique_repo, probe):
    reg, ts = token_registry, token_registry.token_server
    sources = {lib.repo for lib in token_libs.values()}

    def acl(user: str | None, repo: str) -> set[str]:
        if user == "bob":
            if repo == unique_repo:
                return {"pull", "push"}
            return {"pull"} if repo in sources else set()
        return default_acl(user, repo) if user else set()

    ts.configure(acl=acl, allow_anonymous=False)
    ok(cli("login", "-u", "bob", "--password-stdin", reg.host, input="bob-secret"))
    target = reg.ref(unique_repo, "v1")
    ok(cli("create", target, *[lib.ref for lib in token_libs.values()]))
    p = probe(reg, ALICE)
    mark = p.mark()
    digest = pushed_digest(cli("push", target))
    log = ts.requests  # before skopeo (as alice) adds its own

    raw = inspect_raw(target, reg, ALICE)
    assert sha256_of(raw) == digest
    p.assert_complete(unique_repo, raw)
    assert log and all(r.user == "bob" and r.status == 200 for r in log), log
    assert any("push" in r.granted.get(f"repository:{unique_repo}", ()) for r in log)
    assert not any(r.wants(src, "push") for r in log for src in sources), "asked for push on a source repo"
    mounts = [r for r in p.requests(since=mark) if "mount=" in r.query]
    assert len(mounts) == 4 and all(r.status == 201 for r in mounts), mounts


def test_mount_refused_for_scope_falls_back_to_upload(cli, token_registry, token_libs, unique_repo, probe, monkeypatch):
    """A token for the mount lacks pull on the source (401 insufficient_scope): upload instead.

    The token server grants pull on a source repository only in tokens that do not also
    carry push on the target, as registries with per-repository token audiences do, so
    every mount is refused while plain reads of the source still work.
    """
    reg, ts = token_registry, token_registry.token_server
    target_key = f"repository:{unique_repo}"
    original = ts.grant

    def grant(user, requested):
        granted = original(user, requested)
        if "push" in requested.get(target_key, ()):
            granted = {k: v for k, v in granted.items() if k == target_key}
        return granted

    monkeypatch.setattr(ts, "grant", grant)
    target = reg.ref(unique_repo, "v1")
    ok(cli("login", "-u", "alice", "--password-stdin", reg.host, input="alice-secret"))
    ok(cli("create", target, *[lib.ref for lib in token_libs.values()]))
    p = probe(reg, ALICE)
    mark = p.mark()
    digest = pushed_digest(cli("push", target))

    raw = inspect_raw(target, reg, ALICE)
    assert sha256_of(raw) == digest
    p.assert_complete(unique_repo, raw)
    log = p.requests(since=mark)
    mounts = [r for r in log if "mount=" in r.query]
    assert mounts and all(r.status == 401 for r in mounts), f"mount not refused: {mounts}"
    mounted_digests = {re.search(r"mount=([^&]+)", r.query)[1] for r in mounts}
    assert len(mounted_digests) == 4, "each blob should be tried by mount once"
    uploads = [r for r in log if r.method == "PUT" and r.path.startswith(f"/v2/{unique_repo}/blobs/uploads/")]
    assert len(uploads) == 4 and all(r.status == 201 for r in uploads), uploads
    refused = [r for r in ts.requests if r.wants(unique_repo, "push") and any(k != target_key for k in r.scopes)]
    assert refused and all(set(r.granted) == {target_key} for r in refused)


def test_mount_blob_in_process_returns_upload_location(token_registry, token_libs, unique_repo, monkeypatch, probe):
    reg, ts = token_registry, token_registry.token_server
    lib = token_libs["amd64"]
    source_key = f"repository:{lib.repo}"

    def acl(user, repo):
        return {"pull", "push"} if repo == unique_repo else set()

    ts.configure(acl=acl)
    img = lib.image
    desc = Descriptor(img.manifest["layers"][0]["mediaType"], Digest.parse(img.layer_digest), img.layer_size)
    path = img.layout / "blobs" / "sha256" / img.layer_digest.split(":", 1)[1]

    async def main() -> str | None:
        async with RegistryClient(reg.host, credential=Credential(*ALICE)) as client:
            location = await client.mount_blob(unique_repo, desc, lib.repo)
            assert isinstance(location, str) and "/blobs/uploads/" in location
            await client.write_blob(unique_repo, desc, path, location=location)
            return location

    asyncio.run(main())
    assert probe(reg, ALICE).blob_status(unique_repo, img.layer_digest) == 200
    asked = [r for r in ts.requests if source_key in r.scopes]
    assert asked and all(source_key not in r.granted for r in asked)


async def _push_image(client: RegistryClient, repo: str, img: Any, tag: str) -> None:
    blobs = img.layout / "blobs" / "sha256"
    for digest, size, mt in (
        (img.config_digest, len(img.config_bytes), img.manifest["config"]["mediaType"]),
        (img.layer_digest, img.layer_size, img.manifest["layers"][0]["mediaType"]),
    ):
        await client.write_blob(repo, Descriptor(mt, Digest.parse(digest), size), blobs / digest.split(":", 1)[1])
    await client.put_manifest(repo, tag, img.manifest_bytes, img.manifest_media_type)


def test_expired_token_is_refetched(token_registry, arch_images, unique_repo, issued_tokens, probe):
    """Tokens live 2 s (and the registry enforces it): a push 3 s later fetches a new one.

    Two clients: one with a real clock (renews before sending), one whose clock is frozen so
    it sends the expired token, gets 401, and must fetch exactly one new token.
    """
    reg, ts = token_registry, token_registry.token_server
    ts.configure(expires_in=2, strict_expiry=True)
    img = arch_images["s390x"]
    repo_a, repo_b = f"{unique_repo}-a", f"{unique_repo}-b"
    cred = Credential(*ALICE)
    p = probe(reg, ALICE)

    async def main() -> dict[str, int]:
        async with RegistryClient(reg.host, credential=cred) as fresh, RegistryClient(reg.host, credential=cred) as frozen:
            frozen.auth = Authenticator(frozen.registry, cred, clock=lambda: 0.0)
            await _push_image(fresh, repo_a, img, "before")
            await _push_image(frozen, repo_b, img, "before")
            old = issued_tokens[-1]
            counts = {"fresh": fresh.auth.token_fetches, "frozen": frozen.auth.token_fetches, "server": ts.count(ok=True)}
            await asyncio.sleep(3.2)
            async with httpx.AsyncClient() as raw:
                r = await raw.head(f"{reg.url}/v2/{repo_b}/manifests/before", headers={"Authorization": f"Bearer {old}"})
                assert r.status_code == 401, "the registry still accepts the expired token"
            mark = p.mark()
            await fresh.put_manifest(repo_a, "after", img.manifest_bytes, img.manifest_media_type)
            await frozen.put_manifest(repo_b, "after", img.manifest_bytes, img.manifest_media_type)
            return {
                "fresh": fresh.auth.token_fetches - counts["fresh"],
                "frozen": frozen.auth.token_fetches - counts["frozen"],
                "server": ts.count(ok=True) - counts["server"],
                "mark": mark,
            }

    got = asyncio.run(main())
    assert got["fresh"] == 1 and got["frozen"] == 1 and got["server"] == 2, got
    for repo in (repo_a, repo_b):
        assert p.tag_digest(repo, "after") == img.manifest_digest
    log = p.requests(since=got["mark"])
    puts_b = [r for r in log if r.method == "PUT" and r.path == f"/v2/{repo_b}/manifests/after"]
    assert [r.status for r in puts_b] == [401, 201], puts_b
    puts_a = [r for r in log if r.method == "PUT" and r.path == f"/v2/{repo_a}/manifests/after"]
    assert [r.status for r in puts_a] == [201], puts_a


def test_wrong_credentials_one_token_fetch(cli, token_registry, token_libs, tmp_home, one_line_error):
    reg, ts = token_registry, token_registry.token_server
    ref = token_libs["amd64"].ref

    write_docker_config(tmp_home, reg.host, "alice", "not-the-password")
    one_line_error(cli("inspect", ref), 3, reg.host)
    assert ts.count() == 1, ts.requests

    ts.clear_log()
    one_line_error(cli("login", "-u", "alice", "--password-stdin", reg.host, input="wrong"), 3)
    assert ts.count() == 1, ts.requests
    assert stored_hosts(tmp_home) == set()

    # valid user without any right on the repository: one 401 -> one token -> 401 -> stop
    ts.configure(acl=lambda user, repo: set() if user == "bob" else default_acl(user, repo))
    ts.clear_log()
    write_docker_config(tmp_home, reg.host, *BOB)
    one_line_error(cli("inspect", ref), 3, "amd64/busybox")
    assert ts.count() == 1, ts.requests
    assert ts.requests[0].user == "bob" and ts.requests[0].granted == {}


# ---------------------------------------------------------------------------------------------
# 9. secrets never reach stdout/stderr


def _scan(outputs: list[str], secrets: dict[str, str]) -> None:
    blob = "\n".join(outputs)
    leaked = [name for name, value in secrets.items() if value and value in blob]
    assert not leaked, f"secrets in output: {leaked}"
    # upload session state (distribution signs it; it lets anyone continue the upload)
    states = re.findall(r"_state=(?!REDACTED)[^&\s\"]+", blob)
    assert not states, f"upload _state in output: {states[:3]}"


def _events(outputs: list[str]) -> set[str]:
    events = set()
    for text in outputs:
        for line in text.splitlines():
            if line.startswith("{"):
                events.add(json.loads(line).get("event"))
            elif m := re.match(r"manifesto: (?:debug|info|warning): ([a-z0-9 ]+?)(?= \S+=|$)", line):
                events.add(m.group(1).replace(" ", "_"))  # a plain line: `manifesto: debug: http request k=v`
    return events


def test_no_secrets_in_debug_output_basic(cli, htpasswd_registry, basic_libs, registry, unique_repo, tmp_home):
    reg = htpasswd_registry
    target = reg.ref(unique_repo, "v1")
    elsewhere = registry.ref(unique_repo, "v1")  # anonymous registry: blobs travel by upload
    outputs: list[str] = []

    def run(*args: str, input: str | None = None) -> None:
        rc, out, err = cli(*args, input=input)
        outputs.extend([out, err])
        assert rc == 0, err

    rc, out, err = cli("--debug", "login", "-u", "alice", "--password-stdin", reg.host, input="alice-wrong-secret\n")
    assert rc == 3, err
    outputs.extend([out, err])  # a failure under --debug prints a traceback: still no secret
    run("--debug", "-v", "login", "-u", "alice", "--password-stdin", reg.host, input="alice-secret\n")
    run("--debug", "create", target, basic_libs["amd64"].ref, basic_libs["arm64"].ref)
    run("--debug", "-vv", "push", target)
    run("-v", "inspect", "-v", target)
    run("--debug", "create", elsewhere, target)
    run("--debug", "push", elsewhere)
    run("logout", reg.host)
    write_docker_config(tmp_home, reg.host, *BOB)  # and credentials from docker's config
    run("--debug", "inspect", target)

    assert {"http_request", "credentials_resolved", "manifest_pushed"} <= _events(outputs), "debug logging was off"
    assert "_state=" in "\n".join(outputs), "no upload was logged: the _state check would be vacuous"
    _scan(
        outputs,
        {
            "alice password": "alice-secret",
            "alice wrong password": "alice-wrong-secret",
            "bob password": "bob-secret",
            "alice basic": basic("alice", "alice-secret"),
            "bob basic": basic("bob", "bob-secret"),
        },
    )


def test_no_secrets_in_debug_output_token(cli, token_registry, token_libs, unique_repo, issued_tokens):
    reg = token_registry
    target = reg.ref(unique_repo, "v1")
    outputs: list[str] = []

    def run(*args: str, input: str | None = None) -> None:
        rc, out, err = cli(*args, input=input)
        outputs.extend([out, err])
        assert rc == 0, err

    run("--debug", "-v", "login", "-u", "bob", "--password-stdin", reg.host, input="bob-secret")
    run("--debug", "create", target, *[lib.ref for lib in token_libs.values()])
    run("--debug", "-vv", "push", target)
    run("--debug", "inspect", "-v", target)

    assert {"http_request", "token_fetched", "manifest_pushed"} <= _events(outputs), "debug logging was off"
    assert len(issued_tokens) >= 3
    secrets = {"bob password": "bob-secret", "bob basic": basic("bob", "bob-secret")}
    for i, token in enumerate(issued_tokens):
        secrets[f"token {i}"] = token
        secrets[f"token {i} signature"] = token.rsplit(".", 1)[1]
    _scan(outputs, secrets)


def test_anonymous_registry_never_consults_credentials(registry, library_repos, tmp_home, run_cli):
    """Credentials are looked up on the first challenge only: a broken helper for a registry
    that never asks for auth costs nothing (and does not fail the command)."""
    import json as _json

    config = tmp_home.docker_config / "config.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(_json.dumps({"credHelpers": {registry.host: "manifesto-test-missing-helper"}}))
    rc, out, err = run_cli("inspect", library_repos["amd64"].ref)
    assert rc == 0, err
    assert "linux/amd64" in out


def test_login_refuses_a_malformed_registry_host(cli):
    rc, out, err = cli("login", "exa_mple:99999", "--username", "u", "--password-stdin", input="pw\n")
    assert rc == 2 and err.count("manifesto: error:") == 1 and "99999" in err, err


def test_login_with_token_username_checks_and_stores_an_identity_token(cli, token_registry, token_libs):
    """docker's convention: username `<token>` means the secret is an identity (refresh) token,
    exchanged by OAuth2 POST; it is stored as such and works for later commands."""
    ts = token_registry.token_server
    refresh = ts._new_refresh_token(ALICE[0])
    ts.requests.clear()
    rc, out, err = cli("login", token_registry.host, "--username", "<token>", "--password-stdin", input=refresh + "\n")
    assert rc == 0, err
    assert [r.grant_type for r in ts.requests] == ["refresh_token"]
    rc, out, err = cli("inspect", token_libs["amd64"].ref)
    assert rc == 0 and "linux/amd64" in out, err
    assert any(r.grant_type == "refresh_token" and r.user == ALICE[0] for r in ts.requests[1:])
