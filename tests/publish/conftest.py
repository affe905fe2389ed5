"""Fixtures for the publish tests: the hello example, isolated CLI state, registry access logs.

Builds on tests/conftest.py (registries, busybox images). What is added here:

  hello          examples/hello with its per-arch rootfs laid out (session; checks qemu binfmt)
  new_state      new_state(name) -> State: HOME/XDG_*/DOCKER_CONFIG of its own, i.e. one
                 "machine" (own buildah storage under XDG_CACHE_HOME, own logins, own drafts)
  State.run      run the real CLI as a subprocess in that state (SOURCE_DATE_EPOCH set)
  AccessLog      the registry's access log as requests; `since(mark)` = what one command did
  tags_of, catalog_of, manifest_raw, head_status   small raw-HTTP views of a registry
  spec_file      write a platforms.yaml (and friends) into a directory

State is a plain class, not tied to `tmp_home`, so module-scoped fixtures (one five-arch
publish reused by many tests) can use it too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from manifesto.builders.binfmt import check as binfmt_check
from manifesto.builders.binfmt import fix as binfmt_fix
from manifesto.oci.platform import Platform
from tests.support import Registry
from tests.support.tools import REPO_ROOT, CliResult, missing, private_home, require, run, run_cli

HELLO = REPO_ROOT / "examples" / "hello"
EPOCH = "1700000000"
FIVE = ("linux/amd64", "linux/arm64/v8", "linux/arm/v7", "linux/ppc64le", "linux/s390x")
# what `uname -m` says on each platform (natively or under qemu)
UNAME = {
    "linux/amd64": "x86_64",
    "linux/arm64/v8": "aarch64",
    "linux/arm/v7": "armv7l",
    "linux/ppc64le": "ppc64le",
    "linux/s390x": "s390x",
}
# docker-library namespaces ({arch_ns} of arch_tag)
ARCH_NS = {
    "linux/amd64": "amd64",
    "linux/arm64/v8": "arm64v8",
    "linux/arm/v7": "arm32v7",
    "linux/ppc64le": "ppc64le",
    "linux/s390x": "s390x",
}
DIGEST_LINE = re.compile(r"^sha256:[0-9a-f]{64}$")
ACCEPT_ALL = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


def tag_held(host: str, repo: str, tag: str) -> str | None:
    """The digest a tag holds (None: absent), read over plain HTTP from the registry at `host`."""
    import httpx

    r = httpx.head(f"http://{host}/v2/{repo}/manifests/{tag}", headers={"Accept": ACCEPT_ALL}, timeout=30)
    if r.status_code == 404:
        return None
    r.raise_for_status()
    return r.headers["Docker-Content-Digest"]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def slug(platform: str) -> str:
    """linux/arm64/v8 -> linux-arm64-v8 (digest file names, state dir names)."""
    return platform.replace("/", "-")


# ---- the hello example -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def hello() -> Path:
    """examples/hello, its rootfs-<arch>/ laid out, and qemu binfmt usable for the foreign four."""
    require("buildah")
    done = run(["bash", HELLO / "prepare.sh"], check=False, timeout=900)
    if done.returncode != 0:
        missing(f"examples/hello/prepare.sh failed (needs busybox-static .debs): {done.stderr[-800:]}")
    foreign = [Platform.parse(p) for p in FIVE[1:]]
    problems = binfmt_check(foreign)
    if problems and os.geteuid() == 0:
        binfmt_fix(problems)
        problems = binfmt_check(foreign)
    if problems:
        missing("qemu binfmt not usable: " + "; ".join(map(str, problems)))
    return HELLO


def spec_file(directory: Path, text: str, name: str = "platforms.yaml", **files: str) -> Path:
    """Write `name` (dedented) and any extra files (`Dockerfile_fail="..."` -> Dockerfile.fail)."""
    directory.mkdir(parents=True, exist_ok=True)
    for fname, content in files.items():
        (directory / fname.replace("_", ".")).write_text(textwrap.dedent(content))
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


# ---- isolated CLI state ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class State:
    """One machine's manifesto state: HOME, XDG_* (buildah storage, logins, drafts), DOCKER_CONFIG."""

    root: Path
    env: dict[str, str]

    @classmethod
    def make(cls, root: Path) -> State:
        env = private_home(root / "home")
        env.update(MANIFESTO_KEYRING="file", SOURCE_DATE_EPOCH=EPOCH)
        return cls(root, env)

    @property
    def cache(self) -> Path:
        return Path(self.env["XDG_CACHE_HOME"])

    def run(self, *args: Any, cwd: Path | None = None, env: dict[str, str] | None = None,
            input: str | None = None, timeout: float = 600) -> CliResult:
        """`manifesto ARGS...` as a subprocess in this state; returns (rc, stdout, stderr)."""
        return run_cli(*args, home_env=self.env, env=env, input=input, cwd=cwd, timeout=timeout)

    def shell_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """A full environment for `bash -c` lines that call `manifesto` (venv first on PATH)."""
        from tests.support.tools import cli_command

        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("XDG_", "DOCKER_", "REGISTRY_AUTH", "CONTAINERS_"))}
        bindir = str(Path(cli_command()[0]).parent) if len(cli_command()) == 1 else None
        if bindir:
            base["PATH"] = bindir + os.pathsep + base.get("PATH", "")
        base.update(self.env)
        base["NO_COLOR"] = "1"
        base.update(extra or {})
        return base


@pytest.fixture
def new_state(tmp_path: Path) -> Callable[[str], State]:
    """new_state("amd64") -> a State of its own under tmp_path (one per name)."""

    def make(name: str) -> State:
        return State.make(tmp_path / "state" / name)

    return make


def one_error_line(err: str) -> str:
    """The single `manifesto: error:` line of a failure; asserts one line and no traceback."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("manifesto: error:")]
    assert len(errors) == 1 and len(lines) == 1, f"expected one error line, got:\n{err}"
    return errors[0]


# ---- registries: raw HTTP views and the access log -----------------------------------------------


_ACCESS = re.compile(r'"(?P<method>[A-Z]+) (?P<uri>\S+) HTTP/[0-9.]+" (?P<status>\d{3}) ')


@dataclasses.dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    status: int

    @property
    def is_write(self) -> bool:
        return self.method in ("PUT", "POST", "PATCH", "DELETE")

    def manifest_ref(self) -> str | None:
        """For /v2/<repo>/manifests/<ref>: the ref (tag or digest)."""
        m = re.match(r"^/v2/.+/manifests/([^/]+)$", self.path)
        return m.group(1) if m else None

    @property
    def is_tag_put(self) -> bool:
        ref = self.manifest_ref()
        return self.method == "PUT" and ref is not None and not ref.startswith("sha256:")

    @property
    def is_manifest_put(self) -> bool:
        return self.method == "PUT" and self.manifest_ref() is not None


def stored_writes(requests: list[Request]) -> list[Request]:
    """The write requests, less the push-access probe: an upload session opened (POST with no
    query) and cancelled (DELETE of an upload session) stores nothing."""
    cancelled = sum(1 for r in requests if r.method == "DELETE" and "/blobs/uploads/" in r.path)
    out = []
    for r in requests:
        if r.method == "DELETE" and "/blobs/uploads/" in r.path:
            continue
        if r.method == "POST" and r.path.endswith("/blobs/uploads/") and not r.query and cancelled:
            cancelled -= 1
            continue
        if r.is_write:
            out.append(r)
    return out


class AccessLog:
    """The registry's access log: `mark()` an offset, run something, `since(mark)` what it did."""

    def __init__(self, registry: Registry):
        self.registry = registry

    def mark(self) -> int:
        return len(self.registry.log_text().splitlines())

    def since(self, mark: int = 0) -> list[Request]:
        # the registry logs a request just after answering it: let the last lines land
        size, deadline = -1, time.monotonic() + 1.0
        while time.monotonic() < deadline:
            now = len(self.registry.log_text())
            if now == size:
                break
            size = now
            time.sleep(0.05)
        out = []
        for line in self.registry.log_text().splitlines()[mark:]:
            m = _ACCESS.search(line)
            if m:
                path, _, query = m.group("uri").partition("?")
                out.append(Request(m.group("method"), path, query, int(m.group("status"))))
        return out


@pytest.fixture
def access_log() -> Callable[[Registry], AccessLog]:
    return AccessLog


def tags_of(registry: Registry, repo: str) -> list[str] | None:
    """The repository's tags, or None when the registry does not know the repository (404)."""
    with registry.client() as c:
        r = c.get(f"/v2/{repo}/tags/list")
    if r.status_code == 404:
        return None
    r.raise_for_status()
    return list(r.json().get("tags") or [])


def catalog_of(registry: Registry) -> list[str]:
    with registry.client() as c:
        r = c.get("/v2/_catalog", params={"n": 1000})
    r.raise_for_status()
    return list(r.json().get("repositories") or [])


def manifest_raw(registry: Registry, repo: str, ref: str) -> tuple[bytes, str]:
    """(exact bytes, media type) of a manifest, as the registry serves them."""
    with registry.client() as c:
        r = c.get(f"/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT_ALL})
    r.raise_for_status()
    return r.content, r.headers["content-type"]


def head_status(registry: Registry, repo: str, kind: str, digest: str) -> int:
    """HTTP status of HEAD /v2/<repo>/<kind>/<digest> (kind: manifests or blobs)."""
    with registry.client() as c:
        r = c.head(f"/v2/{repo}/{kind}/{digest}", headers={"Accept": ACCEPT_ALL})
    return r.status_code


def index_platforms(raw: bytes) -> dict[str, str]:
    """{"linux/arm64/v8": child digest} of an index's entries."""
    out = {}
    for d in json.loads(raw)["manifests"]:
        p = d["platform"]
        key = "/".join([p["os"], p["architecture"]] + ([p["variant"]] if p.get("variant") else []))
        out[key] = d["digest"]
    return out


def buildah_runner(root: Path) -> Callable[..., Any]:
    """`buildah` with private vfs storage under `root` and an empty authfile (no user creds)."""
    exe = require("buildah")
    root.mkdir(parents=True, exist_ok=True)
    auth = root / "auth.json"
    auth.write_text("{}")

    def b(*args: str, check: bool = True, timeout: float = 300) -> Any:
        argv = [exe, "--root", str(root / "root"), "--runroot", str(root / "run"), "--storage-driver", "vfs", *args]
        env = {k: v for k, v in os.environ.items() if k not in ("REGISTRY_AUTH_FILE", "DOCKER_CONFIG")}
        env["REGISTRY_AUTH_FILE"] = str(auth)
        return run(argv, env=env, check=check, timeout=timeout)

    b.authfile = auth  # type: ignore[attr-defined]
    return b


__all__ = [
    "ACCEPT_ALL",
    "ARCH_NS",
    "DIGEST_LINE",
    "EPOCH",
    "FIVE",
    "HELLO",
    "UNAME",
    "AccessLog",
    "Request",
    "State",
    "buildah_runner",
    "catalog_of",
    "head_status",
    "index_platforms",
    "manifest_raw",
    "one_error_line",
    "sha256",
    "slug",
    "spec_file",
    "stored_writes",
    "tags_of",
]
