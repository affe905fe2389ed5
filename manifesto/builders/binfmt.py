"""Can this host run a foreign platform's binaries? Read binfmt_misc, say what to fix.

A RUN step in a foreign-platform build executes the target's binaries; the kernel hands them
to qemu through binfmt_misc (kernel docs admin-guide/binfmt-misc.rst). That needs: the
binfmt_misc filesystem mounted, a qemu handler registered and enabled for the architecture, and
the handler's F (fix-binary) flag, because the build's chroot does not contain the interpreter
and only F makes the kernel open it at registration time. Each check returns Problems with the
exact command that fixes it; `run_fixes()` runs those commands when we are root and says why
any of them failed.
"""

from __future__ import annotations

import os
import platform as host_platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from manifesto.builders.base import Problem
from manifesto.builders.runner import Runner
from manifesto.errors import BuildError, InvalidPlatform
from manifesto.log import get_logger
from manifesto.oci.platform import Platform

log = get_logger("manifesto.builders")

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


APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}  # never stop at a debconf question
APT_UPDATE_ARGV = ("apt-get", "update")
FIX_OUTPUT_LINES = 5


@dataclass(frozen=True)
class FixFailure:
    """An automatic fix that did not work: the problem, the command that failed, and why.

    `argv` is None when nothing was run (not root); `output` holds the command's last lines.
    """

    problem: Problem
    argv: tuple[str, ...] | None
    reason: str
    output: tuple[str, ...] = ()

    def describe(self) -> str:
        """Indented lines to append to a problem's message: what was tried and what it said."""
        if self.argv is None:
            return f"    not fixed: {self.reason}"
        lines = [f"    `{' '.join(self.argv)}` {self.reason}" + (":" if self.output else "")]
        lines += [f"      {line}" for line in self.output]
        return "\n".join(lines)

    def annotate(self, problem: Problem) -> Problem:
        """`problem` with this failure appended to its message."""
        return Problem(f"{problem.message}\n{self.describe()}", problem.fix, problem.commands)


def run_fixes(
    problems: list[Problem],
    runner: Runner | None = None,
    *,
    on_line: Callable[[str], None] | None = None,
) -> list[FixFailure]:
    """Run the fix commands of `problems` in order (as root); return what did not work.

    Each problem's commands run until one fails. A command several problems share (installing
    qemu-user-static) runs once. `apt-get update` runs once, before the first `apt-get install`,
    so a fresh host's empty or stale package lists do not make the install fail; if the update
    fails the install is still tried (a local mirror or cache may do). apt-get runs with
    DEBIAN_FRONTEND=noninteractive. Nothing runs unless we are root: then every fixable problem
    comes back as a failure saying so.
    """
    fixable = [p for p in problems if p.commands]
    if not fixable:
        return []
    if os.geteuid() != 0:
        return [FixFailure(p, None, "fixes run only as root (run `manifesto doctor --fix` as root)") for p in fixable]
    runner = runner or Runner()
    results: dict[tuple[str, ...], FixFailure | None] = {}  # argv -> its failure, None when it worked
    update_note = ""
    failures: list[FixFailure] = []
    for problem in fixable:
        for argv in problem.commands:
            if argv[:2] == ("apt-get", "install") and APT_UPDATE_ARGV not in results:
                updated = _run_fix(problem, APT_UPDATE_ARGV, runner, on_line)
                results[APT_UPDATE_ARGV] = updated
                if updated is not None:
                    update_note = f" (after `apt-get update` {updated.reason}" + (
                        f": {updated.output[-1]})" if updated.output else ")"
                    )
            if argv not in results:
                results[argv] = _run_fix(problem, argv, runner, on_line)
            failed = results[argv]
            if failed is not None:
                reason = failed.reason + (update_note if argv[:2] == ("apt-get", "install") else "")
                failures.append(FixFailure(problem, argv, reason, failed.output))
                break
    return failures


def _run_fix(
    problem: Problem, argv: tuple[str, ...], runner: Runner, on_line: Callable[[str], None] | None
) -> FixFailure | None:
    """Run one fix command; its failure, or None when it worked (or had nothing to do)."""
    env = APT_ENV if argv[:1] == ("apt-get",) else None
    log.info("fix_command", argv=list(argv))
    try:
        done = runner.run(argv, check=False, tail_lines=FIX_OUTPUT_LINES, env=env, on_line=on_line)
    except BuildError as e:  # not installed, not executable
        return FixFailure(problem, argv, f"could not run: {e}")
    if done.returncode == 0 or _already_done(argv, done.output):
        return None
    output = tuple(line for line in done.tail if line.strip())
    return FixFailure(problem, argv, f"exited {done.returncode}", output)


def fix(problems: list[Problem], runner: Runner | None = None) -> list[Problem]:
    """Run the fix commands of `problems` (as root); return the problems still not fixed.

    Problems without commands, or any when we are not root, are returned untouched; a problem
    whose command fails is returned with the failure (command, exit status, last output lines)
    appended to its message. See run_fixes() for what runs.
    """
    failures = {id(f.problem): f for f in run_fixes(problems, runner)}
    left: list[Problem] = []
    for problem in problems:
        failure = failures.get(id(problem))
        if not problem.commands or (failure is not None and failure.argv is None):
            left.append(problem)
        elif failure is not None:
            left.append(failure.annotate(problem))
    return left


def _already_done(argv: tuple[str, ...], output: str) -> bool:
    """`mount` of an already mounted binfmt_misc fails harmlessly ("already mounted")."""
    return argv[:1] == ("mount",) and "already mounted" in output
