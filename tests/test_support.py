"""Prove the test infrastructure works: registries, token server, images, helpers."""

from __future__ import annotations

import base64
import gzip
import io
import json
import subprocess
import sys
import tarfile
import time

import httpx
import jwt
import pytest

from tests.support import (
    ARCHES,
    Registry,
    RegistryStartError,
    Scope,
    binfmt_available,
    build_image,
    elf_info,
    inspect_raw,
    missing,
    parse_scopes,
    push_image,
    require,
    tools,
)
from tests.support.images import (
    ELF_MACHINE,
    MT_DOCKER_MANIFEST,
    MT_OCI_MANIFEST,
    PLATFORMS,
)

ALL_MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.partition(" ")
    params = dict(
        (k.strip(), v.strip().strip('"'))
        for k, v in (p.split("=", 1) for p in _split_params(rest))
    )
    return scheme, params


def _split_params(s: str) -> list[str]:
    out, cur, quoted = [], "", False
    for ch in s:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur)
    return out


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ---------------------------------------------------------------------------
# registries


def test_anonymous_registry_answers_v2(registry: Registry) -> None:
    r = httpx.get(f"{registry.url}/v2/")
    assert r.status_code == 200
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert registry.host.startswith("127.0.0.1:") and registry.url == f"http://{registry.host}"
    assert registry.username is None and registry.creds is None


def test_session_and_fresh_registries_are_distinct(
    session_registry: Registry, registry: Registry, fresh_registry: Registry
) -> None:
    hosts = {session_registry.host, registry.host, fresh_registry.host}
    assert len(hosts) == 3
    for reg in (session_registry, fresh_registry):
        assert httpx.get(f"{reg.url}/v2/").status_code == 200


def test_htpasswd_registry_basic_auth(htpasswd_registry: Registry) -> None:
    reg = htpasswd_registry
    r = httpx.get(f"{reg.url}/v2/")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == 'Basic realm="manifesto-test"'
    assert httpx.get(f"{reg.url}/v2/", auth=(reg.username, reg.password)).status_code == 200
    assert httpx.get(f"{reg.url}/v2/", auth=("bob", "bob-secret")).status_code == 200
    assert httpx.get(f"{reg.url}/v2/", auth=(reg.username, "wrong")).status_code == 401


def test_registry_stop_frees_port(tmp_path) -> None:
    reg = Registry(tmp_path / "r").start()
    url = reg.url
    assert reg.running
    reg.stop()
    assert not reg.running
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/v2/", timeout=2)


def test_registry_start_failure_reports_log_tail(tmp_path) -> None:
    reg = Registry(tmp_path / "bad", extra_config={"storage": {"nosuchdriver": {}}})
    reg2 = Registry(tmp_path / "bad2", extra_config={"log": {"level": "no-such-level"}})
    for r in (reg, reg2):
        try:
            with pytest.raises(RegistryStartError) as e:
                r.start()
            assert "log tail" in str(e.value)
            assert r.log_text().strip(), "the registry log should hold its complaint"
            assert r.log_tail() in str(e.value)
            assert not r.running
        finally:
            r.stop()


def test_registry_factory_and_extra_config(registry_factory) -> None:
    reg = registry_factory(extra_config={"http": {"headers": {"X-Test": ["yes"]}}})
    r = httpx.get(f"{reg.url}/v2/")
    assert r.status_code == 200 and r.headers["X-Test"] == "yes"
    tok = registry_factory("token", users={"carol": "c-pw"})
    assert tok.creds == ("carol", "c-pw") and tok.token_server is not None


# ---------------------------------------------------------------------------
# token protocol against the real registry


def test_token_flow_anonymous_then_bearer(token_registry: Registry, arch_images) -> None:
    reg, ts = token_registry, token_registry.token_server
    push_image(arch_images["amd64"], "tok/flow:1", reg)
    ts.clear_log()

    r = httpx.get(f"{reg.url}/v2/tok/flow/tags/list")
    assert r.status_code == 401
    scheme, params = parse_challenge(r.headers["WWW-Authenticate"])
    assert scheme == "Bearer"
    assert params == {
        "realm": ts.realm,
        "service": "manifesto-test-registry",
        "scope": "repository:tok/flow:pull",
    }
    t = httpx.get(params["realm"], params={"service": params["service"], "scope": params["scope"]})
    assert t.status_code == 200
    body = t.json()
    assert body["token"] == body["access_token"] and body["expires_in"] == 300
    r = httpx.get(f"{reg.url}/v2/tok/flow/tags/list", headers=bearer(body["token"]))
    assert r.status_code == 200 and r.json() == {"name": "tok/flow", "tags": ["1"]}

    [req] = ts.requests
    assert req.method == "GET" and req.user is None and req.status == 200
    assert req.scopes == {"repository:tok/flow": {"pull"}}
    assert req.wants("tok/flow", "pull") and not req.wants("tok/flow", "push")


def test_token_claims_and_headers(token_registry: Registry) -> None:
    ts = token_registry.token_server
    t = httpx.get(
        ts.realm,
        params={"service": ts.service, "scope": "repository:a/b:push,pull"},
        auth=("alice", "alice-secret"),
    ).json()["token"]
    header = jwt.get_unverified_header(t)
    assert header["alg"] == "ES256" and header["x5c"] and header["kid"] == ts.kid
    claims = ts.decode(t)
    assert claims["aud"] == ts.service and isinstance(claims["aud"], str)
    assert claims["iss"] == ts.issuer and claims["sub"] == "alice"
    assert {"exp", "nbf", "iat", "jti"} <= claims.keys()
    assert claims["access"] == [{"type": "repository", "name": "a/b", "actions": ["pull", "push"]}]


def test_token_scopes_repeat_and_space_separated(token_registry: Registry) -> None:
    ts = token_registry.token_server
    r = httpx.get(
        ts.realm + "?service=manifesto-test-registry"
        "&scope=repository:a:pull%20repository:b:push,pull&scope=repository:a:push"
        "&scope=registry:catalog:*",
        auth=("alice", "alice-secret"),
    )
    assert r.status_code == 200
    [req] = ts.requests
    assert req.scopes == {
        "repository:a": {"pull", "push"},
        "repository:b": {"push", "pull"},
        "registry:catalog": {"*"},
    }
    assert req.granted == req.scopes


def test_token_basic_auth_and_anonymous_switch(token_registry: Registry) -> None:
    ts = token_registry.token_server
    assert httpx.get(ts.realm, params={"service": ts.service}, auth=("alice", "nope")).status_code == 401
    ts.configure(allow_anonymous=False)
    r = httpx.get(ts.realm, params={"service": ts.service})
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic ")
    assert httpx.get(ts.realm, params={"service": ts.service}, auth=("bob", "bob-secret")).status_code == 200
    assert [q.status for q in ts.requests] == [401, 401, 200]
    assert ts.count(ok=True) == 1


def test_token_field_variants(token_registry: Registry) -> None:
    ts = token_registry.token_server
    get = lambda: httpx.get(ts.realm, params={"service": ts.service}).json()  # noqa: E731
    assert {"token", "access_token"} <= get().keys()
    ts.configure(token_field="token")
    assert "token" in get() and "access_token" not in get()
    ts.configure(token_field="access_token")
    assert "access_token" in get() and "token" not in get()


def test_token_oauth2_password_and_refresh(token_registry: Registry, arch_images) -> None:
    reg, ts = token_registry, token_registry.token_server
    push_image(arch_images["s390x"], "tok/oauth:1", reg)
    ts.clear_log()
    form = {
        "grant_type": "password",
        "username": "alice",
        "password": "alice-secret",
        "service": ts.service,
        "scope": "repository:tok/oauth:pull repository:tok/other:pull",
        "client_id": "manifesto",
        "access_type": "offline",
    }
    r = httpx.post(ts.realm, data=form)
    assert r.status_code == 200, r.text
    body = r.json()
    assert "token" not in body  # OAuth2 answers access_token only (default)
    refresh = body["refresh_token"]
    assert set(body["scope"].split()) == {"repository:tok/oauth:pull", "repository:tok/other:pull"}

    r = httpx.post(
        ts.realm,
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh,
            "service": ts.service,
            "scope": "repository:tok/oauth:pull",
            "client_id": "manifesto",
        },
    )
    assert r.status_code == 200
    tok = r.json()["access_token"]
    m = httpx.get(
        f"{reg.url}/v2/tok/oauth/manifests/1", headers={**bearer(tok), "Accept": ALL_MANIFEST_TYPES}
    )
    assert m.status_code == 200 and m.content == arch_images["s390x"].manifest_bytes

    bad = httpx.post(ts.realm, data={**form, "password": "wrong"})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_grant"
    ts.revoke_refresh_tokens()
    r = httpx.post(ts.realm, data={"grant_type": "refresh_token", "refresh_token": refresh})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    assert [(q.method, q.grant_type, q.user, q.status) for q in ts.requests] == [
        ("POST", "password", "alice", 200),
        ("POST", "refresh_token", "alice", 200),
        ("POST", "password", None, 400),
        ("POST", "refresh_token", None, 400),
    ]
    # GET with offline_token=true also hands out a refresh token to an authenticated user
    g = httpx.get(
        ts.realm, params={"service": ts.service, "offline_token": "true"}, auth=("bob", "bob-secret")
    )
    assert g.json()["refresh_token"].startswith("rt-")


def test_insufficient_scope_on_cross_repo_mount(token_registry: Registry, arch_images) -> None:
    """ACL: alice may push repo A but not pull repo B -> mount from B answers 401 insufficient_scope."""
    reg, ts = token_registry, token_registry.token_server
    img = arch_images["arm64"]
    push_image(img, "acl/b:1", reg)
    ts.configure(acl=lambda user, repo: {"pull", "push"} if repo == "acl/a" else set())
    r = httpx.get(
        ts.realm,
        params={"service": ts.service, "scope": ["repository:acl/a:pull,push", "repository:acl/b:pull"]},
        auth=("alice", "alice-secret"),
    )
    tok = r.json()["token"]
    assert ts.requests[-1].granted == {"repository:acl/a": {"pull", "push"}}
    m = httpx.post(
        f"{reg.url}/v2/acl/a/blobs/uploads/",
        params={"mount": img.layer_digest, "from": "acl/b"},
        headers=bearer(tok),
    )
    assert m.status_code == 401
    scheme, params = parse_challenge(m.headers["WWW-Authenticate"])
    assert scheme == "Bearer" and params["error"] == "insufficient_scope"
    assert "repository:acl/b:pull" in params["scope"].split()
    # without the mount the same token may upload
    u = httpx.post(f"{reg.url}/v2/acl/a/blobs/uploads/", headers=bearer(tok))
    assert u.status_code == 202


def test_token_expiry_strict(token_registry: Registry) -> None:
    """distribution 2.8 allows 60 s leeway past `exp`; strict_expiry compensates."""
    reg, ts = token_registry, token_registry.token_server
    # a token expired 30 s ago still passes (leeway) ...
    late = ts.issue(None, {"registry:catalog": ["*"]}, expires_in=-30)
    assert httpx.get(f"{reg.url}/v2/", headers=bearer(late)).status_code == 200
    # ... 70 s ago does not
    old = ts.issue(None, {}, expires_in=-70)
    r = httpx.get(f"{reg.url}/v2/", headers=bearer(old))
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["WWW-Authenticate"]
    # a list-valued aud is rejected by distribution 2.8
    listy = ts.issue(None, {}, audience=[ts.service])
    assert httpx.get(f"{reg.url}/v2/", headers=bearer(listy)).status_code == 401

    ts.configure(expires_in=2, strict_expiry=True)
    body = httpx.get(ts.realm, params={"service": ts.service}).json()
    assert body["expires_in"] == 2
    assert httpx.get(f"{reg.url}/v2/", headers=bearer(body["token"])).status_code == 200
    time.sleep(3.1)
    assert httpx.get(f"{reg.url}/v2/", headers=bearer(body["token"])).status_code == 401


def test_token_server_fault_injection(token_registry: Registry) -> None:
    ts = token_registry.token_server
    ts.fail_next(503, count=2)
    codes = [httpx.get(ts.realm, params={"service": ts.service}).status_code for _ in range(3)]
    assert codes == [503, 503, 200]
    assert ts.count() == 3 and ts.count(ok=False) == 2


def test_token_registry_resets_between_tests_part1(token_registry: Registry) -> None:
    token_registry.token_server.configure(users={}, expires_in=1)
    httpx.get(token_registry.token_server.realm)


def test_token_registry_resets_between_tests_part2(token_registry: Registry) -> None:
    ts = token_registry.token_server
    assert ts.requests == [] and ts.expires_in == 300 and "alice" in ts.users


def test_scope_parsing() -> None:
    assert Scope.parse("repository:127.0.0.1:5000/a/b:pull,push") == Scope(
        "repository", "127.0.0.1:5000/a/b", frozenset({"pull", "push"})
    )
    assert Scope.parse("repository(plugin):x/y:pull").type == "repository(plugin)"
    assert parse_scopes(["repository:a:pull repository:a:push", "repository:b:pull"]) == {
        "repository:a": {"pull", "push"},
        "repository:b": {"pull"},
    }
    with pytest.raises(ValueError):
        Scope.parse("nonsense")


# ---------------------------------------------------------------------------
# images


@pytest.mark.parametrize("variant", ["registry", "htpasswd_registry", "token_registry"])
@pytest.mark.parametrize("fmt", ["oci", "docker"])
def test_skopeo_push_roundtrip(request, variant, fmt, arch_images, docker_arch_images) -> None:
    reg: Registry = request.getfixturevalue(variant)
    img = (arch_images if fmt == "oci" else docker_arch_images)["armhf"]
    ref = push_image(img, f"rt/{fmt}:v1", reg)
    assert ref == f"{reg.host}/rt/{fmt}:v1"
    assert inspect_raw(ref, reg) == img.manifest_bytes
    # and over plain HTTP the registry returns the same bytes, with the right type
    auth = reg.creds if variant == "htpasswd_registry" else None
    headers = {"Accept": ALL_MANIFEST_TYPES}
    if variant == "token_registry":
        ts = reg.token_server
        headers.update(bearer(ts.issue("alice", {f"repository:rt/{fmt}": ["pull"]})))
    r = httpx.get(f"{reg.url}/v2/rt/{fmt}/manifests/{img.manifest_digest}", headers=headers, auth=auth)
    assert r.status_code == 200 and r.content == img.manifest_bytes
    assert r.headers["Docker-Content-Digest"] == img.manifest_digest
    assert r.headers["Content-Type"] == (MT_OCI_MANIFEST if fmt == "oci" else MT_DOCKER_MANIFEST)


def test_push_anonymously_to_htpasswd_fails(htpasswd_registry: Registry, arch_images) -> None:
    with pytest.raises(AssertionError, match="exit 1"):
        push_image(arch_images["amd64"], "denied/x:1", htpasswd_registry, creds=False)


@pytest.mark.parametrize("arch", ARCHES)
def test_arch_image_contents(arch_images, arch) -> None:
    img = arch_images[arch]
    oci_arch, variant, _, _ = PLATFORMS[arch]
    cfg = img.config
    assert cfg["architecture"] == oci_arch and cfg["os"] == "linux"
    assert cfg.get("variant") == variant
    assert cfg["config"]["Cmd"] == ["/bin/uname", "-m"]
    assert cfg["rootfs"]["diff_ids"] == [img.diff_id]
    assert img.platform == "linux/" + oci_arch + (f"/{variant}" if variant else "")

    m = img.manifest
    assert m["mediaType"] == MT_OCI_MANIFEST
    assert m["config"]["digest"] == img.config_digest
    index = json.loads((img.layout / "index.json").read_text())
    [desc] = index["manifests"]
    assert desc["digest"] == img.manifest_digest and desc["size"] == len(img.manifest_bytes)
    assert json.loads((img.layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}

    layer = img.blob(img.layer_digest)
    tar_bytes = gzip.decompress(layer)
    import hashlib

    assert "sha256:" + hashlib.sha256(tar_bytes).hexdigest() == img.diff_id
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        members = {t.name: t for t in tar.getmembers()}
        assert sorted(members) == ["bin", "bin/busybox", "bin/sh", "bin/uname"]
        assert all(t.mtime == 0 and t.uid == 0 and t.gid == 0 for t in members.values())
        assert members["bin/sh"].issym() and members["bin/sh"].linkname == "busybox"
        bb = tar.extractfile("bin/busybox").read()  # type: ignore[union-attr]
    assert bb[:4] == b"\x7fELF"
    assert elf_info_bytes(bb) == ELF_MACHINE[arch]


def elf_info_bytes(data: bytes) -> int:
    endian = "little" if data[5] == 1 else "big"
    return int.from_bytes(data[18:20], endian)


def test_images_are_deterministic(arch_images, tmp_path) -> None:
    again = build_image("arm64", tmp_path / "again")
    assert again.manifest_bytes == arch_images["arm64"].manifest_bytes
    assert len({img.manifest_digest for img in arch_images.values()}) == len(ARCHES)


def test_docker_format_and_config_overrides(tmp_path) -> None:
    img = build_image("arm64", tmp_path / "d", format="docker", tag="lying",
                      config_overrides={"architecture": "s390x"})
    assert img.manifest["mediaType"] == MT_DOCKER_MANIFEST
    assert img.manifest["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json"
    assert img.config["architecture"] == "s390x" and img.platform == "linux/arm64/v8"
    # a second image in the same layout is added under its own tag
    other = build_image("amd64", tmp_path / "d", tag="other")
    index = json.loads((tmp_path / "d" / "index.json").read_text())
    assert {m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]} == {
        "lying",
        "other",
    }
    assert other.layout == img.layout


def test_arm64_busybox_is_aarch64(arch_images) -> None:
    from tests.support import busybox_path

    info = elf_info(busybox_path("arm64"))
    assert (info.bits, info.endian, info.machine_name) == (64, "little", "aarch64")
    assert elf_info(busybox_path("s390x")).endian == "big"
    assert elf_info(busybox_path("armhf")).bits == 32
    if not binfmt_available("arm64"):
        missing("qemu binfmt for arm64 is not enabled (run `make system-deps`)")
    out = subprocess.run(
        [str(busybox_path("arm64")), "uname", "-m"], capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == "aarch64"


def test_library_repos(library_repos, registry: Registry) -> None:
    assert {r.repo for r in library_repos.values()} == {
        "amd64/busybox",
        "arm64v8/busybox",
        "arm32v7/busybox",
        "ppc64le/busybox",
        "s390x/busybox",
    }
    for repo in library_repos.values():
        r = httpx.get(f"{registry.url}/v2/{repo.repo}/tags/list")
        assert r.json()["tags"] == ["1"]
        assert inspect_raw(repo.by_digest) == repo.image.manifest_bytes
    assert library_repos["armhf"].ref == f"{registry.host}/arm32v7/busybox:1"


# ---------------------------------------------------------------------------
# environment helpers


def test_tmp_home_isolates_user_config(tmp_home, run_cli, monkeypatch) -> None:
    import os

    assert os.environ["HOME"] == str(tmp_home.home)
    assert os.environ["DOCKER_CONFIG"] == str(tmp_home.docker_config)
    assert tmp_home.drafts == tmp_home.data / "manifesto"
    monkeypatch.setattr(
        tools,
        "cli_command",
        lambda: [sys.executable, "-c", "import os, json, sys; print(json.dumps(dict(os.environ))); "
                 "print(sys.stdin.read(), file=sys.stderr); sys.exit(3)"],
    )
    rc, out, err = run_cli(input="hello", env={"EXTRA": "1"})
    env = json.loads(out)
    assert rc == 3 and err.strip() == "hello"
    for key in ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "DOCKER_CONFIG", "XDG_RUNTIME_DIR"):
        assert env[key].startswith(str(tmp_home.home)), key
    assert env["EXTRA"] == "1" and "REGISTRY_AUTH_FILE" not in env


def test_run_cli_runs_the_real_cli(run_cli) -> None:
    import importlib.util

    try:
        spec = importlib.util.find_spec("manifesto.cli.main")
    except ModuleNotFoundError:
        spec = None
    if spec is None:
        pytest.skip("manifesto.cli.main is not written yet")
    rc, out, err = run_cli("--help")
    assert rc == 0, err
    assert "manifesto" in out.lower()


def test_require_skips_locally_and_fails_in_ci(monkeypatch) -> None:
    assert require("sh").endswith("/sh")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        require("no-such-tool-xyz")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        require("no-such-tool-xyz")


def test_unique_repo(unique_repo) -> None:
    assert unique_repo.startswith("t/test-unique-repo-")
    assert unique_repo == unique_repo.lower()


def test_elf_info_rejects_non_elf(tmp_path) -> None:
    p = tmp_path / "x"
    p.write_bytes(base64.b64encode(b"not an elf"))
    with pytest.raises(ValueError):
        elf_info(p)
