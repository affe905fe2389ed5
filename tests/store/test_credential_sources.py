"""Credentials people already configure: GitLab's DOCKER_AUTH_CONFIG, REGISTRY_AUTH_FILE,
podman's auth.json files, docker's config — each against a real htpasswd registry, and the
order they are asked in (store/registry/lookup.py: CredentialStore.sources).

Each source holds alice's password and the sources after it bob's (or a wrong one), so a login
that works as alice proves which source answered: the registry checks the password.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from pathlib import Path

import pytest
import structlog

from manifesto.errors import AuthError
from manifesto.store.registry.lookup import Credential, CredentialStore
from manifesto.store.registry.pool import Registries

ALICE = ("alice", "alice-secret")
BOB = ("bob", "bob-secret")
CLEARED = ("DOCKER_AUTH_CONFIG", "REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "MANIFESTO_KEYRING")


def auths(host: str, user: str, password: str) -> dict:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"auths": {host: {"auth": auth}}}


def write(path: Path, doc: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A private HOME with every credential place empty; returns where each source lives."""
    places = {
        "home": tmp_path / "home",
        "config": tmp_path / "home" / ".config",
        "docker": tmp_path / "home" / ".docker",
        "runtime": tmp_path / "run",
    }
    for d in places.values():
        d.mkdir(parents=True, exist_ok=True)
    for k in CLEARED:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(places["home"]))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(places["config"]))
    monkeypatch.setenv("DOCKER_CONFIG", str(places["docker"]))
    monkeypatch.setenv("MANIFESTO_KEYRING", "file")
    return places


def who(host: str) -> str:
    """Log in to host with whatever credential manifesto resolves; the user it resolved."""

    async def run() -> None:
        async with Registries() as regs:
            await regs.client(host).check_login()

    asyncio.run(run())
    cred = CredentialStore().resolve(host)
    assert cred is not None
    return cred.username


def test_docker_auth_config_logs_in(htpasswd_registry, home, monkeypatch) -> None:
    host = htpasswd_registry.host
    monkeypatch.setenv("DOCKER_AUTH_CONFIG", json.dumps(auths(host, *ALICE)))
    assert who(host) == "alice"


def test_registry_auth_file_logs_in(htpasswd_registry, home, monkeypatch, tmp_path) -> None:
    host = htpasswd_registry.host
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(write(tmp_path / "elsewhere" / "auth.json", auths(host, *ALICE))))
    assert who(host) == "alice"


def test_runtime_containers_auth_logs_in(htpasswd_registry, home, monkeypatch) -> None:
    host = htpasswd_registry.host
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(home["runtime"]))
    write(home["runtime"] / "containers" / "auth.json", auths(host, *ALICE))
    assert who(host) == "alice"


def test_config_containers_auth_logs_in(htpasswd_registry, home, monkeypatch) -> None:
    host = htpasswd_registry.host
    write(home["config"] / "containers" / "auth.json", auths(host, *ALICE))
    assert who(host) == "alice"
    # XDG_CONFIG_HOME unset: ~/.config, as podman reads it
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert who(host) == "alice"


def test_a_wrong_password_from_a_source_is_refused(htpasswd_registry, home, monkeypatch) -> None:
    # the registry really checks what each source gives (the tests above prove something)
    host = htpasswd_registry.host
    monkeypatch.setenv("DOCKER_AUTH_CONFIG", json.dumps(auths(host, "alice", "wrong")))
    with pytest.raises(AuthError):
        who(host)


def test_order_each_source_wins_over_the_ones_after_it(htpasswd_registry, home, monkeypatch, tmp_path) -> None:
    """login > DOCKER_AUTH_CONFIG > REGISTRY_AUTH_FILE > docker config > runtime auth.json >
    ~/.config auth.json: with alice in one source and bob in every later one, alice logs in;
    then that source is removed and the next one answers."""
    host = htpasswd_registry.host
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(home["runtime"]))
    auth_file = tmp_path / "auth-file.json"
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth_file))
    files = {
        "REGISTRY_AUTH_FILE": auth_file,
        "docker_config": home["docker"] / "config.json",
        "runtime": home["runtime"] / "containers" / "auth.json",
        "config": home["config"] / "containers" / "auth.json",
    }
    order = ["login", "DOCKER_AUTH_CONFIG", *files]
    for i, winner in enumerate(order):
        later = order[i + 1 :]
        for name in later:
            if name == "DOCKER_AUTH_CONFIG":
                monkeypatch.setenv(name, json.dumps(auths(host, *BOB)))
            else:
                write(files[name], auths(host, *BOB))
        if winner == "login":
            CredentialStore().save_login(host, *ALICE)
        elif winner == "DOCKER_AUTH_CONFIG":
            monkeypatch.setenv(winner, json.dumps(auths(host, *ALICE)))
        else:
            write(files[winner], auths(host, *ALICE))
        assert who(host) == "alice", winner
        # take the winner away; the next source in the order answers next round
        if winner == "login":
            CredentialStore().delete_login(host)
        elif winner == "DOCKER_AUTH_CONFIG":
            monkeypatch.delenv(winner)
        else:
            files[winner].unlink()
    assert CredentialStore().resolve(host) is None


def test_source_is_logged_never_the_secret(home, monkeypatch) -> None:
    from manifesto import log

    monkeypatch.setattr(log, "_level", 10)
    monkeypatch.setenv("DOCKER_AUTH_CONFIG", json.dumps(auths("ci.example", "ci", "ci-secret-value")))
    write(home["config"] / "containers" / "auth.json", auths("podman.example", "pod", "pod-secret-value"))
    with structlog.testing.capture_logs() as logs:
        CredentialStore().resolve("ci.example")
        CredentialStore().resolve("podman.example")
    resolved = [(e["source"], e["where"]) for e in logs if e["event"] == "credentials_resolved"]
    assert resolved == [
        ("DOCKER_AUTH_CONFIG", "$DOCKER_AUTH_CONFIG"),
        ("containers_auth", str(home["config"] / "containers" / "auth.json")),
    ]
    assert "secret-value" not in repr(logs)


def test_namespaced_auth_json_keys_are_not_used_for_the_whole_registry(home) -> None:
    # containers-auth.json(5): "quay.io/team" is a credential for that namespace only
    path = write(
        home["config"] / "containers" / "auth.json",
        {"auths": {**auths("quay.example/team", "team", "x")["auths"], **auths("other.example", "o", "y")["auths"]}},
    )
    store = CredentialStore()
    assert store.resolve("quay.example") is None
    assert store.resolve("other.example") == Credential("o", "y")
    # a URL key (docker's legacy form) names the whole registry, in auth.json too
    path.write_text(json.dumps(auths("https://quay.example/v1/", "url", "z")))
    assert store.resolve("quay.example") == Credential("url", "z")


def test_docker_auth_config_with_identity_token_and_helpers(home, monkeypatch, tmp_path) -> None:
    # DOCKER_AUTH_CONFIG is a whole config.json: identity tokens and credHelpers work as in the file
    monkeypatch.setenv(
        "DOCKER_AUTH_CONFIG", json.dumps({"auths": {"tok.example": {"identitytoken": "idt"}}})
    )
    assert CredentialStore().resolve("tok.example") == Credential("<token>", "idt", "identity_token")
    helper = tmp_path / "bin" / "docker-credential-ci"
    helper.parent.mkdir()
    helper.write_text('#!/bin/sh\ncat >/dev/null\necho \'{"Username": "h", "Secret": "s"}\'\n')
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{helper.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DOCKER_AUTH_CONFIG", json.dumps({"credHelpers": {"helped.example": "ci"}}))
    assert CredentialStore().resolve("helped.example") == Credential("h", "s")


def test_a_broken_docker_auth_config_is_warned_about_without_its_content(home, monkeypatch) -> None:
    write(home["docker"] / "config.json", auths("reg.example", "d", "docker-pw"))
    monkeypatch.setenv("DOCKER_AUTH_CONFIG", '{"auths": {"reg.example": {"auth": "sec-ret-text"')
    with structlog.testing.capture_logs() as logs:
        cred = CredentialStore().resolve("reg.example")
    assert cred == Credential("d", "docker-pw")  # skipped, as docker skips an unreadable config
    warned = [e for e in logs if e["log_level"] == "warning"]
    assert [(e["event"], e["path"]) for e in warned] == [("docker_config_unreadable", "$DOCKER_AUTH_CONFIG")]
    assert "sec-ret-text" not in repr(logs)


def test_a_missing_registry_auth_file_is_no_credential(home, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "nope.json"))
    write(home["docker"] / "config.json", auths("reg.example", "d", "docker-pw"))
    with structlog.testing.capture_logs() as logs:
        assert CredentialStore().resolve("reg.example") == Credential("d", "docker-pw")
    assert [e for e in logs if e["log_level"] == "warning"] == []
