"""Every subcommand's arguments, each bound to a runner that imports its module lazily."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def _lazy(module: str, func: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        import importlib

        return getattr(importlib.import_module(module), func)(args)

    return run


def register(sub, add_common) -> None:
    def command(name: str, help: str, module: str, func: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        add_common(p)
        p.set_defaults(run=_lazy(module, func))
        return p

    lists = "manifesto.cli.lists"

    p = command("create", "Create a local manifest list from images (and lists, flattened).", lists, "create")
    p.add_argument("list", metavar="LIST", help="the list's name, e.g. registry/repo:tag")
    p.add_argument("sources", metavar="SOURCE", nargs="+", help="images (or lists) to include")
    p.add_argument("-a", "--amend", action="store_true", help="add to an existing local list")
    p.add_argument("--format", choices=["oci", "docker"], help="list media type (default: docker if every child is)")
    p.add_argument("--insecure", action="store_true", help="allow plain HTTP / unverified TLS registries")

    p = command("annotate", "Set the platform or annotations of one entry of a local list.", lists, "annotate")
    p.add_argument("list", metavar="LIST")
    p.add_argument("source", metavar="SOURCE", help="the entry, as given to create (or repo@digest)")
    p.add_argument("--os")
    p.add_argument("--arch")
    p.add_argument("--variant")
    p.add_argument("--os-version")
    p.add_argument("--os-features", help="comma-separated")
    p.add_argument("--annotation", action="append", default=[], metavar="K=V", help="entry annotation (repeatable)")
    p.add_argument("--index-annotation", action="append", default=[], metavar="K=V", help="annotation of the list itself")

    p = command("push", "Push a local list: copy every child into the target repo, then tag the list.", lists, "push")
    p.add_argument("list", metavar="LIST")
    p.add_argument("-t", "--tag", action="append", default=[], help="also push under this tag (repeatable)")
    p.add_argument("-p", "--purge", action="store_true", help="remove the local list after a successful push")
    p.add_argument("--insecure", action="store_true")
    p.add_argument("--force", action="store_true", help="push despite contradictions, duplicates or lossy format")
    p.add_argument("--format", choices=["oci", "docker"], help="override the list media type")

    p = command("inspect", "Show a list or image: remote, or a local draft.", lists, "inspect")
    p.add_argument("refs", metavar="REF", nargs="+")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--raw", action="store_true", help="print the exact manifest bytes")
    out.add_argument("--json", action="store_true", help="print a JSON description")
    p.add_argument("--insecure", action="store_true")

    p = command("rm", "Delete local manifest lists.", lists, "rm")
    p.add_argument("lists", metavar="LIST", nargs="+")

    p = command("login", "Store credentials for a registry (in the system keyring).", "manifesto.cli.account", "login")
    p.add_argument("registry", metavar="REGISTRY")
    p.add_argument("-u", "--username")
    p.add_argument("-p", "--password", help="insecure: prefer --password-stdin")
    p.add_argument("--password-stdin", action="store_true")
    p.add_argument("--insecure", action="store_true")

    p = command("logout", "Forget stored credentials for a registry.", "manifesto.cli.account", "logout")
    p.add_argument("registry", metavar="REGISTRY")
