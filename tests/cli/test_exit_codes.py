"""The command line's contract: one `manifesto: error:` line, the right exit code, no traceback.

Runs the installed `manifesto` entry point in a subprocess with HOME and XDG dirs in a tmp dir,
so nothing here reads or writes the real user's config, drafts or keyring.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).parent / "manifesto"


@pytest.fixture
def bare_cli(tmp_path: Path):
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "DOCKER_CONFIG": str(home / ".docker"),
        "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
        "LC_ALL": "C.UTF-8",
    }
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "manifesto"]

    def run(*args: str, timeout: float = 120, python_flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, *python_flags, "-m", "manifesto"] if python_flags else command
        return subprocess.run(
            [*cmd, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )

    return run


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("manifesto: error: "), stderr
    return lines[0]


@pytest.mark.parametrize(
    "args, reason",
    [
        (("inspect", "Foo/Bar:baz"), "repository name must be lowercase"),
        (("inspect", "golang:-x"), "bad tag"),
        (("inspect", "example.com:99999/a"), "bad registry port"),
        (("inspect", "golang@sha256:abc"), "invalid digest"),
        (("create", "localhost:5000/list:1", "UPPER"), "repository name must be lowercase"),
        (("rm", "Not A Ref"), "invalid reference"),
    ],
)
def test_bad_reference_is_a_usage_error(bare_cli, args: tuple[str, ...], reason: str) -> None:
    result = bare_cli(*args)
    assert result.returncode == 2
    assert reason in one_error_line(result.stderr)
    assert result.stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        ("--bogus",),
        ("inspect", "--bogus", "golang"),
        ("inspect",),  # missing REF
        ("no-such-command",),
        ("push", "localhost:5000/a:1", "--format", "zip"),
    ],
)
def test_argument_errors_exit_2_with_one_line(bare_cli, args: tuple[str, ...]) -> None:
    result = bare_cli(*args)
    assert result.returncode == 2
    one_error_line(result.stderr)


def test_no_command_prints_help_and_exits_2(bare_cli) -> None:
    result = bare_cli()
    assert result.returncode == 2
    assert "usage: manifesto" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_exits_0(bare_cli) -> None:
    result = bare_cli("--help")
    assert result.returncode == 0
    assert "inspect" in result.stdout


def test_version(bare_cli) -> None:
    from manifesto import __version__

    result = bare_cli("--version")
    assert result.returncode == 0
    assert result.stdout == f"manifesto {__version__}\n"
    assert result.stderr == ""


def test_version_is_a_fast_path_importing_nothing_heavy(bare_cli) -> None:
    result = bare_cli("--version", python_flags=("-X", "importtime"))
    assert result.returncode == 0
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    heavy = {m for m in imported if m.split(".")[0] in {"httpx", "httpcore", "tenacity", "structlog", "yaml", "keyring", "ssl", "asyncio"}}
    assert heavy == set()
    assert not {m for m in imported if m.startswith(("manifesto.cli.commands", "manifesto.store", "manifesto.builders"))}


def test_missing_local_list_is_not_found(bare_cli) -> None:
    result = bare_cli("rm", "localhost:5000/never/created:1")
    assert result.returncode == 4
    one_error_line(result.stderr)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_loopback_registry_is_one_line(bare_cli) -> None:
    # Retries with backoff (5 attempts, ~4 s in all) before giving up; no knob shortens it.
    result = bare_cli("inspect", f"127.0.0.1:{_closed_port()}/a:b", timeout=120)
    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert "cannot reach" in line


def test_debug_shows_the_traceback(bare_cli) -> None:
    result = bare_cli("--debug", "inspect", "UPPER")
    assert result.returncode != 0
    assert "Traceback" in result.stderr
    assert "InvalidReference" in result.stderr
