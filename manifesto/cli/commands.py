"""Every subcommand's arguments, each bound to a runner that imports its module lazily."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from manifesto.builders import BUILDER_NAMES


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
    p.add_argument(
        "--os-features",
        action="append",
        metavar="F[,F...]",
        help="add OS features (repeatable or comma-separated, as docker); '' clears the entry's",
    )
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

    register_publishing(sub, add_common)


def register_publishing(sub, add_common) -> None:
    mod = "manifesto.cli.publishing"

    def command(name: str, help: str, func: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        add_common(p)
        p.set_defaults(run=_lazy(mod, func))
        return p

    def matrix_args(p: argparse.ArgumentParser, builds: bool = True) -> None:
        p.add_argument("-f", "--file", default="platforms.yaml", help="the platform matrix (default: platforms.yaml)")
        p.add_argument("--image", metavar="REPO", help="publish to this repository instead of the file's `image`")
        p.add_argument("--tag", action="append", metavar="TAG", help="use these tags instead of the file's `tags`")
        p.add_argument("--report", metavar="FILE", help="write a JSON report (digests, platforms, tags)")
        if builds:
            p.add_argument("--platform", action="append", metavar="P", help="only these platforms (repeatable or comma-separated)")
            p.add_argument("--dry-run", action="store_true", help="print the plan; build and push nothing")
            p.add_argument("-j", "--jobs", type=int, help="builds at once (default: one per core)")
            p.add_argument("--builder", choices=BUILDER_NAMES, help="override build.builder")
            p.add_argument("--source-date-epoch", type=int, help="reproducible timestamps (default: $SOURCE_DATE_EPOCH)")
            p.add_argument("--keep-work", action="store_true", help="keep the per-platform OCI layouts (says where)")
            p.add_argument("-q", "--quiet", action="store_true", help="print only errors and the result (the index digest)")
            p.add_argument("--no-cache", action="store_true", help="buildah/podman: rebuild every step, using no cached layer")
            p.add_argument("--cache-from", metavar="REPO", help="read cached layers from this repository (overrides build.cache)")
            p.add_argument("--cache-to", metavar="REPO", help="push cached layers to this repository (overrides build.cache)")

    p = command("publish", "Build every platform of platforms.yaml, push them, and push the index under every tag.", "publish")
    matrix_args(p)
    p.add_argument("--push-by-digest", action="store_true", help="push the images by digest only (split publish); no index")
    p.add_argument("--digest-file", metavar="FILE", help="with --push-by-digest: write the digests for `manifesto assemble`")
    p.add_argument(
        "--allow-partial",
        action="store_true",
        help="with --platform and without --push-by-digest: really move the tags to an index of just those platforms",
    )
    p.add_argument("--insecure", action="store_true")

    p = command("build", "Build every platform into an OCI image layout directory (no registry).", "build")
    matrix_args(p)
    p.add_argument("-o", "--output", default="out/oci", help="the OCI layout directory (default: out/oci)")

    p = command("assemble", "Push the index of a split publish from its digest files.", "assemble")
    matrix_args(p, builds=False)
    p.add_argument("digest_files", metavar="DIGEST_FILE", nargs="+")
    p.add_argument("--insecure", action="store_true")

    p = command("doctor", "Check that this machine can build and publish the matrix; --fix what root can.", "doctor")
    p.add_argument("-f", "--file", default="platforms.yaml")
    p.add_argument("--image", metavar="REPO", help="check this repository instead of the file's `image`")
    p.add_argument("--platform", action="append", metavar="P")
    p.add_argument("--builder", choices=BUILDER_NAMES)
    p.add_argument("--fix", action="store_true", help="mount binfmt_misc and enable qemu handlers (root)")
    p.add_argument("--insecure", action="store_true")

    p = sub.add_parser("cache", help="Manage the build cache.", description="Manage the build cache.")
    verbs = p.add_subparsers(dest="cache_command", metavar="COMMAND", required=True)
    text = "Delete the buildah/podman layer stores (the build cache)."
    p = verbs.add_parser("prune", help=text, description=text)
    add_common(p)
    p.set_defaults(run=_lazy("manifesto.cli.cache", "prune"))

    p = command("copy", "Copy an image or index with all its children: registry or oci:DIR[:tag], either way.", "copy")
    p.add_argument("source", metavar="SRC")
    p.add_argument("destination", metavar="DST")
    p.add_argument("--insecure", action="store_true", help="allow plain HTTP / unverified TLS registries")
