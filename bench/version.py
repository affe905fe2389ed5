"""version: start-up cost. `manifesto --version` wall time, median of 20, ≤ 100 ms.

Peer (for scale, not judged): `.venv/bin/python -c pass`, the interpreter's own floor on this
machine at this moment; the ratio says how much manifesto's entry point adds to it.

Also reports `python -X importtime` for `manifesto inspect --help` (the parser of every command,
no command module) and for `import manifesto.cli.lists` (what the docker-manifest verbs import
before doing any work): the top offenders by cumulative and by self time.
"""

from __future__ import annotations

from bench.common import (
    MANIFESTO,
    PYTHON,
    Context,
    Result,
    interleaved,
    log,
    median,
    run,
    sandbox_env,
    spread,
)

NAME = "version"
TARGET_S = 0.100
RUNS = 20


def importtime(argv: list[str], env: dict[str, str]) -> list[tuple[int, int, int, str]]:
    """(self µs, cumulative µs, depth, module) for every import `argv` performs."""
    p = run([PYTHON, "-X", "importtime", *argv], env, check=False)
    rows = []
    for line in p.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cum_us, name = line.split(":", 1)[1].split("|")
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2  # one space after "|", two per level
        rows.append((int(self_us), int(cum_us), depth, name.strip()))
    return rows


def offenders(rows: list[tuple[int, int, int, str]], n: int = 10) -> dict[str, object]:
    total = sum(r[0] for r in rows)
    top_cum = sorted((r for r in rows if r[2] <= 1), key=lambda r: -r[1])[:n]
    top_self = sorted(rows, key=lambda r: -r[0])[:n]
    return {
        "total_import_ms": round(total / 1000, 1),
        "top_cumulative_ms": {r[3]: round(r[1] / 1000, 1) for r in top_cum},
        "top_self_ms": {r[3]: round(r[0] / 1000, 1) for r in top_self},
    }


def bench(ctx: Context) -> list[Result]:
    env = sandbox_env(ctx.work.fresh("version"))
    commands = {"manifesto": [str(MANIFESTO), "--version"], "python": [str(PYTHON), "-c", "pass"]}
    run(commands["manifesto"], env)  # warm-up
    run(commands["python"], env)
    samples: dict[str, list[float]] = {"manifesto": [], "python": []}
    runs = max(RUNS, ctx.repeat_arg or 0)
    for _, manifesto_first in interleaved(runs):
        for tool in ("manifesto", "python") if manifesto_first else ("python", "manifesto"):
            samples[tool].append(run(commands[tool], env).wall)
    m, p = median(samples["manifesto"]), median(samples["python"])
    log(f"{NAME}: manifesto --version {m * 1000:.1f} ms, python -c pass {p * 1000:.1f} ms ({runs} runs each)")

    # Import profiles, best of 5 by total so one contended run does not mislead.
    def best(argv: list[str]) -> dict[str, object]:
        return min((offenders(importtime(argv, env)) for _ in range(5)), key=lambda o: o["total_import_ms"])

    notes = {
        "runs": runs,
        "manifesto_spread": spread(samples["manifesto"]),
        "python_spread": spread(samples["python"]),
        "importtime_inspect_help": best([str(MANIFESTO), "inspect", "--help"]),
        "importtime_cli_lists": best(["-c", "import manifesto.cli.lists"]),
    }
    return [
        Result(
            NAME, "s", m, p, "python -c pass", m / p, TARGET_S, target_on="manifesto",
            manifesto_samples=samples["manifesto"], peer_samples=samples["python"], notes=notes,
        )
    ]  # fmt: skip
