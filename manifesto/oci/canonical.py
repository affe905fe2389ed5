"""Canonical JSON for documents manifesto authors (never for fetched ones).

Sorted keys, no insignificant whitespace, UTF-8: the same document always gives the same bytes
and so the same digest, which is what makes republishing idempotent.
"""

from __future__ import annotations

import json
from typing import Any


def dumps(document: Any) -> bytes:
    """Serialize a JSON-able document canonically."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
