"""Run the peer benchmarks and judge each against its target; exit 1 if any target fails.

    .venv/bin/python bench/run.py [--only NAME[,NAME...]] [--repeat N] [--json FILE] [--markdown]

NAME: assemble, create-push, inspect, blob, version, copy, copy-rss, publish, native, cache (default: all, in
that order). --repeat N sets the repetitions of every benchmark (default 5; copy 9; copy-rss,
publish and native 3; cache 1; inspect and version are hyperfine rounds, see their modules).
Each benchmark prints `name: manifesto X, peer Y, ratio R (target ...) PASS|FAIL`; progress
goes to stderr. docs/benchmarks.md describes what each one measures. manifesto runs as a user
installs it: a wheel of the current tree in out/bench-venv (bench/install.py).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Running `python bench/run.py` puts bench/ itself first on sys.path; put the repository there
# instead, so `bench.*`, `tests.support.*` and `manifesto` import as packages.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)
sys.path.insert(0, str(REPO))

from bench.common import Context, Result, failed, loadavg, machine  # noqa: E402 (after the sys.path fix)
from bench.install import install  # noqa: E402

BENCHMARKS = {
    "assemble": "bench.assemble",
    "create-push": "bench.create_push",
    "inspect": "bench.inspect_list",
    "blob": "bench.blob_push",
    "version": "bench.version",
    "copy": "bench.copy_image",
    "copy-rss": "bench.copy_rss",
    "publish": "bench.publish",
    "native": "bench.native_publish",
    "cache": "bench.cache_publish",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help=f"run only these ({', '.join(BENCHMARKS)}); repeatable or comma-separated",
    )
    p.add_argument("--repeat", type=int, metavar="N", help="repetitions per benchmark (default 5; copy 9; copy-rss, publish, native 3; cache 1)")
    p.add_argument("--json", metavar="FILE", help="also write every sample, median and note as JSON")
    p.add_argument("--markdown", action="store_true", help="also print the table of medians for docs/benchmarks.md")
    args = p.parse_args(argv)
    names = [n.strip() for v in (args.only or []) for n in v.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    if args.repeat is not None and args.repeat < 1:
        p.error("--repeat must be at least 1")
    args.names = names
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install()  # a wheel of this tree into out/bench-venv: what the benchmarks run
    info = machine()
    print(
        f"# manifesto benchmarks — {info['nproc']} cores, {info['memory_gib']} GiB, {info['python']}, load {loadavg()}",
        flush=True,
    )
    ctx = Context(args.repeat)
    results: list[Result] = []
    started = time.time()
    try:
        for name in args.names:
            load_before = loadavg()
            t0 = time.perf_counter()
            try:
                got = importlib.import_module(BENCHMARKS[name]).bench(ctx)
            except Exception as e:  # noqa: BLE001 — one broken benchmark must not hide the others
                traceback.print_exc(file=sys.stderr)
                got = [failed(name, f"{type(e).__name__}: {e}")]
            for r in got:
                r.notes.setdefault("loadavg_before", load_before)
                r.notes.setdefault("loadavg_after", loadavg())
                r.notes.setdefault("benchmark_seconds", round(time.perf_counter() - t0, 1))
                print(r.line(), flush=True)
            results.extend(got)
    finally:
        ctx.close()
    ok = all(r.passed for r in results)
    if args.json:
        doc = {
            "command": " ".join([".venv/bin/python", "bench/run.py", *(argv if argv is not None else sys.argv[1:])]),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "seconds": round(time.time() - started, 1),
            "machine": info,
            "passed": ok,
            "results": [r.to_json() for r in results],
        }
        Path(args.json).write_text(json.dumps(doc, indent=2, default=str) + "\n")
    if args.markdown:
        print(markdown(results))
    failed_names = [r.name for r in results if not r.passed]
    print(f"# {'all targets met' if ok else 'FAILED: ' + ', '.join(failed_names)}", flush=True)
    return 0 if ok else 1


def markdown(results: list[Result]) -> str:
    """The table docs/benchmarks.md shows: medians, ratio, target, verdict."""
    rows = [
        "| benchmark | manifesto | peer | peer median | ratio | target | result |",
        "|---|---:|---|---:|---:|---|---|",
    ]
    for r in results:
        if r.error:
            rows.append(f"| {r.name} | – | – | – | – | – | ERROR: {r.error.splitlines()[0]} |")
            continue
        fmt = "{:.3f} {}" if r.unit == "s" else "{:.1f} {}"
        sym = "≤" if r.op == "<=" else "≥"
        target = (
            f"ratio {sym} {r.target:g}" if r.target_on == "ratio" else f"manifesto {sym} {fmt.format(r.target, r.unit)}"
        )
        rows.append(
            f"| {r.name} | {fmt.format(r.manifesto, r.unit)} | {r.peer_name} | {fmt.format(r.peer, r.unit)} | "
            f"{r.ratio:.2f} | {target} | {'PASS' if r.passed else '**FAIL**'} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
