"""docker's config.json and its docker-credential-* helpers, read the way docker reads them.

Users already have credentials there, so manifesto uses them rather than asking for a second
login; reading them exactly as docker does is what makes that safe.

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
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from manifesto.errors import AuthError
from manifesto.oci.reference import DOCKER_HUB
from manifesto.store.registry.credential import (
    Credential,
    Kind,
    _try_normalize,
)

Runner = Callable[..., subprocess.CompletedProcess]

DOCKER_HUB_SERVER = "https://index.docker.io/v1/"
TOKEN_USERNAME = "<token>"

_NOT_FOUND = "credentials not found"


def config_key(host: str) -> str:
    """The key docker files a normalized host's credential under (and tells its helpers).

    docker/cli `registry.GetAuthConfigKey`: Docker Hub is the legacy index URL, any other
    registry its bare host.
    """
    return DOCKER_HUB_SERVER if host == DOCKER_HUB else host


class DockerConfig:
    """One docker config file, asked for the credential docker would use for a host.

    The same shape serves podman/skopeo's auth.json (containers-auth.json(5): `auths`,
    `credHelpers`, `credsStore`) and GitLab's DOCKER_AUTH_CONFIG (a whole config.json held in
    an environment variable: `text`, named by `path` in messages). In an auth.json a key
    without a scheme that names a path ("quay.io/team") holds a credential for that namespace
    only; manifesto asks for one credential per registry, so `namespaced_keys` skips those
    rather than sending a namespace's secret to every repository of the registry.

    Everything it needs (environment for helpers, the subprocess runner, a logger) is
    passed in by `CredentialStore`, so tests can point it anywhere without patching globals.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        environ: Mapping[str, str],
        runner: Runner,
        helper_timeout: float,
        log: Callable[[], Any],
        text: str | None = None,
        namespaced_keys: bool = False,
    ):
        self.path = path
        self._text = text
        self._namespaced_keys = namespaced_keys
        self._environ = environ
        self._runner = runner
        self._helper_timeout = helper_timeout
        self._log = log

    def credential(self, host: str) -> Credential | None:
        """The credential docker would use for a normalized host: helper, else inline auths."""
        config = self._load()
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

    def _load(self) -> dict[str, Any] | None:
        """docker's config as a dict; unreadable ones are warned about and skipped, as docker does."""
        path = self.path
        try:
            text = self._text if self._text is not None else Path(path).read_text(encoding="utf-8")
            data = json.loads(text)
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
        preferred = config_key(host)
        keys = [
            k
            for k, v in auths.items()
            if isinstance(v, dict) and _try_normalize(k) == host and not (self._namespaced_keys and _namespaced(k))
        ]
        keys.sort(key=lambda k: k != preferred)  # docker's own key first, then file order
        for key in keys:
            cred = self._parse_auth_entry(auths[key], key)
            if cred is not None:
                return cred
        return None

    def _parse_auth_entry(self, entry: dict[str, Any], key: str) -> Credential | None:
        where = f"{self.path}: auths[{key!r}]"
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
        server = config_key(host)
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
                f"{program} not found on PATH (named by {origin} in {self.path})"
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


def _namespaced(key: str) -> bool:
    """An auth.json key for one namespace ("quay.io/team"), not a whole registry: no scheme,
    and a path after the host (containers-auth.json(5); URL keys are docker's legacy form)."""
    return "://" not in key and "/" in key.strip().rstrip("/")


def _first_line(text: str, limit: int = 200) -> str:
    for line in text.splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= limit else line[: limit - 3] + "..."
    return ""
