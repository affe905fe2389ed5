"""The action's run step writes no line a workflow input could turn into a workflow command."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.tools import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "action-run.py"
INJECTED = "::warning title=injected::from an input"


def run_step(args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INPUT_COMMAND": "--version", "INPUT_FILE": "", "INPUT_ARGS": args}
    return subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False)


def commands(text: str) -> list[str]:
    """The lines GitHub's runner reads as workflow commands (it trims leading whitespace first)."""
    return [line.lstrip() for line in text.splitlines() if line.lstrip().startswith("::")]


def test_a_line_break_inside_a_quoted_word_cannot_start_a_command() -> None:
    done = run_step(f"--label 'a\n{INJECTED}'")
    assert done.returncode == 0, done.stderr
    assert "+ manifesto --version --label 'a\\n::warning" in done.stderr
    assert commands(done.stdout + done.stderr) == []


def test_a_bad_input_is_one_escaped_error_annotation() -> None:
    done = run_step(f"'unbalanced\n{INJECTED}")
    assert done.returncode == 2
    found = commands(done.stderr)
    assert len(found) == 1 and found[0].startswith("::error::manifesto action: input args: No closing quotation")
    assert "%0A::warning" in found[0]
