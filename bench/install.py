"""manifesto as a user has it: a wheel of this tree installed into a venv of its own.

The development venv (.venv) holds manifesto as an editable install, whose import hook (a
`.pth` file that imports a finder module and pathlib) runs at every interpreter start: ~8-13 ms
per process on this machine, paid by `python -c pass` in that venv too. A user who installs
the package has no such hook, so the benchmarks run the installed wheel, and the bare
interpreter of the same venv where they compare against it (version, the inspect floor).

`out/bench-venv` is made once (dependencies pinned to the versions .venv has, so both venvs run
the same libraries); a run of bench/run.py whose tree differs from the one installed there (a
hash of the package's files) builds a wheel and installs it again. The install holds a lock
exclusively and every run holds it shared until it ends, so no run's venv changes under it.
"""

from __future__ import annotations

import fcntl
import hashlib
import subprocess
import tempfile
from pathlib import Path

from bench.common import BENCH_VENV, MANIFESTO, PYTHON, REPO, VENV

LOCK = REPO / "out" / "bench-venv.lock"
STAMP = BENCH_VENV / "installed-tree.sha256"
_held: list[object] = []  # the lock's file, open (shared) until the process ends


def tree_hash() -> str:
    """What decides the installed package: the package's files and pyproject.toml."""
    h = hashlib.sha256()
    for path in sorted([REPO / "pyproject.toml", *(REPO / "manifesto").rglob("*")]):
        if path.is_file() and "__pycache__" not in path.parts:
            h.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} ... failed:\n{(done.stderr or done.stdout)[-2000:]}")


def install() -> Path:
    """Install a wheel of the current tree into BENCH_VENV (made on first use) unless it is
    installed there already; its manifesto. The venv stays as it is until this process ends."""
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    lock = LOCK.open("a")
    wanted = tree_hash()
    fcntl.flock(lock, fcntl.LOCK_SH)
    if not _installed(wanted):
        fcntl.flock(lock, fcntl.LOCK_EX)  # waits for every run using the venv to end
        if not _installed(wanted):
            _install()
            STAMP.write_text(wanted)
        fcntl.flock(lock, fcntl.LOCK_SH)
    _held.append(lock)
    return MANIFESTO


def _installed(tree: str) -> bool:
    return MANIFESTO.exists() and STAMP.exists() and STAMP.read_text() == tree


def _install() -> None:
    dev = str(VENV / "bin" / "python")
    if not PYTHON.exists():
        _run([dev, "-m", "venv", "--clear", str(BENCH_VENV)])
    with tempfile.TemporaryDirectory(prefix="manifesto-bench-wheel-") as tmp:
        pins = Path(tmp) / "constraints.txt"
        frozen = subprocess.run(
            [dev, "-m", "pip", "freeze", "--exclude-editable", "--disable-pip-version-check"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        pins.write_text(frozen)
        _run([dev, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp, str(REPO)])
        wheel = next(Path(tmp).glob("manifesto_oci-*.whl"))
        _run([str(PYTHON), "-m", "pip", "install", "-q", "--disable-pip-version-check",
              "--force-reinstall", "--no-deps", str(wheel)])  # fmt: skip
        _run([str(PYTHON), "-m", "pip", "install", "-q", "--disable-pip-version-check",
              "-c", str(pins), str(wheel)])  # fmt: skip
