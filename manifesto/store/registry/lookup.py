"""Where registry credentials come from: manifesto's login store, then what other tools keep.

Users already have credentials in docker's config.json (or a docker credential helper), in
podman/skopeo/buildah's auth.json, or, in GitLab CI, in the DOCKER_AUTH_CONFIG variable, so
manifesto reads those (`dockerconfig`: one reader for all of them, they share one format);
`manifesto login` keeps its own in the OS keyring (or, on machines without a usable keyring, a
0600 JSON file; `logins`). The order lives in one place, `CredentialStore.sources`, so the
registry client never needs to know where a secret came from. This module is the one to import
from (`credential`, `logins` and `dockerconfig` hold the pieces).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from manifesto.errors import ManifestoError, UsageError
from manifesto.store.registry.credential import Credential, Kind, normalize_host
from manifesto.store.registry.dockerconfig import TOKEN_USERNAME, DockerConfig, Runner
from manifesto.store.registry.logins import (
    Backend,
    _FileLogins,
    _keyring_usable,
    _KeyringFailed,
    _KeyringLogins,
)

__all__ = [
    "Credential",
    "CredentialStore",
    "Kind",
    "OncePerHost",
    "StoredLogin",
    "delete_login",
    "list_logins",
    "login",
    "logout",
    "normalize_host",
    "resolve",
    "save_login",
]

KEYRING_ENV = "MANIFESTO_KEYRING"
AUTH_CONFIG_ENV = "DOCKER_AUTH_CONFIG"  # GitLab CI: a whole docker config.json as a variable
AUTH_FILE_ENV = "REGISTRY_AUTH_FILE"  # podman, skopeo, buildah: the auth.json to use

KEYRING_LOCATION = "the system keyring"
# keyring finds its backend once per process, but lookups that start together (a run's
# builds) would each search for it (importing every backend) before the first one is kept.
_KEYRING_LOAD = threading.Lock()


@dataclass(frozen=True)
class StoredLogin:
    """One `manifesto login` entry, without its secret, for listing and CLI messages.

    str() gives where it lives ("the system keyring" or the file's path), because that is
    what `manifesto login` tells the user after storing it.
    """

    host: str
    username: str
    kind: Kind
    backend: Backend
    location: str

    def __str__(self) -> str:
        return self.location


class CredentialStore:
    """Finds the credential for a registry host, and keeps `manifesto login` entries.

    Everything it touches is passed in or read from `environ` at call time (HOME,
    XDG_CONFIG_HOME, DOCKER_CONFIG, MANIFESTO_KEYRING, PATH for helpers), so tests and
    callers can point it anywhere without patching globals.
    """

    def __init__(
        self,
        *,
        environ: Mapping[str, str] | None = None,
        runner: Runner = subprocess.run,
        keyring_backend: Any = None,
        logger: Any = None,
        helper_timeout: float = 60.0,
    ):
        self._environ = os.environ if environ is None else environ
        self._runner = runner
        self._keyring_backend = keyring_backend
        self._logger = logger
        self._helper_timeout = helper_timeout
        self._keyring_broken = False
        self._warned_file = False

    # -- where things live -------------------------------------------------------------

    def _home(self) -> Path:
        home = self._environ.get("HOME")
        return Path(home) if home else Path.home()

    def _config_home(self) -> Path:
        """$XDG_CONFIG_HOME when it is absolute (the XDG spec ignores a relative one), else ~/.config."""
        xdg = self._environ.get("XDG_CONFIG_HOME")
        return Path(xdg) if xdg and os.path.isabs(xdg) else self._home() / ".config"

    @property
    def credentials_file(self) -> Path:
        """The fallback login file: $XDG_CONFIG_HOME/manifesto/credentials.json."""
        return self._config_home() / "manifesto" / "credentials.json"

    @property
    def docker_config_file(self) -> Path:
        """docker's config: $DOCKER_CONFIG/config.json, else ~/.docker/config.json."""
        custom = self._environ.get("DOCKER_CONFIG")
        return Path(custom) / "config.json" if custom else self._home() / ".docker" / "config.json"

    def _log(self) -> Any:
        if self._logger is None:
            from manifesto.log import get_logger

            self._logger = get_logger("manifesto.credentials")
        return self._logger

    def _file(self) -> _FileLogins:
        return _FileLogins(self.credentials_file)

    def _keyring(self) -> _KeyringLogins | None:
        """The keyring store, or None when it is switched off or has no usable backend."""
        mode = (self._environ.get(KEYRING_ENV) or "auto").strip().lower()
        if mode == "file":
            return None
        if mode != "auto":
            raise UsageError(f"{KEYRING_ENV} must be 'file' or 'auto', not {mode!r}")
        if self._keyring_broken:
            return None
        backend = self._keyring_backend
        try:
            if backend is None:
                with _KEYRING_LOAD:
                    import keyring

                    backend = keyring.get_keyring()
            usable = _keyring_usable(backend)
        except Exception as exc:  # a broken keyring install must not break anonymous pulls
            self._log().debug("keyring_unavailable", error=type(exc).__name__)
            usable = False
        if not usable:
            self._keyring_broken = True
            return None
        return _KeyringLogins(backend)

    def _keyring_failed(self, exc: _KeyringFailed) -> None:
        self._keyring_broken = True
        self._log().debug("keyring_unavailable", error=str(exc))

    # -- manifesto's own logins --------------------------------------------------------

    def get_login(self, host: str) -> Credential | None:
        """The `manifesto login` credential for host: keyring first, then the file."""
        host = normalize_host(host)
        store = self._keyring()
        if store is not None:
            try:
                found = store.get(host)
            except _KeyringFailed as exc:
                self._keyring_failed(exc)
            else:
                if found is not None:
                    return found
        return self._file().get(host)

    def save_login(
        self, host: str, username: str, secret: str, kind: Kind = "password"
    ) -> StoredLogin:
        """Store a login for host in the keyring, or the file when no keyring works."""
        host = normalize_host(host)
        if not username:
            raise UsageError("a username is required")
        if not secret:
            raise UsageError("a password or token is required")
        cred = Credential(username, secret, kind)
        store = self._keyring()
        if store is not None:
            try:
                store.put(host, cred)
            except _KeyringFailed as exc:
                self._keyring_failed(exc)
            else:
                self._file().delete(host)  # an older file entry would only confuse listing
                return StoredLogin(host, username, kind, "keyring", KEYRING_LOCATION)
        self._file().put(host, cred)
        self._warn_file_once()
        return StoredLogin(host, username, kind, "file", str(self.credentials_file))

    def delete_login(self, host: str) -> bool:
        """Remove host's login from the keyring and the file; True if either held one."""
        host = normalize_host(host)
        removed = False
        store = self._keyring()
        if store is not None:
            try:
                removed = store.delete(host)
            except _KeyringFailed as exc:
                self._keyring_failed(exc)
        return self._file().delete(host) or removed

    def list_logins(self) -> list[StoredLogin]:
        """Every `manifesto login` entry, sorted by host; keyring entries shadow file ones."""
        found: dict[str, StoredLogin] = {}
        file = self._file()
        for host, cred in file.logins().items():
            found[host] = StoredLogin(host, cred.username, cred.kind, "file", str(file.path))
        store = self._keyring()
        if store is not None:
            try:
                for host, cred in store.logins().items():
                    found[host] = StoredLogin(host, cred.username, cred.kind, "keyring", KEYRING_LOCATION)
            except _KeyringFailed as exc:
                self._keyring_failed(exc)
        return [found[h] for h in sorted(found)]

    def _warn_file_once(self) -> None:
        if self._warned_file:
            return
        self._warned_file = True
        forced = (self._environ.get(KEYRING_ENV) or "").strip().lower() == "file"
        self._log().warning(
            "credentials_stored_in_file",
            path=str(self.credentials_file),
            reason=f"{KEYRING_ENV}=file" if forced else "no usable keyring backend",
        )

    # -- other tools' stores (docker, podman, CI) ----------------------------------------

    def _docker_config(self, path: Path | str | None = None, **kw: Any) -> DockerConfig:
        return DockerConfig(
            self.docker_config_file if path is None else path,
            environ=self._environ,
            runner=self._runner,
            helper_timeout=self._helper_timeout,
            log=self._log,
            **kw,
        )

    @property
    def containers_auth_files(self) -> list[Path]:
        """podman/skopeo's auth.json: $XDG_RUNTIME_DIR's (where `podman login` writes), then
        $XDG_CONFIG_HOME's (~/.config/containers/auth.json), as containers-auth.json(5) reads them."""
        runtime = self._environ.get("XDG_RUNTIME_DIR")
        files = [Path(runtime) / "containers" / "auth.json"] if runtime and os.path.isabs(runtime) else []
        return [*files, self._config_home() / "containers" / "auth.json"]

    def sources(self) -> list[tuple[str, DockerConfig]]:
        """Other tools' credential stores, in the order asked (after `manifesto login`).

        Settings made for this run come before files kept for every run: DOCKER_AUTH_CONFIG
        (set by a CI job), then the file REGISTRY_AUTH_FILE names, then docker's config (what
        manifesto has always read, so an existing setup resolves as before), then podman's
        auth.json files. The first store that knows the host answers; the rest are not read.
        """
        found: list[tuple[str, DockerConfig]] = []
        inline = self._environ.get(AUTH_CONFIG_ENV)
        if inline and inline.strip():
            found.append((AUTH_CONFIG_ENV, self._docker_config(f"${AUTH_CONFIG_ENV}", text=inline)))
        auth_file = self._environ.get(AUTH_FILE_ENV)
        if auth_file:
            found.append((AUTH_FILE_ENV, self._docker_config(Path(auth_file), namespaced_keys=True)))
        found.append(("docker_config", self._docker_config()))
        for path in self.containers_auth_files:
            found.append(("containers_auth", self._docker_config(path, namespaced_keys=True)))
        return found

    # -- the one question the client asks ---------------------------------------------------

    def resolve(self, host: str) -> Credential | None:
        """The credential for host: `manifesto login` store, then `sources()`, else None."""
        host = normalize_host(host)
        cred = self.get_login(host)
        source, where = "manifesto_login", None
        if cred is None:
            for source, config in self.sources():
                cred = config.credential(host)
                if cred is not None:
                    where = str(config.path)
                    break
        self._log().debug(
            "credentials_resolved",
            host=host,
            source=source if cred else "anonymous",
            where=where,
            kind=cred.kind if cred else None,
        )
        return cred


class OncePerHost:
    """A lookup for one run: each host's credential (or its absence) looked up once, however
    many threads ask at once; another host is looked up on its own.

    Why: a run's builds start together and ask for the same registries, and every lookup may
    load the keyring or run a credential helper. A failed lookup is the answer too (the
    threads waiting for it get its error at once, not a helper run each); an answer is kept
    for `ttl` seconds at most (a helper's tokens expire; a long run's later builds ask again),
    and for this run only (a login made later is seen by the next run). `lookup` defaults to
    resolve (the default places).
    """

    def __init__(self, lookup: Callable[[str], Credential | None] | None = None, ttl: float = 300.0):
        self._lookup = lookup or resolve
        self._ttl = ttl
        self._lock = threading.Lock()
        self._hosts: dict[str, threading.Lock] = {}
        self._found: dict[str, tuple[float, Credential | None | ManifestoError]] = {}

    def __call__(self, host: str) -> Credential | None:
        key = normalize_host(host)
        with self._lock:
            one = self._hosts.setdefault(key, threading.Lock())
        with one:  # a second thread asking for this host waits for the first one's answer
            kept = self._found.get(key)
            if kept is None or time.monotonic() - kept[0] > self._ttl:
                try:
                    answer: Credential | None | ManifestoError = self._lookup(host)
                except ManifestoError as e:
                    answer = e
                kept = self._found[key] = (time.monotonic(), answer)
        if isinstance(kept[1], ManifestoError):
            raise kept[1]
        return kept[1]


# -- what the CLI calls ---------------------------------------------------------------------


def resolve(host: str, *, store: CredentialStore | None = None) -> Credential | None:
    """The credential for host from the default places (see CredentialStore.resolve)."""
    return (store or CredentialStore()).resolve(host)


def save_login(
    host: str,
    username: str,
    secret: str,
    kind: Kind = "password",
    *,
    store: CredentialStore | None = None,
) -> StoredLogin:
    """Store a `manifesto login` entry; returns where it went (keyring or file)."""
    return (store or CredentialStore()).save_login(host, username, secret, kind)


def delete_login(host: str, *, store: CredentialStore | None = None) -> bool:
    """Remove host's `manifesto login` entry; True if there was one."""
    return (store or CredentialStore()).delete_login(host)


def list_logins(*, store: CredentialStore | None = None) -> list[StoredLogin]:
    """Every `manifesto login` entry, without secrets."""
    return (store or CredentialStore()).list_logins()


def login(
    host: str,
    username: str,
    secret: str,
    *,
    kind: Kind | None = None,
    store: CredentialStore | None = None,
) -> StoredLogin:
    """Save what `manifesto login` was given; trailing newlines from --password-stdin are dropped.

    A username of "<token>" stores an identity token unless kind says otherwise, matching
    the docker credential-helper convention. Checking the login against the registry is
    the caller's job (it owns the HTTP client).
    """
    secret = secret.rstrip("\r\n")
    if kind is None:
        kind = "identity_token" if username == TOKEN_USERNAME else "password"
    return save_login(host, username, secret, kind, store=store)


def logout(host: str, *, store: CredentialStore | None = None) -> bool:
    """Forget host's `manifesto login`; False means there was nothing to remove.

    Docker's config is never touched: that belongs to `docker logout`.
    """
    return delete_login(host, store=store)
