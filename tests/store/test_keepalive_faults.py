"""The real CLI through a keep-alive proxy that breaks reused connections (tests/support/keepalive_proxy.py).

Why: a loopback registry's own origin is served by the client's HTTP/1.1 pool (store/registry/
http1.py), and what can go wrong with a pool happens on a connection that already carried a
request: the server closes it as the client sends, leaves stray bytes after an answer, resets
it halfway through a body. The first test shows the proxy really carries several requests per
connection; the stress tests run each kind of command at a seeded fault rate and check the
house rules under it: exit 0 or 1, a failure is one `manifesto: error:` line, and a tag read
straight from the registry is absent or names a complete image (every child and blob present)
— and is exactly the expected one when the command said it succeeded.
"""

from __future__ import annotations

import hashlib
import json
import socket
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support.images import ArchImage, LibraryRepo
from tests.support.keepalive_proxy import KeepAliveProxy
from tests.support.registry import Registry
from tests.support.tools import CliResult, private_home, run_cli

ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
RATE = 0.25
SEEDS = (101, 102, 103, 104)
KINDS = ("copy_layout", "create_push", "inspect", "copy_registries")

Cli = Callable[..., CliResult]


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Direct:
    """Reads a registry straight, not through the proxy: what is really stored under a tag."""

    def __init__(self, registry: Registry):
        self.client = httpx.Client(base_url=registry.url, timeout=30)

    def manifest(self, repo: str, reference: str) -> bytes | None:
        r = self.client.get(f"/v2/{repo}/manifests/{reference}", headers={"Accept": ACCEPT})
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return r.content

    def problems(self, repo: str, reference: str) -> list[str]:
        """What is missing or wrong under `reference` (a tag: it must exist), recursively:
        each child manifest by digest, each config and layer blob HEADed with its size."""
        raw = self.manifest(repo, reference)
        if raw is None:
            return [f"{repo}:{reference} missing"]
        if reference.startswith("sha256:") and _sha256(raw) != reference:
            return [f"{repo}@{reference}: the registry's bytes have another digest"]
        doc = json.loads(raw)
        if "manifests" in doc:
            return [p for child in doc["manifests"] for p in self.problems(repo, child["digest"])]
        out = []
        for blob in [doc["config"], *doc["layers"]]:
            r = self.client.head(f"/v2/{repo}/blobs/{blob['digest']}")
            if r.status_code != 200 or int(r.headers.get("content-length", -1)) != blob["size"]:
                out.append(f"{repo}@{reference}: blob {blob['digest']} answers {r.status_code}")
        return out

    def close(self) -> None:
        self.client.close()


@pytest.fixture(scope="module")
def module_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return private_home(tmp_path_factory.mktemp("keepalive-home"))


@pytest.fixture(scope="module")
def cli(module_home: dict[str, str]) -> Cli:
    def run(*args: object, timeout: float = 60) -> CliResult:
        return run_cli(*map(str, args), home_env=module_home, env={"MANIFESTO_KEYRING": "file"}, timeout=timeout)

    return run


@pytest.fixture(scope="module")
def source_index(cli: Cli, registry: Registry, library_repos: dict[str, LibraryRepo]) -> bytes:
    """`kf/all:1` in the module's registry: an index of the five busybox images (pushed
    directly). Returns its exact bytes."""
    rc, _, err = cli("create", "--push", registry.ref("kf/all", "1"), *[r.ref for r in library_repos.values()])
    assert rc == 0, err
    direct = Direct(registry)
    raw = direct.manifest("kf/all", "1")
    direct.close()
    assert raw is not None
    return raw


@pytest.fixture
def proxies(registry: Registry, session_registry: Registry) -> Iterator[Callable[..., KeepAliveProxy]]:
    """proxies(seed, rate, target=False): a started proxy in front of the module's registry
    (or, with target=True, of the session registry: the other end of a registry copy)."""
    started: list[KeepAliveProxy] = []

    def make(seed: int, rate: float, target: bool = False) -> KeepAliveProxy:
        proxy = KeepAliveProxy((session_registry if target else registry).host, seed=seed, rate=rate).start()
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.stop()
    assert not [t for p in started for t in p.threads_alive()], "a proxy thread outlived stop()"


def _assert_one_line_failure(result: CliResult, what: str) -> None:
    rc, _, err = result
    assert rc in (0, 1), f"{what}: exit {rc}\n{err}"
    assert "Traceback" not in err and "internal error" not in err, f"{what}:\n{err}"
    if rc:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("manifesto: error: "), f"{what}: stderr is not one error line:\n{err}"


def test_the_proxy_carries_several_requests_per_connection(
    cli: Cli, registry: Registry, arch_images: dict[str, ArchImage], proxies: Callable[..., KeepAliveProxy]
) -> None:
    """Without faults a push really reuses connections through the proxy (else the stress
    below would test nothing of the pool), and the proxy lets go of its port and threads."""
    image = arch_images["amd64"]
    proxy = proxies(seed=0, rate=0)
    rc, out, err = cli("copy", f"oci:{image.layout}:{image.tag}", proxy.ref("kf/reuse", "1"))
    assert rc == 0, err
    assert out.strip().splitlines()[-1] == image.manifest_digest
    carried = [n for n in proxy.connections if n]
    assert max(carried) >= 3 and sum(carried) > len(carried), f"no reuse: requests per connection {proxy.connections}"
    assert not proxy.faults_done()
    direct = Direct(registry)
    assert direct.problems("kf/reuse", "1") == []
    assert _sha256(direct.manifest("kf/reuse", "1") or b"") == image.manifest_digest
    direct.close()

    port = proxy.port
    proxy.stop()
    assert proxy.threads_alive() == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_a_push_that_gives_up_on_its_tag_leaves_no_tag_and_one_line(
    cli: Cli, registry: Registry, library_repos: dict[str, LibraryRepo], proxies: Callable[..., KeepAliveProxy]
) -> None:
    """Every attempt at the tag's PUT is refused (503, Retry-After: 0) or reset before the
    registry sees it: the children went in on the same kept-alive connections, the tag never
    does, and the user reads one line."""
    proxy = KeepAliveProxy(
        registry.host, seed=7, rate=1.0, faults=("503_retry_after", "reset"), only=r"^PUT /v2/kf/gives-up/manifests/1$"
    )
    with proxy:
        result = cli("create", "--push", proxy.ref("kf/gives-up", "1"), *[proxy.ref(r.repo, "1") for r in library_repos.values()])
    _assert_one_line_failure(result, "create --push")
    assert result.returncode == 1
    tag_puts = [s.fault for s in proxy.log if s.method == "PUT" and s.path == "/v2/kf/gives-up/manifests/1"]
    assert len(tag_puts) == 5 and None not in tag_puts, tag_puts  # five attempts, each faulted
    direct = Direct(registry)
    assert direct.manifest("kf/gives-up", "1") is None
    for r in library_repos.values():
        assert direct.problems("kf/gives-up", r.digest) == []
    direct.close()


def test_a_tag_put_carried_out_whose_answer_is_lost_every_time_is_a_success(
    cli: Cli, registry: Registry, library_repos: dict[str, LibraryRepo]
) -> None:
    """The registry moves the tag on each attempt but the client never reads the answer (the
    connection is cut after the request went through): once the attempts are spent, the tag
    is read and holds the list, so the push says so and exits 0, naming the digest."""
    proxy = KeepAliveProxy(registry.host, seed=3, rate=1.0, faults=("reset_mid",), only=r"^PUT /v2/kf/lost-answer/manifests/1$")
    with proxy:
        result = cli("create", "--push", proxy.ref("kf/lost-answer", "1"), *[proxy.ref(r.repo, "1") for r in library_repos.values()])
    assert result.returncode == 0, result.stderr
    tag_puts = [s.fault for s in proxy.log if s.method == "PUT" and s.path == "/v2/kf/lost-answer/manifests/1"]
    assert tag_puts and set(tag_puts) == {"reset_mid"}, tag_puts
    direct = Direct(registry)
    stored = direct.manifest("kf/lost-answer", "1")
    assert stored is not None and _sha256(stored) == result.stdout.strip().splitlines()[-1]
    assert direct.problems("kf/lost-answer", "1") == []
    direct.close()


def _run(
    kind: str,
    seed: int,
    cli: Cli,
    proxies: Callable[..., KeepAliveProxy],
    registry: Registry,
    session_registry: Registry,
    arch_images: dict[str, ArchImage],
    library_repos: dict[str, LibraryRepo],
    source_index: bytes,
) -> tuple[list[CliResult], list[KeepAliveProxy], list[str]]:
    """Run a command of `kind` (inspect: two) through proxies faulting at RATE; return the
    results, the proxies, and what is wrong afterwards (the target read from the registry)."""
    proxy = proxies(seed, RATE)
    repo = f"kf/{kind.replace('_', '-')}-{seed}"
    target_registry = registry
    used = [proxy]
    if kind == "copy_layout":
        image = arch_images["arm64"]
        result = cli("copy", f"oci:{image.layout}:{image.tag}", proxy.ref(repo, "1"))
        expected: str | None = image.manifest_digest
    elif kind == "create_push":
        sources = [proxy.ref(library_repos[a].repo, "1") for a in ("amd64", "arm64", "armhf")]
        layout = arch_images["s390x"]
        result = cli("create", "--push", proxy.ref(repo, "1"), *sources, f"oci:{layout.layout}:{layout.tag}")
        expected = result.stdout.strip().splitlines()[-1] if result.returncode == 0 else None
    elif kind == "inspect":
        refs = [proxy.ref("kf/all", "1"), *(proxy.ref(r.repo, "1") for r in library_repos.values())]
        result = cli("inspect", "--json", *refs)
        wrong = []
        if result.returncode == 0:
            digests = [entry["digest"] for entry in json.loads(result.stdout)]
            if digests != [_sha256(source_index), *(r.digest for r in library_repos.values())]:
                wrong.append(f"inspect --json shows {digests}")
        raw = cli("inspect", "--raw", proxy.ref("kf/all", "1"))
        if raw.returncode == 0 and raw.stdout.encode().rstrip(b"\n") != source_index.rstrip(b"\n"):
            wrong.append("inspect --raw prints other bytes than the registry holds")
        return [result, raw], used, wrong
    else:  # copy_registries
        target = proxies(seed + 1000, RATE, target=True)
        used.append(target)
        target_registry = session_registry
        result = cli("copy", proxy.ref("kf/all", "1"), target.ref(repo, "1"))
        expected = _sha256(source_index)
    direct = Direct(target_registry)
    try:
        stored = direct.manifest(repo, "1")
        wrong = [] if stored is None and result.returncode else direct.problems(repo, "1")
        if result.returncode == 0 and stored is not None and _sha256(stored) != expected:
            wrong.append(f"the tag holds {_sha256(stored)}, the command promised {expected}")
    finally:
        direct.close()
    return [result], used, wrong


@pytest.mark.parametrize("kind", KINDS)
def test_commands_through_a_faulty_keep_alive_proxy_end_whole_or_with_one_line(
    kind: str,
    cli: Cli,
    proxies: Callable[..., KeepAliveProxy],
    registry: Registry,
    session_registry: Registry,
    arch_images: dict[str, ArchImage],
    library_repos: dict[str, LibraryRepo],
    source_index: bytes,
) -> None:
    """Several seeds per kind at RATE, in parallel: every run keeps the house rules, at least
    one succeeds, faults were injected and connections carried more than one request."""

    def one(seed: int) -> tuple[list[CliResult], list[KeepAliveProxy], list[str]]:
        return _run(kind, seed, cli, proxies, registry, session_registry, arch_images, library_repos, source_index)

    with ThreadPoolExecutor(len(SEEDS)) as pool:
        runs = dict(zip(SEEDS, pool.map(one, SEEDS)))
    faults: Counter[str] = Counter()
    reused = successes = 0
    for seed, (results, used, wrong) in runs.items():
        for result in results:
            _assert_one_line_failure(result, f"{kind} seed {seed}")
            successes += result.returncode == 0
        assert wrong == [], f"{kind} seed {seed} (exits {[r.returncode for r in results]}): {wrong}\n{results[0].stderr}"
        for proxy in used:
            faults += proxy.faults_done()
            reused += sum(n - 1 for n in proxy.connections if n > 1)
    assert successes, f"{kind}: no run succeeded: {[r.stderr for results, _, _ in runs.values() for r in results]}"
    assert sum(faults.values()) >= len(SEEDS), f"{kind}: too few faults to mean anything: {faults}"
    assert reused, f"{kind}: no connection carried a second request"
