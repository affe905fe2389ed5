"""publish: build the 5-arch hello example (qemu for four of them) and push it with its index.

manifesto:  SOURCE_DATE_EPOCH=... manifesto publish -f platforms.yaml --image REG/hello
            (the repository's platforms.yaml: builder buildah, five platforms, OCI format, arch
            tags; $XDG_CACHE_HOME fresh and empty each time). What it runs: the five platforms'
            builds at once (jobs/builds.py default_jobs), each `buildah build --layers
            --force-rm --timestamp EPOCH --platform P ...` into that platform's own store under
            $XDG_CACHE_HOME/manifesto/buildah/D (the first build there probes which driver
            works: a few buildah commands, timed) and a `buildah push` of the image into an OCI
            layout; it pushes each image by digest, reads every config back to verify its
            platform, and pushes the index under two tags plus five docker-library style arch
            tags (platforms.yaml `arch_tag`). All of that is its job and is timed.
peer:       buildah --root R --runroot RR --storage-driver D build --isolation chroot
                --platform linux/amd64,linux/arm64/v8,linux/arm/v7,linux/ppc64le,linux/s390x
                --manifest L -f examples/hello/Dockerfile examples/hello
            buildah --root R --runroot RR --storage-driver D manifest push --all
                --tls-verify=false L docker://REG/hello-buildah:1
            (R, RR fresh and empty each time)

D is the same on both sides: the storage driver manifesto's buildah builds resolve to on this
machine (overlay where it works, else vfs; bench.base_image.buildah_driver), which is what
buildah itself picks; the run fails if manifesto's stores used another. Not the same on both
sides, and deliberately so: the peer is the target's command as given, which builds WITHOUT
`--layers` (one commit per platform instead of one per step), without `--timestamp`, and one
platform after another (its `--jobs` default is 1). manifesto's per-step commits are its build
cache, which a later publish reuses (the cache benchmark compares against `buildah build
--layers`); here the cache starts empty, so they are pure cost, against which manifesto sets
its parallel builds.

Cold for both: empty build storage, and each side pushes into its own freshly started registry
every repetition, so no blob is already there for either. examples/hello/prepare.sh runs first.
Target: manifesto / buildah ≤ 1.0. Slow (qemu): 3 repetitions by default.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from bench.base_image import buildah_driver, buildah_global, check_driver
from bench.common import (
    MANIFESTO,
    REPO,
    BenchError,
    Context,
    Result,
    index_children,
    interleaved,
    log,
    run,
    sandbox_env,
    timed_result,
)

NAME = "publish"
TARGET = 1.0
DEFAULT_REPEAT = 3
EPOCH = "1700000000"
PLATFORMS = "linux/amd64,linux/arm64/v8,linux/arm/v7,linux/ppc64le,linux/s390x"
LIST = "localhost/hello-bench-list"


def publish_manifesto(ctx: Context, driver: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds of manifesto and every buildah it ran); its buildah stores
    must have used `driver`, the peer's."""
    reg = ctx.registry()
    root = ctx.work.fresh("publish-manifesto")
    try:
        env = sandbox_env(root, SOURCE_DATE_EPOCH=EPOCH)
        p = run(
            [MANIFESTO, "publish", "-f", "platforms.yaml", "--image", f"{reg.host}/hello"], env, cwd=REPO, timeout=3600
        )
        if index_children(reg.host, "hello", "1.0.0") != 5:
            raise BenchError("manifesto publish: hello:1.0.0 is not a 5-entry index")
        check_driver(root / "cache", driver, "manifesto publish")
        return p.wall, p.cpu
    finally:
        ctx.stop_registry(reg)
        shutil.rmtree(root, ignore_errors=True)


def buildah_commands(root: Path, driver: str, host: str) -> tuple[list[str], list[str]]:
    """The peer's build and push, with its storage under `root` on the storage driver `driver`."""
    build = [
        *buildah_global(root, driver), "build", "--isolation", "chroot", "--platform", PLATFORMS,
        "--manifest", LIST, "-f", "examples/hello/Dockerfile", "examples/hello",
    ]  # fmt: skip
    push = [
        *buildah_global(root, driver), "manifest", "push", "--all", "--tls-verify=false",
        LIST, f"docker://{host}/hello-buildah:1",
    ]  # fmt: skip
    return build, push


def publish_buildah(ctx: Context, driver: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of the build and the push together."""
    reg = ctx.registry()
    root = ctx.work.fresh("publish-buildah")
    try:
        env = sandbox_env(root, SOURCE_DATE_EPOCH=EPOCH)
        build, push = buildah_commands(root, driver, reg.host)
        built = run(build, env, cwd=REPO, timeout=3600)
        pushed = run(push, env, cwd=REPO, timeout=3600)
        if index_children(reg.host, "hello-buildah", "1") != 5:
            raise BenchError("buildah manifest push: hello-buildah:1 is not a 5-entry list")
        return built.wall + pushed.wall, built.cpu + pushed.cpu
    finally:
        ctx.stop_registry(reg)
        shutil.rmtree(root, ignore_errors=True)


def bench(ctx: Context) -> list[Result]:
    env = sandbox_env(ctx.work.fresh("publish-prepare"))
    run(["bash", "examples/hello/prepare.sh"], env, cwd=REPO, timeout=1800)
    driver = buildah_driver(ctx, NAME)
    samples: dict[str, list[float]] = {"manifesto": [], "buildah": []}
    cpu: dict[str, list[float]] = {"manifesto": [], "buildah": []}
    repeat = ctx.repeat(DEFAULT_REPEAT)
    for i, manifesto_first in interleaved(repeat):
        for tool in ("manifesto", "buildah") if manifesto_first else ("buildah", "manifesto"):
            wall, cpu_s = publish_manifesto(ctx, driver) if tool == "manifesto" else publish_buildah(ctx, driver)
            samples[tool].append(wall)
            cpu[tool].append(cpu_s)
        m_s, b_s = samples["manifesto"][-1], samples["buildah"][-1]
        log(f"{NAME} {i + 1}/{repeat}: manifesto {m_s:.1f} s, buildah {b_s:.1f} s")
    return [
        timed_result(
            NAME, samples, cpu, "buildah", "buildah build --manifest + manifest push --all", TARGET,
            storage_driver=f"{driver} (both sides)",
            compared="manifesto: build --layers per platform, all at once; peer: without --layers, one after another",
        )  # fmt: skip
    ]
