"""`manifesto completion bash|zsh|fish`: a completion script made from the parser itself.

Why from the parser: a command or flag added in cli/commands.py is completed without anyone
editing a script, and the script needs nothing at completion time (no manifesto process per
TAB, no external tool). Commands, subcommands, flags, and the values of flags and arguments
that have fixed choices are completed; anything else falls back to file names.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

from manifesto.cli.helptext import subcommands


@dataclass
class Node:
    """One command (the top level is path ""): its subcommands, flags and fixed choices."""

    path: str
    help: str = ""
    subs: dict[str, Node] = field(default_factory=dict)
    flags: list[tuple[list[str], str, list[str]]] = field(default_factory=list)  # options, help, choices
    words: list[str] = field(default_factory=list)  # choices of its positional arguments


def tree(parser: argparse.ArgumentParser, path: str = "", help: str = "") -> Node:
    node = Node(path, help)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
            continue
        choices = [str(c) for c in action.choices] if action.choices else []
        if action.option_strings:
            node.flags.append((list(action.option_strings), action.help or "", choices))
        else:
            node.words += choices
    helps = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
    for name, sub in subcommands(parser).items():
        node.subs[name] = tree(sub, f"{path} {name}".strip(), helps.get(name) or sub.description or "")
    return node


def _walk(node: Node) -> list[Node]:
    return [node] + [n for sub in node.subs.values() for n in _walk(sub)]


def _case(arms: list[tuple[str, str]]) -> str:
    return "".join(f'        "{key}") echo "{value}";;\n' for key, value in arms if value)


def bash(root: Node) -> str:
    nodes = _walk(root)
    subs = _case([(n.path, " ".join(list(n.subs) + n.words)) for n in nodes])
    flags = _case([(n.path, " ".join(o for opts, _, _ in n.flags for o in opts)) for n in nodes])
    values = _case(
        [(f"{n.path}|{o}", " ".join(choices)) for n in nodes for opts, _, choices in n.flags if choices for o in opts]
    )
    return f"""# bash completion for manifesto (made by `manifesto completion bash`)
_manifesto_subs() {{
    case "$1" in
{subs}    esac
}}
_manifesto_flags() {{
    case "$1" in
{flags}    esac
}}
_manifesto_values() {{
    case "$1" in
{values}    esac
}}
_manifesto() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    local path="" i w subs values
    for ((i = 1; i < COMP_CWORD; i++)); do
        w="${{COMP_WORDS[i]}}"
        [[ $w == -* ]] && continue
        subs=" $(_manifesto_subs "$path") "
        [[ $subs == *" $w "* ]] && path="${{path:+$path }}$w"
    done
    values="$(_manifesto_values "$path|$prev")"
    if [[ -n $values ]]; then
        COMPREPLY=($(compgen -W "$values" -- "$cur"))
    elif [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$(_manifesto_flags "$path")" -- "$cur"))
    else
        subs="$(_manifesto_subs "$path")"
        if [[ -n $subs ]]; then
            COMPREPLY=($(compgen -W "$subs" -- "$cur"))
        else
            COMPREPLY=($(compgen -f -- "$cur"))
        fi
    fi
}}
complete -o default -F _manifesto manifesto
"""


def zsh(root: Node) -> str:
    """zsh runs the bash function through its bashcompinit layer: one completion logic for both."""
    return (
        "#compdef manifesto\n# zsh completion for manifesto (made by `manifesto completion zsh`)\n"
        "autoload -U +X bashcompinit && bashcompinit\n" + bash(root).split("\n", 1)[1]
    )


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def fish(root: Node) -> str:
    lines = ["# fish completion for manifesto (made by `manifesto completion fish`)"]
    for node in _walk(root):
        words = node.path.split()
        if not words:
            cond = "__fish_use_subcommand"
        else:
            cond = " and ".join(f"__fish_seen_subcommand_from {w}" for w in words)
            below = list(node.subs)
            if below:  # a command's flags and words stop once one of its subcommands is given
                cond += f"; and not __fish_seen_subcommand_from {' '.join(below)}"
        for name, sub in node.subs.items():
            lines.append(f"complete -c manifesto -n {_fish_quote(cond)} -f -a {name} -d {_fish_quote(sub.help)}")
        if node.words:
            lines.append(f"complete -c manifesto -n {_fish_quote(cond)} -f -a {_fish_quote(' '.join(node.words))}")
        for opts, help, choices in node.flags:
            spec = " ".join(f"-l {o[2:]}" if o.startswith("--") else f"-s {o[1:]}" for o in opts)
            extra = f" -xa {_fish_quote(' '.join(choices))}" if choices else ""
            lines.append(f"complete -c manifesto -n {_fish_quote(cond)} {spec} -d {_fish_quote(help)}{extra}")
    return "\n".join(lines) + "\n"


SHELLS = {"bash": bash, "zsh": zsh, "fish": fish}


def script(shell: str) -> str:
    from manifesto.cli.main import build_parser

    return SHELLS[shell](tree(build_parser()))


def main(args: argparse.Namespace) -> int:
    sys.stdout.write(script(args.shell))
    return 0
