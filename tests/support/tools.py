"""Small helpers shared by the test support code: tools, ports, subprocesses, ELF.

Why: every support module needs "is this system tool here?", "give me a free
loopback port" and "run this and show me stderr when it fails"; keeping them in
one place keeps the skip-vs-fail policy (skip locally, fail in CI) in one place.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = REPO_ROOT / "scripts"


def in_ci() -> bool:
    """True when running under CI (env CI=true/1/yes)."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def require(tool: str, reason: str | None = None) -> str:
    """Return the path of system tool *tool*, or skip the test (fail under CI).

    A missing system piece in CI is a broken machine, never a reason to skip.
    """
    path = shutil.which(tool)
    if path is None:
        missing(reason or f"system tool {tool!r} is not installed (run `make system-deps`)")
    return path  # type: ignore[return-value]


def missing(message: str) -> None:
    """Skip the current test with *message*, or fail it when CI=true."""
    if in_ci():
        pytest.fail(f"CI: {message}", pytrace=False)
    pytest.skip(message)


def private_home(home: Path) -> dict[str, str]:
    """HOME, the XDG directories, DOCKER_CONFIG (each created under `home`) and keyring's null
    backend: a manifesto run with these reads and writes no real user's config or secrets."""
    dirs = {
        "HOME": home,
        "XDG_CONFIG_HOME": home / ".config",
        "XDG_DATA_HOME": home / ".local" / "share",
        "XDG_CACHE_HOME": home / ".cache",
        "XDG_STATE_HOME": home / ".local" / "state",
        "XDG_RUNTIME_DIR": home / "run",
        "DOCKER_CONFIG": home / ".docker",
    }
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    dirs["XDG_RUNTIME_DIR"].chmod(0o700)
    return {**{k: str(v) for k, v in dirs.items()}, "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (callers retry on a clash)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str] | None = None,
    input: bytes | str | None = None,
    timeout: float = 300,
    check: bool = True,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run *cmd*, capture text output; on failure raise with the command and stderr."""
    if isinstance(input, bytes):
        input = input.decode()
    proc = subprocess.run(
        [os.fspath(c) for c in cmd],
        env=dict(env) if env is not None else None,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        stdin=subprocess.DEVNULL if input is None else None,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"command failed (exit {proc.returncode}): {' '.join(map(str, cmd))}\n"
            f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
        )
    return proc


class CliResult(NamedTuple):
    """What `run_cli` returns; unpacks as ``rc, out, err``."""

    returncode: int
    stdout: str
    stderr: str


def cli_command() -> list[str]:
    """The manifesto CLI as installed next to this interpreter, else ``python -m manifesto``."""
    exe = Path(sys.executable).parent / "manifesto"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "manifesto"]


# Environment variables that could point a subprocess at real user config/credentials.
_USER_CONFIG_VARS = (
    "DOCKER_CONFIG",
    "REGISTRY_AUTH_FILE",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "XDG_CACHE_HOME",
    "XDG_STATE_HOME",
    "XDG_RUNTIME_DIR",
    "CONTAINERS_AUTH_FILE",
    # the CI the suite itself runs in: the CLI under test writes there only when a test says so
    "GITHUB_ACTIONS",
    "GITHUB_OUTPUT",
    "GITHUB_STEP_SUMMARY",
)


def run_cli(
    *args: str | os.PathLike[str],
    input: bytes | str | None = None,
    env: Mapping[str, str] | None = None,
    home_env: Mapping[str, str] | None = None,
    timeout: float = 300,
    cwd: str | os.PathLike[str] | None = None,
) -> CliResult:
    """Run the manifesto CLI as a subprocess; return (returncode, stdout, stderr).

    *home_env* (from the ``tmp_home`` fixture) replaces every user-config variable;
    *env* entries are applied last (a value of ``None``-like "" is kept as empty).
    """
    full = {k: v for k, v in os.environ.items() if k not in _USER_CONFIG_VARS}
    full.update(home_env or {})
    full.setdefault("NO_COLOR", "1")
    full.update(env or {})
    proc = run([*cli_command(), *args], env=full, input=input, timeout=timeout, check=False, cwd=cwd)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


# ---------------------------------------------------------------------------
# ELF / binfmt

ELF_MACHINES = {
    0x03: "i386",
    0x3E: "x86_64",
    0x28: "arm",
    0xB7: "aarch64",
    0x15: "ppc64",
    0x16: "s390",
    0xF3: "riscv",
}


class ElfInfo(NamedTuple):
    bits: int  # 32 or 64
    endian: str  # "little" or "big"
    machine: int  # e_machine
    machine_name: str


def elf_info(path: str | os.PathLike[str]) -> ElfInfo:
    """Parse the ELF header of *path* (class, data encoding, e_machine)."""
    with open(path, "rb") as f:
        head = f.read(20)
    if head[:4] != b"\x7fELF":
        raise ValueError(f"{path}: not an ELF file")
    bits = {1: 32, 2: 64}[head[4]]
    endian = {1: "little", 2: "big"}[head[5]]
    (machine,) = struct.unpack("<H" if endian == "little" else ">H", head[18:20])
    return ElfInfo(bits, endian, machine, ELF_MACHINES.get(machine, hex(machine)))


# Debian arch -> qemu binfmt entry name under /proc/sys/fs/binfmt_misc
_QEMU_BINFMT = {
    "arm64": "qemu-aarch64",
    "armhf": "qemu-arm",
    "armel": "qemu-arm",
    "ppc64el": "qemu-ppc64le",
    "s390x": "qemu-s390x",
    "riscv64": "qemu-riscv64",
}


def binfmt_available(debian_arch: str) -> bool:
    """True if this kernel can run *debian_arch* binaries (natively or via qemu binfmt)."""
    import platform

    native = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    if debian_arch == native:
        return True
    name = _QEMU_BINFMT.get(debian_arch)
    if name is None:
        return False
    entry = Path("/proc/sys/fs/binfmt_misc") / name
    try:
        return entry.read_text().splitlines()[0].strip() == "enabled"
    except OSError:
        return False
