"""cache: republishing a 5-arch image with the build cache, cold / warm / one app file changed.

manifesto:  SOURCE_DATE_EPOCH=... manifesto publish -q -f platforms.yaml --image REG/bench-cache/manifesto-N
            (platforms.yaml: `builder: buildah`, the five platforms; the layer stores under the
            sandbox's $XDG_CACHE_HOME/manifesto, empty before the cold run)
peer:       buildah --root R --runroot RR --storage-driver D build --layers --isolation chroot
                --timestamp EPOCH --platform <the five> --manifest L -f Dockerfile CONTEXT
            buildah ... manifest push --all --tls-verify=false L docker://REG/bench-cache/buildah-N:1
            (R, RR empty before the cold run; the list L is removed, untimed, before each build so
            it holds the five images of that build only, as manifesto's index does; D is the
            storage driver manifesto's buildah builds resolve to on this machine, overlay where
            it works, else vfs: each side does the same work, and the run checks that manifesto's
            stores used D)

The matrix: the 5-arch base of bench.base_image (3 gzip layers, 100 MiB per arch), then a
Dockerfile that COPYs a static busybox, RUNs CPU work under qemu (sha256 of RUN_MIB MiB of
zeros: 1.3-3.7 s per foreign arch on this machine, 0.6 s on amd64, small enough to keep the
benchmark within a few minutes on 2 cores) and COPYs the app (a few small files). Each side, in its own sandbox, publishes three times into one
repository: cold (no cached layer, a repository that did not exist), warm (nothing changed) and
changed (one app file rewritten: the RUN step stays cached, the last COPY runs again).
Targets: manifesto's warm ≤ 0.15 x its cold, changed ≤ 0.3 x its cold, each phase ≤ 1.0 x the
peer's, and manifesto's own peak RSS (VmHWM, not buildah's) ≤ 100 MiB over every run.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path
from typing import Any

from bench.base_image import PLATFORMS, buildah_driver, buildah_global, check_driver, copy_busybox, push_base
from bench.common import (
    MANIFESTO,
    BenchError,
    Context,
    Result,
    cpu_notes,
    index_children,
    interleaved,
    log,
    median,
    run,
    sandbox_env,
    spread,
)

NAME = "cache"
DEFAULT_REPEAT = 1  # one cold + warm + changed per side is ~5 minutes on 2 cores
EPOCH = "1700000000"
RUN_MIB = 128
PHASES = ("cold", "warm", "changed")
PHASE_TARGETS = {"warm": 0.15, "changed": 0.3}  # of manifesto's own cold time
RSS_TARGET_MIB = 100.0
CHANGED_FILE = "app/index.html"


def write_project(root: Path, base: str) -> Path:
    """The app: Dockerfile, busybox per arch, app files, platforms.yaml (builder: buildah)."""
    copy_busybox(root, "busybox")
    (root / "app").mkdir()
    (root / "app" / "settings.conf").write_text("listen = 8080\nworkers = 4\n")
    (root / "app" / "robots.txt").write_text("User-agent: *\nDisallow:\n")
    (root / CHANGED_FILE).write_text("<h1>version 1</h1>\n")
    work = f"/bin/busybox dd if=/dev/zero bs=1M count={RUN_MIB} 2>/dev/null | /bin/busybox sha256sum > /work.sum"
    (root / "Dockerfile").write_text(textwrap.dedent(f"""\
        FROM {base}
        ARG TARGETARCH
        ARG TARGETVARIANT
        COPY bin/${{TARGETARCH}}${{TARGETVARIANT}}/busybox /bin/busybox
        RUN ["/bin/busybox", "sh", "-c", "{work}"]
        COPY app/ /srv/app/
        ENV APP_MODE=production
        CMD ["/bin/busybox", "httpd", "-f", "-h", "/srv/app"]
        """))  # fmt: skip
    (root / ".dockerignore").write_text("platforms.yaml\n")
    spec = root / "platforms.yaml"
    platforms = ", ".join(p for p, *_ in PLATFORMS)
    image = base.rsplit("/", 1)[0] + "/unused"  # every run names its own with --image
    spec.write_text(f"image: {image}\ntags: ['1']\nbuild: {{builder: buildah}}\nplatforms: [{platforms}]\n")
    return spec


def _phase_file(project: Path, phase: str) -> None:
    """The app as each phase sees it: version 1 for cold and warm, version 2 once changed."""
    (project / CHANGED_FILE).write_text("<h1>version 2</h1>\n" if phase == "changed" else "<h1>version 1</h1>\n")


def _check(host: str, repo: str, what: str) -> None:
    if index_children(host, repo, "1") != len(PLATFORMS):
        raise BenchError(f"{what}: {repo}:1 is not a {len(PLATFORMS)}-entry index")


def manifesto_phases(
    ctx: Context, reg: Any, project: Path, spec: Path, n: int, driver: str
) -> dict[str, tuple[float, float, float]]:
    """phase -> (wall s, CPU s, own peak RSS MiB) of manifesto's three publishes, which must
    have built in `driver` stores (the peer's driver)."""
    root = ctx.work.fresh("cache-manifesto")
    out = {}
    try:
        env = sandbox_env(root, SOURCE_DATE_EPOCH=EPOCH)
        repo = f"bench-cache/manifesto-{n}"
        for phase in PHASES:
            _phase_file(project, phase)
            argv = [MANIFESTO, "publish", "-q", "-f", spec, "--image", f"{reg.host}/{repo}"]
            p = run(argv, env, timeout=1800, own_rss=True)
            _check(reg.host, repo, f"manifesto publish ({phase})")
            out[phase] = (p.wall, p.cpu, p.maxrss_kib / 1024)
        check_driver(root / "cache", driver, "manifesto publish")
        return out
    finally:
        shutil.rmtree(root, ignore_errors=True)


def buildah_phases(ctx: Context, reg: Any, project: Path, n: int, driver: str) -> dict[str, tuple[float, float, float]]:
    """phase -> (wall s, CPU s, -1) of buildah's build + push, the same three times, with the
    storage driver `driver`."""
    root = ctx.work.fresh("cache-buildah")
    out = {}
    try:
        env = sandbox_env(root, SOURCE_DATE_EPOCH=EPOCH)
        repo = f"bench-cache/buildah-{n}"
        listname = "localhost/bench-cache-list"
        for phase in PHASES:
            _phase_file(project, phase)
            if phase != "cold":
                run([*buildah_global(root, driver), "manifest", "rm", listname], env, check=False)
            build = [
                *buildah_global(root, driver), "build", "--layers", "--isolation", "chroot", "--tls-verify=false",
                "--timestamp", EPOCH, "--platform", ",".join(p for p, *_ in PLATFORMS), "--manifest", listname,
                "-f", str(project / "Dockerfile"), str(project),
            ]  # fmt: skip
            push = [*buildah_global(root, driver), "manifest", "push", "--all", "--tls-verify=false",
                    listname, f"docker://{reg.host}/{repo}:1"]  # fmt: skip
            built = run(build, env, timeout=3600)
            pushed = run(push, env, timeout=3600)
            _check(reg.host, repo, f"buildah manifest push ({phase})")
            out[phase] = (built.wall + pushed.wall, built.cpu + pushed.cpu, -1.0)
        return out
    finally:
        shutil.rmtree(root, ignore_errors=True)


def bench(ctx: Context) -> list[Result]:
    reg = ctx.registry()
    base = push_base(ctx, reg, "bench-cache/base", NAME)
    project = ctx.work.fresh("cache-project")
    spec = write_project(project, base)
    driver = buildah_driver(ctx, NAME)
    walls = {t: {p: [] for p in PHASES} for t in ("manifesto", "buildah")}
    cpus = {t: {p: [] for p in PHASES} for t in ("manifesto", "buildah")}
    rss: list[float] = []
    repeat = ctx.repeat(DEFAULT_REPEAT)
    for i, manifesto_first in interleaved(repeat):
        for tool in ("manifesto", "buildah") if manifesto_first else ("buildah", "manifesto"):
            if tool == "manifesto":
                got = manifesto_phases(ctx, reg, project, spec, i, driver)
            else:
                got = buildah_phases(ctx, reg, project, i, driver)
            for phase, (wall, cpu_s, peak) in got.items():
                walls[tool][phase].append(wall)
                cpus[tool][phase].append(cpu_s)
                if tool == "manifesto":
                    rss.append(peak)
            times = ", ".join(f"{p} {got[p][0]:.1f} s" for p in PHASES)
            log(f"{NAME} {i + 1}/{repeat}: {tool} {times}")
    return _results(walls, cpus, rss)


def _results(walls: dict, cpus: dict, rss: list[float]) -> list[Result]:
    """One result per phase against buildah, one per cached phase against cold, and the RSS."""
    peer = "buildah build --layers --manifest + manifest push --all"
    m = {p: median(walls["manifesto"][p]) for p in PHASES}
    b = {p: median(walls["buildah"][p]) for p in PHASES}
    out = []
    for phase in PHASES:
        notes = {
            "manifesto_spread": spread(walls["manifesto"][phase]),
            "buildah_spread": spread(walls["buildah"][phase]),
            "buildah_phase_of_cold": round(b[phase] / b["cold"], 2),
            **cpu_notes(cpus["manifesto"][phase], cpus["buildah"][phase]),
        }
        out.append(Result(
            f"{NAME}-{phase}", "s", m[phase], b[phase], peer, m[phase] / b[phase], 1.0,
            manifesto_samples=walls["manifesto"][phase], peer_samples=walls["buildah"][phase], notes=notes,
        ))  # fmt: skip
    for phase, target in PHASE_TARGETS.items():
        out.append(Result(
            f"{NAME}-{phase}-of-cold", "s", m[phase], m["cold"], "manifesto cold publish", m[phase] / m["cold"],
            target, manifesto_samples=walls["manifesto"][phase], peer_samples=walls["manifesto"]["cold"],
        ))  # fmt: skip
    out.append(Result(
        f"{NAME}-rss", "MiB", max(rss), float("nan"), "(manifesto's own VmHWM; buildah not counted)", float("nan"),
        RSS_TARGET_MIB, target_on="manifesto", manifesto_samples=rss,
        notes={"judged": "largest own peak RSS over every publish (cold, warm, changed)"},
    ))  # fmt: skip
    return out
