"""Log setup for the CLI: structlog events as plain lines for people, JSON lines when asked.

Plain on every output, a terminal or a CI log alike (`manifesto: warning: push forced
problem=...`): a person reads a CI log too, and guessing JSON from "not a terminal" turned every
warning there into an object. JSON lines only with `--log-format json`, for a log collector.
Every event, ours or the standard library's (httpx, keyring), passes through one processor,
`manifesto.redact.redact_secrets`, before either renderer. structlog is imported only inside
`configure`: it costs ~35-100 ms to import and the CLI must start in under 100 ms, so importing
this module must stay nearly free.
"""

from __future__ import annotations

import sys

from manifesto.redact import redact_secrets

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only; importing typing costs ~3 ms at CLI start
    from typing import Any, TextIO

_handler: Any = None  # the stdlib handler `configure` installed, so it can be replaced
_QUIET_LOGGERS = ("httpcore", "hpack")  # their DEBUG output is per-byte noise
_META = ("level", "timestamp", "logger", "exception", "stack")  # not shown as key=value


def _value(value: Any) -> str:
    """A field's value on a plain line: a word bare, other text quoted, anything else as JSON."""
    import json

    if not isinstance(value, str):
        return json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))
    if value and value.isprintable() and not any(ch.isspace() or ch in "\"='" for ch in value):
        return value
    return json.dumps(value, ensure_ascii=False)


def plain_line(logger: Any, name: str, event: dict[str, Any]) -> str:
    """structlog renderer: `manifesto: LEVEL: what happened key=value ...`, one line per event.

    An event named like an identifier (`push_forced`) is read out with spaces; a standard
    library record keeps its message and is prefixed with its logger (`httpx: ...`). A
    traceback follows on indented lines (it is already text, and redacted).
    """
    level = str(event.get("level") or name).lower()
    what = str(event.get("event", ""))
    if what.replace("_", "").isalnum() and what.islower():
        what = what.replace("_", " ")
    if event.get("logger"):
        what = f"{event['logger']}: {what}"
    fields = " ".join(f"{k}={_value(v)}" for k, v in event.items() if k != "event" and k not in _META)
    line = f"manifesto: {level}: {what}" + (f" {fields}" if fields else "")
    extra = [str(event[k]) for k in ("stack", "exception") if event.get(k)]
    for text in extra:
        line += "".join(f"\n  {part}" for part in text.rstrip().splitlines())
    return line


def _level(verbosity: int, debug: bool) -> int:
    import logging

    if debug or verbosity >= 2:
        return logging.DEBUG
    return logging.INFO if verbosity >= 1 else logging.WARNING


def configure(
    verbosity: int = 0,
    debug: bool = False,
    stream: TextIO | None = None,
    json: bool = False,
    lazy: bool = False,
) -> None:
    """Set the level of manifesto's loggers and set up structlog (see `_configure_now`).

    With `lazy` (what the CLI uses), structlog is set up only when the first event at or above
    the level is emitted, so a command that logs nothing never loads it; a third-party stdlib
    record that reaches the root logger triggers the same setup first.
    """
    from manifesto import log

    level = _level(verbosity, debug)
    now = lambda: _configure_now(verbosity, debug, stream, json)  # noqa: E731
    if not lazy:
        now()
        log.set_level(level)
        return
    log.set_level(level, setup=now)
    import logging

    class _SetUpOnFirstRecord(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            logging.getLogger().removeHandler(self)
            log._ensure_setup()
            logging.getLogger(record.name).handle(record)

    logging.getLogger().addHandler(_SetUpOnFirstRecord(logging.WARNING))


def _configure_now(
    verbosity: int = 0,
    debug: bool = False,
    stream: TextIO | None = None,
    json: bool = False,
) -> None:
    """Set up structlog and the stdlib root logger to write redacted events to stream.

    WARNING by default, INFO with -v, DEBUG with -vv or --debug. Plain lines (`plain_line`)
    on any stream, JSON lines (with an ISO timestamp) when `json`. stream defaults to
    sys.stderr as it is at call time (so pytest's capture and redirections are honoured).
    Third-party stdlib loggers stay at WARNING unless --debug, so -v shows our events only.
    Calling it again replaces the previous setup.
    """
    import logging

    import structlog

    global _handler
    stream = sys.stderr if stream is None else stream
    level = _level(verbosity, debug)

    renderer: Any
    if json:
        timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
        renderer = structlog.processors.JSONRenderer()
    else:  # a CI log stamps its own lines; a person at a terminal has the command's own lines
        timestamper = lambda logger, name, event: event  # noqa: E731
        renderer = plain_line
    from manifesto.cli import ci

    if ci.github():  # a traceback's lines or a registry's words must not act as workflow commands
        rendered = renderer
        renderer = lambda logger, name, event: ci.guard(rendered(logger, name, event))  # noqa: E731

    # Tracebacks become text before redaction, so their messages are scrubbed too.
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            timestamper,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )

    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.stdlib.add_log_level,
                timestamper,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redact_secrets,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    root.addHandler(handler)
    root.setLevel(level if debug else max(level, logging.WARNING))
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.INFO))
    _handler = handler


def reset() -> None:
    """Undo `configure`: structlog defaults back, our stdlib handler removed (for tests)."""
    import logging

    import structlog

    global _handler
    structlog.reset_defaults()
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
        _handler = None
    root.setLevel(logging.WARNING)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)
