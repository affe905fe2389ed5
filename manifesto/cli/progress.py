"""A publish as plain timestamped lines: one per phase change, a heartbeat for a long phase.

Why plain lines: a CI log is not a terminal; what helps there is a line when each platform
changes phase ("12:01:03 linux/s390x: building step 4/6 RUN make") and, when a step runs
for minutes under qemu, a line every ~10 s that says it is still running rather than hung.
The jobs send events (jobs/progress.py); this only renders them, and the summary table.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from manifesto.cli.ci import guard
from manifesto.cli.render import size, table
from manifesto.jobs import progress
from manifesto.jobs.progress import Event, Outcome
from manifesto.redact import scrub

if TYPE_CHECKING:
    from manifesto.lists.entry import Entry

HEARTBEAT = 10.0  # seconds between "still running" lines for one long phase
_LONG = (progress.BUILDING, progress.STEP, progress.PUSHING)  # phases a heartbeat speaks for
_TEXT = 72  # a step's text is cut to this many characters


def _clip(text: str) -> str:
    return text if len(text) <= _TEXT else text[: _TEXT - 3] + "..."


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.1f} s"


def describe(event: Event) -> str:
    """What an event says, without time or platform: "building step 4/6 RUN make"."""
    phase = event.phase
    if phase == progress.BUILDING:
        return f"building ({event.text})" if event.text else "building"
    if phase == progress.STEP:
        return f"building step {event.step}/{event.steps} {_clip(event.text)}"
    if phase == progress.BUILT:
        return f"built {event.digest} in {_seconds(event.seconds)}"
    if phase == progress.PUSHING:
        return f"pushing {size(event.size)}" if event.size is not None else "pushing"
    if phase == progress.PUSHED:
        return f"pushed {event.digest} ({size(event.size or 0)} in {_seconds(event.seconds)})"
    if phase == progress.VERIFIED:
        return f"verified {event.digest}" if event.digest else "verified"
    if phase == progress.FAILED:
        return f"failed: {event.text}" if event.text else "failed"
    return phase  # queued, not started


def _running(event: Event) -> str:
    """A heartbeat's subject: the step (or the push) under way."""
    if event.phase == progress.STEP:
        return f"step {event.step}/{event.steps} {_clip(event.text)}"
    return describe(event)


class Lines:
    """Prints a line per event and, from its own thread, a heartbeat for each long phase.

    `interval` and `clock` are injectable so a test can watch heartbeats without waiting.
    """

    def __init__(
        self, write: Callable[[str], None], *, interval: float = HEARTBEAT, clock: Callable[[], float] = time.time
    ):
        self.write = write
        self.interval = interval
        self.clock = clock
        self._lock = threading.Lock()
        self._current: dict[str, Event] = {}  # platform -> the event that began its phase
        self._spoke: dict[str, float] = {}  # platform -> when its last line was written
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __call__(self, event: Event) -> None:
        if event.phase == progress.PUSHING and event.done is not None:
            return  # byte counts are for a live display; a log gets the phase lines only
        with self._lock:
            self._current[event.platform] = event
            self._spoke[event.platform] = event.time
            self._say(event.time, f"{event.platform}: {describe(event)}")

    def _say(self, when: float, text: str) -> None:
        # a step's text and a failure's error quote the Dockerfile and the build: scrubbed, and
        # unable to issue a workflow command in a GitHub log (cli/ci.py)
        self.write(guard(scrub(f"{time.strftime('%H:%M:%S', time.localtime(when))} {text}")))

    def beat(self) -> None:
        """A heartbeat line for every platform whose phase has gone on, silent, for `interval`."""
        now = self.clock()
        with self._lock:
            for platform, event in self._current.items():
                if event.phase in _LONG and now - self._spoke[platform] >= self.interval:
                    self._spoke[platform] = now
                    self._say(now, f"{platform}: {_running(event)} running {now - event.time:.0f} s")

    def __enter__(self) -> Lines:
        def run() -> None:
            while not self._stop.wait(min(self.interval, 1.0)):
                self.beat()

        self._thread = threading.Thread(target=run, name="heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def summary(outcomes: Sequence[Outcome], children: Sequence[Entry] = ()) -> str:
    """The end-of-run table: one row per built platform (✓ / ✗ / pushed / not started) with its
    digest, size, build and push times, then the entries a run copied (`image:`, digest files)."""
    rows = [
        [o.platform, o.mark, o.digest or "", size(o.size) if o.size else "",
         _seconds(o.build_seconds), _seconds(o.push_seconds), "built"]
        for o in outcomes
    ]  # fmt: skip
    built = {o.platform for o in outcomes}
    for c in children:
        if str(c.platform) not in built or c.source is not None:
            rows.append([str(c.platform), "✓", str(c.digest), size(c.size), "", "", c.source_label])
    return table(["platform", "", "digest", "size", "build", "push", "source"], rows)
