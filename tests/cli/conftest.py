"""Fixtures for the end-to-end CLI tests of the `docker manifest`-style verbs.

Everything here builds on tests/conftest.py (registries, images, tmp_home, run_cli):

  cli            run the real CLI inside tmp_home with MANIFESTO_KEYRING=file
  module_cli     a CLI runner with its own private HOME, for module-scoped setup
  cli_bytes      the same, stdout as exact bytes (for `inspect --raw`)
  probe          probe(registry) -> Probe: raw HTTP checks and the registry's access log
  index_layout   write an OCI layout holding an image index (optionally with an attestation)
  html_500       a loopback "registry" answering 500 + HTML to everything (counts requests)
  serving        serving(handler): a loopback HTTP server for a test's own handler, e.g. a
                 DeniedRegistry (every manifest 400 DENIED with the message it quotes)
  one_line_error assert a failure printed exactly one `manifesto: error:` line, no traceback
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import ArchImage, Registry, build_image
from tests.support.images import (
    MT_OCI_CONFIG,
    MT_OCI_INDEX,
    MT_OCI_MANIFEST,
    _write_blob,
    canonical_json,
)
from tests.support.tools import CliResult, cli_command, private_home, run_cli

ACCEPT_ALL = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
_ACCESS = re.compile(r'"(?P<method>[A-Z]+) (?P<uri>\S+) HTTP/[0-9.]+" (?P<status>\d{3}) ')


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------
# running the CLI


@pytest.fixture
def cli(run_cli: Callable[..., CliResult]) -> Callable[..., CliResult]:
    """``rc, out, err = cli("push", ref, input=None, env=None)`` with the file login store."""

    def run(
        *args: Any, input: str | None = None, env: dict[str, str] | None = None, timeout: float = 120, cwd: Any = None
    ) -> CliResult:
        return run_cli(*args, input=input, env={"MANIFESTO_KEYRING": "file", **(env or {})}, timeout=timeout, cwd=cwd)

    return run


@pytest.fixture(scope="module")
def module_cli(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., CliResult]:
    """A CLI runner for module-scoped setup, with its own private HOME/XDG/DOCKER_CONFIG."""
    home = tmp_path_factory.mktemp("module-home")
    env = {**private_home(home), "MANIFESTO_KEYRING": "file"}

    def run(*args: Any, input: str | None = None, check: bool = True) -> CliResult:
        result = run_cli(*args, input=input, home_env=env, timeout=120)
        if check:
            assert result.returncode == 0, f"manifesto {' '.join(map(str, args))} failed:\n{result.stderr}"
        return result

    return run


@pytest.fixture
def cli_bytes(tmp_home: Any) -> Callable[..., tuple[int, bytes, str]]:
    """Like `cli` but stdout is returned as the exact bytes written."""

    def run(*args: Any, timeout: float = 120) -> tuple[int, bytes, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_CONFIG", "REGISTRY_AUTH_FILE")}
        env.update(tmp_home.env)
        env.update(NO_COLOR="1", MANIFESTO_KEYRING="file")
        proc = subprocess.run(
            [*cli_command(), *map(str, args)],
            env=env,
            capture_output=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        return proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace")

    return run


def _one_line_error(result: Sequence[Any], code: int | None = None, *contains: str) -> str:
    rc, out, err = result[0], result[1], result[2]
    assert rc != 0, f"expected failure, got rc=0\nstdout: {out}\nstderr: {err}"
    if code is not None:
        assert rc == code, f"expected exit {code}, got {rc}\nstderr: {err}"
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("manifesto: error:")]
    assert len(errors) == 1, f"expected exactly one error line:\n{err}"
    logged = ("manifesto: error:", "manifesto: warning:", "{")  # the error, log events (plain or JSON)
    others = [line for line in err.splitlines() if line.strip() and not line.startswith(logged)]
    assert not others, f"unexpected extra stderr lines (not log events):\n{err}"
    line = errors[0]
    for text in contains:
        assert text in line, f"{text!r} not in {line!r}"
    return line


@pytest.fixture
def one_line_error() -> Callable[..., str]:
    """``one_line_error((rc, out, err), code, *must_contain)`` -> the error line."""
    return _one_line_error


# ---------------------------------------------------------------------------------------------
# looking at a registry from outside manifesto


@dataclasses.dataclass(frozen=True)
class Logged:
    method: str
    path: str
    query: str
    status: int


class Probe:
    """Raw HTTP views of one registry (Accept: all four manifest types) and its access log."""

    def __init__(self, registry: Registry, creds: tuple[str, str] | None = None):
        self.registry = registry
        self.creds = creds if creds is not None else registry.creds
        self.http = httpx.Client(base_url=registry.url, timeout=30)
        self._tokens: dict[str, str] = {}

    def close(self) -> None:
        self.http.close()

    def _auth(self, repo: str) -> dict[str, str]:
        if self.registry.auth == "htpasswd" and self.creds:
            raw = f"{self.creds[0]}:{self.creds[1]}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        if self.registry.auth == "token":
            ts = self.registry.token_server
            assert ts is not None
            if repo not in self._tokens:
                # mint directly: keeps the token server's request log for manifesto alone
                self._tokens[repo] = ts.issue(self.creds[0] if self.creds else None, {f"repository:{repo}": {"pull"}})
            return {"Authorization": f"Bearer {self._tokens[repo]}"}
        return {}

    def get_manifest(self, repo: str, ref: str) -> httpx.Response:
        return self.http.get(f"/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT_ALL, **self._auth(repo)})

    def manifest_status(self, repo: str, ref: str) -> int:
        return self.http.head(f"/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT_ALL, **self._auth(repo)}).status_code

    def tag_digest(self, repo: str, tag: str) -> str | None:
        r = self.http.head(f"/v2/{repo}/manifests/{tag}", headers={"Accept": ACCEPT_ALL, **self._auth(repo)})
        return r.headers.get("docker-content-digest") if r.status_code == 200 else None

    def blob_status(self, repo: str, digest: str) -> int:
        return self.http.head(f"/v2/{repo}/blobs/{digest}", headers=self._auth(repo)).status_code

    def assert_complete(self, repo: str, index_raw: bytes) -> list[dict[str, Any]]:
        """Every child of an index is in `repo` by digest, and every blob of every child."""
        children = []
        for m in json.loads(index_raw)["manifests"]:
            r = self.get_manifest(repo, m["digest"])
            assert r.status_code == 200, f"child {m['digest']} missing from {repo}: {r.status_code}"
            assert sha256(r.content) == m["digest"]
            child = json.loads(r.content)
            for blob in [child["config"], *child["layers"]]:
                status = self.blob_status(repo, blob["digest"])
                assert status == 200, f"blob {blob['digest']} of {m['digest']} missing from {repo}: {status}"
            children.append(child)
        return children

    # -- the registry's access log --------------------------------------------------------------

    def mark(self) -> int:
        """A position in the registry log; `requests(since=mark)` shows what came after."""
        return len(self.registry.log_path.read_bytes()) if self.registry.log_path.exists() else 0

    def requests(self, since: int = 0) -> list[Logged]:
        """Access-log entries after `since` (waits for the log to settle: lines land after replies)."""
        last, deadline = -1, time.monotonic() + 2
        data = b""
        while time.monotonic() < deadline:
            data = self.registry.log_path.read_bytes()
            if len(data) == last:
                break
            last = len(data)
            time.sleep(0.1)
        out = []
        for line in data[since:].decode("utf-8", "replace").splitlines():
            m = _ACCESS.search(line)
            if m:
                path, _, query = m["uri"].partition("?")
                out.append(Logged(m["method"], path, query, int(m["status"])))
        return out


@pytest.fixture
def probe() -> Iterator[Callable[..., Probe]]:
    made: list[Probe] = []

    def make(registry: Registry, creds: tuple[str, str] | None = None) -> Probe:
        p = Probe(registry, creds)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


# ---------------------------------------------------------------------------------------------
# OCI layouts holding an image index


@dataclasses.dataclass(frozen=True)
class IndexLayout:
    layout: Path
    tag: str
    images: dict[str, ArchImage]  # Debian arch -> image
    index_bytes: bytes
    attestation: dict[str, Any] | None  # digest, subject, config_digest, layer_digest, manifest bytes

    @property
    def oci_ref(self) -> str:
        return f"oci:{self.layout}:{self.tag}"

    @property
    def index_digest(self) -> str:
        return sha256(self.index_bytes)


def make_index_layout(layout: Path, arches: Sequence[str], attest: str | None = None, tag: str = "multi") -> IndexLayout:
    """An OCI layout whose `tag` is an image index of busybox images for `arches`.

    With `attest` (a Debian arch), the index also holds a buildkit-style attestation manifest
    for that arch's image: platform unknown/unknown, annotations
    vnd.docker.reference.type=attestation-manifest and vnd.docker.reference.digest=<subject>,
    an unknown/unknown OCI config and one in-toto layer.
    """
    images = {a: build_image(a, layout, tag=f"img-{a}") for a in arches}
    descriptors = [images[a].descriptor() for a in arches]
    att = None
    if attest:
        subject = images[attest].manifest_digest
        statement = canonical_json(
            {
                "_type": "https://in-toto.io/Statement/v0.1",
                "predicateType": "https://spdx.dev/Document",
                "subject": [{"name": "busybox", "digest": {"sha256": subject.split(":", 1)[1]}}],
                "predicate": {"spdxVersion": "SPDX-2.3", "name": f"busybox-{attest}"},
            }
        )
        layer_digest = _write_blob(layout, statement)
        config = canonical_json(
            {"architecture": "unknown", "os": "unknown", "config": {}, "rootfs": {"type": "layers", "diff_ids": [layer_digest]}}
        )
        config_digest = _write_blob(layout, config)
        manifest = canonical_json(
            {
                "schemaVersion": 2,
                "mediaType": MT_OCI_MANIFEST,
                "config": {"mediaType": MT_OCI_CONFIG, "digest": config_digest, "size": len(config)},
                "layers": [
                    {
                        "mediaType": "application/vnd.in-toto+json",
                        "digest": layer_digest,
                        "size": len(statement),
                        "annotations": {"in-toto.io/predicate-type": "https://spdx.dev/Document"},
                    }
                ],
            }
        )
        digest = _write_blob(layout, manifest)
        descriptors.append(
            {
                "mediaType": MT_OCI_MANIFEST,
                "digest": digest,
                "size": len(manifest),
                "platform": {"architecture": "unknown", "os": "unknown"},
                "annotations": {
                    "vnd.docker.reference.digest": subject,
                    "vnd.docker.reference.type": "attestation-manifest",
                },
            }
        )
        att = {
            "digest": digest,
            "subject": subject,
            "config_digest": config_digest,
            "layer_digest": layer_digest,
            "manifest": manifest,
        }
    return IndexLayout(layout, tag, images, tag_index(layout, descriptors, tag), att)


def tag_index(layout: Path, manifests: list[dict[str, Any]], tag: str) -> bytes:
    """Write an OCI image index of `manifests` into `layout` under `tag`; its exact bytes."""
    index = canonical_json({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": manifests})
    top = json.loads((layout / "index.json").read_bytes())
    top["manifests"].append(
        {
            "mediaType": MT_OCI_INDEX,
            "digest": _write_blob(layout, index),
            "size": len(index),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }
    )
    (layout / "index.json").write_bytes(canonical_json(top))
    return index


def hello_native(directory: Path) -> Path:
    """A copy of examples/hello-native in `directory` for linux/amd64 and linux/arm64/v8 only
    (the native builder: fast, no qemu); its platforms.yaml, `image:` as the example has it."""
    import shutil

    from tests.support.tools import REPO_ROOT, missing, run

    example = REPO_ROOT / "examples" / "hello-native"
    done = run(["bash", example / "prepare.sh"], check=False, timeout=900)
    if done.returncode != 0:
        missing(f"examples/hello-native/prepare.sh failed (needs busybox-static .debs): {done.stderr[-800:]}")
    copy = directory / "hello-native"
    shutil.copytree(example, copy, symlinks=True)
    spec = copy / "platforms.yaml"
    spec.write_text(spec.read_text().replace("  - linux/arm/v7\n  - linux/ppc64le\n  - linux/s390x\n", ""))
    return spec


@pytest.fixture(scope="session")
def index_layout() -> Callable[..., IndexLayout]:
    """``index_layout(dir, ["amd64", "arm64"], attest="amd64")`` -> IndexLayout."""
    return make_index_layout


# ---------------------------------------------------------------------------------------------
# a broken "registry"


class _Html500(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    BODY = (
        b"<!DOCTYPE html><html><head><title>500 Internal Server Error</title></head>"
        b"<body><h1>Internal Server Error</h1><p>upstream exploded</p></body></html>"
    )

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        self.server.hits += 1  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(500)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(self.BODY)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(self.BODY)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _answer


@dataclasses.dataclass
class Html500:
    host: str
    server: ThreadingHTTPServer

    @property
    def hits(self) -> int:
        return self.server.hits  # type: ignore[attr-defined]


@pytest.fixture
def html_500() -> Iterator[Html500]:
    """A loopback server answering every request with 500 and an HTML page."""
    with serving(_Html500) as server:
        server.hits = 0  # type: ignore[attr-defined]
        yield Html500(host_of(server), server)


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[ThreadingHTTPServer]:
    """A loopback HTTP server answering with `handler`, in a thread, for as long as the block."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def host_of(server: ThreadingHTTPServer) -> str:
    return f"127.0.0.1:{server.server_address[1]}"


class DeniedRegistry(BaseHTTPRequestHandler):
    """A registry whose every manifest request is a 400 DENIED with `message` (a subclass sets
    it, and `tags` to list them at /tags/list): text a registry sends that manifesto quotes."""

    message = ""
    tags: list[str] | None = None

    def do_GET(self) -> None:
        if self.path == "/v2/":
            body, status = b"{}", 200
        elif self.tags is not None and "/tags/list" in self.path:
            body, status = json.dumps({"name": "app", "tags": self.tags}).encode(), 200
        else:
            body, status = json.dumps({"errors": [{"code": "DENIED", "message": self.message}]}).encode(), 400
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, *args: object) -> None:
        pass
