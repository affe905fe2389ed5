"""Start real Debian `docker-registry` (distribution 2.8) instances on loopback ports.

Why: house rule 8 — tests talk to a real registry. Each instance gets its own config,
storage and log in a private directory, listens on a free 127.0.0.1 port, and is
stopped with SIGTERM. Three auth variants: anonymous, htpasswd (Basic), token
(Bearer via `tests.support.tokenserver.TokenServer`).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import httpx
import yaml

from .tokenserver import DEFAULT_USERS, TokenServer
from .tools import free_port, run

REGISTRY_BIN = os.environ.get("MANIFESTO_TEST_REGISTRY_BIN", "/usr/bin/docker-registry")
HTPASSWD_REALM = "manifesto-test"

Auth = Literal["none", "htpasswd", "token"]


class RegistryStartError(RuntimeError):
    pass


class Registry:
    """A running docker-registry. Use as a context manager or call ``stop()``.

    Attributes: ``host`` ("127.0.0.1:PORT"), ``url`` ("http://127.0.0.1:PORT"),
    ``auth`` ("none" | "htpasswd" | "token"), ``username``/``password`` (first user,
    for htpasswd/token), ``users`` (all), ``token_server`` (token variant), ``directory``
    (config, storage, log), ``storage`` (filesystem root), ``log_path``.
    """

    def __init__(
        self,
        directory: str | Path | None = None,
        *,
        auth: Auth = "none",
        users: Mapping[str, str] | None = None,
        token_server: TokenServer | None = None,
        extra_config: Mapping[str, Any] | None = None,
        accesslog: bool = True,
        start_timeout: float = 20.0,
    ) -> None:
        if directory is None:
            directory = tempfile.mkdtemp(prefix="manifesto-registry-")
            self._owns_dir = True
        else:
            self._owns_dir = False
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.auth: Auth = auth
        self.storage = self.directory / "storage"
        self.config_path = self.directory / "config.yml"
        self.log_path = self.directory / "registry.log"
        self.users: dict[str, str] = dict(DEFAULT_USERS if users is None else users)
        self.token_server: TokenServer | None = None
        self._own_token_server = False
        self._extra = dict(extra_config or {})
        self._accesslog = accesslog
        self._timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        if auth == "token":
            if token_server is None:
                token_server = TokenServer(self.directory / "token", users=self.users).start()
                self._own_token_server = True
            self.token_server = token_server
            self.users = token_server.users
        elif auth not in ("none", "htpasswd"):
            raise ValueError(f"unknown auth {auth!r}")

    # -- public --------------------------------------------------------------------

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def username(self) -> str | None:
        return next(iter(self.users)) if self.auth != "none" and self.users else None

    @property
    def password(self) -> str | None:
        return self.users[self.username] if self.username else None

    @property
    def creds(self) -> tuple[str, str] | None:
        """(username, password) or None for an anonymous registry."""
        return (self.username, self.password) if self.username and self.password else None

    @property
    def service(self) -> str | None:
        return self.token_server.service if self.token_server else None

    def ref(self, repo: str, tag_or_digest: str | None = None) -> str:
        """A reference in this registry: ``127.0.0.1:PORT/repo[:tag|@digest]``."""
        if not tag_or_digest:
            return f"{self.host}/{repo}"
        sep = "@" if tag_or_digest.startswith("sha256:") else ":"
        return f"{self.host}/{repo}{sep}{tag_or_digest}"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def client(self, **kwargs: Any) -> httpx.Client:
        """An httpx.Client with base_url=url (no auth). Caller closes it."""
        return httpx.Client(base_url=self.url, timeout=kwargs.pop("timeout", 30), **kwargs)

    def start(self) -> Registry:
        if not Path(REGISTRY_BIN).exists():
            raise RegistryStartError(f"{REGISTRY_BIN} not found (apt-get install docker-registry)")
        self.storage.mkdir(exist_ok=True)
        if self.auth == "htpasswd":
            self._write_htpasswd()
        last_error = ""
        for _attempt in range(5):  # a port picked by free_port() can be taken by a racing worker
            self.port = free_port()
            self._write_config()
            if self._spawn_and_wait():
                return self
            last_error = self.log_tail()
            if "address already in use" not in last_error:
                break
        self._stop_proc()
        raise RegistryStartError(
            f"docker-registry did not start on {self.host} within {self._timeout}s "
            f"(config {self.config_path}); log tail:\n{last_error}"
        )

    def stop(self) -> None:
        self._stop_proc()
        if self._own_token_server and self.token_server is not None:
            self.token_server.stop()
        if self._owns_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Registry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Registry {self.auth} {self.url}>"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- internals -------------------------------------------------------------------

    def _write_htpasswd(self) -> None:
        htpasswd = shutil.which("htpasswd")
        if htpasswd is None:
            raise RegistryStartError("htpasswd not found (apt-get install apache2-utils)")
        lines = []
        for name, password in self.users.items():
            # -B bcrypt (the only scheme distribution accepts), -C 4: cheapest cost, fast tests
            out = run([htpasswd, "-Bbn", "-C", "4", name, password]).stdout.strip()
            lines.append(out)
        (self.directory / "htpasswd").write_text("\n".join(lines) + "\n")

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "version": 0.1,
            "log": {
                "level": "warn",
                "formatter": "text",
                "accesslog": {"disabled": not self._accesslog},
            },
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage)},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
                # no `cache:` block: an in-memory blob descriptor cache serves
                # deleted blobs; tests want what is on disk.
            },
            "http": {
                "addr": f"127.0.0.1:{self.port}",
                "secret": secrets.token_hex(16),
                "headers": {"X-Content-Type-Options": ["nosniff"]},
            },
            "health": {"storagedriver": {"enabled": False}},
        }
        if self.auth == "htpasswd":
            cfg["auth"] = {
                "htpasswd": {"realm": HTPASSWD_REALM, "path": str(self.directory / "htpasswd")}
            }
        elif self.auth == "token":
            ts = self.token_server
            assert ts is not None
            cfg["auth"] = {
                "token": {
                    "realm": ts.realm,
                    "service": ts.service,
                    "issuer": ts.issuer,
                    "rootcertbundle": str(ts.rootcertbundle),
                }
            }
        _deep_merge(cfg, self._extra)
        return cfg

    def _write_config(self) -> None:
        self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))

    def _spawn_and_wait(self) -> bool:
        log = open(self.log_path, "ab")
        try:
            self._proc = subprocess.Popen(
                [REGISTRY_BIN, "serve", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                env={k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")},
                start_new_session=True,
            )
        finally:
            log.close()
        deadline = time.monotonic() + self._timeout
        with httpx.Client(timeout=2) as c:
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    return False
                try:
                    c.get(f"{self.url}/v2/")
                    return True  # any HTTP status means it is serving
                except httpx.TransportError:
                    time.sleep(0.05)
        return False

    def _stop_proc(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for k, v in extra.items():
        if isinstance(v, Mapping) and isinstance(base.get(k), dict):
            _deep_merge(base[k], v)
        else:
            base[k] = v


def start_registry(directory: str | Path | None = None, *, auth: Auth = "none", **kwargs: Any) -> Registry:
    """Create and start a Registry (see ``Registry`` for keyword arguments)."""
    return Registry(directory, auth=auth, **kwargs).start()
