"""Tag moves are compare-and-swap: a tag another writer moved while we worked is not overwritten.

The deterministic race: this run reads the tag, another writer moves it, this run then tries to
move it. A loopback proxy in front of the real registry runs the other writer's PUT at a chosen
request of ours (`push` through the real CLI, `assemble` at library level), and a fake builder
does it during the build (`publish`, index and arch tags). Also: a writer replacing the tag
right after our PUT is caught by the read-back (exit 1, never 0), a tag already holding our
digest is success without a PUT, and a conflict on one tag leaves the others unmoved.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from manifesto.builders.base import BuildRequest, BuiltImage, Problem
from manifesto.errors import ConcurrentUpdate
from manifesto.matrix import plan as planning
from manifesto.jobs.publish import Options, publish
from manifesto.matrix.spec import load
from manifesto.jobs.split import assemble
from manifesto.oci.digest import Digest
from manifesto.oci.platform import Platform
from tests.publish.conftest import ACCEPT_ALL, AccessLog, one_error_line, spec_file
from tests.support import ArchImage, Registry, push_image
from tests.support.cli import pushed_digest

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")

# ---- a proxy that lets "another writer" act at a chosen request ------------------------------------


@dataclass
class Hook:
    when: str  # "before" or "after" forwarding the request
    method: str
    path: re.Pattern[str]
    action: Callable[[], None]
    fired: bool = False


class HookProxy:
    """Forwards every request to the registry; runs each hook once, at its first matching request.

    The Host header is kept, so upload Locations the registry hands out point back at the proxy.
    """

    def __init__(self, upstream: str):
        self.upstream = upstream
        self.hooks: list[Hook] = []
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request we forwarded
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    parts = []
                    while size := int(self.rfile.readline().strip() or b"0", 16):
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()
                    self.rfile.readline()
                    return b"".join(parts)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _forward(self) -> None:
                body = self._body()
                proxy.requests.append((self.command, self.path))
                proxy._fire("before", self.command, self.path)
                skip = {"connection", "transfer-encoding", "content-length", "accept-encoding"}
                headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
                with httpx.Client(timeout=30) as c:
                    resp = c.request(self.command, proxy.upstream + self.path, headers=headers, content=body or None)
                proxy._fire("after", self.command, self.path)
                self.send_response(resp.status_code)
                for k, v in resp.headers.items():
                    if k.lower() not in ("connection", "transfer-encoding", "content-length", "content-encoding"):
                        self.send_header(k, v)
                length = resp.headers.get("content-length", "0") if self.command == "HEAD" else str(len(resp.content))
                self.send_header("Content-Length", length)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(resp.content)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def on(self, when: str, method: str, path: str, action: Callable[[], None]) -> Hook:
        hook = Hook(when, method, re.compile(path), action)
        self.hooks.append(hook)
        return hook

    def _fire(self, when: str, method: str, path: str) -> None:
        with self.lock:  # one request at a time through the hooks: the other writer acts once
            for hook in self.hooks:
                if not hook.fired and hook.when == when and hook.method == method and hook.path.search(path):
                    hook.fired = True
                    hook.action()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def proxy(registry: Registry) -> Iterator[HookProxy]:
    p = HookProxy(registry.url)
    yield p
    p.close()


# ---- the other writer -------------------------------------------------------------------------------


def put_tag(registry: Registry, repo: str, tag: str, image: ArchImage) -> str:
    """Another writer moves `repo:tag` to `image` (already in `repo` by digest); its digest."""
    with registry.client() as c:
        r = c.put(f"/v2/{repo}/manifests/{tag}", content=image.manifest_bytes,
                  headers={"Content-Type": image.manifest_media_type})  # fmt: skip
    assert r.status_code == 201, r.text
    return image.manifest_digest


def tag_digest(registry: Registry, repo: str, tag: str) -> str | None:
    with registry.client() as c:
        r = c.head(f"/v2/{repo}/manifests/{tag}", headers={"Accept": ACCEPT_ALL})
    return r.headers["docker-content-digest"] if r.status_code == 200 else None


@dataclass
class Setup:
    repo: str
    first: str  # what the tag holds when our run starts
    theirs: ArchImage  # what the other writer moves it to (already in the repo by digest)


@pytest.fixture
def setup(registry: Registry, arch_images: dict[str, ArchImage], unique_repo: str) -> Setup:
    """`repo:1.0` holds the ppc64el image; the s390x one is in the repo for the other writer."""
    push_image(arch_images["ppc64el"], f"{unique_repo}:1.0", registry)
    push_image(arch_images["s390x"], f"{unique_repo}:theirs", registry)
    return Setup(unique_repo, arch_images["ppc64el"].manifest_digest, arch_images["s390x"])


# ---- push, through the real CLI -------------------------------------------------------------------


def create_list(run_cli: Callable[..., Any], proxy: HookProxy, repo: str, library_repos: dict) -> str:
    """A local list proxy/repo:1.0 of amd64 and arm64 (sources read through the proxy too)."""
    name = f"{proxy.host}/{repo}:1.0"
    sources = [library_repos[a].ref.replace(library_repos[a].ref.split("/")[0], proxy.host) for a in ("amd64", "arm64")]
    rc, out, err = run_cli("create", name, *sources)
    assert rc == 0, err
    return name


def test_push_refuses_to_overwrite_a_tag_moved_while_it_copied_the_children(
    run_cli, proxy: HookProxy, registry: Registry, library_repos: dict, setup: Setup
) -> None:
    name = create_list(run_cli, proxy, setup.repo, library_repos)
    theirs = setup.theirs.manifest_digest
    # the other writer moves the tag once we are copying children (after our first read of it)
    hook = proxy.on("before", "PUT", rf"/v2/{setup.repo}/manifests/sha256:", lambda: put_tag(registry, setup.repo, "1.0", setup.theirs))
    result = run_cli("push", name)
    assert hook.fired
    line = one_error_line(result.stderr)
    assert result.returncode == 1, result
    assert setup.first in line and theirs in line  # what we first saw -> what it holds now
    assert line.index(setup.first) < line.index(theirs)
    assert "1.0" in line and "re-run" in line
    assert tag_digest(registry, setup.repo, "1.0") == theirs  # their list stays


def test_push_checks_every_tag_before_moving_any(
    run_cli, proxy: HookProxy, registry: Registry, library_repos: dict, setup: Setup
) -> None:
    name = create_list(run_cli, proxy, setup.repo, library_repos)
    theirs = setup.theirs.manifest_digest
    proxy.on("before", "PUT", rf"/v2/{setup.repo}/manifests/sha256:", lambda: put_tag(registry, setup.repo, "latest", setup.theirs))
    rc, out, err = run_cli("push", name, "-t", "latest")
    assert rc == 1, err
    line = one_error_line(err)
    assert "latest" in line and "absent" in line and theirs in line and "no tag moved" in line
    assert tag_digest(registry, setup.repo, "1.0") == setup.first  # the first tag did not move
    assert [r for r in proxy.requests if r[0] == "PUT" and r[1].endswith(("/1.0", "/latest"))] == []


def test_push_catches_a_writer_replacing_the_tag_right_after_its_put(
    run_cli, proxy: HookProxy, registry: Registry, library_repos: dict, setup: Setup
) -> None:
    name = create_list(run_cli, proxy, setup.repo, library_repos)
    theirs = setup.theirs.manifest_digest
    hook = proxy.on("after", "PUT", rf"/v2/{setup.repo}/manifests/1\.0$", lambda: put_tag(registry, setup.repo, "1.0", setup.theirs))
    rc, out, err = run_cli("push", name)
    assert hook.fired
    assert rc == 1, err  # never 0: our list is not under the tag
    line = one_error_line(err)
    assert "replaced" in line and theirs in line
    assert tag_digest(registry, setup.repo, "1.0") == theirs


def test_push_to_a_tag_already_at_the_list_is_success_without_a_put(
    run_cli, registry: Registry, library_repos: dict, unique_repo: str
) -> None:
    name = registry.ref(unique_repo, "1.0")
    rc, _, err = run_cli("create", name, *[library_repos[a].ref for a in ("amd64", "arm64")])
    assert rc == 0, err
    first = pushed_digest(run_cli("push", name))
    log = AccessLog(registry)
    mark = log.mark()
    result = run_cli("push", name)
    assert pushed_digest(result) == first
    assert "unchanged: 1.0" in result.stderr
    assert [r for r in log.since(mark) if r.is_manifest_put] == []


# ---- publish, at library level (the other writer acts during the build) ------------------------------


class RacingBuilder:
    """A builder that "builds" by copying a prepared image layout; `during` runs mid-build."""

    name = "fake"

    def __init__(self, images: dict[str, ArchImage], during: Callable[[], None] = lambda: None):
        self.by_platform = {Platform.parse(i.platform).key(): i for i in images.values()}
        self.during = during
        self.builds: list[str] = []

    def check(self) -> list[Problem]:
        return []

    def build(self, request: BuildRequest, on_line: Callable[[str], None]) -> BuiltImage:
        self.builds.append(str(request.platform))
        self.during()
        image = self.by_platform[request.platform.key()]
        shutil.copytree(image.layout, request.output)
        return BuiltImage(request.platform, request.output, image.tag, Digest.parse(image.manifest_digest),
                          image.manifest_media_type)  # fmt: skip

    def cancel(self) -> None:  # the Builder protocol's: nothing runs outside this thread
        pass


def matrix(tmp_path: Path, host: str, repo: str, arch_tag: bool = False) -> planning.Plan:
    """A two-platform plan publishing `host/repo:1.0` (and arch tags amd64/NAME:1.0, arm64v8/NAME:1.0)."""
    (tmp_path / "ctx").mkdir(exist_ok=True)
    (tmp_path / "ctx" / "Dockerfile").write_text("FROM scratch\n")
    arch = 'arch_tag: "{registry}/{arch_ns}/{name}:{tag}"\n' if arch_tag else ""
    spec = spec_file(
        tmp_path,
        f"""\
image: {host}/{repo}
tags: ["1.0"]
{arch}build:
  context: {tmp_path / "ctx"}
platforms: [linux/amd64, linux/arm64/v8]
""",
    )
    return planning.make_plan(load(spec))


def test_publish_refuses_to_overwrite_an_index_tag_moved_during_the_build(
    tmp_home, registry: Registry, arch_images: dict[str, ArchImage], setup: Setup, tmp_path: Path
) -> None:
    builder = RacingBuilder(arch_images, lambda: put_tag(registry, setup.repo, "1.0", setup.theirs))
    with pytest.raises(ConcurrentUpdate) as e:
        publish(matrix(tmp_path, registry.host, setup.repo), Options(builder=builder, jobs=1))
    assert builder.builds  # the tag was first read before the build, then moved during it
    assert setup.first in str(e.value) and setup.theirs.manifest_digest in str(e.value)
    assert tag_digest(registry, setup.repo, "1.0") == setup.theirs.manifest_digest


def test_publish_refuses_to_overwrite_a_moved_arch_tag_and_moves_no_tag(
    tmp_home, registry: Registry, arch_images: dict[str, ArchImage], tmp_path: Path, unique_repo: str
) -> None:
    name = unique_repo.split("/")[-1]
    arch_repo = f"arm64v8/{name}"
    push_image(arch_images["s390x"], f"{arch_repo}:theirs", registry)  # the other writer's content
    builder = RacingBuilder(arch_images, lambda: put_tag(registry, arch_repo, "1.0", arch_images["s390x"]))
    with pytest.raises(ConcurrentUpdate) as e:
        publish(matrix(tmp_path, registry.host, f"t/{name}", arch_tag=True), Options(builder=builder, jobs=1))
    assert f"{arch_repo}:1.0" in str(e.value) and "absent" in str(e.value) and "no tag moved" in str(e.value)
    assert tag_digest(registry, arch_repo, "1.0") == arch_images["s390x"].manifest_digest
    assert tag_digest(registry, f"t/{name}", "1.0") is None  # the index tag did not move either
    assert tag_digest(registry, f"amd64/{name}", "1.0") is None  # nor the other arch tag


def test_republish_finds_the_tag_at_its_digest_and_moves_nothing(
    tmp_home, registry: Registry, arch_images: dict[str, ArchImage], tmp_path: Path, unique_repo: str
) -> None:
    plan = matrix(tmp_path, registry.host, unique_repo)
    first = publish(plan, Options(builder=RacingBuilder(arch_images), jobs=1))
    assert first.tags_moved == ("1.0",)
    again = publish(plan, Options(builder=RacingBuilder(arch_images), jobs=1))
    assert again.index is not None and first.index is not None
    assert (again.tags_moved, again.tags_unchanged) == ((), ("1.0",))
    assert again.index.digest == first.index.digest


# ---- assemble, at library level (the other writer acts while the children are verified) --------------


def test_assemble_refuses_to_overwrite_a_tag_moved_while_it_verified(
    tmp_home, proxy: HookProxy, registry: Registry, arch_images: dict[str, ArchImage], setup: Setup, tmp_path: Path
) -> None:
    files = []
    for arch in ("amd64", "arm64"):
        image = arch_images[arch]
        push_image(image, f"{setup.repo}:runner-{arch}", registry)  # what each runner pushed by digest
        entry = {"platform": image.platform, "digest": image.manifest_digest,
                 "size": len(image.manifest_bytes), "mediaType": image.manifest_media_type}  # fmt: skip
        files.append(tmp_path / f"{arch}.json")
        files[-1].write_text(json.dumps({"platforms": [entry]}))
    plan = matrix(tmp_path, proxy.host, setup.repo)
    hook = proxy.on("before", "GET", rf"/v2/{setup.repo}/manifests/sha256:", lambda: put_tag(registry, setup.repo, "1.0", setup.theirs))
    with pytest.raises(ConcurrentUpdate) as e:
        assemble(plan, files)
    assert hook.fired
    assert setup.first in str(e.value) and setup.theirs.manifest_digest in str(e.value)
    assert tag_digest(registry, setup.repo, "1.0") == setup.theirs.manifest_digest
