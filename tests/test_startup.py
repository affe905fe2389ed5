"""Start-up stays cheap where a command does not need the network (bench/ measures the time)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("httpx", "asyncio", "structlog", "tenacity", "keyring")


def _loaded_after(code: str) -> list[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.split()


def test_local_draft_verbs_do_not_load_the_registry_stack():
    # annotate and rm only edit drafts on disk
    assert _loaded_after("import manifesto.cli.lists") == []


def test_version_and_the_parser_load_nothing_heavy():
    assert _loaded_after("from manifesto.cli.main import build_parser; build_parser()") == []
