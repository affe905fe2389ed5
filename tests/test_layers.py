"""Imports only point down the layers, and nothing outside manifesto/cli imports the CLI.

Why: a layer that imports the one above it makes an import cycle waiting to happen (log.py and
store/registry/auth.py once imported the CLI for redaction) and lets I/O leak into code meant to
be pure. Checked statically with ast, so imports inside functions and under TYPE_CHECKING count
too; every offending import is reported with its file and line.

The layers, top first (DESIGN.md): cli → jobs → builders, lists → transfer → tags → store,
matrix → oci → utilities → errors. matrix is the jobs' pure input and sits beside store: it
reads only the spec (the builder names it checks live in matrix.model; builders re-exports
them), and choosing a builder for a Dockerfile (which reads files) is the jobs' business.
Units in one layer (builders and lists; store and matrix) are independent of each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "manifesto"

# Highest first. Each inner tuple is one layer; each name in it is one unit (a module or a
# package with everything under it). A module may import its own unit and any lower layer.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("manifesto.__main__",),
    ("manifesto.cli",),
    ("manifesto",),  # the package root: __version__ and the lazy public API (imports nothing itself)
    ("manifesto.jobs",),
    ("manifesto.builders", "manifesto.lists"),
    ("manifesto.transfer",),
    ("manifesto.tags",),
    ("manifesto.store", "manifesto.matrix"),
    ("manifesto.oci",),
    ("manifesto.log", "manifesto.redact", "manifesto.tasks", "manifesto.fileio"),
    ("manifesto.errors",),
)
# The small helpers every layer may use form one unit: they may use each other.
UTILITIES = ("manifesto.log", "manifesto.redact", "manifesto.tasks", "manifesto.fileio")
CLI = ("manifesto.cli", "manifesto.__main__")
# The only name library code may import from the package root itself (the rest of the root's
# names are the public API, re-exported from the modules that define them: import those).
ROOT_NAMES = {"__version__"}


def module_name(path: Path, package: Path) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _within(name: str, unit: str) -> bool:
    """Whether module `name` belongs to `unit` (the package root holds only itself)."""
    return name == unit or (unit != "manifesto" and name.startswith(unit + "."))


def _ours(name: str) -> bool:
    return name == "manifesto" or name.startswith("manifesto.")


def placement(name: str) -> tuple[int, str] | None:
    """(layer index, unit) of a module; the longest matching unit wins (None: unplaced)."""
    best: tuple[int, str] | None = None
    for index, layer in enumerate(LAYERS):
        for unit in layer:
            if _within(name, unit) and (best is None or len(unit) > len(best[1])):
                best = (index, unit)
    if best is not None and best[1] in UTILITIES:
        return best[0], "utilities"
    return best


def _is_module(name: str, package: Path) -> bool:
    rel = Path(*name.split(".")[1:]) if "." in name else Path()
    base = package / rel
    return base.with_suffix(".py").is_file() or (base.is_dir() and any(base.glob("*.py")))


def imports(path: Path, package: Path) -> list[tuple[int, str, str]]:
    """(line, imported module, how it was written) for every import of a manifesto module."""
    source_name = module_name(path, package)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _ours(alias.name):
                    found.append((node.lineno, alias.name, f"import {alias.name}"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = source_name.split(".")
                if not is_package:
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if not _ours(module):
                continue
            dots = "." * node.level
            for alias in node.names:
                written = f"from {dots}{node.module or ''} import {alias.name}"
                sub = f"{module}.{alias.name}"
                target = sub if _is_module(sub, package) else module
                if target == "manifesto" and alias.name not in ROOT_NAMES:
                    target = "manifesto (public API)"
                found.append((node.lineno, target, written))
    return found


def violations(package: Path = PACKAGE) -> list[str]:
    """Every import that points up (or sideways into another unit), as `file:line: why`."""
    found = []
    for path in sorted(package.rglob("*.py")):
        name = module_name(path, package)
        where = f"{path.relative_to(package.parent)}"
        source = placement(name)
        if source is None:
            found.append(f"{where}:1: {name} is in no layer (add it to LAYERS in tests/test_layers.py)")
            continue
        for line, target, written in imports(path, package):
            if target == "manifesto (public API)":
                if not any(_within(name, c) for c in CLI):
                    found.append(f"{where}:{line}: `{written}` goes through the public API; import the defining module")
                continue
            if any(_within(target, c) for c in CLI) and not any(_within(name, c) for c in CLI):
                found.append(f"{where}:{line}: `{written}`: only manifesto/cli may import the CLI")
                continue
            dest = placement(target)
            if dest is None:
                found.append(f"{where}:{line}: `{written}`: {target} is in no layer")
            elif dest[1] == source[1] or target == "manifesto":
                continue  # its own unit, or __version__ from the package root
            elif dest[0] < source[0]:
                found.append(f"{where}:{line}: `{written}` points up: {source[1]} is below {dest[1]}")
            elif dest[0] == source[0]:
                why = f"{source[1]} and {dest[1]} share a layer and stay independent"
                found.append(f"{where}:{line}: `{written}`: {why}")
    return found


def test_every_import_points_down() -> None:
    found = violations()
    assert not found, "imports against the layers:\n" + "\n".join(found)


def test_the_layers_name_what_exists() -> None:
    """A layer naming a module that moved away would silently check nothing."""
    for layer in LAYERS:
        for unit in layer:
            assert _is_module(unit, PACKAGE), unit


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    package = tmp_path / "manifesto"
    for rel, text in files.items():
        path = package / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return package


def test_the_checker_catches_what_it_should(tmp_path: Path) -> None:
    """Guard the guard: each kind of bad import is reported with its file and line."""
    package = _tree(
        tmp_path,
        {
            "__init__.py": "__version__ = '0'\n",
            "__main__.py": "from manifesto.cli.main import main\n",
            "errors.py": "",
            "log.py": "from manifesto.redact import x\n",
            "redact.py": "",
            "tasks.py": "",
            "fileio.py": "",
            "cli/__init__.py": "",
            "cli/main.py": "from manifesto import __version__\nfrom manifesto.jobs import copy\nfrom . import render\n",
            "cli/render.py": "",
            "jobs/__init__.py": "",
            "jobs/copy.py": "from manifesto.transfer import Copier\nfrom ..matrix import plan\n",
            "matrix/__init__.py": "",
            "matrix/plan.py": "from manifesto.builders import BUILDER_NAMES\n",
            "matrix/spec.py": "from manifesto.store.layout import x\nfrom manifesto.oci.digest import Digest\n",
            "builders/__init__.py": "def f():\n    from manifesto.jobs.copy import copy\n",
            "builders/buildah.py": "from manifesto.lists.push import push\nfrom manifesto import Registries\n",
            "lists/__init__.py": "",
            "lists/push.py": "from manifesto.transfer import Copier\nfrom manifesto.tags import move\n",
            "transfer.py": "from manifesto.tags import move\nfrom manifesto import tasks\n",
            "tags.py": "from manifesto.store.protocol import Store\n",
            "store/__init__.py": "",
            "store/protocol.py": "from manifesto.oci.digest import Digest\nfrom manifesto import __version__\n",
            "store/layout.py": "import typing\nif typing.TYPE_CHECKING:\n    from manifesto.transfer import Place\n",
            "store/registry/__init__.py": "",
            "store/registry/auth.py": "from ...cli.render import redact\n",
            "oci/__init__.py": "",
            "oci/digest.py": "from manifesto.errors import InvalidDigest\nimport manifesto.log\n",
            "oci/platform.py": "from manifesto.store import layout\n",
            "stray.py": "",
        },
    )
    found = "\n".join(violations(package))
    for needle in (
        "manifesto/builders/__init__.py:2: `from manifesto.jobs.copy import copy` points up",
        "manifesto/builders/buildah.py:1: `from manifesto.lists.push import push`: manifesto.builders and "
        "manifesto.lists share a layer",
        "manifesto/builders/buildah.py:2: `from manifesto import Registries` goes through the public API",
        "manifesto/store/layout.py:3: `from manifesto.transfer import Place` points up",
        "manifesto/store/registry/auth.py:1: `from ...cli.render import redact`: only manifesto/cli may import the CLI",
        "manifesto/oci/platform.py:1: `from manifesto.store import layout` points up",
        "manifesto/stray.py:1: manifesto.stray is in no layer",
        "manifesto/matrix/plan.py:1: `from manifesto.builders import BUILDER_NAMES` points up",
        "manifesto/matrix/spec.py:1: `from manifesto.store.layout import x`: manifesto.matrix and "
        "manifesto.store share a layer",
    ):
        assert needle in found, f"{needle}\nnot in:\n{found}"
    # and nothing else: every other import above is allowed
    assert len(found.splitlines()) == 9, found


@pytest.mark.parametrize(
    "source, written, module",
    [
        ("manifesto/jobs/copy.py", "from ..matrix import plan", "manifesto.matrix.plan"),
        ("manifesto/jobs/__init__.py", "from .copy import copy", "manifesto.jobs.copy"),
        ("manifesto/jobs/__init__.py", "from . import copy", "manifesto.jobs.copy"),
    ],
)
def test_relative_imports_resolve(tmp_path: Path, source: str, written: str, module: str) -> None:
    package = _tree(tmp_path, {"__init__.py": "", "jobs/__init__.py": "", "jobs/copy.py": "", "matrix/plan.py": ""})
    path = tmp_path / source
    path.write_text(written + "\n")
    assert [target for _, target, _ in imports(path, package)] == [module]
