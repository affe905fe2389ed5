"""Pull rate limits a registry announces in its response headers (Docker Hub's form).

Docker Hub answers manifest requests with `ratelimit-limit: 100;w=21600` and
`ratelimit-remaining: 76;w=21600` (pulls per window of `w` seconds; the IETF RateLimit
header draft's form) and `docker-ratelimit-source` (the IP address or account counted). A HEAD
of a manifest is answered with them and is not counted as a pull, so reading them costs no pull.
A run that is about to run out is told once, before a 429 stops it half-way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

LIMIT_HEADER = "ratelimit-limit"
REMAINING_HEADER = "ratelimit-remaining"
SOURCE_HEADER = "docker-ratelimit-source"
LOW_PULLS = 10  # fewer pulls left than this, or under a tenth of the limit, is "running out"


@dataclass(frozen=True)
class RateLimit:
    """One registry's announced limit: `limit` pulls per `window` seconds, `remaining` of them
    left (either may be None when only the other header came); `source` is who is counted."""

    limit: int | None
    remaining: int | None
    window: int | None = None
    source: str | None = None

    @property
    def low(self) -> bool:
        """Whether a run is about to run out: under LOW_PULLS left, or under a tenth of the limit."""
        if self.remaining is None:
            return False
        return self.remaining < LOW_PULLS or (self.limit is not None and self.remaining * 10 < self.limit)


def parse(headers: Mapping[str, str]) -> RateLimit | None:
    """The limit the headers announce, or None when they announce none (or only garbage)."""
    limit, limit_window = _value(headers.get(LIMIT_HEADER))
    remaining, remaining_window = _value(headers.get(REMAINING_HEADER))
    if limit is None and remaining is None:
        return None
    source = (headers.get(SOURCE_HEADER) or "").strip() or None
    return RateLimit(limit, remaining, limit_window or remaining_window, source)


def _value(header: str | None) -> tuple[int | None, int | None]:
    """`100;w=21600` -> (100, 21600). A list of policies (`100, 100;w=21600`, the IETF draft)
    gives its first number and the first window named; anything unreadable gives None."""
    if not header:
        return None, None
    number: int | None = None
    window: int | None = None
    for policy in header.split(","):
        parts = [p.strip() for p in policy.split(";")]
        if number is None and parts[0].isdigit():
            number = int(parts[0])
        for param in parts[1:]:
            key, _, value = param.partition("=")
            if window is None and key.strip().lower() == "w" and value.strip().isdigit():
                window = int(value.strip())
    return number, window


def describe_window(seconds: int | None) -> str:
    """21600 -> "6h", 3600 -> "1h", 90 -> "90s": how long the window is, for people."""
    if seconds is None:
        return "unknown window"
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}min"
    return f"{seconds}s"
