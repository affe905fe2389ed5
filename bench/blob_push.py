"""blob: push a 512 MiB blob of random bytes, monolithic, into a fresh repository each time.

manifesto:  a `python -c` subprocess that calls RegistryClient.write_blob(repo, descriptor,
            Path(file)) — POST /v2/<repo>/blobs/uploads/, then one streamed PUT <location>&digest=
peer:       curl -X POST .../blobs/uploads/ (read Location), then
            curl -X PUT -T file "<location>&digest=sha256:..." (the Location already carries a
            query string, _state, so the digest is appended with &); must answer 201

The file is generated once (os.urandom) in the run's temp dir on disk and is in the page cache
for both tools. Every push goes to a new repository, so the registry never answers "already
there"; nothing is deleted. Figures:

- `blob`: throughput ratio manifesto / curl (= curl time / manifesto time) ≥ 0.8. manifesto's
  time is measured inside the subprocess around write_blob (POST + PUT, the same two requests
  curl's two processes make), so interpreter start-up and imports — measured by the `version`
  benchmark — do not count as transfer time. The subprocess's whole wall time is in the notes.
- `blob-rss`: peak RSS of the manifesto subprocess (`/usr/bin/time -f %M`; see
  bench.common.run for why not the rusage of our own child), largest of the repetitions,
  ≤ 80 MiB. A streamed upload must not hold the blob in memory. Peer: curl's PUT.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.request
import uuid
from pathlib import Path

from bench.common import (
    PYTHON,
    BenchError,
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

NAME = "blob"
TARGET_RATIO = 0.8
TARGET_RSS_MIB = 80.0
SIZE = 512 * 1024 * 1024

# Logging configured as the CLI does (unconfigured structlog would print every debug event).
PUSH = """
import asyncio, json, sys, time
from pathlib import Path
from manifesto.cli.logging import configure
configure(verbosity=0, debug=False)
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.digest import Digest
from manifesto.store.registry.client import RegistryClient

host, repo, path, digest, size = sys.argv[1:6]
descriptor = Descriptor("application/octet-stream", Digest.parse(digest), int(size))

async def main():
    async with RegistryClient(host, insecure=True) as client:
        started = time.perf_counter()
        await client.write_blob(repo, descriptor, Path(path))
        return time.perf_counter() - started

print(json.dumps({"upload_s": asyncio.run(main())}))
"""


def make_file(path: Path, size: int = SIZE) -> str:
    """Write *size* random bytes to *path*; return its sha256 digest."""
    h = hashlib.sha256()
    step = 8 * 1024 * 1024
    with path.open("wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(step, left))
            h.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return f"sha256:{h.hexdigest()}"


def push_manifesto(
    host: str, repo: str, path: Path, digest: str, env: dict[str, str]
) -> tuple[float, float, float, float]:
    """(upload seconds inside the process, whole subprocess wall seconds, peak RSS MiB, CPU seconds)."""
    p = run([PYTHON, "-c", PUSH, host, repo, str(path), digest, str(path.stat().st_size)], env, timeout=900, rss=True)
    upload = json.loads(p.stdout.strip().splitlines()[-1])["upload_s"]
    return upload, p.wall, p.maxrss_kib / 1024, p.cpu


def push_curl(host: str, repo: str, path: Path, digest: str, env: dict[str, str]) -> tuple[float, float, float]:
    """(wall seconds of POST + PUT, peak RSS MiB of the PUT, CPU seconds of both)."""
    post = run(
        ["curl", "-sS", "-X", "POST", "-D", "-", "-o", "/dev/null", f"http://{host}/v2/{repo}/blobs/uploads/"], env
    )
    location = ""
    for line in post.stdout.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "location":
            location = value.strip()
    if not location:
        raise BenchError(f"curl POST gave no Location:\n{post.stdout}")
    if location.startswith("/"):
        location = f"http://{host}{location}"
    sep = "&" if "?" in location else "?"
    put = run(
        [
            "curl", "-sS", "-X", "PUT", "-T", str(path),
            "-H", "Content-Type: application/octet-stream",
            "-o", "/dev/null", "-w", "%{http_code}",
            f"{location}{sep}digest={digest}",
        ],
        env,
        timeout=900,
        rss=True,
    )  # fmt: skip
    if put.stdout.strip() != "201":
        raise BenchError(f"curl PUT answered {put.stdout.strip()!r}, expected 201: {put.stderr}")
    return post.wall + put.wall, put.maxrss_kib / 1024, post.cpu + put.cpu


def blob_size(host: str, repo: str, digest: str) -> int:
    req = urllib.request.Request(f"http://{host}/v2/{repo}/blobs/{digest}", method="HEAD")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return int(resp.headers.get("Content-Length", "-1"))


def bench(ctx: Context) -> list[Result]:
    reg = ctx.registry()
    try:
        data = ctx.work.fresh("blob")
        path = data / "blob.bin"
        log(f"{NAME}: writing {SIZE >> 20} MiB of random bytes to {path}")
        digest = make_file(path)
        env = sandbox_env(ctx.work.fresh("blob-env"))
        run_id = uuid.uuid4().hex[:6]

        times: dict[str, list[float]] = {"manifesto": [], "curl": []}
        walls: list[float] = []
        rss: dict[str, list[float]] = {"manifesto": [], "curl": []}
        cpu: dict[str, list[float]] = {"manifesto": [], "curl": []}
        repeat = ctx.repeat()
        for i, manifesto_first in interleaved(repeat):
            for tool in ("manifesto", "curl") if manifesto_first else ("curl", "manifesto"):
                repo = f"bench-blob/{tool}-{run_id}-{i}"
                if tool == "manifesto":
                    upload, wall, peak, cpu_s = push_manifesto(reg.host, repo, path, digest, env)
                    walls.append(wall)
                else:
                    upload, peak, cpu_s = push_curl(reg.host, repo, path, digest, env)
                times[tool].append(upload)
                rss[tool].append(peak)
                cpu[tool].append(cpu_s)
                if blob_size(reg.host, repo, digest) != SIZE:
                    raise BenchError(f"{tool}: the registry does not hold the whole blob in {repo}")
            log(
                f"{NAME} {i + 1}/{repeat}: manifesto {times['manifesto'][-1]:.3f} s "
                f"({rss['manifesto'][-1]:.0f} MiB), curl {times['curl'][-1]:.3f} s"
            )
    finally:
        ctx.stop_registry(reg)

    m, c = median(times["manifesto"]), median(times["curl"])
    mib = SIZE / 1024 / 1024
    notes = {
        "size_mib": mib,
        "manifesto_mib_per_s": round(mib / m, 1),
        "curl_mib_per_s": round(mib / c, 1),
        "manifesto_spread": spread(times["manifesto"]),
        "curl_spread": spread(times["curl"]),
        "manifesto_subprocess_wall_median_s": round(median(walls), 3),
        "throughput_ratio_including_startup": round(c / median(walls), 3),
        **cpu_notes(cpu["manifesto"], cpu["curl"]),
        "cpu_note": "manifesto's CPU includes interpreter start-up and imports (whole subprocess)",
    }
    throughput = Result(
        NAME, "s", m, c, "curl -T", c / m, TARGET_RATIO, op=">=",
        manifesto_samples=times["manifesto"], peer_samples=times["curl"], notes=notes,
    )  # fmt: skip
    peak_m, peak_c = max(rss["manifesto"]), max(rss["curl"])
    memory = Result(
        f"{NAME}-rss", "MiB", peak_m, peak_c, "curl -T", peak_m / peak_c, TARGET_RSS_MIB, target_on="manifesto",
        manifesto_samples=rss["manifesto"], peer_samples=rss["curl"],
        notes={
            "judged": "largest peak RSS of the repetitions",
            "manifesto_median_mib": round(median(rss["manifesto"]), 1),
        },
    )  # fmt: skip
    return [throughput, memory]
