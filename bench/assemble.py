"""assemble: create + annotate + push of a 5-child, cross-repository list into a fresh repo.

manifesto:  manifesto create --insecure LIST c1..c5; manifesto annotate LIST arm64v8 --variant v8;
            manifesto push --insecure LIST
peer:       docker manifest create --insecure LIST c1..c5; docker manifest annotate ... --variant v8;
            docker manifest push --insecure LIST

Both copy the five children from amd64/busybox ... s390x/busybox into the target repository
(blob mounts, child manifests by digest) and PUT the list. Every repetition pushes into a
repository that did not exist before, so neither tool can skip anything. The figure is the
summed wall time of the three commands (three process starts each), median of the repetitions.
Target: manifesto / docker ≤ 1.5.
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
    median,
    run,
    sandbox_env,
    timed_result,
)

NAME = "assemble"
TARGET = 1.5


def _steps(tool: list[str], lst: str, children: list[str], arm64: str) -> list[list[str]]:
    return [
        [*tool, "create", "--insecure", lst, *children],
        [*tool, "annotate", lst, arm64, "--variant", "v8"],
        [*tool, "push", "--insecure", lst],
    ]


def _time(steps: list[list[str]], env: dict[str, str]) -> tuple[float, list[float], float]:
    """(summed wall time, wall time of each step, summed CPU time)."""
    procs = [run(s, env) for s in steps]
    return sum(p.wall for p in procs), [p.wall for p in procs], sum(p.cpu for p in procs)


def bench(ctx: Context) -> list[Result]:
    lib = ctx.library()
    host = lib.registry.host
    env_m = sandbox_env(ctx.work.fresh("assemble-manifesto"))
    env_d = sandbox_env(ctx.work.fresh("assemble-docker"))
    tools = {"manifesto": [str(MANIFESTO)], "docker": ["docker", "manifest"]}
    envs = {"manifesto": env_m, "docker": env_d}
    run_id = uuid.uuid4().hex[:6]

    def once(tool: str, label: str) -> tuple[float, list[float], float]:
        repo = f"bench-assemble/{tool}-{run_id}-{label}"
        timed = _time(_steps(tools[tool], f"{host}/{repo}:1", lib.children, lib.arm64), envs[tool])
        if index_children(host, repo, "1") != len(lib.children):  # untimed sanity check
            raise BenchError(f"{tool}: {repo}:1 is not a {len(lib.children)}-entry list")
        return timed

    # One untimed round each: page cache, .pyc files, the registry's first-request paths.
    once("manifesto", "warmup")
    once("docker", "warmup")

    samples: dict[str, list[float]] = {"manifesto": [], "docker": []}
    cpu: dict[str, list[float]] = {"manifesto": [], "docker": []}
    per_step: dict[str, list[list[float]]] = {"manifesto": [], "docker": []}
    repeat = ctx.repeat()
    for i, manifesto_first in interleaved(repeat):
        for tool in ("manifesto", "docker") if manifesto_first else ("docker", "manifesto"):
            total, walls, cpu_s = once(tool, str(i))
            samples[tool].append(total)
            per_step[tool].append(walls)
            cpu[tool].append(cpu_s)
        log(
            f"{NAME} {i + 1}/{repeat}: manifesto {samples['manifesto'][-1]:.3f} s, docker {samples['docker'][-1]:.3f} s"
        )

    steps = ("create", "annotate", "push")
    return [
        timed_result(
            NAME, samples, cpu, "docker", "docker manifest", TARGET,
            manifesto_steps_median_s={s: round(median([w[k] for w in per_step["manifesto"]]), 3) for k, s in enumerate(steps)},
            docker_steps_median_s={s: round(median([w[k] for w in per_step["docker"]]), 3) for k, s in enumerate(steps)},
        )
    ]  # fmt: skip
