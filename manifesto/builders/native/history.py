"""History texts and durations written the way buildkit writes them.

buildkit formats an image's history `created_by` with Go's fmt verbs (`CMD %q`, `VOLUME %v`,
`HEALTHCHECK %+v`) and HEALTHCHECK durations with Go's time package; a native image should read
the same in `docker history`, so those few Go formats are reproduced here.
"""

from __future__ import annotations

import re
from decimal import Decimal

from manifesto.errors import UsageError

_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def go_quote(text: str) -> str:
    """`text` as Go's strconv.Quote writes it."""
    out = ['"']
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def quoted_list(items: list[str]) -> str:
    """A string slice as Go's `%q` writes it: `["a" "b"]`."""
    return "[" + " ".join(go_quote(i) for i in items) + "]"


def plain_list(items: list[str]) -> str:
    """A string slice as Go's `%v` writes it: `[a b]`."""
    return "[" + " ".join(items) + "]"


def parse_duration(text: str) -> int:
    """Nanoseconds of a Go duration (`1m30s`, `1.5s`, `500ms`, `0`), as time.ParseDuration reads it."""
    s = text
    sign = -1 if s[:1] == "-" else 1
    if s[:1] in ("-", "+"):
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise UsageError(f"time: invalid duration {go_quote(text)}")
    total = Decimal(0)
    pos = 0
    while pos < len(s):
        m = _PART.match(s, pos)
        if not m or m.group(1) in ("", "."):
            if re.match(r"[0-9.]+$", s[pos:]):
                raise UsageError(f"time: missing unit in duration {go_quote(text)}")
            raise UsageError(f"time: invalid duration {go_quote(text)}")
        total += Decimal(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return sign * int(total)


def format_duration(ns: int) -> str:
    """A duration as Go's time.Duration.String writes it: `0s`, `1.5ms`, `1m30s`, `2h0m0s`."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = abs(ns)
    if u < 1_000:
        return f"{sign}{u}ns"
    if u < 1_000_000:
        return f"{sign}{_fraction(u, 1_000)}µs"
    if u < 1_000_000_000:
        return f"{sign}{_fraction(u, 1_000_000)}ms"
    seconds, rest = divmod(u, 1_000_000_000)
    text = _fraction(seconds % 60 * 1_000_000_000 + rest, 1_000_000_000) + "s"
    minutes = seconds // 60
    if minutes:
        text = f"{minutes % 60}m{text}"
        if minutes >= 60:
            text = f"{minutes // 60}h{text}"
    return sign + text


def _fraction(value: int, unit: int) -> str:
    whole, rest = divmod(value, unit)
    if not rest:
        return str(whole)
    digits = str(rest).rjust(len(str(unit)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"
