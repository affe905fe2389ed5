"""Five `manifesto index add` processes, started at one instant, each adding its own platform to
one tag of a real registry: the list ends with all five, every time, also when the registry
answers 503 now and then (through tests/support/faultproxy.py).

Each run starts five CLI subprocesses that wait on one file and go when it appears, so their
reads, writes and tag moves overlap. bench/index_race.py repeats this many more times.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.support.content import Content, config
from tests.support.faultproxy import FaultProxy, Respond
from tests.support.tools import cli_command

ARCHES = (("amd64", None), ("arm64", "v8"), ("arm", "v7"), ("ppc64le", None), ("s390x", None))


def five_images(c: Content) -> list[Any]:
    """One tiny image per platform in `c`'s repository."""
    out = []
    for arch, variant in ARCHES:
        cfg = config("linux", arch, **({"variant": variant} if variant else {}))
        out.append(c.image(cfg, layers=[(b"layer " + arch.encode(), "application/vnd.oci.image.layer.v1.tar", {})]))
    return out


def race(host: str, target: str, sources: Sequence[str], env: dict[str, str], go: Path) -> list[tuple[int, str]]:
    """Start one `index add target source` per source, all waiting on `go`; release them at once."""
    wait = 'while [ ! -e "$0" ]; do sleep 0.005; done; exec "$@"'
    procs = [
        subprocess.Popen(
            ["sh", "-c", wait, str(go), *cli_command(), "index", "add", target, source],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        for source in sources
    ]
    time.sleep(0.3)  # every process is up and polling
    go.touch()
    out = []
    for p in procs:
        try:
            _, err = p.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
        out.append((p.returncode, err))
    return out


@pytest.fixture
def cli_env(tmp_home) -> dict[str, str]:
    from tests.support.tools import _USER_CONFIG_VARS

    env = {k: v for k, v in os.environ.items() if k not in _USER_CONFIG_VARS}
    env.update(tmp_home.env)
    env.update(NO_COLOR="1", MANIFESTO_KEYRING="file")
    return env


def final(c: Content, tag: str) -> list[str]:
    r = c.get(tag)
    assert r.status_code == 200, r.text
    return [m["digest"] for m in json.loads(r.content)["manifests"]]


@pytest.mark.parametrize("run", range(3))
def test_five_concurrent_adds_all_land(registry, unique_repo, cli_env, tmp_path, run):
    c = Content(registry, unique_repo)
    images = five_images(c)
    results = race(registry.host, registry.ref(unique_repo, "multi"), [f"{registry.host}/{unique_repo}@{i.digest}" for i in images],
                   cli_env, tmp_path / "go")  # fmt: skip
    for rc, err in results:
        assert rc == 0, err
    assert sorted(final(c, "multi")) == sorted(i.digest for i in images)
    c.close()


@pytest.mark.parametrize("run", range(2))
def test_five_concurrent_adds_all_land_through_503s(registry, unique_repo, cli_env, tmp_path, run):
    c = Content(registry, unique_repo)
    images = five_images(c)
    c.index([images[0].descriptor(platform={"os": "linux", "architecture": "amd64"})], tag="multi")
    with FaultProxy(registry.host) as proxy:
        # the registry fails now and then under the load: tag reads, tag moves and list puts
        proxy.add(Respond(503), method="PUT", path=r"/manifests/multi$", skip=1, times=2)
        proxy.add(Respond(503), method="HEAD", path=r"/manifests/multi$", skip=3, times=3)
        proxy.add(Respond(503), method="GET", path=r"/manifests/multi$", skip=2, times=2)
        proxy.add(Respond(503), method="PUT", path=r"/manifests/sha256:", skip=4, times=2)
        results = race(proxy.host, proxy.ref(unique_repo, "multi"), [proxy.ref(unique_repo, i.digest) for i in images[1:]],
                       cli_env, tmp_path / "go")  # fmt: skip
        answered = [p for p in proxy.requests() if p.action]
    for rc, err in results:
        assert rc == 0, err
    assert len(answered) >= 5  # the faults really happened
    assert sorted(final(c, "multi")) == sorted(i.digest for i in images)
    c.close()
