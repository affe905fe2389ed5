"""The curated public API: a sorted `__all__`, every name real, and a lazy `import manifesto`.

Also what a library user relies on: the main jobs and the whole error tree are exported, type
checkers see every name (py.typed, shipped), and library code calls asyncio.run only in the
documented sync wrappers (house rule 3)."""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import tomllib
import subprocess
import sys
from pathlib import Path

import pytest

import manifesto
from manifesto import errors
from manifesto.errors import ManifestoError

ROOT = Path(__file__).resolve().parents[1]


def test_all_is_sorted_and_unique() -> None:
    assert list(manifesto.__all__) == sorted(manifesto.__all__)
    assert len(set(manifesto.__all__)) == len(manifesto.__all__)


def test_all_names_the_core_types() -> None:
    expected = {"Descriptor", "Digest", "ImageIndex", "ImageManifest", "ManifestoError", "Platform", "Reference", "RegistryClient", "__version__"}
    assert expected <= set(manifesto.__all__)


def test_all_names_the_main_jobs_and_builder_lookup() -> None:
    expected = {"assemble", "copy", "plan", "publish", "Options", "Plan", "Result", "Registries", "get_builder", "Builder"}
    assert expected <= set(manifesto.__all__)
    for name in ("assemble", "copy", "plan", "publish", "get_builder"):
        assert callable(getattr(manifesto, name)) and not inspect.iscoroutinefunction(getattr(manifesto, name)), name


def test_all_names_the_index_edit_jobs() -> None:
    # `index add` / `index rm` for library users: sync wrappers, and the Edited they give
    assert {"index_add", "index_remove", "Edited"} <= set(manifesto.__all__)
    for name in ("index_add", "index_remove"):
        assert callable(getattr(manifesto, name)) and not inspect.iscoroutinefunction(getattr(manifesto, name)), name
    assert manifesto.index_add.__module__ == "manifesto.jobs.index"


def test_all_names_the_whole_error_tree() -> None:
    tree = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, BaseException) and value.__module__ == errors.__name__
    }
    assert tree and tree <= set(manifesto.__all__), sorted(tree - set(manifesto.__all__))


def test_all_is_exactly_the_lazy_exports() -> None:
    assert set(manifesto.__all__) == {*manifesto._EXPORTS, "__version__"}


def _type_checking_imports() -> dict[str, str]:
    """name -> module of the imports under `if TYPE_CHECKING:` in manifesto/__init__.py (but
    typing's own names, which only annotate the module's code)."""
    tree = ast.parse((ROOT / "manifesto" / "__init__.py").read_text())
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom) and imp.module, ast.dump(imp)
                if imp.module != "typing":
                    found.update({alias.name: imp.module for alias in imp.names})
    return found


def test_type_checkers_see_every_export_from_its_home() -> None:
    # the lazy __getattr__ is Any to a type checker; these imports give each name its real type
    assert _type_checking_imports() == manifesto._EXPORTS


def test_the_package_ships_py_typed() -> None:
    assert (ROOT / "manifesto" / "py.typed").is_file()
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["manifesto"]


# The documented sync wrappers (docs/api.md): the only functions of library code that call
# asyncio.run. The native builder's build() is the Builder protocol's synchronous method; its
# _run helper runs the async core (in build()'s thread, or a thread of its own).
SYNC_WRAPPERS = {
    "manifesto/jobs/publish.py": {"publish"},
    "manifesto/jobs/split.py": {"assemble"},
    "manifesto/jobs/copy.py": {"copy"},
    "manifesto/jobs/coverage.py": {"check", "resolve_from_base"},
    "manifesto/jobs/check.py": {"check"},
    "manifesto/jobs/index.py": {"index_add", "index_remove"},
    "manifesto/builders/native/builder.py": {"NativeBuilder._run"},
    "manifesto/builders/buildkey.py": {"_run"},  # the build key's base lookup, under the sync Builder.build
}


def _asyncio_run_callers(path: Path) -> set[str]:
    """Qualified names of the outermost functions in `path` whose bodies call asyncio.run."""
    found: set[str] = set()

    def visit(node: ast.AST, scope: str) -> None:
        for child in ast.iter_child_nodes(node):
            name = scope
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not scope.endswith("()"):
                name = f"{scope}.{child.name}" if scope else child.name
                if not isinstance(child, ast.ClassDef):
                    name += "()"
            if (
                isinstance(child, ast.Call)
                and isinstance(child.func, ast.Attribute)
                and child.func.attr == "run"
                and isinstance(child.func.value, ast.Name)
                and child.func.value.id == "asyncio"
            ):
                found.add(scope.removesuffix("()") or "<module>")
            visit(child, name)

    visit(ast.parse(path.read_text()), "")
    return found


def test_library_code_calls_asyncio_run_only_in_the_sync_wrappers() -> None:
    found = {}
    for path in sorted((ROOT / "manifesto").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("manifesto/cli/"):
            continue
        callers = _asyncio_run_callers(path)
        if callers:
            found[rel] = callers
    assert found == SYNC_WRAPPERS


def test_the_asyncio_run_finder_sees_nested_calls(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text(
        "import asyncio\n"
        "def wrapper():\n    async def run():\n        pass\n    return asyncio.run(run())\n"
        "class B:\n    def build(self):\n        def inner():\n            asyncio.run(x())\n"
        "asyncio.run(main())\n"
    )
    assert _asyncio_run_callers(path) == {"wrapper", "B.build", "<module>"}


@pytest.mark.parametrize("name", manifesto.__all__)
def test_every_public_name_resolves(name: str) -> None:
    value = getattr(manifesto, name)
    assert value is not None
    if name != "__version__":
        # the object is the one defined in its home module, not a copy
        home = importlib.import_module(value.__module__)
        assert getattr(home, name) is value


def test_star_import_gives_exactly_all() -> None:
    namespace: dict = {}
    exec("from manifesto import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(manifesto.__all__)


def test_public_errors_share_one_root() -> None:
    for name in manifesto.__all__:
        value = getattr(manifesto, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, ManifestoError), name


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        manifesto.Nope  # noqa: B018
    assert not hasattr(manifesto, "Nope")


def test_dir_lists_the_public_api() -> None:
    assert set(manifesto.__all__) <= set(dir(manifesto))


def test_version_matches_the_distribution() -> None:
    from importlib.metadata import version

    assert manifesto.__version__ == version("manifesto-oci")


def _fresh(code: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


HEAVY = "('httpx', 'httpcore', 'h2', 'tenacity', 'structlog', 'yaml', 'keyring', 'subprocess', 'ssl')"


def test_import_manifesto_is_lazy() -> None:
    loaded = _fresh(
        "import json, sys, manifesto\n"
        f"print(json.dumps(sorted(k for k in sys.modules if k.split('.')[0] in {HEAVY} or k.startswith('manifesto.'))))\n"
    )
    assert loaded == []


def test_pure_names_load_without_httpx() -> None:
    loaded = _fresh(
        "import json, sys, manifesto\n"
        "manifesto.Reference, manifesto.Platform, manifesto.Digest, manifesto.ImageIndex\n"
        f"print(json.dumps(sorted(k for k in sys.modules if k.split('.')[0] in {HEAVY})))\n"
    )
    assert loaded == []


def test_registry_client_loads_on_first_use() -> None:
    loaded = _fresh(
        "import json, sys, manifesto\n"
        "before = 'httpx' in sys.modules\n"
        "manifesto.RegistryClient\n"
        "print(json.dumps([before, 'httpx' in sys.modules]))\n"
    )
    assert loaded == [False, True]
