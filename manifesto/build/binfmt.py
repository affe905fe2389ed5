"""Can this host run a foreign platform's binaries? Read binfmt_misc, say what to fix.

A RUN step in a foreign-platform build executes the target's binaries; the kernel hands them
to qemu through binfmt_misc (kernel docs admin-guide/binfmt-misc.rst). That needs: the
binfmt_misc filesystem mounted, a qemu handler registered and enabled for the architecture, and
the handler's F (fix-binary) flag, because the build's chroot does not contain the interpreter
and only F makes the kernel open it at registration time. Each check returns Problems with the
exact command that fixes it; `fix()` runs those commands when we are root.
"""

from __future__ import annotations

import os
import platform as host_platform
from dataclasses import dataclass
from pathlib import Path

from manifesto.build.base import Problem
from manifesto.build.runner import Runner
from manifesto.errors import BuildError, InvalidPlatform
from manifesto.oci.platform import Platform

PROC = Path("/proc/sys/fs/binfmt_misc")
BINFMTS = Path("/usr/share/binfmts")  # binfmt-support's import dir (qemu-user-static ships here)

MOUNT_ARGV = ("mount", "-t", "binfmt_misc", "binfmt_misc", str(PROC))
INSTALL_ARGV = ("apt-get", "install", "-y", "qemu-user-static", "binfmt-support")
INSTALL_TEXT = "apt-get install qemu-user-static binfmt-support"

# OCI architecture -> qemu-user binfmt handler name (Debian qemu-user-static's names).
QEMU_HANDLERS = {
    "amd64": "qemu-x86_64",
    "386": "qemu-i386",
    "arm64": "qemu-aarch64",
    "arm": "qemu-arm",
    "ppc64le": "qemu-ppc64le",
    "ppc64": "qemu-ppc64",
    "s390x": "qemu-s390x",
    "riscv64": "qemu-riscv64",
    "mips64le": "qemu-mips64el",
    "mips64": "qemu-mips64",
    "mipsle": "qemu-mipsel",
    "mips": "qemu-mips",
    "loong64": "qemu-loongarch64",
}

# Architectures a host runs without emulation besides its own (kernel compat modes).
_COMPAT = {"amd64": {"386"}}


@dataclass(frozen=True)
class Handler:
    """One registered binfmt_misc entry, as read from its file under /proc/sys/fs/binfmt_misc."""

    name: str
    enabled: bool
    interpreter: str | None
    flags: str

    @property
    def fix_binary(self) -> bool:
        """The F flag: the interpreter is opened at registration, so it works inside chroots."""
        return "F" in self.flags

    @classmethod
    def parse(cls, name: str, text: str) -> Handler:
        """Parse a handler file: first line `enabled`/`disabled`, then `key value` lines."""
        lines = text.splitlines()
        enabled = bool(lines) and lines[0].strip() == "enabled"
        interpreter, flags = None, ""
        for line in lines[1:]:
            key, _, value = line.strip().partition(" ")
            if key == "interpreter":
                interpreter = value.strip() or None
            elif key == "flags:":
                flags = value.strip()
        return cls(name=name, enabled=enabled, interpreter=interpreter, flags=flags)


def host_machine() -> str:
    """`uname -m` of this host."""
    return host_platform.machine()


def host_platform_of(machine: str | None = None) -> Platform | None:
    """The host's platform, from `uname -m` mapped through Platform's aliases."""
    try:
        return Platform.parse(machine or host_machine())
    except InvalidPlatform:
        return None


def is_native(target: Platform, machine: str | None = None) -> bool:
    """True when the host runs `target`'s binaries without emulation."""
    host = host_platform_of(machine)
    if host is None or target.os != "linux":
        return False
    if target.architecture in _COMPAT.get(host.architecture, set()):
        return True
    if target.architecture != host.architecture:
        return False
    if target.architecture == "arm":  # an armv7 host runs v5..v7 code, not v8-only code
        return (target.variant or "v7") <= (host.variant or "v7")
    return True


def handler_name(target: Platform) -> str | None:
    """The qemu binfmt handler that runs `target`'s binaries (`qemu-aarch64`), if known."""
    return QEMU_HANDLERS.get(target.architecture)


def is_mounted(root: Path = PROC) -> bool:
    """True when binfmt_misc is mounted at `root` (its `register` and `status` files exist)."""
    return (root / "status").exists() and (root / "register").exists()


def read_handler(name: str, root: Path = PROC) -> Handler | None:
    """The registered handler `name`, or None when it is not registered."""
    try:
        text = (root / name).read_text()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return Handler.parse(name, text)


def check(
    platforms: list[Platform],
    *,
    root: Path = PROC,
    binfmts: Path = BINFMTS,
    machine: str | None = None,
) -> list[Problem]:
    """Problems that stop this host from running the foreign platforms' binaries."""
    foreign = [p for p in platforms if not is_native(p, machine)]
    problems: list[Problem] = []
    unsupported = [p for p in foreign if p.os != "linux" or handler_name(p) is None]
    for p in unsupported:
        problems.append(Problem(f"cannot build {p} on this host: no qemu emulation known for it"))
    names = sorted({n for p in foreign if p not in unsupported and (n := handler_name(p))})
    if not names:
        return problems
    if not is_mounted(root):
        enable = " && ".join(f"update-binfmts --enable {n}" for n in names)
        problems.append(
            Problem(
                f"binfmt_misc is not mounted at {root}: foreign-platform RUN steps cannot execute",
                fix=f"{' '.join(MOUNT_ARGV[:-1])} {root} && {enable}",
                commands=(MOUNT_ARGV[:-1] + (str(root),), *(("update-binfmts", "--enable", n) for n in names)),
            )
        )
        return problems
    for name in names:
        problem = _check_handler(name, root, binfmts)
        if problem is not None:
            problems.append(problem)
    return problems


def _check_handler(name: str, root: Path, binfmts: Path) -> Problem | None:
    handler = read_handler(name, root)
    known = (binfmts / name).exists()
    if handler is None:
        if known:
            return Problem(
                f"qemu handler {name} is not registered with binfmt_misc",
                fix=f"update-binfmts --enable {name}",
                commands=(("update-binfmts", "--enable", name),),
            )
        return Problem(
            f"qemu handler {name} is not registered and no binfmt definition for it is installed",
            fix=f"{INSTALL_TEXT} && update-binfmts --enable {name}",
            commands=(INSTALL_ARGV, ("update-binfmts", "--enable", name)),
        )
    if not handler.enabled:
        return Problem(
            f"qemu handler {name} is registered but disabled",
            fix=f"update-binfmts --enable {name}",
            commands=(("update-binfmts", "--enable", name),),
        )
    if not handler.fix_binary:
        return Problem(
            f"qemu handler {name} lacks the F (fix-binary) flag (flags: {handler.flags or 'none'}): "
            "RUN steps fail inside the build's chroot, which has no qemu",
            fix=f"{INSTALL_TEXT} && update-binfmts --disable {name} && update-binfmts --enable {name}",
            commands=(INSTALL_ARGV, ("update-binfmts", "--disable", name), ("update-binfmts", "--enable", name)),
        )
    return None


def fix(problems: list[Problem], runner: Runner | None = None) -> list[Problem]:
    """Run the fix commands of `problems` (as root); return the problems still not fixed.

    Problems without commands, or any when we are not root, are returned untouched; a problem
    whose command fails is returned with the failure appended to its message.
    """
    runner = runner or Runner()
    left: list[Problem] = []
    for problem in problems:
        if not problem.commands or os.geteuid() != 0:
            left.append(problem)
            continue
        for argv in problem.commands:
            try:
                done = runner.run(argv, check=False, tail_lines=5)
            except BuildError as e:
                left.append(Problem(f"{problem.message}; fixing failed: {e}", problem.fix))
                break
            if done.returncode != 0 and not _already_done(argv, done.output):
                why = done.tail[-1] if done.tail else f"exit {done.returncode}"
                left.append(Problem(f"{problem.message}; `{' '.join(argv)}` failed: {why}", problem.fix))
                break
    return left


def _already_done(argv: tuple[str, ...], output: str) -> bool:
    """`mount` of an already mounted binfmt_misc fails harmlessly ("already mounted")."""
    return argv[:1] == ("mount",) and "already mounted" in output
