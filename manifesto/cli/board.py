"""A publish on a terminal: a live board, one row per platform, and byte progress per blob.

Why a board: on a terminal the phase lines of a log (cli/progress.py) scroll away and say nothing
between phases; a row per platform that is redrawn in place shows at a glance which platforms
wait, which step each build is on, how far each push has got and how fast, and which are done.
Only this module imports `rich`, and only the commands that draw on a terminal import it, so
`--version`, `--help` and `inspect` start no slower.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import IO, Any

from rich.console import Console
from rich.live import Live
from rich.progress import DownloadColumn, Progress, TaskID, TextColumn, TransferSpeedColumn
from rich.table import Table
from rich.text import Text

from manifesto.cli.render import size
from manifesto.jobs import progress
from manifesto.jobs.progress import Event
from manifesto.redact import scrub

_TEXT = 60  # a step's text is cut to this many characters
_MB = 1_000_000
_DONE = (progress.VERIFIED, progress.FAILED, progress.NOT_STARTED)


@dataclass(frozen=True)
class Row:
    """What the board knows of one platform: its phase now and since when."""

    platform: str
    phase: str = progress.QUEUED
    began: float | None = None  # when its build began (elapsed times count from there)
    ended: float | None = None  # when it reached verified, failed or not started
    step: int | None = None
    steps: int | None = None
    text: str = ""
    size: int | None = None
    done: int | None = None
    pushing_since: float | None = None

    def then(self, event: Event) -> Row:
        """This row after `event`."""
        row = replace(self, phase=event.phase, text=event.text)
        if event.phase in (progress.BUILDING, progress.STEP) and row.began is None:
            row = replace(row, began=event.time)
        if event.phase == progress.STEP:
            row = replace(row, step=event.step, steps=event.steps)
        if event.phase == progress.PUSHING:
            since = self.pushing_since if self.phase == progress.PUSHING else event.time
            row = replace(row, size=event.size, done=event.done, pushing_since=since)
        if event.phase in _DONE:
            row = replace(row, ended=event.time, text=event.text)
        return row

    def state(self, now: float) -> str:
        """The row's words: "building step 4 of 6: RUN make", "pushing 12.0 of 80.0 MB at 5.1 MB/s"."""
        if self.phase == progress.STEP:
            text = self.text if len(self.text) <= _TEXT else self.text[: _TEXT - 3] + "..."
            return f"building step {self.step} of {self.steps}: {text}"
        if self.phase == progress.BUILDING:
            return "building"
        if self.phase == progress.BUILT:
            return "built, waiting to push"
        if self.phase == progress.PUSHING:
            if self.size is None:
                return "pushing"
            done = self.done or 0
            took = now - (self.pushing_since or now)
            speed = f" at {done / took / _MB:.1f} MB/s" if took > 0 and done else ""
            return f"pushing {done / _MB:.1f} of {self.size / _MB:.1f} MB{speed}"
        if self.phase == progress.PUSHED:
            return "pushed, verifying"
        if self.phase == progress.VERIFIED:
            return "✓ verified"
        if self.phase == progress.FAILED:
            return f"✗ failed: {self.text}" if self.text else "✗ failed"
        return self.phase  # queued, not started

    def elapsed(self, now: float) -> str:
        if self.began is None:
            return ""
        return f"{(self.ended or now) - self.began:.0f} s"


class Board:
    """The live board of a publish: feed it events (any thread) and build output lines.

    Build output is kept per platform rather than scrolled past the board; the full log of each
    platform that failed is written after the board stops.
    """

    def __init__(
        self, platforms: Sequence[str], file: IO[str], *, clock: Callable[[], float] = time.time, refresh: float = 4
    ):
        self.file = file
        self.clock = clock
        self._lock = threading.Lock()
        self._rows = {name: Row(name) for name in platforms}
        self._logs: dict[str, list[str]] = {name: [] for name in platforms}
        self._live = Live(
            get_renderable=self.render, console=Console(file=file), refresh_per_second=refresh, transient=False
        )

    def __call__(self, event: Event) -> None:
        with self._lock:
            row = self._rows.get(event.platform) or Row(event.platform)
            self._rows[event.platform] = row.then(event)

    def line(self, line: str) -> None:
        """A build output line, `[platform] text` (jobs/builds.py): kept for that platform's log."""
        platform, _, text = line.partition("] ")
        with self._lock:
            self._logs.setdefault(platform.removeprefix("["), []).append(text if platform.startswith("[") else line)

    def render(self) -> Table:
        now = self.clock()
        table = Table(box=None, show_header=False, pad_edge=False)
        with self._lock:
            rows = list(self._rows.values())
        for row in rows:  # a step's text and a failure's error may quote a secret: scrubbed
            table.add_row(Text(row.platform), Text(scrub(row.state(now))), Text(row.elapsed(now), justify="right"))
        return table

    def failed_logs(self) -> str:
        """The full build output of every platform that failed, each under a heading, scrubbed
        of secrets (a RUN step may print a token)."""
        out = []
        with self._lock:
            for name, row in self._rows.items():
                if row.phase == progress.FAILED:
                    out.append(f"---- {name}: build log ----")
                    out += self._logs.get(name) or ["(no build output)"]
        return scrub("\n".join(out))

    def __enter__(self) -> Board:
        self._live.start(refresh=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.stop()
        logs = self.failed_logs()
        if logs:
            self.file.write(logs + "\n")
            self.file.flush()


class BlobBars:
    """A live line per blob as it uploads (size, bytes sent, speed), as `skopeo copy` shows.

    Called as transfer.OnBytes from the copy's event loop; rich redraws from its own thread.
    """

    def __init__(self, file: IO[str]):
        self._progress = Progress(
            TextColumn("Copying blob {task.description}"),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=Console(file=file),
        )
        self._tasks: dict[str, TaskID] = {}

    def __call__(self, digest: Any, done: int, total: int) -> None:
        key = str(digest)
        if key not in self._tasks:
            name = key.split(":", 1)[-1][:12]
            self._tasks[key] = self._progress.add_task(f"{name} ({size(total)})", total=total)
        self._progress.update(self._tasks[key], completed=done)

    def __enter__(self) -> BlobBars:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()
