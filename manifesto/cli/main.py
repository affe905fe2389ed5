"""The `manifesto` command: argument parsing, error-to-exit-code mapping, nothing else.

Command modules are imported only when their command runs, so `manifesto --version` and
`--help` stay fast. Users see `manifesto: error: <one line>` and an exit code; the traceback
only with --debug.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # as in manifesto/__init__.py: typing is not imported to start

if TYPE_CHECKING:  # imported where a parser is built: `--version` needs none (~3 ms)
    import argparse

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_AUTH, EXIT_NOT_FOUND, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
EXIT_WOULD_CHANGE = 8  # `publish --check`: a publish would move a tag (a result, not an error)

# Error class (by name in manifesto.errors) -> exit code; subclasses take their nearest listed
# ancestor's code and anything else EXIT_FAILURE. Names, not classes, so --version and --help
# never import the error tree.
EXIT_CODES = {"UsageError": EXIT_USAGE, "AuthError": EXIT_AUTH, "NotFound": EXIT_NOT_FOUND}


def exit_code(error: BaseException) -> int:
    """The exit code for `error`: its nearest class in EXIT_CODES, else EXIT_FAILURE."""
    for cls in type(error).__mro__:
        if cls.__module__ == "manifesto.errors" and cls.__name__ in EXIT_CODES:
            return EXIT_CODES[cls.__name__]
    return EXIT_FAILURE


_parser_class: type[argparse.ArgumentParser] | None = None


def _parser() -> type[argparse.ArgumentParser]:
    """The ArgumentParser whose errors are one line and exit 2, like every other error."""
    global _parser_class
    if _parser_class is None:
        import argparse

        class _Parser(argparse.ArgumentParser):
            def error(self, message: str) -> None:  # type: ignore[override]
                sys.stderr.write(f"manifesto: error: {message} (see `{self.prog} --help`)\n")
                raise SystemExit(EXIT_USAGE)

        _parser_class = _Parser
    return _parser_class


def _add_common(p: argparse.ArgumentParser, top: bool = False) -> None:
    # Subcommands take the same flags; SUPPRESS keeps their defaults from undoing the global ones.
    import argparse

    default = (lambda v: v) if top else (lambda v: argparse.SUPPRESS)
    p.add_argument("-v", "--verbose", action="count", default=default(0), help="more log output (-vv for debug)")
    p.add_argument("--debug", action="store_true", default=default(False), help="debug logs and tracebacks")
    p.add_argument(
        "--log-format", choices=("text", "json"), default=default("text"),
        help="log lines as plain text (default) or JSON lines",
    )  # fmt: skip


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with `only` (a command's name), that command's parser alone.

    Why `only`: building the parsers of every command costs several milliseconds at each start,
    and a command line that names its command needs just that one. A name that is no command
    gets the whole parser, so argparse's error lists the commands there are.
    """
    from manifesto import __version__

    parser_class = _parser()
    parser = parser_class(
        prog="manifesto",
        description="Build and publish multi-arch container images; assemble and inspect manifest lists.",
    )
    parser.add_argument("--version", action="version", version=f"manifesto {__version__}")
    _add_common(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=parser_class)
    from manifesto.cli import commands

    commands.register(sub if only is None else commands.Only(sub, only), _add_common)
    if only is not None and only not in sub.choices:
        return build_parser()
    from manifesto.cli import helptext

    helptext.apply(parser)  # commands by group, and every command's examples
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv in (["--version"], ["-V"]):
        from manifesto import __version__

        print(f"manifesto {__version__}")
        return EXIT_OK
    parser = build_parser(_command(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    from manifesto.cli.logging import configure

    # At the default level most commands log nothing: set structlog up only if they do.
    configure(
        verbosity=args.verbose, debug=args.debug, json=args.log_format == "json", lazy=not (args.verbose or args.debug)
    )
    from manifesto.errors import ManifestoError

    _stop_on_signals()
    try:
        return int(args.run(args) or 0)
    except ManifestoError as e:
        if args.debug:  # the traceback as well, not instead: the exit code and error line stay
            import traceback

            traceback.print_exc()
        return show_error(e)
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM/SIGHUP turned into one (running builds cancelled)
        signum = getattr(e, "signum", None)
        sys.stderr.write(f"manifesto: {'terminated' if signum else 'interrupted'}\n")
        return 128 + signum if signum else EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_FAILURE
    except Exception as e:  # a bug: still one line unless --debug
        if args.debug:
            raise
        show_error(e, f"internal error: {type(e).__name__}: {e} (rerun with --debug for a traceback)")
        return EXIT_FAILURE


def _verbosity(word: str) -> bool:
    return len(word) > 1 and word.strip("v") == "-"  # -v, -vv, ...


def _command(argv: list[str]) -> str | None:
    """The command `argv` names: its first word, after global options spelled in full; None
    when anything else comes first (`--help`, an abbreviation, `--`: the whole parser decides)."""
    words = iter(argv)
    for word in words:
        if word == "--log-format":
            next(words, None)
        elif not word.startswith("-"):
            return word
        elif not (word in ("--verbose", "--debug") or word.startswith("--log-format=") or _verbosity(word)):
            return None
    return None


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: unwinds like Ctrl-C, so builds are cancelled and work dirs removed."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _stop_on_signals() -> None:
    """CI runners and `timeout` stop jobs with SIGTERM; without this, builds running in their
    own process groups would outlive us and keep writing."""
    import signal

    def stop(signum: int, frame: object) -> None:
        raise Terminated(signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)


def show_error(error: BaseException, message: str | None = None) -> int:
    """Tell the user a command failed, and return its exit code: `manifesto: error: LINE` on
    stderr, further lines (a build log's tail) indented under it; under GitHub Actions an
    `::error` annotation first (a spec error: on its line), the lines unable to issue workflow
    commands (cli/ci.py). `message` is the text when it is not the error's own.

    Why every failure goes through here (the main path and each of several REFs alike): error
    text quotes registries and builds, which may echo a token or credentials, so it is scrubbed
    (manifesto/redact.py) once, here, before any form of it is written.
    """
    from manifesto.cli import ci
    from manifesto.redact import scrub

    text = scrub((str(error) if message is None else message).strip())
    if ci.github():
        ci.report_failure(error, lambda: _fail(text), message=text)
    else:
        _fail(text)
    return exit_code(error)


def _fail(message: str) -> None:
    first = message.strip().splitlines()[0] if message.strip() else "failed"
    sys.stderr.write(f"manifesto: error: {first}\n")
    rest = message.strip().splitlines()[1:]
    for line in rest:  # build log tails and the like, indented under the one error line
        sys.stderr.write(f"  {line}\n")
