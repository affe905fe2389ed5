"""Shared benchmark machinery: timed subprocesses, sandboxed environments, results, registries.

Why: every benchmark needs the same three things — run a command and get its wall time, exit
status, output, CPU time and peak RSS (see `run`); an environment
that never reads the user's docker/manifesto/containers configuration; and a result that
knows its target and prints one `name: manifesto X, peer Y, ratio R (target ...) PASS` line.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / ".venv"  # the development venv: the benchmarks' own code and libraries
BENCH_VENV = REPO / "out" / "bench-venv"  # manifesto as a user installs it (bench/install.py)
PYTHON = BENCH_VENV / "bin" / "python"
MANIFESTO = BENCH_VENV / "bin" / "manifesto"
TIME = "/usr/bin/time"  # GNU time, for peak RSS


class BenchError(RuntimeError):
    """A benchmark could not be carried out (a command failed, a tool is missing)."""


# ---- running commands ------------------------------------------------------------------------


@dataclass
class Proc:
    """One finished command: wall time, exit status, output, peak RSS (KiB, -1 if not asked), CPU time."""

    argv: list[str]
    wall: float
    returncode: int
    stdout: str
    stderr: str
    maxrss_kib: int
    cpu: float  # user + system seconds of the command and every child it waited for

    def check(self) -> Proc:
        if self.returncode != 0:
            tail = "\n".join((self.stderr or self.stdout).strip().splitlines()[-15:])
            raise BenchError(f"`{_show(self.argv)}` exited {self.returncode}:\n{tail}")
        return self


def run(
    argv: Sequence[str | os.PathLike[str]],
    env: Mapping[str, str],
    *,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = 600,
    check: bool = True,
    rss: bool = False,
    own_rss: bool = False,
) -> Proc:
    """Run *argv* and time it; output goes to temp files (no pipe can fill up and stall it).

    `cpu` is user + system time from os.wait4, which reaps exactly this child and counts the
    descendants it waited for (buildah's workers, manifesto's buildah runs): CPU seconds suffer
    far less than wall time when other work competes for the cores.

    With *rss*, the command runs under `/usr/bin/time -f %M` and `maxrss_kib` is its peak RSS;
    otherwise it is -1. Not ru_maxrss of our own child (os.wait4, RUSAGE_CHILDREN): Linux
    carries the high-water RSS of the pre-exec image into the child's ru_maxrss, and a child
    forked (or vforked) from this process would report this process's RSS (tens of MiB) as a
    floor. /usr/bin/time is a small process, so its child starts from about 1 MiB.

    With *own_rss*, `maxrss_kib` is the command's own peak (VmHWM, polled every 50 ms), not
    that of the children it runs: a publish's buildah processes do not count as manifesto's.
    """
    argv = [str(a) for a in argv]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile() as rss_file:
        if rss:
            argv = [TIME, "-f", "%M", "-o", rss_file.name, *argv]
        started = time.perf_counter()
        # Own process group, so a timeout or Ctrl-C ends the command with all its children
        # (buildah's workers, the command under /usr/bin/time).
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=dict(env), cwd=cwd, start_new_session=True
        )
        timer = threading.Timer(timeout, _kill, (proc.pid,))
        timer.start()
        hwm = _HighWater(proc.pid, Path(argv[0]).name) if own_rss else None
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            _kill(proc.pid)
            proc.wait()
            raise
        finally:
            timer.cancel()
            if hwm is not None:
                hwm.stop()
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait again
        out.seek(0)
        err.seek(0)
        maxrss = -1
        if rss:
            text = Path(rss_file.name).read_text().strip().splitlines()
            maxrss = int(text[-1]) if text and text[-1].isdigit() else -1
        if hwm is not None:
            maxrss = hwm.peak_kib
        done = Proc(
            argv,
            wall,
            proc.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            maxrss,
            usage.ru_utime + usage.ru_stime,
        )
    return done.check() if check else done


class _HighWater(threading.Thread):
    """Polls /proc/PID/status for VmHWM (the process's own peak RSS) until stopped.

    Only once the process has exec'd `name` (its comm): before that the forked child's
    VmHWM is this benchmark process's.
    """

    def __init__(self, pid: int, name: str):
        super().__init__(daemon=True)
        self.pid, self.name, self.peak_kib, self._done = pid, name[:15], -1, threading.Event()
        self.start()

    def run(self) -> None:
        while not self._done.wait(0.05):
            with contextlib.suppress(OSError, ValueError, KeyError):  # KeyError: a zombie has no VmHWM
                fields = dict(line.split(":", 1) for line in Path(f"/proc/{self.pid}/status").read_text().splitlines())
                if fields["Name"].strip() == self.name:
                    self.peak_kib = max(self.peak_kib, int(fields["VmHWM"].split()[0]))

    def stop(self) -> None:
        self._done.set()
        self.join()


HYPERFINE = "hyperfine"


def have_hyperfine() -> bool:
    """Whether hyperfine is on PATH; as root, install it from Debian first when it is not.

    Why hyperfine: start-up bound commands (tens of ms) need many runs, warm-ups and its
    outlier handling; bench/common.run stays for commands that need a fresh name every run.
    """
    if shutil.which(HYPERFINE):
        return True
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("installing hyperfine (apt-get install hyperfine)")
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "check": False}
        if subprocess.run(["apt-get", "install", "-y", "-q", HYPERFINE], **quiet).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], **quiet)
            subprocess.run(["apt-get", "install", "-y", "-q", HYPERFINE], **quiet)
    return shutil.which(HYPERFINE) is not None


@dataclass
class Timed:
    """Wall-time samples of one command, and its mean CPU time per run (user + system)."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


def timed_rounds(
    commands: Mapping[str, Sequence[str | os.PathLike[str]]],
    env: Mapping[str, str],
    *,
    rounds: int,
    runs: int,
    warmup: int = 3,
) -> dict[str, Timed]:
    """Time each command `rounds x runs` times, the order of the commands reversed every round.

    With hyperfine (`-N`, no shell; warm-ups; JSON export) each round is one hyperfine call over
    all the commands; alternating who goes first keeps a slow spell of the machine from landing
    on one command only. Without hyperfine, the same schedule with bench.common.run.
    """
    names = list(commands)
    got = {n: Timed() for n in names}
    use_hyperfine = have_hyperfine()
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        if not use_hyperfine:
            for _ in range(warmup if r == 0 else 0):
                for n in order:
                    run(commands[n], env)
            for _ in range(runs):
                for n in order:
                    p = run(commands[n], env)
                    got[n].wall.append(p.wall)
                    got[n].cpu.append(p.cpu)
            continue
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            argv = [HYPERFINE, "-N", "--style", "none", "--warmup", str(warmup), "--runs", str(runs)]
            argv += ["--export-json", out.name]
            for n in order:
                argv += ["--command-name", n, shlex.join(str(a) for a in commands[n])]
            run(argv, env, timeout=1800)
            for entry in json.loads(Path(out.name).read_text())["results"]:
                t = got[entry["command"]]
                t.wall.extend(entry["times"])
                t.cpu.append(entry["user"] + entry["system"])
    return got


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _show(argv: Sequence[str]) -> str:
    return " ".join(argv) if len(" ".join(argv)) < 300 else " ".join(argv)[:300] + " ..."


# ---- sandboxed environments ------------------------------------------------------------------

_USER_VARS = (
    "DOCKER_CONFIG",
    "DOCKER_HOST",
    "REGISTRY_AUTH_FILE",
    "DOCKER_AUTH_CONFIG",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "XDG_CACHE_HOME",
    "XDG_RUNTIME_DIR",
    "CONTAINERS_CONF",
    "CONTAINERS_REGISTRIES_CONF",
    "CONTAINERS_STORAGE_CONF",
    "SOURCE_DATE_EPOCH",
    "MANIFESTO_DEBUG",
)


def sandbox_env(root: Path, **extra: str) -> dict[str, str]:
    """An environment whose docker, XDG and containers state all live under *root*.

    Nothing the user (or another engineer's test run) configured can leak in: no docker
    config.json or credential helper, no manifesto login, no stored drafts, no auth file.
    """
    root.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in _USER_VARS and not k.startswith("MANIFESTO_")}
    dirs = {
        "DOCKER_CONFIG": root / "docker",
        "XDG_CONFIG_HOME": root / "config",
        "XDG_DATA_HOME": root / "data",
        "XDG_CACHE_HOME": root / "cache",
    }
    for name, path in dirs.items():
        path.mkdir(parents=True, exist_ok=True)
        env[name] = str(path)
    auth = root / "auth.json"
    auth.write_text('{"auths": {}}')
    env["REGISTRY_AUTH_FILE"] = str(auth)
    env.update(extra)
    return env


class Workdir:
    """A private temp directory for one benchmark run; removed at the end."""

    def __init__(self, prefix: str = "manifesto-bench-"):
        self.path = Path(tempfile.mkdtemp(prefix=prefix))
        self._n = 0

    def fresh(self, name: str) -> Path:
        """A new, empty subdirectory (numbered, so repeated names never collide)."""
        self._n += 1
        p = self.path / f"{self._n:03d}-{name}"
        p.mkdir(parents=True)
        return p

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


# ---- results ---------------------------------------------------------------------------------


@dataclass
class Result:
    """One judged figure.

    `target_on` is "ratio" (manifesto/peer ratio against the target) or "manifesto" (an
    absolute budget for manifesto's own median, e.g. `--version` ≤ 0.1 s). `op` is "<=" or
    ">=". `ratio` is what the target speaks of: a time ratio manifesto/peer, or for
    throughput the ratio of throughputs (= peer time / manifesto time).
    """

    name: str
    unit: str
    manifesto: float
    peer: float
    peer_name: str
    ratio: float
    target: float
    op: str = "<="
    target_on: str = "ratio"
    manifesto_samples: list[float] = field(default_factory=list)
    peer_samples: list[float] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def judged(self) -> float:
        return self.ratio if self.target_on == "ratio" else self.manifesto

    @property
    def passed(self) -> bool:
        if self.error:
            return False
        return self.judged <= self.target if self.op == "<=" else self.judged >= self.target

    def line(self) -> str:
        if self.error:
            return f"{self.name}: ERROR {self.error.splitlines()[0]}"
        sym = "≤" if self.op == "<=" else "≥"
        fmt = _fmt(self.unit)
        target = (
            f"{sym} {self.target:g}" if self.target_on == "ratio" else f"manifesto {sym} {fmt(self.target)} {self.unit}"
        )
        return (
            f"{self.name}: manifesto {fmt(self.manifesto)} {self.unit}, peer {fmt(self.peer)} {self.unit}, "
            f"ratio {self.ratio:.2f} (target {target}) {'PASS' if self.passed else 'FAIL'}"
        )

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["passed"] = self.passed
        d["line"] = self.line()
        return d


def _fmt(unit: str) -> Callable[[float], str]:
    return (lambda v: f"{v:.3f}") if unit == "s" else (lambda v: f"{v:.1f}")


def failed(name: str, error: str) -> Result:
    return Result(name, "s", float("nan"), float("nan"), "", float("nan"), 0.0, error=error)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float]) -> str:
    """min–max and relative spread of a sample, for the noise notes."""
    lo, hi, mid = min(values), max(values), statistics.median(values)
    return f"{lo:.3f}–{hi:.3f} (±{(hi - lo) / 2 / mid * 100:.0f}% of median)" if mid else f"{lo}–{hi}"


def cpu_notes(manifesto: Sequence[float], peer: Sequence[float]) -> dict[str, float]:
    """Median CPU seconds (user + system) of each side and their ratio: the contention-robust view."""
    m, p = statistics.median(manifesto), statistics.median(peer)
    return {
        "manifesto_cpu_median_s": round(m, 3),
        "peer_cpu_median_s": round(p, 3),
        "cpu_ratio": round(m / p, 2) if p else float("nan"),
    }


def timed_result(
    name: str, samples: dict[str, list[float]], cpu: dict[str, list[float]], peer: str, peer_name: str,
    target: float, **notes: object,
) -> Result:
    """A timed comparison judged by its ratio: the medians of `samples["manifesto"]` and
    `samples[peer]`, their spreads and CPU-time notes, plus any `notes` of the benchmark's own."""
    m, p = median(samples["manifesto"]), median(samples[peer])
    notes = {
        **notes,
        "manifesto_spread": spread(samples["manifesto"]),
        f"{peer}_spread": spread(samples[peer]),
        **cpu_notes(cpu["manifesto"], cpu[peer]),
    }
    return Result(
        name, "s", m, p, peer_name, m / p, target,
        manifesto_samples=samples["manifesto"], peer_samples=samples[peer], notes=notes,
    )  # fmt: skip


def rss_result(
    name: str, rss: dict[str, list[float]], walls: dict[str, list[float]], peer: str, peer_name: str,
    target_mib: float, **notes: object,
) -> Result:
    """A peak-RSS comparison judged on manifesto's own peak (the largest of the repetitions),
    with both sides' medians of peak RSS and wall time, plus any `notes` of the benchmark's own."""
    peak_m, peak_p = max(rss["manifesto"]), max(rss[peer])
    notes = {
        "judged": "largest peak RSS of the repetitions",
        **notes,
        "manifesto_median_mib": round(median(rss["manifesto"]), 1),
        f"{peer}_median_mib": round(median(rss[peer]), 1),
        "manifesto_wall_median_s": round(median(walls["manifesto"]), 3),
        f"{peer}_wall_median_s": round(median(walls[peer]), 3),
    }
    return Result(
        name, "MiB", peak_m, peak_p, peer_name, peak_m / peak_p, target_mib, target_on="manifesto",
        manifesto_samples=rss["manifesto"], peer_samples=rss[peer], notes=notes,
    )  # fmt: skip


def interleaved(repeat: int) -> Iterator[tuple[int, bool]]:
    """(repetition, manifesto_first): alternate who goes first, so drift hits both alike."""
    for i in range(repeat):
        yield i, i % 2 == 0


def log(message: str) -> None:
    print(f"  · {message}", file=sys.stderr, flush=True)


# ---- shared fixtures -------------------------------------------------------------------------


@dataclass
class Library:
    """A running registry holding amd64/busybox:1 ... s390x/busybox:1 (the five children)."""

    registry: Any
    children: list[str]  # full references, 127.0.0.1:PORT/<ns>/busybox:1
    arm64: str  # the arm64v8 child, for annotate


class Context:
    """What benchmarks share within one run: a work dir and (lazily) a registry of children."""

    def __init__(self, repeat: int | None):
        self.repeat_arg = repeat
        self.work = Workdir()
        self._library: Library | None = None
        self._registries: list[Any] = []

    def repeat(self, default: int = 5) -> int:
        return self.repeat_arg if self.repeat_arg is not None else default

    def registry(self) -> Any:
        """A fresh, anonymous docker-registry on a loopback port (stopped at the end)."""
        from tests.support.registry import Registry

        reg = Registry(self.work.fresh("registry"), auth="none", accesslog=False).start()
        self._registries.append(reg)
        return reg

    def stop_registry(self, reg: Any) -> None:
        reg.stop()
        shutil.rmtree(reg.directory, ignore_errors=True)
        with contextlib.suppress(ValueError):
            self._registries.remove(reg)

    def library(self) -> Library:
        if self._library is None:
            from tests.support.images import ARCHES, build_image, push_library_repos

            reg = self.registry()
            layouts = self.work.fresh("layouts")
            images = {arch: build_image(arch, layouts / arch) for arch in ARCHES}
            repos = push_library_repos(images, reg)
            self._library = Library(reg, [r.ref for r in repos.values()], repos["arm64"].ref)
        return self._library

    def close(self) -> None:
        for reg in list(self._registries):
            with contextlib.suppress(Exception):
                reg.stop()
        self.work.remove()


ACCEPT_INDEX = (
    "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
)


def index_children(host: str, repo: str, tag: str) -> int:
    """How many entries the list at host/repo:tag has (plain HTTP; a sanity check, untimed)."""
    import json
    import urllib.request

    req = urllib.request.Request(f"http://{host}/v2/{repo}/manifests/{tag}", headers={"Accept": ACCEPT_INDEX})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return len(json.loads(resp.read()).get("manifests") or [])


def tool_version(argv: Sequence[str]) -> str:
    try:
        out = subprocess.run(list(argv), check=False, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unavailable ({e})"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else f"exit {out.returncode}"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    mem_kib = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    os_name = ""
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "os": os_name,
        "kernel": os.uname().release,
        "python": tool_version([str(PYTHON), "--version"]),
        "docker-registry": tool_version(["/usr/bin/docker-registry", "--version"]),
        "docker": tool_version(["docker", "--version"]),
        "buildah": tool_version(["buildah", "--version"]),
        "curl": tool_version(["curl", "--version"]),
        "manifesto": tool_version([str(MANIFESTO), "--version"]),
    }


def loadavg() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"
