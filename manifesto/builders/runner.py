"""Run build tools as subprocesses: stream their lines, keep a tail, turn failures into BuildError.

Passed into builders (never a global) so tests and the CLI choose how output is shown. Combined
stdout+stderr is streamed line by line, because buildah/podman interleave progress on both and
the user wants to see the failing RUN step's output next to the error.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from manifesto.errors import BuildError
from manifesto.log import get_logger

log = get_logger("manifesto.builders")

TAIL_LINES = 60

# Which Debian package provides a tool we may call (for "install it" messages).
APT_PACKAGES = {
    "buildah": "buildah",
    "podman": "podman",
    "docker": "docker.io",
    "skopeo": "skopeo",
    "update-binfmts": "binfmt-support",
    "mount": "mount",
    "apt-get": "apt",
}


def apt_package(tool: str) -> str | None:
    """The Debian package that provides `tool` (by basename), if known."""
    name = os.path.basename(tool)
    if name.startswith("qemu-") and name.endswith("-static"):
        return "qemu-user-static"
    return APT_PACKAGES.get(name)


def missing_tool_message(tool: str) -> str:
    """`buildah is not installed (apt-get install buildah)`, or without the hint if unknown."""
    pkg = apt_package(tool)
    hint = f" (apt-get install {pkg})" if pkg else ""
    return f"{tool} is not installed or not on PATH{hint}"


@dataclass(frozen=True)
class Completed:
    """A finished command: exit code and the last lines of its combined output."""

    returncode: int
    tail: tuple[str, ...]

    @property
    def output(self) -> str:
        return "\n".join(self.tail)


@dataclass(frozen=True)
class Captured:
    """A finished query command with its stdout and stderr kept apart."""

    returncode: int
    stdout: str
    stderr: str

    def first_error_line(self) -> str:
        """The most telling line of a failure: last non-empty stderr line, else stdout's."""
        for text in (self.stderr, self.stdout):
            lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
            if lines:
                return lines[-1]
        return f"exit status {self.returncode}"


class Runner:
    """Runs commands for builders; one instance may be shared by threads.

    Each command runs in its own process group, so a timeout or `cancel()` stops the whole tree
    (buildah's RUN steps, qemu) instead of leaving children that hold the output pipe open. The
    flip side: Ctrl-C no longer reaches them by itself, so whoever runs builds in threads calls
    `cancel()` on KeyboardInterrupt.
    """

    def __init__(self, *, env: Mapping[str, str] | None = None, tail_lines: int = TAIL_LINES, kill_grace: float = 10.0):
        self.env = dict(env) if env is not None else None
        self.tail_lines = tail_lines
        self.kill_grace = kill_grace
        self._live: set[subprocess.Popen[str]] = set()
        self._lock = threading.Lock()
        self._cancelled = False

    @property
    def cancelled(self) -> bool:
        """Whether cancel() was called (commands started later are stopped at once)."""
        return self._cancelled

    def cancel(self) -> None:
        """Stop every running command (SIGTERM to its group, SIGKILL after the grace time).

        A cancelled runner stays cancelled: commands started later are stopped at once.
        """
        with self._lock:
            self._cancelled = True
            live = list(self._live)
        for proc in live:
            self._stop(proc)

    def _stop(self, proc: subprocess.Popen[str]) -> None:
        _signal_group(proc, signal.SIGTERM)
        killer = threading.Timer(self.kill_grace, _signal_group, (proc, signal.SIGKILL))
        killer.daemon = True
        killer.start()

    def _env(self, extra: Mapping[str, str] | None) -> dict[str, str] | None:
        if self.env is None and not extra:
            return None
        env = dict(self.env if self.env is not None else os.environ)
        env.update(extra or {})
        return env

    def run(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        on_line: Callable[[str], None] | None = None,
        label: str = "",
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        check: bool = True,
        tail_lines: int | None = None,
        timeout: float | None = None,
    ) -> Completed:
        """Run `argv`, calling `on_line` for each output line; raise BuildError on failure.

        `label` (usually the platform) prefixes the error: `linux/arm64: buildah exited 1`.
        With check=False a non-zero exit is returned instead of raised; a missing executable
        raises BuildError either way, naming the apt package that provides it. After `timeout`
        seconds the command is stopped (its whole group) and BuildError raised, whatever `check`.
        """
        args = [os.fspath(a) for a in argv]
        tool = os.path.basename(args[0])
        prefix = f"{label}: " if label else ""
        tail: collections.deque[str] = collections.deque(maxlen=tail_lines or self.tail_lines)
        log.debug("command_start", argv=args, label=label or None)
        try:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=self._env(env),
                cwd=cwd,
                text=True,
                errors="replace",
                bufsize=1,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise BuildError(f"{prefix}{missing_tool_message(args[0])}") from None
        except PermissionError as e:
            raise BuildError(f"{prefix}cannot run {args[0]}: {e.strerror}") from None
        with self._lock:
            self._live.add(proc)
            cancelled = self._cancelled
        if cancelled:
            self._stop(proc)
        # Timer.finished is set by cancel() as well as by firing: whether the timeout struck is
        # recorded here, by the callback itself.
        fired = threading.Event()

        def expire() -> None:
            fired.set()
            self._stop(proc)

        timer = threading.Timer(timeout, expire) if timeout else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                line = line.rstrip("\n")  # text mode: \r progress redraws arrive as lines too
                tail.append(line)
                if on_line is not None:
                    on_line(line)
            code = proc.wait()
        except BaseException:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
            raise
        finally:
            if timer is not None:
                timer.cancel()
            with self._lock:
                self._live.discard(proc)
            if proc.stdout is not None:
                proc.stdout.close()
        done = Completed(code, tuple(tail))
        if code != 0 and self._cancelled:
            raise BuildError(f"{prefix}{tool} was cancelled", log_tail=done.output)
        if code != 0 and fired.is_set():
            raise BuildError(f"{prefix}{tool} did not finish within {timeout:g}s (stopped)", log_tail=done.output)
        log.debug("command_done", tool=tool, returncode=code, label=label or None)
        if check and code != 0:
            raise BuildError(f"{prefix}{tool} exited {code}", log_tail=done.output)
        return done

    def capture(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        label: str = "",
        env: Mapping[str, str] | None = None,
        check: bool = True,
        timeout: float | None = 60,
    ) -> Captured:
        """Run a short query command (`buildah info`, `docker info`) and capture its output."""
        args = [os.fspath(a) for a in argv]
        tool = os.path.basename(args[0])
        prefix = f"{label}: " if label else ""
        try:
            proc = subprocess.run(
                args,
                check=False,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                env=self._env(env),
                timeout=timeout,
            )
        except FileNotFoundError:
            raise BuildError(f"{prefix}{missing_tool_message(args[0])}") from None
        except PermissionError as e:
            raise BuildError(f"{prefix}cannot run {args[0]}: {e.strerror}") from None
        except subprocess.TimeoutExpired:
            raise BuildError(f"{prefix}{tool} did not answer within {timeout:g}s") from None
        done = Captured(proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            raise BuildError(f"{prefix}{tool} exited {proc.returncode}", log_tail="\n".join(lines[-self.tail_lines :]))
        return done


def _signal_group(proc: subprocess.Popen[str], sig: int) -> None:
    """Signal a command's whole process group (it leads its own session)."""
    if proc.poll() is not None and sig == signal.SIGKILL:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
