"""publish: build the 5-arch hello example (qemu for four of them) and push it with its index.

manifesto:  SOURCE_DATE_EPOCH=... manifesto publish -f platforms.yaml --image REG/hello
            (buildah builder, vfs storage under $XDG_CACHE_HOME, a fresh empty one each time)
peer:       buildah --root R --runroot RR --storage-driver vfs build --isolation chroot
                --platform linux/amd64,linux/arm64/v8,linux/arm/v7,linux/ppc64le,linux/s390x
                --manifest L -f examples/hello/Dockerfile examples/hello
            buildah --root R --runroot RR --storage-driver vfs manifest push --all
                --tls-verify=false L docker://REG/hello-buildah:1
            (R, RR fresh and empty each time)

Cold for both: empty build storage, and each side pushes into its own freshly started registry
every repetition, so no blob is already there for either. examples/hello/prepare.sh runs first.
manifesto additionally reads every pushed config back to verify its platform and pushes the
index under two tags plus five docker-library style arch tags (platforms.yaml `arch_tag`); that
is its job and is timed. Target: manifesto / buildah ≤ 1.0. Slow (qemu): 3 repetitions by default.
"""

from __future__ import annotations

import shutil

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


def publish_manifesto(ctx: Context) -> tuple[float, float]:
    """(wall seconds, CPU seconds of manifesto and every buildah it ran)."""
    reg = ctx.registry()
    root = ctx.work.fresh("publish-manifesto")
    try:
        env = sandbox_env(root, SOURCE_DATE_EPOCH=EPOCH)
        p = run(
            [MANIFESTO, "publish", "-f", "platforms.yaml", "--image", f"{reg.host}/hello"], env, cwd=REPO, timeout=3600
        )
        if index_children(reg.host, "hello", "1.0.0") != 5:
            raise BenchError("manifesto publish: hello:1.0.0 is not a 5-entry index")
        return p.wall, p.cpu
    finally:
        ctx.stop_registry(reg)
        shutil.rmtree(root, ignore_errors=True)


def publish_buildah(ctx: Context) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of the build and the push together."""
    reg = ctx.registry()
    root = ctx.work.fresh("publish-buildah")
    try:
        env = sandbox_env(root, SOURCE_DATE_EPOCH=EPOCH)
        store = ["--root", str(root / "storage"), "--runroot", str(root / "run"), "--storage-driver", "vfs"]
        build = [
            "buildah", *store, "build", "--isolation", "chroot", "--platform", PLATFORMS,
            "--manifest", "localhost/hello-bench-list", "-f", "examples/hello/Dockerfile", "examples/hello",
        ]  # fmt: skip
        push = [
            "buildah", *store, "manifest", "push", "--all", "--tls-verify=false",
            "localhost/hello-bench-list", f"docker://{reg.host}/hello-buildah:1",
        ]  # fmt: skip
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
    samples: dict[str, list[float]] = {"manifesto": [], "buildah": []}
    cpu: dict[str, list[float]] = {"manifesto": [], "buildah": []}
    repeat = ctx.repeat(DEFAULT_REPEAT)
    for i, manifesto_first in interleaved(repeat):
        for tool in ("manifesto", "buildah") if manifesto_first else ("buildah", "manifesto"):
            wall, cpu_s = publish_manifesto(ctx) if tool == "manifesto" else publish_buildah(ctx)
            samples[tool].append(wall)
            cpu[tool].append(cpu_s)
        m_s, b_s = samples["manifesto"][-1], samples["buildah"][-1]
        log(f"{NAME} {i + 1}/{repeat}: manifesto {m_s:.1f} s, buildah {b_s:.1f} s")
    return [timed_result(NAME, samples, cpu, "buildah", "buildah build --manifest + manifest push --all", TARGET)]
