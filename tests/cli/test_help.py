"""What people notice first: grouped commands, examples and help for everything, completion,
and every environment variable the tool reads documented."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from manifesto.cli.completion import script
from manifesto.cli.helptext import GROUPS, subcommands
from manifesto.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]


def _commands(parser: argparse.ArgumentParser, path: str = "") -> list[tuple[str, argparse.ArgumentParser]]:
    out = []
    for name, sub in subcommands(parser).items():
        out.append((f"{path} {name}".strip(), sub))
        out += _commands(sub, f"{path} {name}".strip())
    return out


COMMANDS = _commands(build_parser())


@pytest.mark.parametrize("path, parser", COMMANDS, ids=[c for c, _ in COMMANDS])
def test_every_command_has_examples_and_every_argument_a_help_text(path: str, parser: argparse.ArgumentParser) -> None:
    assert parser.epilog and parser.epilog.startswith("Examples:\n"), f"`manifesto {path}` has no examples"
    examples = [line for line in parser.epilog.splitlines()[1:] if line.strip()]
    assert all(line.startswith(f"  $ manifesto {path}") or "manifesto " + path in line for line in examples), examples
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
            continue
        name = "/".join(action.option_strings) or action.metavar or action.dest
        assert action.help, f"`manifesto {path}`: {name} has no help text"


def test_the_top_level_help_lists_every_command_once_under_a_group() -> None:
    parser = build_parser()
    text = parser.format_help()
    titles = [title for title, _ in GROUPS]
    for title in titles:
        assert f"\n{title}:\n" in text
    listed = re.findall(r"^  ([a-z][a-z-]*)  +\S", text, re.M)
    names = list(subcommands(parser))
    assert sorted(listed) == sorted(names), (listed, names)
    assert "Registry:\n  copy" in text and "Examples:\n  $ manifesto" in text
    # the groups come in their order: Publish first, Other last
    assert text.index(titles[0]) < text.index(titles[1]) < text.index(titles[2]) < text.index(titles[-1])


def test_help_runs_from_the_command_line() -> None:
    out = subprocess.run([sys.executable, "-m", "manifesto", "tag", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "Examples:\n  $ manifesto tag " in out.stdout, out.stderr


# ---- completion -----------------------------------------------------------------------------


def _bash_complete(tmp_path: Path, *words: str) -> list[str]:
    """COMPREPLY of the generated bash completion for `manifesto WORDS...` (the last one being typed)."""
    path = tmp_path / "manifesto.bash"
    path.write_text(script("bash"))
    quoted = " ".join(f"'{w}'" for w in ("manifesto", *words))
    probe = f'source {path}\nCOMP_WORDS=({quoted}); COMP_CWORD={len(words)}; _manifesto; printf "%s\\n" "${{COMPREPLY[@]}}"'
    out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_bash_completion_completes_commands_subcommands_flags_and_choices(tmp_path: Path) -> None:
    assert _bash_complete(tmp_path, "ta") == ["tags", "tag"]
    assert _bash_complete(tmp_path, "cache", "") == ["prune"]
    assert _bash_complete(tmp_path, "-v", "delete", "--y") == ["--yes"]
    assert _bash_complete(tmp_path, "create", "--format", "") == ["oci", "docker"]
    assert _bash_complete(tmp_path, "completion", "") == ["bash", "zsh", "fish"]
    (tmp_path / "platforms.yaml").write_text("")
    assert _bash_complete(tmp_path, "publish", "-f", "plat") == ["platforms.yaml"]  # files otherwise


def test_every_command_and_flag_is_in_every_shells_script() -> None:
    parser = build_parser()
    scripts = {shell: script(shell) for shell in ("bash", "zsh", "fish")}
    for path, sub in COMMANDS:
        flags = [o for a in sub._actions for o in a.option_strings if a.help != argparse.SUPPRESS]
        for shell, text in scripts.items():
            assert path.split()[-1] in text, (shell, path)
            for flag in flags:
                wanted = flag if shell != "fish" else (f"-l {flag[2:]}" if flag.startswith("--") else f"-s {flag[1:]}")
                assert wanted in text, (shell, path, flag)
    assert scripts["zsh"].startswith("#compdef manifesto\n") and "bashcompinit" in scripts["zsh"]
    for shell in ("bash", "zsh"):
        assert subprocess.run(["bash", "-n"], input=scripts[shell], text=True, timeout=30).returncode == 0, shell
    assert "__fish_use_subcommand" in scripts["fish"]
    assert len(parser.format_help()) > 0


def test_completion_prints_the_script() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "manifesto", "completion", "bash"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and out.stdout == script("bash")


# ---- environment variables ------------------------------------------------------------------

_READS = [
    re.compile(r"""environ(?:\.get)?\(\s*["']([A-Z][A-Z0-9_]+)["']"""),
    re.compile(r"""environ\[\s*["']([A-Z][A-Z0-9_]+)["']\s*\]"""),
    re.compile(r"""getenv\(\s*["']([A-Z][A-Z0-9_]+)["']"""),
    re.compile(r"""["']([A-Z][A-Z0-9_]+)["']\s+(?:not\s+)?in\s+(?:os\.)?environ"""),
    re.compile(r"""^[A-Z_]*ENV[A-Z_]*\s*=\s*["']([A-Z][A-Z0-9_]+)["']""", re.M),  # KEYRING_ENV = "..."
]
# Read on behalf of another program and passed to it, not read by manifesto itself.
_NOT_OURS = {"DEBIAN_FRONTEND"}


def env_names_read() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "manifesto").rglob("*.py"):
        text = path.read_text()
        for pattern in _READS:
            names.update(pattern.findall(text))
    return names - _NOT_OURS


def test_every_environment_variable_the_tool_reads_is_documented() -> None:
    docs = (ROOT / "docs" / "cli.md").read_text()
    section = docs.split("\n## Environment variables\n", 1)
    assert len(section) == 2, "docs/cli.md has no `## Environment variables` section"
    body = section[1].split("\n## ", 1)[0]
    names = env_names_read()
    assert {"MANIFESTO_CERTS_D", "MANIFESTO_KEYRING", "XDG_DATA_HOME", "SOURCE_DATE_EPOCH"} <= names  # the grep works
    missing = sorted(n for n in names | {"NO_COLOR"} if f"`{n}`" not in body)
    assert not missing, f"read by manifesto but not in docs/cli.md's Environment variables: {missing}"


@pytest.mark.parametrize(
    "argv, built",
    [
        (["copy", "a", "b"], ["copy"]),
        (["-v", "--log-format", "json", "--debug", "index", "add", "x", "y"], ["index"]),
        (["--log-format=text", "inspect", "--help"], ["inspect"]),
    ],
)
def test_a_command_line_that_names_its_command_builds_that_parser_alone(argv: list[str], built: list[str]) -> None:
    """Only the named command's parser is made (the others would cost milliseconds at every
    start), with its flags, examples and the global ones intact."""
    from manifesto.cli.main import _command

    parser = build_parser(_command(argv))
    parsers = subcommands(parser)
    assert list(parsers) == built
    assert parsers[built[0]].format_help() == dict(COMMANDS)[built[0]].format_help()


@pytest.mark.parametrize(
    "argv",
    [[], ["--help"], ["-v"], ["--log-format", "json"], ["copyx", "a"], ["-h", "copy"], ["--he", "copy"],
     ["-vh", "copy"], ["--", "copy"], ["--log-f", "json", "copy"], ["-", "copy"]],
)  # fmt: skip
def test_a_command_line_without_a_known_command_gets_every_parser(argv: list[str]) -> None:
    from manifesto.cli.main import _command

    assert sorted(subcommands(build_parser(_command(argv)))) == sorted(subcommands(build_parser()))


def test_an_unknown_command_is_one_line_naming_the_commands_there_are() -> None:
    out = subprocess.run([sys.executable, "-m", "manifesto", "-v", "copyx", "a"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and "invalid choice: 'copyx'" in out.stderr and "'copy'" in out.stderr, out.stderr
