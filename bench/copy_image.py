"""copy: a 5-architecture image (its index and five children) into a new repository of the
same registry.

manifesto:  manifesto copy --insecure REG/bench-copy/src:1 REG/bench-copy/manifesto-ID-N:1
peer:       skopeo --insecure-policy copy --all --src-tls-verify=false --dest-tls-verify=false \\
              docker://REG/bench-copy/src:1 docker://REG/bench-copy/skopeo-ID-N:1

The source is the five busybox children pushed into one repository under an OCI index
(`docker manifest push --purge`, once). Every repetition copies into a repository that did not
exist before, so neither tool can skip anything: both mount the ten blobs from the source
repository (skopeo learns the source from its blob-info cache, which the untimed warm-up
fills), PUT five child manifests by digest and the index under the tag. After each copy the
target must hold the five-entry index (untimed). Target: manifesto / skopeo ≤ 1.3 (issue 8).

(Module named copy_image, not copy: a bench/copy.py would shadow the standard library's `copy`.)
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

NAME = "copy"
TARGET = 1.3
SKOPEO = ["skopeo", "--insecure-policy", "copy", "--quiet", "--all", "--src-tls-verify=false", "--dest-tls-verify=false"]


def commands(source: str, target: str) -> dict[str, list[str]]:
    """The two copies of `source` (host/repo:tag) into `target` + "-manifesto" / "-skopeo"."""
    return {
        "manifesto": [str(MANIFESTO), "copy", "--insecure", source, f"{target}-manifesto:1"],
        "skopeo": [*SKOPEO, f"docker://{source}", f"docker://{target}-skopeo:1"],
    }


def bench(ctx: Context) -> list[Result]:
    lib = ctx.library()
    host = lib.registry.host
    source = f"{host}/bench-copy/src:1"
    env = sandbox_env(ctx.work.fresh("copy"))
    run(["docker", "manifest", "create", "--insecure", source, *lib.children], env)
    run(["docker", "manifest", "annotate", source, lib.arm64, "--variant", "v8"], env)
    run(["docker", "manifest", "push", "--insecure", "--purge", source], env)

    run_id = uuid.uuid4().hex[:6]
    for argv in commands(source, f"{host}/bench-copy/warmup-{run_id}").values():
        run(argv, env)  # untimed: caches warm, skopeo's blob-info cache learns the source

    samples: dict[str, list[float]] = {"manifesto": [], "skopeo": []}
    cpu: dict[str, list[float]] = {"manifesto": [], "skopeo": []}
    repeat = ctx.repeat(9)
    for i, manifesto_first in interleaved(repeat):
        target = f"bench-copy/{run_id}-{i}"
        argvs = commands(source, f"{host}/{target}")
        for tool in ("manifesto", "skopeo") if manifesto_first else ("skopeo", "manifesto"):
            p = run(argvs[tool], env)
            samples[tool].append(p.wall)
            cpu[tool].append(p.cpu)
            if index_children(host, f"{target}-{tool}", "1") != 5:
                raise BenchError(f"{tool}: {host}/{target}-{tool}:1 is not the five-entry index")
        log(f"{NAME} {i + 1}/{repeat}: manifesto {samples['manifesto'][-1]:.3f} s, skopeo {samples['skopeo'][-1]:.3f} s")

    return [timed_result(NAME, samples, cpu, "skopeo", "skopeo copy --all", TARGET)]
