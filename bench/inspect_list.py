"""inspect: show a 5-platform list that lives in the registry.

manifesto:  manifesto inspect --insecure REG/bench-inspect/list:1        (the platform table)
peer:       docker manifest inspect --insecure REG/bench-inspect/list:1 (the list as JSON)

The list is pushed once (docker manifest create + push --purge) before timing. Both tools run
with their own empty config directory, so neither finds a local draft of the same name (both
would print the local draft instead of asking the registry). Both fetch the list only; neither
is asked for per-child detail (-v). Target: manifesto / docker ≤ 1.5.

(Module named inspect_list, not inspect: a bench/inspect.py would shadow the standard library's
`inspect` for anything run with bench/ on sys.path.)
"""

from __future__ import annotations

from bench.common import (
    MANIFESTO,
    PYTHON,
    Context,
    Result,
    cpu_notes,
    interleaved,
    log,
    median,
    run,
    sandbox_env,
    spread,
)

NAME = "inspect"
TARGET = 1.5


def bench(ctx: Context) -> list[Result]:
    lib = ctx.library()
    ref = f"{lib.registry.host}/bench-inspect/list:1"
    setup = sandbox_env(ctx.work.fresh("inspect-setup"))
    run(["docker", "manifest", "create", "--insecure", ref, *lib.children], setup)
    run(["docker", "manifest", "annotate", ref, lib.arm64, "--variant", "v8"], setup)
    run(["docker", "manifest", "push", "--insecure", "--purge", ref], setup)

    env_m = sandbox_env(ctx.work.fresh("inspect-manifesto"))
    env_d = sandbox_env(ctx.work.fresh("inspect-docker"))
    commands = {
        "manifesto": [str(MANIFESTO), "inspect", "--insecure", ref],
        "docker": ["docker", "manifest", "inspect", "--insecure", ref],
    }
    envs = {"manifesto": env_m, "docker": env_d}

    out = run(commands["manifesto"], env_m).stdout  # warm-up, and a sanity check of what we time
    if "local draft" in out or out.count("linux/") < 5:
        raise RuntimeError(f"manifesto inspect did not show the remote 5-platform list:\n{out}")
    out = run(commands["docker"], env_d).stdout
    if out.count('"architecture"') < 5:
        raise RuntimeError(f"docker manifest inspect did not show the 5-platform list:\n{out}")

    # Not judged: where manifesto's time goes, measured alongside (see docs/benchmarks.md).
    breakdown = {
        "python -c pass": ([str(PYTHON), "-c", "pass"], env_m),
        "import manifesto.cli.lists": ([str(PYTHON), "-c", "import manifesto.cli.lists"], env_m),
        "keyring.get_keyring()": ([str(PYTHON), "-c", "import keyring; keyring.get_keyring()"], env_m),
        "inspect with MANIFESTO_KEYRING=file": (commands["manifesto"], {**env_m, "MANIFESTO_KEYRING": "file"}),
    }

    samples: dict[str, list[float]] = {"manifesto": [], "docker": []}
    cpu: dict[str, list[float]] = {"manifesto": [], "docker": []}
    parts: dict[str, list[float]] = {k: [] for k in breakdown}
    repeat = ctx.repeat()
    for i, manifesto_first in interleaved(repeat):
        for tool in ("manifesto", "docker") if manifesto_first else ("docker", "manifesto"):
            p = run(commands[tool], envs[tool])
            samples[tool].append(p.wall)
            cpu[tool].append(p.cpu)
        for key, (argv, env) in breakdown.items():
            parts[key].append(run(argv, env).wall)
        log(
            f"{NAME} {i + 1}/{repeat}: manifesto {samples['manifesto'][-1]:.3f} s, docker {samples['docker'][-1]:.3f} s"
        )

    m, d = median(samples["manifesto"]), median(samples["docker"])
    notes = {
        "manifesto_spread": spread(samples["manifesto"]),
        "docker_spread": spread(samples["docker"]),
        **cpu_notes(cpu["manifesto"], cpu["docker"]),
        "breakdown_median_s": {k: round(median(v), 3) for k, v in parts.items()},
    }
    return [
        Result(
            NAME, "s", m, d, "docker manifest inspect", m / d, TARGET,
            manifesto_samples=samples["manifesto"], peer_samples=samples["docker"], notes=notes,
        )
    ]  # fmt: skip
