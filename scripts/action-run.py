"""Run `manifesto COMMAND [--file FILE] ARGS...` from the GitHub Action's inputs.

The inputs arrive as INPUT_COMMAND, INPUT_FILE and INPUT_ARGS. Why Python and not bash: the
words of COMMAND and ARGS are split the way a shell splits them (quotes group words) with
shlex, and never evaluated, so an input holding `$(...)` or a backquote (a branch name, a tag
message) cannot run commands. The manifesto next to this interpreter replaces this process, so
its exit status and outputs ($GITHUB_OUTPUT) are the step's.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path


def argv(environ: Mapping[str, str]) -> list[str]:
    """The manifesto command line the inputs ask for (ValueError on unbalanced quotes)."""
    out = [str(Path(sys.executable).parent / "manifesto")]
    for name in ("INPUT_COMMAND", "INPUT_FILE", "INPUT_ARGS"):
        text = environ.get(name, "")
        try:
            words = shlex.split(text)
        except ValueError as e:
            raise ValueError(f"input {name[6:].lower()}: {e}: {text}") from None
        if name == "INPUT_FILE":
            words = ["--file", text] if text else []
        out += words
    return out


def shown(words: list[str]) -> str:
    """The command line as one log line: a line break inside a word is written `\\n`, so the
    text after it cannot start a line of its own (a workflow command, to the runner)."""
    return shlex.join(words).replace("\r", "\\r").replace("\n", "\\n")


def main() -> int:
    from manifesto.cli.ci import command as workflow_command  # escapes the message as the runner reads it

    try:
        command = argv(os.environ)
    except ValueError as e:
        print(workflow_command("error", f"manifesto action: {e}"), file=sys.stderr)
        return 2
    if len(command) == 1:
        print(workflow_command("error", "manifesto action: empty command"), file=sys.stderr)
        return 2
    print("+ " + shown(["manifesto", *command[1:]]), file=sys.stderr)
    sys.stderr.flush()
    os.execv(command[0], command)
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
