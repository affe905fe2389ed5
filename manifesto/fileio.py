"""File writes: atomic (a reader sees the old file or the new one, never half of either), and
the one wording of a failed write for users."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from manifesto.errors import ManifestoError


def random_hex() -> str:
    """32 random hex digits, for names nobody may guess or collide with (temp files, tokens).

    Not uuid4: importing uuid loads `platform` and a C module at every start, for the same
    16 random bytes."""
    return os.urandom(16).hex()


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temp file beside `path`, fsync it, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{random_hex()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_file(path: Path, data: bytes, *, append: bool = False) -> None:
    """Write `data` atomically (or append it); a failure is one line: `cannot write PATH: why`."""
    try:
        if append:
            with open(path, "ab") as f:
                f.write(data)
        else:
            write_atomic(path, data)
    except OSError as e:
        raise ManifestoError(f"cannot write {path}: {e.strerror or e}") from None
