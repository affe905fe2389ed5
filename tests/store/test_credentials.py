"""Where registry credentials come from: login store, docker config, credential helpers.

Everything runs against real files in tmp dirs and real `docker-credential-*` scripts on
PATH; only the timeout case injects a runner (a real helper would have to hang).
"""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog
from keyring.backends import fail, null
from keyring.errors import PasswordDeleteError

from manifesto.errors import AuthError, UsageError
from manifesto.store.registry import lookup as cr
from manifesto.store.registry.lookup import (
    Credential,
    CredentialStore,
    StoredLogin,
)


@dataclass
class Env:
    home: Path
    config: Path  # XDG_CONFIG_HOME
    docker: Path  # DOCKER_CONFIG
    bin: Path  # first on PATH, for docker-credential-* scripts

    @property
    def credentials_file(self) -> Path:
        return self.config / "manifesto" / "credentials.json"

    def docker_config(self, doc: dict | str) -> Path:
        path = self.docker / "config.json"
        path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
        return path

    def helper(self, name: str, body: str) -> Path:
        """Write an executable docker-credential-<name> shell script; stdin goes to $server."""
        path = self.bin / f"docker-credential-{name}"
        path.write_text(f'#!/bin/sh\nserver=$(cat)\necho "$server" >> "{self.bin}/{name}.calls"\n{body}\n')
        path.chmod(0o755)
        return path

    def calls(self, name: str) -> list[str]:
        path = self.bin / f"{name}.calls"
        return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    e = Env(tmp_path / "home", tmp_path / "xdg", tmp_path / "docker", tmp_path / "bin")
    for d in (e.home, e.docker, e.bin):
        d.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(e.home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(e.config))
    monkeypatch.setenv("DOCKER_CONFIG", str(e.docker))
    monkeypatch.setenv("MANIFESTO_KEYRING", "file")
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
    monkeypatch.setenv("PATH", f"{e.bin}{os.pathsep}{os.environ.get('PATH', '')}")
    return e


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def helper_json(username: str, secret: str, server: str = "$server") -> str:
    doc = json.dumps({"ServerURL": "SERVER", "Username": username, "Secret": secret})
    return f"printf '%s\\n' '{doc}' | sed \"s|SERVER|{server}|\""


class MemoryKeyring:
    """A keyring backend living in a dict (duck-typed, so keyring's registry stays untouched)."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.entries.pop((service, username), None) is None:
            raise PasswordDeleteError(username)


class BrokenKeyring(MemoryKeyring):
    """A backend that looks usable but fails on every call (locked, no D-Bus session...)."""

    def get_password(self, service: str, username: str) -> str | None:
        raise RuntimeError("org.freedesktop.DBus.Error.ServiceUnknown")

    set_password = delete_password = get_password  # type: ignore[assignment]


# -- host normalization and the Credential value ---------------------------------------------


@pytest.mark.parametrize(
    ("server", "host"),
    [
        ("ghcr.io", "ghcr.io"),
        ("GHCR.io", "ghcr.io"),
        ("https://ghcr.io", "ghcr.io"),
        ("http://localhost:5000", "localhost:5000"),
        ("https://registry.example.com:8443/v1/", "registry.example.com:8443"),
        ("registry.example.com/v2/", "registry.example.com"),
        ("docker.io", "docker.io"),
        ("index.docker.io", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("https://index.docker.io/v1/", "docker.io"),
        ("https://Registry-1.Docker.io/v2/", "docker.io"),
        ("  quay.io  ", "quay.io"),
        ("[::1]:5000", "[::1]:5000"),
    ],
)
def test_normalize_host(server: str, host: str) -> None:
    assert cr.normalize_host(server) == host


@pytest.mark.parametrize("server", ["", "  ", "https://", "https:///v1/"])
def test_normalize_host_rejects_empty(server: str) -> None:
    with pytest.raises(UsageError):
        cr.normalize_host(server)


def test_credential_repr_hides_secret() -> None:
    cred = Credential("bob", "hunter2-secret", "password")
    for text in (repr(cred), str(cred), f"{cred}", f"{cred!r}", repr([cred]), repr({"c": cred})):
        assert "hunter2-secret" not in text
        assert "bob" in text
    assert repr(cred) == "Credential(username='bob', secret='***', kind='password')"


def test_credential_is_frozen_and_checks_kind() -> None:
    cred = Credential("bob", "s3cret")
    assert cred.kind == "password"
    with pytest.raises(AttributeError):
        cred.secret = "other"  # type: ignore[misc]
    with pytest.raises(ValueError):
        Credential("bob", "s3cret", "bearer")  # type: ignore[arg-type]


# -- the `manifesto login` store: file backend ---------------------------------------------


def test_file_backend_round_trip_mode_0600(env: Env) -> None:
    store = CredentialStore()
    where = store.save_login("HTTPS://Reg.Example:5000/v2/", "alice", "pa:ss:word")
    assert where == StoredLogin("reg.example:5000", "alice", "password", "file", str(env.credentials_file))

    path = env.credentials_file
    assert store.credentials_file == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert json.loads(path.read_text())["logins"]["reg.example:5000"] == {
        "username": "alice",
        "secret": "pa:ss:word",
        "kind": "password",
    }
    assert [p.name for p in path.parent.iterdir()] == ["credentials.json"]  # no temp files left

    assert store.resolve("reg.example:5000") == Credential("alice", "pa:ss:word", "password")
    assert store.resolve("https://reg.example:5000") == Credential("alice", "pa:ss:word")
    assert store.resolve("other.example") is None


def test_file_backend_rewrite_keeps_mode_and_other_entries(env: Env) -> None:
    store = CredentialStore()
    store.save_login("a.example", "u1", "secret-1")
    env.credentials_file.chmod(0o644)  # someone loosened it; the next write tightens it again
    store.save_login("b.example", "u2", "secret-2")
    store.save_login("a.example", "u1", "secret-1b")
    assert stat.S_IMODE(env.credentials_file.stat().st_mode) == 0o600
    assert store.resolve("a.example") == Credential("u1", "secret-1b")
    assert store.resolve("b.example") == Credential("u2", "secret-2")
    assert store.list_logins() == [
        StoredLogin("a.example", "u1", "password", "file", str(env.credentials_file)),
        StoredLogin("b.example", "u2", "password", "file", str(env.credentials_file)),
    ]


def test_file_backend_warns_once_without_the_secret(env: Env) -> None:
    store = CredentialStore()
    with structlog.testing.capture_logs() as logs:
        store.save_login("a.example", "alice", "warn-secret-1")
        store.save_login("b.example", "alice", "warn-secret-2")
    warnings = [e for e in logs if e["event"] == "credentials_stored_in_file"]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] == "warning"
    assert warnings[0]["path"] == str(env.credentials_file)
    assert warnings[0]["reason"] == "MANIFESTO_KEYRING=file"
    assert "warn-secret" not in repr(logs)


def test_xdg_config_home_unset_falls_back_to_dot_config(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_CONFIG_HOME")
    store = CredentialStore()
    store.save_login("a.example", "alice", "secret-x")
    assert (env.home / ".config" / "manifesto" / "credentials.json").is_file()
    assert not env.credentials_file.exists()


def test_relative_xdg_config_home_is_ignored(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/dir")  # XDG spec: relative paths are invalid
    assert CredentialStore().credentials_file == env.home / ".config" / "manifesto" / "credentials.json"


def test_delete_login_reports_whether_something_was_removed(env: Env) -> None:
    store = CredentialStore()
    store.save_login("a.example", "alice", "secret-a")
    store.save_login("b.example", "bob", "secret-b")
    assert store.delete_login("https://a.example/") is True
    assert store.delete_login("a.example") is False
    assert store.resolve("a.example") is None
    assert store.resolve("b.example") == Credential("bob", "secret-b")
    assert store.delete_login("b.example") is True
    assert not env.credentials_file.exists()  # the last login takes the file with it
    assert store.delete_login("b.example") is False


def test_corrupt_credentials_file_is_an_auth_error(env: Env) -> None:
    env.credentials_file.parent.mkdir(parents=True)
    env.credentials_file.write_text('{"logins": {"a.example": {"username": "u", "secret": "corrupt-secret"')
    with pytest.raises(AuthError, match="not valid JSON") as info:
        CredentialStore().resolve("a.example")
    assert "corrupt-secret" not in str(info.value)

    env.credentials_file.write_text('{"logins": {"a.example": "not an object"}}')
    with pytest.raises(AuthError, match="manifesto logout a.example"):
        CredentialStore().resolve("a.example")


def test_save_login_requires_username_and_secret(env: Env) -> None:
    with pytest.raises(UsageError):
        CredentialStore().save_login("a.example", "", "secret")
    with pytest.raises(UsageError):
        CredentialStore().save_login("a.example", "alice", "")


def test_unknown_keyring_mode_is_a_usage_error(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MANIFESTO_KEYRING", "kwallet")
    with pytest.raises(UsageError, match="MANIFESTO_KEYRING"):
        CredentialStore().resolve("a.example")


# -- the `manifesto login` store: keyring backend and fallbacks ------------------------------


def test_keyring_backend_round_trip(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MANIFESTO_KEYRING")
    kr = MemoryKeyring()
    store = CredentialStore(keyring_backend=kr)
    with structlog.testing.capture_logs() as logs:
        where = store.save_login("https://index.docker.io/v1/", "alice", "kr-secret", "identity_token")
    assert where == StoredLogin("docker.io", "alice", "identity_token", "keyring", "the system keyring")
    assert not logs  # nothing to warn about
    assert str(where) == "the system keyring"
    assert json.loads(kr.entries[("manifesto", "docker.io")]) == {
        "username": "alice",
        "secret": "kr-secret",
        "kind": "identity_token",
    }
    assert not env.credentials_file.exists()
    assert store.resolve("registry-1.docker.io") == Credential("alice", "kr-secret", "identity_token")

    store.save_login("ghcr.io", "bob", "kr-secret-2")
    assert [(s.host, s.backend) for s in store.list_logins()] == [("docker.io", "keyring"), ("ghcr.io", "keyring")]
    assert store.delete_login("docker.io") is True
    assert store.delete_login("docker.io") is False
    assert [s.host for s in store.list_logins()] == ["ghcr.io"]


@pytest.mark.parametrize("backend", [fail.Keyring(), null.Keyring()], ids=["fail", "null"])
def test_no_usable_keyring_falls_back_to_file(env: Env, monkeypatch: pytest.MonkeyPatch, backend: object) -> None:
    monkeypatch.delenv("MANIFESTO_KEYRING")
    store = CredentialStore(keyring_backend=backend)
    with structlog.testing.capture_logs() as logs:
        where = store.save_login("a.example", "alice", "fallback-secret")
    assert where.backend == "file"
    assert stat.S_IMODE(env.credentials_file.stat().st_mode) == 0o600
    assert [e["reason"] for e in logs if e["event"] == "credentials_stored_in_file"] == ["no usable keyring backend"]
    assert CredentialStore(keyring_backend=backend).resolve("a.example") == Credential("alice", "fallback-secret")


def test_auto_mode_with_keyrings_own_fail_backend(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """No backend injected: keyring.get_keyring() answers with its fail backend, as on headless Linux."""
    import keyring.core

    monkeypatch.delenv("MANIFESTO_KEYRING")
    monkeypatch.setattr(keyring.core, "_keyring_backend", fail.Keyring())
    assert cr.save_login("a.example", "alice", "auto-secret").backend == "file"
    assert cr.resolve("a.example") == Credential("alice", "auto-secret")


def test_keyring_errors_fall_back_to_file(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MANIFESTO_KEYRING")
    store = CredentialStore(keyring_backend=BrokenKeyring())
    assert store.resolve("a.example") is None  # a read error is not fatal
    assert store.save_login("a.example", "alice", "broken-kr-secret").backend == "file"
    assert CredentialStore(keyring_backend=BrokenKeyring()).resolve("a.example") == Credential(
        "alice", "broken-kr-secret"
    )
    assert CredentialStore(keyring_backend=BrokenKeyring()).delete_login("a.example") is True


def test_keyring_login_replaces_stale_file_login(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    CredentialStore().save_login("a.example", "old", "old-secret")  # MANIFESTO_KEYRING=file
    monkeypatch.delenv("MANIFESTO_KEYRING")
    store = CredentialStore(keyring_backend=MemoryKeyring())
    assert store.save_login("a.example", "new", "new-secret").backend == "keyring"
    assert store.resolve("a.example") == Credential("new", "new-secret")
    assert not env.credentials_file.exists()


def test_file_login_found_when_keyring_has_none(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    CredentialStore().save_login("a.example", "alice", "file-secret")
    monkeypatch.delenv("MANIFESTO_KEYRING")
    store = CredentialStore(keyring_backend=MemoryKeyring())
    assert store.resolve("a.example") == Credential("alice", "file-secret")
    assert store.list_logins() == [StoredLogin("a.example", "alice", "password", "file", str(env.credentials_file))]
    assert store.delete_login("a.example") is True
    assert store.resolve("a.example") is None


# -- docker config.json: inline auths ------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["reg.example:5000", "https://reg.example:5000", "https://reg.example:5000/v1/", "http://reg.example:5000"],
)
def test_docker_auths_key_forms(env: Env, key: str) -> None:
    env.docker_config({"auths": {key: {"auth": b64("alice:pw-1")}}})
    assert CredentialStore().resolve("reg.example:5000") == Credential("alice", "pw-1", "password")
    assert CredentialStore().resolve("reg.example") is None  # the port is part of the host


def test_docker_auth_password_may_contain_colons(env: Env) -> None:
    env.docker_config({"auths": {"reg.example": {"auth": b64("alice:pa:ss:wo:rd")}}})
    assert CredentialStore().resolve("reg.example") == Credential("alice", "pa:ss:wo:rd")


def test_docker_auth_without_padding(env: Env) -> None:
    env.docker_config({"auths": {"reg.example": {"auth": b64("alice:pw").rstrip("=")}}})
    assert CredentialStore().resolve("reg.example") == Credential("alice", "pw")


def test_docker_username_password_fields(env: Env) -> None:
    env.docker_config({"auths": {"reg.example": {"username": "bob", "password": "field:pw"}}})
    assert CredentialStore().resolve("reg.example") == Credential("bob", "field:pw")


def test_docker_identity_token(env: Env) -> None:
    env.docker_config(
        {
            "auths": {
                "a.example": {"auth": b64("<token>:"), "identitytoken": "idtok-a"},
                "b.example": {"identitytoken": "idtok-b"},
                "c.example": {"auth": b64("carol:ignored"), "identitytoken": "idtok-c"},
            }
        }
    )
    store = CredentialStore()
    assert store.resolve("a.example") == Credential("<token>", "idtok-a", "identity_token")
    assert store.resolve("b.example") == Credential("<token>", "idtok-b", "identity_token")
    assert store.resolve("c.example") == Credential("carol", "idtok-c", "identity_token")


@pytest.mark.parametrize("asked", ["docker.io", "index.docker.io", "registry-1.docker.io", "https://index.docker.io/v1/"])
@pytest.mark.parametrize("key", ["https://index.docker.io/v1/", "docker.io", "index.docker.io", "registry-1.docker.io"])
def test_docker_hub_aliases(env: Env, key: str, asked: str) -> None:
    env.docker_config({"auths": {key: {"auth": b64("hubuser:hubpass")}}})
    assert CredentialStore().resolve(asked) == Credential("hubuser", "hubpass")


def test_docker_hub_prefers_dockers_own_key(env: Env) -> None:
    env.docker_config(
        {
            "auths": {
                "registry-1.docker.io": {"auth": b64("alias:pw-alias")},
                "https://index.docker.io/v1/": {"auth": b64("canonical:pw-canonical")},
            }
        }
    )
    assert CredentialStore().resolve("docker.io") == Credential("canonical", "pw-canonical")


def test_docker_empty_entry_is_anonymous(env: Env) -> None:
    env.docker_config({"auths": {"reg.example": {}}})
    assert CredentialStore().resolve("reg.example") is None


def test_docker_bad_base64_is_an_auth_error(env: Env) -> None:
    env.docker_config({"auths": {"reg.example": {"auth": "!!!not base64!!!"}, "ok.example": {"auth": b64("u:p")}}})
    with pytest.raises(AuthError, match=r"auths\['reg.example'\].auth is not valid base64"):
        CredentialStore().resolve("reg.example")
    assert CredentialStore().resolve("ok.example") == Credential("u", "p")  # others still work


def test_docker_auth_without_colon_is_an_auth_error(env: Env) -> None:
    env.docker_config({"auths": {"reg.example": {"auth": b64("justonesecretword")}}})
    with pytest.raises(AuthError, match="user:password") as info:
        CredentialStore().resolve("reg.example")
    assert "justonesecretword" not in str(info.value)


def test_docker_config_unreadable_is_warned_and_skipped(env: Env) -> None:
    env.docker_config('{"auths": {"reg.example": {"auth": "broken-secret"')
    with structlog.testing.capture_logs() as logs:
        assert CredentialStore().resolve("reg.example") is None
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["docker_config_unreadable"]
    assert "broken-secret" not in repr(logs)


def test_docker_config_location(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    (env.home / ".docker").mkdir()
    (env.home / ".docker" / "config.json").write_text(json.dumps({"auths": {"reg.example": {"auth": b64("home:pw")}}}))
    env.docker_config({"auths": {"reg.example": {"auth": b64("dockerconfig:pw")}}})
    assert CredentialStore().resolve("reg.example") == Credential("dockerconfig", "pw")
    monkeypatch.delenv("DOCKER_CONFIG")
    assert CredentialStore().docker_config_file == env.home / ".docker" / "config.json"
    assert CredentialStore().resolve("reg.example") == Credential("home", "pw")


def test_no_config_anywhere_is_anonymous(env: Env) -> None:
    assert CredentialStore().resolve("reg.example") is None
    assert cr.resolve("docker.io") is None


# -- docker credential helpers (real scripts on PATH) ---------------------------------------


def test_creds_store_helper(env: Env) -> None:
    env.helper("fake", helper_json("helperuser", "helper:pass"))
    env.docker_config({"credsStore": "fake"})
    assert CredentialStore().resolve("https://reg.example:5000/") == Credential("helperuser", "helper:pass")
    assert env.calls("fake") == ["reg.example:5000"]


def test_helper_is_asked_for_docker_hub_by_its_index_url(env: Env) -> None:
    env.helper("fake", helper_json("hubuser", "hubsecret"))
    env.docker_config({"credsStore": "fake"})
    assert CredentialStore().resolve("registry-1.docker.io") == Credential("hubuser", "hubsecret")
    assert env.calls("fake") == ["https://index.docker.io/v1/"]


def test_cred_helpers_win_over_creds_store(env: Env) -> None:
    env.helper("store", helper_json("storeuser", "store-secret"))
    env.helper("special", helper_json("specialuser", "special-secret"))
    env.docker_config(
        {"credsStore": "store", "credHelpers": {"https://special.example": "special", "gcr.io": "gcloud"}}
    )
    store = CredentialStore()
    assert store.resolve("special.example") == Credential("specialuser", "special-secret")
    assert store.resolve("other.example") == Credential("storeuser", "store-secret")
    assert env.calls("special") == ["special.example"]
    assert env.calls("store") == ["other.example"]


def test_helper_is_authoritative_over_inline_auths(env: Env) -> None:
    """As in docker: with a helper configured, inline `auths` for the host are not used."""
    env.helper("fake", 'echo "credentials not found in native keychain"; exit 1')
    env.docker_config({"credsStore": "fake", "auths": {"reg.example": {"auth": b64("inline:pw")}}})
    assert CredentialStore().resolve("reg.example") is None


def test_helper_token_username_means_identity_token(env: Env) -> None:
    env.helper("fake", helper_json("<token>", "refresh-token-value"))
    env.docker_config({"credHelpers": {"reg.example": "fake"}})
    assert CredentialStore().resolve("reg.example") == Credential("<token>", "refresh-token-value", "identity_token")


def test_helper_credentials_not_found_is_anonymous(env: Env) -> None:
    env.helper("fake", 'echo "credentials not found in native keychain"; exit 1')
    env.docker_config({"credsStore": "fake"})
    assert CredentialStore().resolve("reg.example") is None
    assert env.calls("fake") == ["reg.example"]


def test_helper_not_found_on_stderr_is_anonymous(env: Env) -> None:
    env.helper("fake", 'echo "Credentials Not Found" >&2; exit 1')
    env.docker_config({"credsStore": "fake"})
    assert CredentialStore().resolve("reg.example") is None


def test_helper_empty_secret_is_anonymous(env: Env) -> None:
    env.helper("fake", helper_json("", ""))
    env.docker_config({"credsStore": "fake"})
    assert CredentialStore().resolve("reg.example") is None


def test_helper_failure_is_a_one_line_auth_error(env: Env) -> None:
    env.helper("fake", 'echo "error getting credentials - err: exit status 1" >&2\necho "second line" >&2\nexit 3')
    env.docker_config({"credsStore": "fake"})
    with pytest.raises(AuthError) as info:
        CredentialStore().resolve("reg.example")
    message = str(info.value)
    assert "\n" not in message
    assert "docker-credential-fake" in message
    assert "exit 3" in message
    assert "error getting credentials" in message


def test_helper_garbage_output_is_not_echoed(env: Env) -> None:
    env.helper("fake", 'echo "Username=alice Secret=leaky-secret-value"')
    env.docker_config({"credsStore": "fake"})
    with pytest.raises(AuthError, match="JSON object") as info:
        CredentialStore().resolve("reg.example")
    assert "leaky-secret-value" not in str(info.value)


def test_missing_helper_binary_names_it(env: Env) -> None:
    env.docker_config({"credsStore": "nonexistent-xyz"})
    with pytest.raises(AuthError, match="docker-credential-nonexistent-xyz not found on PATH"):
        CredentialStore().resolve("reg.example")


def test_helper_timeout_is_an_auth_error(env: Env) -> None:
    seen: list[tuple[list[str], str]] = []

    def hanging_runner(args: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        seen.append((args, kwargs["input"]))  # type: ignore[arg-type]
        raise subprocess.TimeoutExpired(args, kwargs["timeout"])  # type: ignore[arg-type]

    env.docker_config({"credsStore": "slow"})
    store = CredentialStore(runner=hanging_runner, helper_timeout=2)
    with pytest.raises(AuthError, match="docker-credential-slow did not answer within 2s"):
        store.resolve("docker.io")
    assert seen == [(["docker-credential-slow", "get"], "https://index.docker.io/v1/")]


# -- precedence ------------------------------------------------------------------------------


def test_manifesto_login_wins_over_docker_config(env: Env) -> None:
    env.helper("fake", helper_json("helperuser", "helper-secret"))
    env.docker_config({"credsStore": "fake", "auths": {"reg.example": {"auth": b64("inline:pw")}}})
    store = CredentialStore()
    store.save_login("reg.example", "loginuser", "login-secret")
    assert store.resolve("reg.example") == Credential("loginuser", "login-secret")
    assert env.calls("fake") == []  # the helper is not even asked
    store.delete_login("reg.example")
    assert store.resolve("reg.example") == Credential("helperuser", "helper-secret")


def test_resolve_logs_the_source_never_the_secret(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from manifesto import log

    monkeypatch.setattr(log, "_level", 10)  # the event is at debug level
    env.docker_config({"auths": {"reg.example": {"auth": b64("alice:logged-secret")}}})
    with structlog.testing.capture_logs() as logs:
        CredentialStore().resolve("reg.example")
        CredentialStore().resolve("anon.example")
    resolved = [(e["host"], e["source"]) for e in logs if e["event"] == "credentials_resolved"]
    assert resolved == [("reg.example", "docker_config"), ("anon.example", "anonymous")]
    assert "logged-secret" not in repr(logs)


# -- what the CLI calls ----------------------------------------------------------------------


def test_login_and_logout_helpers(env: Env) -> None:
    stored = cr.login("reg.example", "alice", "stdin-secret\n")  # as read by --password-stdin
    assert stored == StoredLogin("reg.example", "alice", "password", "file", str(env.credentials_file))
    assert str(stored) == str(env.credentials_file)  # what `manifesto login` prints
    assert cr.resolve("reg.example") == Credential("alice", "stdin-secret")
    assert cr.list_logins() == [stored]
    assert cr.logout("reg.example") is True
    assert cr.logout("reg.example") is False
    assert cr.list_logins() == []


def test_login_with_token_username_stores_identity_token(env: Env) -> None:
    assert cr.login("reg.example", "<token>", "idtok\r\n").kind == "identity_token"
    assert cr.resolve("reg.example") == Credential("<token>", "idtok", "identity_token")


def test_module_functions_accept_a_store(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MANIFESTO_KEYRING")
    kr = MemoryKeyring()
    store = CredentialStore(keyring_backend=kr)
    assert cr.save_login("reg.example", "alice", "store-secret", store=store).backend == "keyring"
    assert cr.resolve("reg.example", store=store) == Credential("alice", "store-secret")
    assert cr.delete_login("reg.example", store=store) is True
