"""Every subcommand's arguments, each bound to a runner that imports its module lazily."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from manifesto.matrix.names import BUILDER_NAMES


def _lazy(module: str, func: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        import importlib

        return getattr(importlib.import_module(module), func)(args)

    return run


class Only:
    """The subparsers action of a command line that names its command: only that command's
    parser is built; every other registration goes to a stand-in that keeps nothing."""

    def __init__(self, sub: argparse._SubParsersAction, name: str):
        self.sub, self.name = sub, name

    def add_parser(self, name: str, **kwargs):
        return self.sub.add_parser(name, **kwargs) if name == self.name else _Skipped()


class _Skipped:
    """A skipped command's parser: every call (add_argument, a group, set_defaults, its own
    subcommands) is accepted and does nothing."""

    def __getattr__(self, attr: str):
        return lambda *args, **kwargs: self


def _maker(sub, add_common, module: str) -> Callable[..., argparse.ArgumentParser]:
    """command(name, help, func, module=`module`): a subcommand's parser (its help the
    description too) with the global flags, run by `func` of `module`, imported when it runs."""

    def command(name: str, help: str, func: str, module: str = module) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        add_common(p)
        p.set_defaults(run=_lazy(module, func))
        return p

    return command


def register(sub, add_common) -> None:
    command = _maker(sub, add_common, "manifesto.cli.lists")

    p = command("create", "Create a local manifest list from images (and lists, flattened).", "create")
    p.add_argument("list", metavar="LIST", help="the list's name, e.g. registry/repo:tag")
    p.add_argument(
        "sources", metavar="SOURCE", nargs="+", help="images (or lists) to include: REF, docker://REF or oci:DIR[:TAG|@DIGEST]"
    )
    p.add_argument("-a", "--amend", action="store_true", help="add to an existing local list")
    p.add_argument("--format", choices=["oci", "docker"], help="list media type (default: docker if every child is)")
    insecure_arg(p)
    p.add_argument("--push", action="store_true", help="push the list now, in this process; no local draft is kept")
    p.add_argument("-t", "--tag", action="append", default=[], help="with --push: also push under this tag (repeatable)")
    p.add_argument("--force", action="store_true", help="with --push: push despite contradictions, duplicates or lossy format")
    attestations_arg(p)
    p.add_argument("--keep-nested", action="store_true", help="keep an index inside a source list as one entry (default: flatten it)")
    report_args(p)  # with --push

    p = command("annotate", "Set the platform or annotations of one entry of a local list.", "annotate")
    p.add_argument("list", metavar="LIST", help="the local list, as named to create")
    p.add_argument("source", metavar="SOURCE", help="the entry, as given to create (or repo@digest)")
    p.add_argument("--os", help="the entry's operating system (e.g. linux)")
    p.add_argument("--arch", help="the entry's architecture (normalized: aarch64 is arm64)")
    p.add_argument("--variant", help="the entry's CPU variant (e.g. v7); '' removes it")
    p.add_argument("--os-version", help="the entry's os.version (Windows images); '' removes it")
    p.add_argument(
        "--os-features",
        action="append",
        metavar="F[,F...]",
        help="add OS features (repeatable or comma-separated, as docker); '' clears the entry's",
    )
    p.add_argument("--annotation", action="append", default=[], metavar="K=V", help="entry annotation (repeatable)")
    p.add_argument("--index-annotation", action="append", default=[], metavar="K=V", help="annotation of the list itself")

    p = command("push", "Push a local list: copy every child into the target repo, then tag the list.", "push")
    p.add_argument("list", metavar="LIST", help="the local list to push (its name is where it goes)")
    p.add_argument("-t", "--tag", action="append", default=[], help="also push under this tag (repeatable)")
    p.add_argument("-p", "--purge", action="store_true", help="remove the local list after a successful push")
    insecure_arg(p)
    p.add_argument("--force", action="store_true", help="push despite contradictions, duplicates or lossy format")
    p.add_argument("--format", choices=["oci", "docker"], help="override the list media type")
    report_args(p)

    p = command("inspect", "Show a list or image: remote, or a local draft.", "inspect")
    p.add_argument(
        "refs", metavar="REF", nargs="+", help="lists or images: REF, docker://REF, oci:DIR[:TAG|@DIGEST], or a local list"
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument("--raw", action="store_true", help="print the exact manifest bytes")
    out.add_argument("--json", action="store_true", help="print a JSON description (an object; an array for several REFs)")
    out.add_argument("--format", metavar="TEMPLATE", help="print a Go template over the --json data, e.g. '{{.Digest}}'")
    p.add_argument("--platform", metavar="P", help="show this platform's image of a list (with --raw: its bytes)")
    p.add_argument("--no-trunc", action="store_true", help="full digests and cells; no fitting to the terminal")
    insecure_arg(p)
    p.add_argument(
        "--referrers", action="store_true",
        help="list what refers to the image and its children (signatures, SBOMs): type, digest, size, found by",
    )  # fmt: skip

    p = command("rm", "Delete local manifest lists.", "rm")
    p.add_argument("lists", metavar="LIST", nargs="+", help="local lists to delete")

    p = command("login", "Store credentials for a registry (in the system keyring).", "login", "manifesto.cli.account")
    p.add_argument("registry", metavar="REGISTRY", help="the registry host[:port]")
    p.add_argument("-u", "--username", help="the user name (asked for on a terminal when not given)")
    p.add_argument("-p", "--password", help="insecure: prefer --password-stdin")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    insecure_arg(p)

    p = command("logout", "Forget stored credentials for a registry.", "logout", "manifesto.cli.account")
    p.add_argument("registry", metavar="REGISTRY", help="the registry host[:port]")

    register_publishing(sub, add_common)
    register_index(sub, add_common)
    register_verify(sub, add_common)
    register_registry(sub, add_common)
    register_ratelimit(sub, add_common)


def register_ratelimit(sub, add_common) -> None:
    """`ratelimit REF`: the pull limit a registry announces, from one HEAD."""
    help = "Show the pull rate limit a registry announces (limit, remaining, window), from one HEAD."
    p = _maker(sub, add_common, "manifesto.cli.ratelimit")("ratelimit", help, "ratelimit")
    p.add_argument("ref", metavar="REF", help="an image or list in the registry, e.g. docker.io/library/alpine:3")
    p.add_argument("--json", action="store_true", help="print the figures as JSON (null where not announced)")
    insecure_arg(p)


def insecure_arg(p: argparse.ArgumentParser) -> None:
    """`--insecure`, as every command that talks to registries takes it."""
    p.add_argument("--insecure", action="store_true", help="allow plain HTTP / unverified TLS registries")


def attestations_arg(p: argparse.ArgumentParser) -> None:
    """`--attestations keep|strip` (create, index add, copy): keep is the default everywhere."""
    from manifesto.oci.descriptor import ATTESTATIONS, KEEP

    p.add_argument(
        "--attestations", choices=ATTESTATIONS, default=KEEP,
        help="keep (default) or strip the attestation manifests (SBOM, provenance) of source lists",
    )  # fmt: skip


def register_index(sub, add_common) -> None:
    """`index add` and `index rm`: change the list a tag holds, safe against concurrent writers."""
    p = sub.add_parser("index", help="Change the list a tag holds in a registry (add or remove entries).")
    verbs = p.add_subparsers(dest="index_command", metavar="COMMAND", required=True)

    def verb(name: str, text: str) -> argparse.ArgumentParser:
        v = verbs.add_parser(name, help=text, description=text)
        add_common(v)
        v.set_defaults(run=_lazy("manifesto.cli.index", name))
        v.add_argument("target", metavar="TARGET", help="the list's tag, e.g. registry/repo:tag")
        return v

    v = verb("add", "Add images (or a list's images) to the list TARGET holds; a new list if there is none.")
    v.add_argument(
        "sources", metavar="SRC", nargs="+",
        help="images or lists to add: REF or oci:DIR[:TAG|@DIGEST] (an image replaces its platform's entry)",
    )  # fmt: skip
    v.add_argument("--platform", action="append", metavar="P", help="of a list SRC, only these platforms (repeatable)")
    attestations_arg(v)
    v.add_argument("--format", choices=["oci", "docker"], help="convert the list to this media type")
    insecure_arg(v)

    v = verb("rm", "Remove entries (and their attestations) from the list TARGET holds.")
    v.add_argument("--platform", action="append", metavar="P", help="remove this platform's image (repeatable)")
    v.add_argument("--digest", action="append", metavar="D", help="remove the entry with this digest (repeatable)")
    insecure_arg(v)


def register_verify(sub, add_common) -> None:
    text = "Verify an image or index: every child and blob there, each the platform it claims (--run: runs it)."
    p = _maker(sub, add_common, "manifesto.cli.verify")("verify", text, "verify")
    p.add_argument("ref", metavar="REF", help="the image or index to verify (tag or digest; or oci:DIR[:TAG])")
    p.add_argument("-f", "--file", metavar="FILE", help="a platforms.yaml whose platforms the index must hold exactly")
    p.add_argument("--run", dest="run_images", action="store_true", help="also run each platform (buildah, under qemu when foreign)")
    p.add_argument("--command", metavar="CMD", help="with --run: run `/bin/sh -c CMD` instead of `uname -m`")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the table and errors")
    insecure_arg(p)


def register_publishing(sub, add_common) -> None:
    command = _maker(sub, add_common, "manifesto.cli.publishing")

    def matrix_args(p: argparse.ArgumentParser, builds: bool = True) -> None:
        p.add_argument("-f", "--file", default="platforms.yaml", help="the platform matrix (default: platforms.yaml)")
        p.add_argument("--image", action="append", metavar="REPO",
                       help="publish to this repository instead of the file's `image` (repeat: to each, e.g. a mirror)")
        p.add_argument("--tag", action="append", metavar="TAG", help="use these tags instead of the file's `tags`")
        p.add_argument("--report", metavar="FILE", help="write a JSON report (digests, platforms, tags, timings; - for stdout)")
        if builds:
            p.add_argument("--platform", action="append", metavar="P", help="only these platforms (repeatable or comma-separated)")
            p.add_argument("--dry-run", action="store_true", help="print the plan; build and push nothing")
            p.add_argument("-j", "--jobs", type=int, help="builds at once (default: one per platform, at most four per core)")
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
    report_args(p, report=False)
    p.add_argument("--digest-file", metavar="FILE", help="with --push-by-digest: write the digests for `manifesto assemble`")
    p.add_argument(
        "--allow-partial",
        action="store_true",
        help="with --platform and without --push-by-digest: really move the tags to an index of just those platforms",
    )
    insecure_arg(p)
    p.add_argument(
        "--check",
        action="store_true",
        help="build (or resolve) everything and compute the index, push nothing: exit 0 if every tag holds it, 8 if not",
    )

    p = command("build", "Build every platform into an OCI image layout directory (no registry).", "build")
    matrix_args(p)
    p.add_argument("-o", "--output", default="out/oci", help="the OCI layout directory (default: out/oci)")

    p = command("assemble", "Push the index of a split publish from its digest files.", "assemble")
    matrix_args(p, builds=False)
    p.add_argument("digest_files", metavar="DIGEST_FILE", nargs="+", help="digest files written by publish --push-by-digest")
    report_args(p, report=False)
    insecure_arg(p)

    p = command("doctor", "Check that this machine can build and publish the matrix; --fix what root can.", "doctor")
    p.add_argument("-f", "--file", default="platforms.yaml", help="the platform matrix (default: platforms.yaml)")
    p.add_argument("--image", metavar="REPO", help="check this repository instead of the file's `image`")
    p.add_argument("--platform", action="append", metavar="P", help="only these platforms (repeatable or comma-separated)")
    p.add_argument("--builder", choices=BUILDER_NAMES, help="check this builder instead of build.builder")
    p.add_argument("--fix", action="store_true", help="mount binfmt_misc and enable qemu handlers (root)")
    insecure_arg(p)

    p = sub.add_parser("cache", help="Manage the build cache.", description="Manage the build cache.")
    verbs = p.add_subparsers(dest="cache_command", metavar="COMMAND", required=True)
    text = "Delete the buildah/podman layer stores (the build cache)."
    p = verbs.add_parser("prune", help=text, description=text)
    add_common(p)
    p.set_defaults(run=_lazy("manifesto.cli.cache", "prune"))

    p = command("copy", "Copy an image or index with all its children: registry or oci:DIR[:tag], either way.", "copy")
    p.add_argument("source", metavar="SRC", help="registry reference or oci:DIR[:TAG]")
    p.add_argument("destination", metavar="DST", help="registry reference or oci:DIR[:TAG]")
    insecure_arg(p)
    attestations_arg(p)
    p.add_argument(
        "--referrers", action="store_true",
        help="also copy what refers to the image and its children (signatures, SBOMs, attestations)",
    )  # fmt: skip
    report_args(p)


def register_registry(sub, add_common) -> None:
    """The registry verbs: tags, digest, tag, delete, config; and `completion`."""
    command = _maker(sub, add_common, "manifesto.cli.registry")

    p = command("tags", "List every tag of a repository (all pages), or of an OCI layout.", "tags")
    p.add_argument("repository", metavar="REPO", help="registry/repository, or oci:DIR")
    p.add_argument("--page-size", type=int, metavar="N", help="ask the registry for N tags a page (?n=N)")
    insecure_arg(p)

    p = command("digest", "Print the digest of the manifest a reference names (one HEAD).", "digest")
    p.add_argument("ref", metavar="REF", help="an image or list: registry reference or oci:DIR[:TAG]")
    insecure_arg(p)

    p = command("tag", "Put the manifest a reference names under more tags of its repository (no upload).", "tag")
    p.add_argument("ref", metavar="REF", help="the image or list to tag")
    p.add_argument("tags", metavar="NEWTAG", nargs="+", help="a bare tag, or the same repository with a tag")
    insecure_arg(p)

    p = command("delete", "Delete a manifest from a registry, by digest (a tag is resolved first).", "delete")
    p.add_argument("ref", metavar="REF", help="repository:tag or repository@digest")
    p.add_argument("-y", "--yes", action="store_true", help="delete without asking (needed when not on a terminal)")
    insecure_arg(p)

    p = command("config", "Print the exact bytes of an image's config (of a list: one platform's).", "config")
    p.add_argument("ref", metavar="REF", help="an image or list: registry reference or oci:DIR[:TAG]")
    p.add_argument("--platform", metavar="P", help="of a list, this platform's image (default: this host's platform)")
    insecure_arg(p)

    p = command("completion", "Print a shell completion script (bash, zsh or fish).", "main", "manifesto.cli.completion")
    p.add_argument("shell", choices=["bash", "zsh", "fish"], help="the shell to complete for")


def report_args(p: argparse.ArgumentParser, report: bool = True) -> None:
    """What the publishing commands (publish, assemble, push, copy) write for CI (cli/report.py)."""
    if report:
        p.add_argument("--report", metavar="FILE", help="write a JSON report (digests, tags, timings; - for stdout)")
    p.add_argument(
        "--report-env", metavar="FILE",
        help="write the image, digest and tags as a dotenv file (GitLab's artifacts:reports:dotenv)",
    )  # fmt: skip
