"""House rule 1: `manifesto/oci` is pure data. No network, no subprocesses, no files.

Checked two ways: statically over the source (imports and calls, with ast, so a lazy import
inside a function is caught too) and dynamically (importing every oci module in a fresh
interpreter leaves httpx and subprocess unloaded).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OCI = ROOT / "manifesto" / "oci"
SOURCES = sorted(OCI.glob("*.py"))

# Modules that do I/O (network, processes, files) or belong to the layers above oci/.
FORBIDDEN_IMPORTS = {
    "httpx",
    "httpcore",
    "h2",
    "requests",
    "urllib.request",
    "http.client",
    "subprocess",
    "socket",
    "ssl",
    "asyncio",
    "shutil",
    "tempfile",
    "pathlib",
    "glob",
    "io",
    "fcntl",
    "manifesto.store",
    "manifesto.cli",
    "manifesto.builders",
    "manifesto.matrix",
    "manifesto.transfer",
    "manifesto.lists",
}
# Calls that touch files, processes or the network, by bare name or by attribute name.
FORBIDDEN_NAMES = {"open", "exec", "eval", "__import__", "input"}
FORBIDDEN_ATTRS = {
    "read_bytes",
    "read_text",
    "write_bytes",
    "write_text",
    "open",
    "system",
    "popen",
    "urlopen",
    "import_module",
}


def _forbidden(module: str) -> bool:
    return any(module == f or module.startswith(f + ".") for f in FORBIDDEN_IMPORTS)


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            found += [f"{where}: import {a.name}" for a in node.names if _forbidden(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if _forbidden(node.module):
                found.append(f"{where}: from {node.module} import ...")
            found += [
                f"{where}: from {node.module} import {a.name}"
                for a in node.names
                if _forbidden(f"{node.module}.{a.name}")
            ]
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in FORBIDDEN_NAMES:
                found.append(f"{where}: {func.id}()")
            elif isinstance(func, ast.Attribute) and func.attr in FORBIDDEN_ATTRS:
                found.append(f"{where}: .{func.attr}()")
    return found


def test_oci_sources_are_found() -> None:
    names = {p.name for p in SOURCES}
    assert {"digest.py", "platform.py", "reference.py", "manifest.py", "descriptor.py"} <= names


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_oci_module_does_no_io(path: Path) -> None:
    assert _violations(path) == []


def test_the_checker_catches_what_it_should(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Guard the guard: a checker that finds nothing in bad code would pass forever."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import httpx\n"
        "import os, subprocess\n"
        "from socket import socket\n"
        "from urllib import request\n"
        "from manifesto.store.registry import client\n"
        "def f(p):\n"
        "    import ssl\n"
        "    open('x')\n"
        "    p.read_bytes()\n"
        "    p.read_text()\n"
        "    p.open()\n"
        "    os.system('true')\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    found = "\n".join(_violations(bad))
    for needle in (
        "import httpx",
        "import subprocess",
        "from socket",
        "from urllib import request",
        "from manifesto.store.registry",
        "import ssl",
        "open()",
        ".read_bytes()",
        ".read_text()",
        ".open()",
        ".system()",
    ):
        assert needle in found, needle


def _run(code: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_importing_every_oci_module_loads_no_io_libraries() -> None:
    modules = [f"manifesto.oci.{p.stem}" for p in SOURCES if p.stem != "__init__"]
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(k for k in sys.modules if k.split('.')[0] in "
        "('httpx', 'httpcore', 'subprocess', 'ssl', 'asyncio', 'tenacity', 'structlog', 'yaml', 'keyring')"
        " or k.startswith(('manifesto.store', 'manifesto.cli', 'manifesto.builders', 'manifesto.matrix')))))\n"
    )
    assert _run(code) == []
