"""Loggers for manifesto's own modules: structlog, loaded only when an event is emitted.

Importing structlog and building its pipeline costs more than a whole `manifesto inspect`
against a local registry; at the default level (WARNING) most commands emit nothing. So modules
take a Logger from here: an event below the active level returns at once, and the first event
that passes loads structlog (through the setup the CLI registered) and forwards to it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
_level = 30  # library use: warnings and errors only, until the application says otherwise
_setup: Callable[[], None] | None = None


def set_level(level: int, setup: Callable[[], None] | None = None) -> None:
    """Events below `level` are dropped here; `setup` runs once, before the first one that isn't."""
    global _level, _setup
    _level, _setup = level, setup


def _ensure_setup() -> None:
    global _setup
    setup, _setup = _setup, None
    if setup is not None:
        setup()


class Logger:
    """The subset of structlog's BoundLogger that manifesto uses."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def _emit(self, level: str, event: str, /, **kw: Any) -> None:
        if _LEVELS[level] < _level:
            return
        _ensure_setup()
        import structlog

        from manifesto.redact import redact_secrets

        # Redacted here as well as in the CLI's pipeline: a library user's own structlog
        # configuration must not receive tokens or upload state either.
        fields = redact_secrets(None, level, {"event": event, **kw})
        getattr(structlog.get_logger(self.name), level)(fields.pop("event"), **fields)

    def debug(self, event: str, /, **kw: Any) -> None:
        self._emit("debug", event, **kw)

    def info(self, event: str, /, **kw: Any) -> None:
        self._emit("info", event, **kw)

    def warning(self, event: str, /, **kw: Any) -> None:
        self._emit("warning", event, **kw)

    def error(self, event: str, /, **kw: Any) -> None:
        self._emit("error", event, **kw)


def get_logger(name: str) -> Logger:
    return Logger(name)
