"""native: publish of a 5-arch image FROM a large 5-arch base, native builder vs buildah.

manifesto:  SOURCE_DATE_EPOCH=... manifesto publish -f platforms.yaml --image REG/bench-native/manifesto-N
            (platforms.yaml: `builder: native`, the five platforms)
peer:       buildah --root R --runroot RR --storage-driver D build --isolation chroot --tls-verify=false
                --platform linux/amd64,linux/arm64/v8,linux/arm/v7,linux/ppc64le,linux/s390x
                --manifest L -f Dockerfile CONTEXT
            buildah --root R --runroot RR --storage-driver D manifest push --all --tls-verify=false
                L docker://REG/bench-native/buildah-N:1
            (R, RR fresh and empty each time: a CI runner's first build; D the storage driver
            buildah picks on this machine, which is the one manifesto's buildah builds resolve
            to: overlay where it works, else vfs, bench.base_image.buildah_driver)

The base (bench.base_image), written once as an OCI layout and pushed with skopeo into REG/bench-native/base:1, is
an index of five images of three gzip layers each (BASE_MIB = 60 + 30 + 10 MiB of os.urandom
bytes: incompressible, the size of a slim language runtime). The Dockerfile, the same for both:
FROM the base, one COPY of a per-arch static binary (Debian's busybox-static, 1.3-2.5 MB, from
the test suite's cache: scripts/fetch-busybox.sh) picked by ${TARGETARCH}${TARGETVARIANT}, and
config instructions. Both push into a repository of the base's
registry that did not exist before (a new name every repetition), so both can mount the base
layers and neither can skip the new ones. After each publish the target must hold a five-entry
index (untimed), and manifesto must have run no buildah (its cache holds no buildah store).
Target: manifesto / buildah ≤ 0.1.

native-rss: peak RSS of `manifesto build -o DIR --builder native --platform linux/amd64` of
`FROM scratch` + `COPY . /data/` over a 500 MiB context (five 100 MiB random files), from
`/usr/bin/time -f %M` (see bench.common.run); the judged figure is the largest of the
repetitions, target ≤ 100 MiB. The peer is `buildah build` (storage driver D) of the same
Dockerfile into an OCI layout, for scale only.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path
from typing import Any

from bench.base_image import (
    BASE_MIB,
    PLATFORMS,
    buildah_driver,
    buildah_global,
    check_driver,
    copy_busybox,
    push_base,
    random_file,
)
from bench.common import (
    MANIFESTO,
    BenchError,
    Context,
    Result,
    index_children,
    interleaved,
    log,
    rss_result,
    run,
    sandbox_env,
    timed_result,
)

NAME = "native"
TARGET = 0.1
RSS_NAME = "native-rss"
RSS_TARGET_MIB = 100.0
DEFAULT_REPEAT = 3
EPOCH = "1700000000"
CONTEXT_FILES, CONTEXT_FILE_MIB = 5, 100  # the RSS benchmark's context: 500 MiB


def write_project(root: Path, base: str) -> Path:
    """The app: its Dockerfile, a static binary per arch, and platforms.yaml (builder: native)."""
    copy_busybox(root, "app")
    (root / "Dockerfile").write_text(textwrap.dedent(f"""\
        FROM {base}
        ARG TARGETARCH
        ARG TARGETVARIANT
        COPY bin/${{TARGETARCH}}${{TARGETVARIANT}}/app /usr/local/bin/
        ENV APP_MODE=production
        LABEL org.opencontainers.image.title=bench-native
        EXPOSE 8080
        USER 1000:1000
        ENTRYPOINT ["/usr/local/bin/app"]
        CMD ["--serve"]
        """))  # fmt: skip
    spec = root / "platforms.yaml"
    platforms = ", ".join(p for p, *_ in PLATFORMS)
    image = base.rsplit("/", 1)[0] + "/unused"  # every run names its own with --image
    spec.write_text(f"image: {image}\ntags: ['1']\nbuild: {{builder: native}}\nplatforms: [{platforms}]\n")
    return spec


def publish_manifesto(ctx: Context, reg: Any, spec: Path, n: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one native publish into a new repository."""
    root = ctx.work.fresh("native-manifesto")
    try:
        env = sandbox_env(root, SOURCE_DATE_EPOCH=EPOCH)
        repo = f"bench-native/manifesto-{n}"
        p = run([MANIFESTO, "publish", "-q", "-f", spec, "--image", f"{reg.host}/{repo}"], env, timeout=1800)
        if index_children(reg.host, repo, "1") != len(PLATFORMS):
            raise BenchError(f"manifesto publish: {repo}:1 is not a {len(PLATFORMS)}-entry index")
        check_driver(root / "cache", None, "manifesto publish (native)")
        return p.wall, p.cpu
    finally:
        shutil.rmtree(root, ignore_errors=True)


def publish_buildah(ctx: Context, reg: Any, project: Path, n: int, driver: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of the build and the push together, from empty storage on
    the storage driver `driver`."""
    root = ctx.work.fresh("native-buildah")
    try:
        env = sandbox_env(root, SOURCE_DATE_EPOCH=EPOCH)
        repo = f"bench-native/buildah-{n}"
        build = [
            *buildah_global(root, driver), "build", "--isolation", "chroot", "--tls-verify=false",
            "--platform", ",".join(p for p, *_ in PLATFORMS), "--manifest", "localhost/bench-native-list",
            "-f", str(project / "Dockerfile"), str(project),
        ]  # fmt: skip
        push = [*buildah_global(root, driver), "manifest", "push", "--all", "--tls-verify=false",
                "localhost/bench-native-list", f"docker://{reg.host}/{repo}:1"]  # fmt: skip
        built = run(build, env, timeout=3600)
        pushed = run(push, env, timeout=3600)
        if index_children(reg.host, repo, "1") != len(PLATFORMS):
            raise BenchError(f"buildah manifest push: {repo}:1 is not a {len(PLATFORMS)}-entry list")
        return built.wall + pushed.wall, built.cpu + pushed.cpu
    finally:
        shutil.rmtree(root, ignore_errors=True)


def bench_publish(ctx: Context, driver: str) -> Result:
    reg = ctx.registry()
    base = push_base(ctx, reg, "bench-native/base", NAME)
    project = ctx.work.fresh("native-project")
    spec = write_project(project, base)

    samples: dict[str, list[float]] = {"manifesto": [], "buildah": []}
    cpu: dict[str, list[float]] = {"manifesto": [], "buildah": []}
    repeat = ctx.repeat(DEFAULT_REPEAT)
    for i, manifesto_first in interleaved(repeat):
        for tool in ("manifesto", "buildah") if manifesto_first else ("buildah", "manifesto"):
            if tool == "manifesto":
                wall, cpu_s = publish_manifesto(ctx, reg, spec, i)
            else:
                wall, cpu_s = publish_buildah(ctx, reg, project, i, driver)
            samples[tool].append(wall)
            cpu[tool].append(cpu_s)
        log(f"{NAME} {i + 1}/{repeat}: manifesto {samples['manifesto'][-1]:.2f} s, buildah {samples['buildah'][-1]:.1f} s")
    return timed_result(
        NAME, samples, cpu, "buildah", "buildah build --manifest + manifest push --all", TARGET,
        base=f"{len(PLATFORMS)} platforms x {' + '.join(map(str, BASE_MIB))} MiB gzip layers (random)",
        app="one COPY of busybox-static (1.3-2.5 MB) per platform + 6 config instructions",
        storage_driver=f"{driver} (buildah; manifesto's native builder keeps no layer store)",
    )


def bench_rss(ctx: Context, driver: str) -> Result:
    project = ctx.work.fresh("native-rss-context")
    log(f"{RSS_NAME}: writing a {CONTEXT_FILES * CONTEXT_FILE_MIB} MiB context")
    for n in range(CONTEXT_FILES):
        random_file(project / f"part-{n}.bin", CONTEXT_FILE_MIB)
    (project / "Dockerfile").write_text("FROM scratch\nCOPY . /data/\n")
    (project / ".dockerignore").write_text("platforms.yaml\n")
    spec = project / "platforms.yaml"
    spec.write_text("image: 127.0.0.1:5000/unused\ntags: ['1']\nplatforms: [linux/amd64]\n")
    rss: dict[str, list[float]] = {"manifesto": [], "buildah": []}
    walls: dict[str, list[float]] = {"manifesto": [], "buildah": []}
    repeat = min(ctx.repeat(DEFAULT_REPEAT), 3)
    for i, manifesto_first in interleaved(repeat):
        for tool in ("manifesto", "buildah") if manifesto_first else ("buildah", "manifesto"):
            root = ctx.work.fresh(f"native-rss-{tool}")
            try:
                env = sandbox_env(root, SOURCE_DATE_EPOCH=EPOCH)
                out = root / "out"
                if tool == "manifesto":
                    argv = [MANIFESTO, "build", "-q", "-f", spec, "--builder", "native", "-o", out]
                else:
                    argv = [*buildah_global(root, driver), "build", "--isolation", "chroot",
                            "--platform", "linux/amd64", "-f", project / "Dockerfile", "-t", f"oci:{out}:1",
                            project]  # fmt: skip
                p = run(argv, env, timeout=1800, rss=True)
            finally:
                shutil.rmtree(root, ignore_errors=True)
            rss[tool].append(p.maxrss_kib / 1024)
            walls[tool].append(p.wall)
        log(f"{RSS_NAME} {i + 1}/{repeat}: manifesto {rss['manifesto'][-1]:.1f} MiB, buildah {rss['buildah'][-1]:.1f} MiB")
    return rss_result(
        RSS_NAME, rss, walls, "buildah", "buildah build", RSS_TARGET_MIB,
        context=f"{CONTEXT_FILES} x {CONTEXT_FILE_MIB} MiB random files, FROM scratch + COPY . /data/",
        storage_driver=f"{driver} (buildah)",
    )


def bench(ctx: Context) -> list[Result]:
    driver = buildah_driver(ctx, NAME)
    return [bench_publish(ctx, driver), bench_rss(ctx, driver)]
