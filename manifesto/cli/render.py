"""Plain-text tables and sizes for terminal output (no colour dependency, fast to import)."""

from __future__ import annotations

from collections.abc import Sequence


def printable(text: str) -> str:
    """Text from a registry made safe for a terminal: control characters appear escaped."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


MIN_COLUMN = 12  # a column cut to fit the terminal keeps at least this much


def table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, width: int | None = None, shrink: Sequence[int] = ()
) -> str:
    """Left-aligned columns separated by two spaces, header in capitals; cells made printable.

    With `width`, the columns at the positions in `shrink` are cut (widest first, a cut cell
    ending in `…`) until each line fits, as far as MIN_COLUMN allows: a table wider than the
    terminal wraps into something unreadable.
    """
    cells = [[h.upper() for h in headers], *[[printable(str(c)) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    if width is not None:
        excess = sum(widths) + 2 * (len(widths) - 1) - width
        while excess > 0:
            cuttable = [i for i in shrink if widths[i] > MIN_COLUMN]
            if not cuttable:
                break
            i = max(cuttable, key=lambda j: widths[j])
            cut = min(excess, widths[i] - MIN_COLUMN)
            widths[i] -= cut
            excess -= cut
        cells = [[_cut(c, w) for c, w in zip(r, widths)] for r in cells]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def fit_width() -> int | None:
    """The terminal's width when output goes to one (or COLUMNS says), else None: no limit."""
    import os
    import shutil
    import sys

    if "COLUMNS" not in os.environ and not sys.stdout.isatty():
        return None
    return shutil.get_terminal_size().columns


def short_digest(digest: str) -> str:
    """`sha256:` and the first 12 hex digits, as docker shortens ids (`--no-trunc` shows them whole)."""
    algorithm, sep, hexpart = digest.partition(":")
    return f"{algorithm}:{hexpart[:12]}" if sep else digest[:12]


def entry_count(n: int) -> str:
    """`1 entry`, `3 entries`: how many entries a list has, as the verbs say it."""
    return f"{n} entr{'y' if n == 1 else 'ies'}"


def size(n: int) -> str:
    """Human size: 512 B, 1.5 KiB, 3.2 MiB."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError
