"""What `--help` shows beyond each argument: commands in groups, and examples for every command.

Why one table apart from the argument definitions: commands register their arguments in
cli/commands.py, each in its own block; the groups and the examples are read as a whole (a test
checks every command has examples and every argument a help text), so they live together here
and are applied to the finished parser. A command in no group is listed under "Other".
"""

from __future__ import annotations

import argparse

GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Publish (platforms.yaml)", ("publish", "build", "assemble", "verify", "doctor", "cache")),
    ("Lists", ("create", "annotate", "push", "inspect", "rm", "index")),
    ("Registry", ("copy", "tags", "digest", "tag", "delete", "config", "login", "logout", "ratelimit")),
    ("Other", ("completion",)),
)

# "command" or "command subcommand" -> example lines (`$ ` is added in front of each).
EXAMPLES: dict[str, tuple[str, ...]] = {
    "": (
        "manifesto publish                      # build and push every platform of platforms.yaml",
        "manifesto inspect golang:alpine        # what a list holds",
        "manifesto create --push registry.example/app:1 amd64/app:1 arm64v8/app:1",
        "manifesto COMMAND --help               # each command's own flags and examples",
    ),
    "create": (
        "manifesto create registry.example/app:1 registry.example/amd64/app:1 registry.example/arm64v8/app:1",
        "manifesto create --amend registry.example/app:1 registry.example/s390x/app:1",
        "manifesto create --push -t latest registry.example/app:1 amd64/app:1 arm64v8/app:1",
    ),
    "annotate": (
        "manifesto annotate registry.example/app:1 registry.example/arm32v7/app:1 --arch arm --variant v7",
        "manifesto annotate registry.example/app:1 registry.example/amd64/app:1 --annotation org.example.note=x",
    ),
    "push": (
        "manifesto push registry.example/app:1",
        "manifesto push --purge -t latest registry.example/app:1",
    ),
    "inspect": (
        "manifesto inspect golang:alpine",
        "manifesto inspect --raw registry.example/app:1 | sha256sum",
        "manifesto inspect --json oci:./out:1",
    ),
    "rm": ("manifesto rm registry.example/app:1",),
    "login": (
        "manifesto login registry.example -u me",
        'echo "$TOKEN" | manifesto login registry.example -u me --password-stdin',
    ),
    "logout": ("manifesto logout registry.example",),
    "publish": (
        "manifesto publish",
        "manifesto publish -f examples/hello/platforms.yaml --tag 1.2 --tag latest",
        "manifesto publish --dry-run --platform linux/arm64",
        "manifesto publish --push-by-digest --platform linux/s390x --digest-file s390x.json",
    ),
    "build": ("manifesto build -o out/oci", "manifesto build --platform linux/amd64,linux/arm64"),
    "assemble": ("manifesto assemble amd64.json arm64.json s390x.json",),
    "doctor": ("manifesto doctor", "sudo manifesto doctor --fix"),
    "cache": ("manifesto cache prune",),
    "cache prune": ("manifesto cache prune",),
    "copy": (
        "manifesto copy golang:alpine registry.example/mirror/golang:alpine",
        "manifesto copy registry.example/app:1 oci:./backup:1",
    ),
    "tags": (
        "manifesto tags registry.example/app",
        "manifesto tags --page-size 100 registry.example/app",
        "manifesto tags oci:./out",
    ),
    "digest": ("manifesto digest registry.example/app:1", "manifesto digest oci:./out:1"),
    "tag": (
        "manifesto tag registry.example/app:1.2.3 1.2 1 latest",
        "manifesto tag registry.example/app@sha256:... registry.example/app:stable",
    ),
    "delete": (
        "manifesto delete registry.example/app:old           # asks first",
        "manifesto delete --yes registry.example/app@sha256:...",
    ),
    "config": (
        "manifesto config registry.example/app:1 | jq .config.Env",
        "manifesto config --platform linux/arm64/v8 golang:alpine",
    ),
    "index": (
        "manifesto index add registry.example/app:1 registry.example/riscv64/app:1",
        "manifesto index rm registry.example/app:1 --platform linux/s390x",
    ),
    "index add": (
        "manifesto index add registry.example/app:1 registry.example/riscv64/app:1",
        "manifesto index add --platform linux/arm64 registry.example/app:1 golang:alpine",
    ),
    "index rm": (
        "manifesto index rm registry.example/app:1 --platform linux/s390x",
        "manifesto index rm registry.example/app:1 --digest sha256:...",
    ),
    "verify": (
        "manifesto verify registry.example/app:1",
        "manifesto verify -f platforms.yaml registry.example/app:1",
        "manifesto verify --run registry.example/app:1",
    ),
    "ratelimit": ("manifesto ratelimit docker.io/library/alpine:3", "manifesto ratelimit --json alpine:3"),
    "completion": (
        "manifesto completion bash > ~/.local/share/bash-completion/completions/manifesto",
        "manifesto completion zsh > ~/.zfunc/_manifesto",
        "manifesto completion fish > ~/.config/fish/completions/manifesto.fish",
    ),
}


def _examples(key: str) -> str | None:
    lines = EXAMPLES.get(key)
    return "Examples:\n" + "\n".join(f"  $ {line}" for line in lines) if lines else None


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """A parser's subcommands by name (aliases left out), in the order they were added."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen: dict[int, str] = {}
            for name, sub in action.choices.items():
                seen.setdefault(id(sub), name)
            return {name: action.choices[name] for name in seen.values()}
    return {}


def _summaries(parser: argparse.ArgumentParser) -> dict[str, str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {a.dest: a.help or "" for a in action._choices_actions}
    return {}


def apply(parser: argparse.ArgumentParser) -> None:
    """Examples under every command's help; the top level's commands listed by group."""
    _apply_examples(parser, "")
    summaries = _summaries(parser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            action._choices_actions.clear()  # listed by group below instead
            action.help = "one of the commands below; `manifesto COMMAND --help` for its flags"
    listed = {name for _, names in GROUPS for name in names}
    rest = tuple(n for n in summaries if n not in listed)
    width = max((len(n) for n in summaries), default=0) + 2
    blocks = []
    for title, names in GROUPS:
        present = [n for n in names if n in summaries] + ([n for n in rest] if title == "Other" else [])
        if present:
            blocks.append(f"{title}:\n" + "\n".join(f"  {n.ljust(width)}{summaries[n]}" for n in present))
    parser.epilog = "\n\n".join(blocks) + "\n\n" + (parser.epilog or "")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


def _apply_examples(parser: argparse.ArgumentParser, key: str) -> None:
    text = _examples(key)
    if text:
        parser.epilog = text
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
    for name, sub in subcommands(parser).items():
        _apply_examples(sub, f"{key} {name}".strip())
