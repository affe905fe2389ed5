"""create-push: a 5-child, cross-repository list built and pushed into a fresh repo, one-shot.

manifesto:  manifesto create --push --insecure LIST c1..c5                     (one process)
peer:       docker manifest create --insecure LIST c1..c5;
            docker manifest annotate LIST cN --os linux --arch A [--variant V]  (x5, one per child);
            docker manifest push --insecure LIST                                (seven processes)

Both copy the five children from amd64/busybox ... s390x/busybox into the target repository
(blob mounts, child manifests by digest) and PUT the list; docker's annotations restate each
child's own platform, so both lists say the same. Every repetition pushes into a repository that
did not exist before. The figure is the summed wall time of each side's processes, median of the
repetitions. Target: manifesto / docker ≤ 1.0.
"""

from __future__ import annotations

import uuid

from bench.common import (
    MANIFESTO,
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

NAME = "create-push"
TARGET = 1.0

# docker-library namespace -> (architecture, variant): what each child already is.
_PLATFORMS = {
    "amd64": ("amd64", None),
    "arm64v8": ("arm64", "v8"),
    "arm32v7": ("arm", "v7"),
    "ppc64le": ("ppc64le", None),
    "s390x": ("s390x", None),
}


def _platform(child: str) -> tuple[str, str | None]:
    namespace = child.split("/")[1]
    return _PLATFORMS[namespace]


def manifesto_steps(lst: str, children: list[str]) -> list[list[str]]:
    return [[str(MANIFESTO), "create", "--push", "--insecure", lst, *children]]


def docker_steps(lst: str, children: list[str]) -> list[list[str]]:
    steps = [["docker", "manifest", "create", "--insecure", lst, *children]]
    for child in children:
        arch, variant = _platform(child)
        steps.append(
            ["docker", "manifest", "annotate", lst, child, "--os", "linux", "--arch", arch]
            + (["--variant", variant] if variant else [])
        )
    steps.append(["docker", "manifest", "push", "--insecure", lst])
    return steps


def bench(ctx: Context) -> list[Result]:
    lib = ctx.library()
    host = lib.registry.host
    envs = {
        "manifesto": sandbox_env(ctx.work.fresh("create-push-manifesto")),
        "docker": sandbox_env(ctx.work.fresh("create-push-docker")),
    }
    steps = {"manifesto": manifesto_steps, "docker": docker_steps}
    run_id = uuid.uuid4().hex[:6]

    def once(tool: str, label: str) -> tuple[float, float, int]:
        repo = f"bench-create-push/{tool}-{run_id}-{label}"
        procs = [run(s, envs[tool]) for s in steps[tool](f"{host}/{repo}:1", lib.children)]
        if index_children(host, repo, "1") != len(lib.children):  # untimed sanity check
            raise BenchError(f"{tool}: {repo}:1 is not a {len(lib.children)}-entry list")
        return sum(p.wall for p in procs), sum(p.cpu for p in procs), len(procs)

    # One untimed round each: page cache, .pyc files, the registry's first-request paths.
    once("manifesto", "warmup")
    once("docker", "warmup")

    samples: dict[str, list[float]] = {"manifesto": [], "docker": []}
    cpu: dict[str, list[float]] = {"manifesto": [], "docker": []}
    processes = {}
    repeat = ctx.repeat()
    for i, manifesto_first in interleaved(repeat):
        for tool in ("manifesto", "docker") if manifesto_first else ("docker", "manifesto"):
            wall, cpu_s, processes[tool] = once(tool, str(i))
            samples[tool].append(wall)
            cpu[tool].append(cpu_s)
        log(f"{NAME} {i + 1}/{repeat}: manifesto {samples['manifesto'][-1]:.3f} s, docker {samples['docker'][-1]:.3f} s")

    return [
        timed_result(
            NAME, samples, cpu, "docker", "docker manifest create + annotate x5 + push", TARGET,
            manifesto_processes=processes["manifesto"], docker_processes=processes["docker"],
        )
    ]  # fmt: skip
