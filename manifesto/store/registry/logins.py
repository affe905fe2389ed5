"""Where `manifesto login` keeps credentials: the OS keyring, else a 0600 JSON file.

A keyring keeps secrets out of plain files where one works; headless machines often have
none (or only keyring's "fail"/"null" stand-ins), so a private file is the fallback. Choosing
between them, and falling back when a keyring breaks mid-call, is `CredentialStore`'s job;
these classes only store and fetch. `keyring` itself is imported only when first used, so
resolving credentials from docker's config never pays for it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

from manifesto.errors import AuthError, ManifestoError
from manifesto.store.registry.credential import _KINDS, Credential

Backend = Literal["keyring", "file"]

SERVICE = "manifesto"

_INDEX_KEY = "<hosts>"  # keyring entry listing stored hosts; "<" cannot occur in a host name


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


def _keyring_usable(backend: Any) -> bool:
    """False for keyring's "no backend" stand-ins, which fail (or do nothing) on every call."""
    from keyring.backends import chainer, fail, null

    if isinstance(backend, (fail.Keyring, null.Keyring)):
        return False
    if isinstance(backend, chainer.ChainerBackend) and not backend.backends:
        return False
    return True
