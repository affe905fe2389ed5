"""What a publish is doing, as events: one frozen Event per phase change of one platform.

Why events and not printing: the jobs run for minutes (RUN steps under qemu, large pushes), and
who shows that (plain timestamped lines in a CI log, a live board on a terminal, a report file,
a library caller) is not the library's business. The jobs call an injected callback
(Options.on_event) with these; `summarize` folds them into one Outcome per platform for the
summary table and `--report`. Builders' step lines are parsed here, in one place.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

QUEUED = "queued"
BUILDING = "building"
STEP = "step"  # a build step began: step of steps, text
BUILT = "built"
PUSHING = "pushing"
PUSHED = "pushed"
VERIFIED = "verified"
FAILED = "failed"
NOT_STARTED = "not started"

# Builders' own step lines: buildah/podman and the native builder say `STEP 4/6: RUN ...`;
# buildx (BuildKit's plain progress) says `#7 [3/5] RUN ...` (or `[stage-0 3/5]`).
_STEP_LINES = (
    re.compile(r"^STEP (\d+)/(\d+): (.*)$"),
    re.compile(r"^#\d+ \[(?:[^\]\s]+ )?(\d+)/(\d+)\] (.*)$"),
)


@dataclass(frozen=True)
class Event:
    """One phase change of one platform; `time` is wall-clock seconds (time.time())."""

    platform: str
    phase: str
    time: float
    step: int | None = None
    steps: int | None = None
    text: str = ""
    digest: str | None = None
    size: int | None = None  # bytes of the image pushed (config + layers + manifest)
    seconds: float | None = None  # how long the phase that just ended took (built, pushed)
    done: int | None = None  # pushing: bytes of `size` sent so far (None: the push just began)


OnEvent = Callable[[Event], None]


def ignore(event: Event) -> None:
    """The default callback: nobody is watching."""


def event(platform: object, phase: str, **fields: Any) -> Event:
    """An Event for `platform` now."""
    return Event(str(platform), phase, time.time(), **fields)


class PushTally:
    """Turns a Copier's per-blob byte reports (transfer.OnBytes) into `pushing` events per platform.

    Why here: the Copier knows blobs, the watcher knows platforms; a blob two platforms share is
    sent once and counts for both.
    """

    def __init__(self, on_event: OnEvent):
        self.on_event = on_event
        self._lock = threading.Lock()
        self._owners: dict[str, list[str]] = {}  # blob digest -> platforms pushing it
        self._sizes: dict[str, int] = {}  # platform -> bytes of its image
        self._sent: dict[str, dict[str, int]] = {}  # platform -> blob digest -> bytes sent

    def start(self, platform: object, digests: Iterable[object], size: int) -> None:
        """`platform`'s push of an image of `size` bytes, made of blobs `digests`, begins."""
        name = str(platform)
        with self._lock:
            self._sizes[name] = size
            self._sent[name] = {}
            for d in digests:
                self._owners.setdefault(str(d), []).append(name)

    def __call__(self, digest: object, done: int, total: int) -> None:
        out = []
        with self._lock:
            for name in self._owners.get(str(digest), ()):
                sent = self._sent.get(name)
                if sent is None:
                    continue
                sent[str(digest)] = done
                out.append(event(name, PUSHING, size=self._sizes[name], done=sum(sent.values())))
        for e in out:
            self.on_event(e)

    def finish(self, platform: object) -> None:
        """`platform`'s push is over: later reports of its blobs speak for others only."""
        with self._lock:
            self._sent.pop(str(platform), None)


def parse_step(line: str) -> tuple[int, int, str] | None:
    """(step, steps, text) when a builder's output line starts a build step, else None."""
    for pattern in _STEP_LINES:
        m = pattern.match(line.strip())
        if m:
            return int(m.group(1)), int(m.group(2)), m.group(3).strip()
    return None


@dataclass(frozen=True)
class Outcome:
    """How one platform ended: status (ok / failed / pushed / built / not started), digest, times.

    `pushed` (untagged) and `built` (not pushed) are what a failed publish leaves: children in
    the target under no tag, and images built after another platform had failed.
    """

    platform: str
    status: str
    digest: str | None = None
    size: int | None = None
    build_seconds: float | None = None
    push_seconds: float | None = None

    @property
    def mark(self) -> str:
        return {"ok": "✓", "failed": "✗"}.get(self.status, self.status)

    def to_record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"platform": self.platform, "status": self.status}
        if self.digest:
            out["digest"] = self.digest
        if self.size is not None:
            out["size"] = self.size
        if self.build_seconds is not None:
            out["buildSeconds"] = round(self.build_seconds, 1)
        if self.push_seconds is not None:
            out["pushSeconds"] = round(self.push_seconds, 1)
        return out


_STATUS = {VERIFIED: "ok", FAILED: "failed", PUSHED: "pushed", BUILT: "built", PUSHING: "built"}


def summarize(events: Iterable[Event], platforms: Sequence[str] = ()) -> tuple[Outcome, ...]:
    """One Outcome per platform, in `platforms` order (then any others in order of appearance).

    A platform whose last phase is queued or building (it never finished) counts as not started
    only when it never began building; otherwise it failed.
    """
    last: dict[str, Event] = {}
    fields: dict[str, dict[str, Any]] = {}
    for e in events:
        last[e.platform] = e
        got = fields.setdefault(e.platform, {})
        if e.phase == BUILT:
            got["build_seconds"] = e.seconds
            got["digest"] = e.digest
        elif e.phase == PUSHED:
            got["push_seconds"] = e.seconds
            got["digest"], got["size"] = e.digest, e.size
        elif e.phase in (BUILDING, STEP):
            got["started"] = True
    order = list(dict.fromkeys([*platforms, *last]))
    out = []
    for name in order:
        e = last.get(name)
        got = fields.get(name, {})
        status = _STATUS.get(e.phase) if e is not None else None
        if status is None:
            status = "failed" if got.get("started") and e is not None and e.phase != NOT_STARTED else "not started"
        out.append(
            Outcome(name, status, got.get("digest"), got.get("size"), got.get("build_seconds"), got.get("push_seconds"))
        )
    return tuple(out)


__all__ = ["Event", "OnEvent", "Outcome", "PushTally", "event", "parse_step", "summarize"]
