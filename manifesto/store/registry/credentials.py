"""Where registry credentials come from: manifesto's login store, then docker's config, else none.

Users already have credentials in docker's config.json or a docker credential helper, so
manifesto reads those; `manifesto login` keeps its own in the OS keyring (or, on machines
without a usable keyring, a 0600 JSON file). The order lives in one place,
`CredentialStore.resolve`, so the registry client never needs to know where a secret came from.

Docker behaviour followed here (docker/cli `cli/config/configfile`): `credHelpers[host]` wins
over `credsStore`; when a helper is configured for a host it is authoritative (inline `auths`
for that host are not consulted); Docker Hub is looked up under "https://index.docker.io/v1/";
a helper is told the server on stdin and a username of "<token>" means the secret is an
identity token (docker-credential-helpers protocol).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from manifesto.errors import AuthError, ManifestoError, UsageError

Kind = Literal["password", "identity_token"]
Backend = Literal["keyring", "file"]
Runner = Callable[..., subprocess.CompletedProcess]

SERVICE = "manifesto"
DOCKER_HUB = "docker.io"
DOCKER_HUB_SERVER = "https://index.docker.io/v1/"
TOKEN_USERNAME = "<token>"
KEYRING_ENV = "MANIFESTO_KEYRING"

_KINDS = ("password", "identity_token")
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
_INDEX_KEY = "<hosts>"  # keyring entry listing stored hosts; "<" cannot occur in a host name
_NOT_FOUND = "credentials not found"
_HOST_END = re.compile(r"[/?#]")


@dataclass(frozen=True, repr=False)
class Credential:
    """A username and secret for one registry; the repr never shows the secret.

    Credentials end up in tracebacks, debug output and test failures, so hiding the
    secret in repr is the one place that covers all of them.
    """

    username: str
    secret: str
    kind: Kind = "password"

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"credential kind must be one of {_KINDS}, not {self.kind!r}")

    def __repr__(self) -> str:
        return f"Credential(username={self.username!r}, secret='***', kind={self.kind!r})"


KEYRING_LOCATION = "the system keyring"


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


def normalize_host(server: str) -> str:
    """Reduce a server string to the registry host it names, for comparing config keys.

    docker config keys come as "host", "https://host", "https://host/v1/" or "http://host",
    and Docker Hub answers to several names; all of them must find the same entry.
    """
    text = server.strip()
    _, sep, rest = text.partition("://")
    if sep:
        text = rest
    text = _HOST_END.split(text, maxsplit=1)[0].rsplit("@", 1)[-1].lower()
    if not text:
        raise UsageError(f"not a registry host: {server!r}")
    return DOCKER_HUB if text in _HUB_ALIASES else text


def _try_normalize(server: object) -> str | None:
    """normalize_host for keys read from a file, where junk must not stop the lookup."""
    if not isinstance(server, str):
        return None
    try:
        return normalize_host(server)
    except UsageError:
        return None


def _encode(cred: Credential) -> str:
    return json.dumps({"username": cred.username, "secret": cred.secret, "kind": cred.kind})


def _decode(entry: Any, host: str, where: str) -> Credential:
    """Turn a stored entry back into a Credential; corrupt entries are an AuthError."""
    if isinstance(entry, str):
        try:
            entry = json.loads(entry)
        except ValueError:
            entry = None
    if (
        isinstance(entry, dict)
        and isinstance(entry.get("username"), str)
        and isinstance(entry.get("secret"), str)
        and entry.get("kind", "password") in _KINDS
    ):
        return Credential(entry["username"], entry["secret"], entry.get("kind", "password"))
    raise AuthError(
        f"stored login for {host} in {where} is unreadable; "
        f"run `manifesto logout {host}` and log in again"
    )


class _KeyringFailed(Exception):
    """The keyring backend raised; the caller falls back to the file store."""


class _KeyringLogins:
    """Logins kept in the OS keyring, one entry per host plus an index for listing.

    Keyrings cannot enumerate entries portably, so the hosts are also kept in one
    extra entry; the index is best-effort and never holds secrets.
    """

    backend: Backend = "keyring"

    def __init__(self, keyring_backend: Any):
        self._kr = keyring_backend

    def _call(self, method: str, *args: str) -> Any:
        # Backends raise their own exception types (dbus, secretstorage, Windows errors),
        # not only keyring.errors.KeyringError, so anything they raise means "unusable".
        try:
            return getattr(self._kr, method)(SERVICE, *args)
        except Exception as exc:
            raise _KeyringFailed(type(exc).__name__) from exc

    def get(self, host: str) -> Credential | None:
        raw = self._call("get_password", host)
        return None if raw is None else _decode(raw, host, "the keyring")

    def put(self, host: str, cred: Credential) -> None:
        self._call("set_password", host, _encode(cred))
        hosts = self._hosts()
        if host not in hosts:
            self._call("set_password", _INDEX_KEY, json.dumps(sorted([*hosts, host])))

    def delete(self, host: str) -> bool:
        from keyring.errors import PasswordDeleteError

        try:
            self._kr.delete_password(SERVICE, host)
            removed = True
        except PasswordDeleteError:
            removed = False
        except Exception as exc:
            raise _KeyringFailed(type(exc).__name__) from exc
        hosts = self._hosts()
        if host in hosts:
            self._call("set_password", _INDEX_KEY, json.dumps([h for h in hosts if h != host]))
        return removed

    def _hosts(self) -> list[str]:
        raw = self._call("get_password", _INDEX_KEY)
        try:
            hosts = json.loads(raw) if raw else []
        except ValueError:
            return []
        return [h for h in hosts if isinstance(h, str)] if isinstance(hosts, list) else []

    def logins(self) -> dict[str, Credential]:
        found = {}
        for host in self._hosts():
            cred = self.get(host)
            if cred is not None:
                found[host] = cred
        return found


class _FileLogins:
    """Logins kept in a 0600 JSON file, for machines without a usable keyring.

    Written atomically (temp file in the same directory, then os.replace) so a crash or
    a concurrent reader never sees half a file.
    """

    backend: Backend = "file"

    def __init__(self, path: Path):
        self.path = path

    def _load(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise AuthError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            # JSONDecodeError messages give a position, never the file's content.
            raise AuthError(f"{self.path} is not valid JSON ({exc}); fix or delete it") from None
        logins = data.get("logins") if isinstance(data, dict) else None
        if not isinstance(logins, dict):
            raise AuthError(f"{self.path} has no 'logins' object; fix or delete it")
        return logins

    def _write(self, logins: dict[str, Any]) -> None:
        if not logins:
            self.path.unlink(missing_ok=True)
            return
        body = json.dumps({"version": 1, "logins": logins}, indent=2, sort_keys=True) + "\n"
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".credentials-", suffix=".tmp", dir=self.path.parent)
        try:
            os.chmod(tmp, 0o600)  # mkstemp already does; say it so the intent is visible
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(body)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def get(self, host: str) -> Credential | None:
        entry = self._load().get(host)
        return None if entry is None else _decode(entry, host, str(self.path))

    def put(self, host: str, cred: Credential) -> None:
        logins = self._load()
        logins[host] = json.loads(_encode(cred))
        try:
            self._write(logins)
        except OSError as exc:
            raise ManifestoError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    def delete(self, host: str) -> bool:
        logins = self._load()
        if host not in logins:
            return False
        del logins[host]
        try:
            self._write(logins)
        except OSError as exc:
            raise ManifestoError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        return True

    def logins(self) -> dict[str, Credential]:
        return {host: _decode(e, host, str(self.path)) for host, e in self._load().items()}


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

    @property
    def credentials_file(self) -> Path:
        """The fallback login file: $XDG_CONFIG_HOME/manifesto/credentials.json."""
        xdg = self._environ.get("XDG_CONFIG_HOME")
        base = Path(xdg) if xdg and os.path.isabs(xdg) else self._home() / ".config"
        return base / "manifesto" / "credentials.json"

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

    # -- docker's config -----------------------------------------------------------------

    def from_docker_config(self, host: str) -> Credential | None:
        """The credential docker would use for host: credential helper, else inline auths."""
        host = normalize_host(host)
        config = self._load_docker_config()
        if config is None:
            return None
        helpers = config.get("credHelpers")
        if isinstance(helpers, dict):
            for key, name in helpers.items():
                if isinstance(name, str) and name and _try_normalize(key) == host:
                    return self._run_helper(name, host, f"credHelpers[{key!r}]")
        store = config.get("credsStore")
        if isinstance(store, str) and store:
            return self._run_helper(store, host, "credsStore")
        return self._inline_auth(config.get("auths"), host)

    def _load_docker_config(self) -> dict[str, Any] | None:
        """docker's config as a dict; unreadable ones are warned about and skipped, as docker does."""
        path = self.docker_config_file
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            self._log().warning("docker_config_unreadable", path=str(path), reason=reason)
            return None
        if not isinstance(data, dict):
            self._log().warning("docker_config_unreadable", path=str(path), reason="not an object")
            return None
        return data

    def _inline_auth(self, auths: Any, host: str) -> Credential | None:
        if not isinstance(auths, dict):
            return None
        preferred = DOCKER_HUB_SERVER if host == DOCKER_HUB else host
        keys = [k for k, v in auths.items() if isinstance(v, dict) and _try_normalize(k) == host]
        keys.sort(key=lambda k: k != preferred)  # docker's own key first, then file order
        for key in keys:
            cred = self._parse_auth_entry(auths[key], key)
            if cred is not None:
                return cred
        return None

    def _parse_auth_entry(self, entry: dict[str, Any], key: str) -> Credential | None:
        where = f"{self.docker_config_file}: auths[{key!r}]"
        username = entry.get("username") if isinstance(entry.get("username"), str) else ""
        password = entry.get("password") if isinstance(entry.get("password"), str) else ""
        auth = entry.get("auth")
        if isinstance(auth, str) and auth.strip():
            encoded = auth.strip()
            encoded += "=" * (-len(encoded) % 4)
            try:
                decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise AuthError(f"{where}.auth is not valid base64") from None
            username, sep, password = decoded.partition(":")  # the password may hold ':'
            if not sep:
                raise AuthError(f"{where}.auth does not decode to user:password")
        token = entry.get("identitytoken")
        if isinstance(token, str) and token:
            return Credential(username or TOKEN_USERNAME, token, "identity_token")
        if password:
            return Credential(username, password, "password")
        return None

    def _run_helper(self, name: str, host: str, origin: str) -> Credential | None:
        """Ask docker-credential-<name> for host; "credentials not found" means anonymous."""
        program = f"docker-credential-{name}"
        server = DOCKER_HUB_SERVER if host == DOCKER_HUB else host
        try:
            proc = self._runner(
                [program, "get"],
                input=server,
                capture_output=True,
                text=True,
                encoding="utf-8",
                errors="replace",
                timeout=self._helper_timeout,
                env=dict(self._environ),
                check=False,
            )
        except FileNotFoundError:
            raise AuthError(
                f"{program} not found on PATH (named by {origin} in {self.docker_config_file})"
            ) from None
        except subprocess.TimeoutExpired:
            raise AuthError(
                f"{program} did not answer within {self._helper_timeout:g}s for {host}"
            ) from None
        except OSError as exc:
            raise AuthError(f"cannot run {program}: {exc.strerror or exc}") from None
        out, err = proc.stdout or "", proc.stderr or ""
        if proc.returncode != 0:
            if _NOT_FOUND in (out + err).lower():
                return None
            detail = _first_line(err) or _first_line(out) or "no output"
            raise AuthError(f"{program} get failed for {host} (exit {proc.returncode}): {detail}")
        try:
            data = json.loads(out)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            # Never echo the output: a half-broken helper may still have printed the secret.
            raise AuthError(f"{program} get returned something other than a JSON object for {host}")
        username, secret = data.get("Username") or "", data.get("Secret") or ""
        if not isinstance(username, str) or not isinstance(secret, str) or not secret:
            return None
        kind: Kind = "identity_token" if username == TOKEN_USERNAME else "password"
        return Credential(username, secret, kind)

    # -- the one question the client asks ---------------------------------------------------

    def resolve(self, host: str) -> Credential | None:
        """The credential for host: `manifesto login` store, then docker's config, else None."""
        host = normalize_host(host)
        cred = self.get_login(host)
        source = "manifesto_login"
        if cred is None:
            cred = self.from_docker_config(host)
            source = "docker_config"
        self._log().debug(
            "credentials_resolved",
            host=host,
            source=source if cred else "anonymous",
            kind=cred.kind if cred else None,
        )
        return cred


def _keyring_usable(backend: Any) -> bool:
    """False for keyring's "no backend" stand-ins, which fail (or do nothing) on every call."""
    from keyring.backends import chainer, fail, null

    if isinstance(backend, (fail.Keyring, null.Keyring)):
        return False
    if isinstance(backend, chainer.ChainerBackend) and not backend.backends:
        return False
    return True


def _first_line(text: str, limit: int = 200) -> str:
    for line in text.splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= limit else line[: limit - 3] + "..."
    return ""


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
