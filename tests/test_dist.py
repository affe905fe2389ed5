"""`make dist`: a wheel and an sdist that install and run on their own.

A fresh copy of the project (what a clone has) runs `make dist` with a new venv; the wheel is
installed into that venv with its dependencies resolved by pip (nothing from this project's
venv), and the installed `manifesto` answers `--version` and inspects a loopback registry's
image. The sdist is the package's source: what the wheel holds plus metadata and docs, and
no half of the test suite (the tests need the repository).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.support import Registry
from tests.support.checkout import fresh_clone
from tests.support.images import LibraryRepo
from tests.support.tools import REPO_ROOT, private_home, require

VERSION_LINE = next(line for line in (REPO_ROOT / "pyproject.toml").read_text().splitlines() if line.startswith("version = "))
VERSION = VERSION_LINE.split('"')[1]
WHEEL = f"manifesto_oci-{VERSION}-py3-none-any.whl"
SDIST = f"manifesto_oci-{VERSION}.tar.gz"


def isolated_env(root: Path) -> dict[str, str]:
    """A bare environment: system PATH plus a plain Python, HOME and XDG dirs of our own."""
    return {
        "PATH": f"{Path(sys.base_prefix) / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        **private_home(root / "home"),
        "MANIFESTO_KEYRING": "file",
        **{k: v for k, v in os.environ.items() if k.startswith("PIP_")},  # this machine's index settings
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    """(dist/ of a fresh clone after `make dist`, the venv it made and the wheel went into, env)."""
    make = require("make")
    root = tmp_path_factory.mktemp("dist")
    clone = fresh_clone(root / "clone")
    venv = root / "venv"
    env = isolated_env(root)
    done = subprocess.run(
        [make, "dist", f"VENV={venv}", f"PYTHON={Path(sys.base_prefix) / 'bin' / 'python3'}"],
        cwd=clone, env=env, capture_output=True, text=True, timeout=300, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, f"make dist failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    dist = clone / "dist"
    assert sorted(p.name for p in dist.iterdir()) == [WHEEL, SDIST]
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(dist / WHEEL)],
        cwd=root, env=env, capture_output=True, text=True, timeout=300, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, f"installing the wheel failed:\n{done.stderr[-3000:]}"
    return dist, venv, env


def test_the_installed_wheel_runs_version_and_inspect(
    built: tuple[Path, Path, dict[str, str]], library_repos: dict[str, LibraryRepo], registry: Registry
) -> None:
    dist, venv, env = built
    exe = venv / "bin" / "manifesto"

    def manifesto(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(exe), *args], cwd=dist, env=env, capture_output=True, text=True, timeout=120,
                              check=False, stdin=subprocess.DEVNULL)  # fmt: skip

    version = manifesto("--version")
    assert (version.returncode, version.stdout) == (0, f"manifesto {VERSION}\n"), version
    repo = library_repos["arm64"]
    shown = manifesto("inspect", "--raw", repo.ref)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.encode().rstrip(b"\n") == repo.image.manifest_bytes.rstrip(b"\n")
    table = manifesto("inspect", repo.ref)
    assert table.returncode == 0 and "linux/arm64" in table.stdout, table
    # the package really came from the wheel, not from a source tree on sys.path
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import manifesto; print(manifesto.__file__)"],
                           cwd=dist, env=env, capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    assert where.stdout.startswith(str(venv / "lib")), where.stdout


def test_the_wheel_and_sdist_hold_the_package_and_its_types(built: tuple[Path, Path, dict[str, str]]) -> None:
    dist, _, _ = built
    clone = dist.parent
    package = sorted(str(p.relative_to(clone)) for p in (clone / "manifesto").rglob("*.py"))
    with zipfile.ZipFile(dist / WHEEL) as whl:
        names = whl.namelist()
        assert "manifesto/py.typed" in names  # PEP 561: type checkers use the package's hints
        assert sorted(n for n in names if n.endswith(".py")) == package
        entry_points = whl.read(f"manifesto_oci-{VERSION}.dist-info/entry_points.txt").decode()
        assert "manifesto = manifesto.cli.main:main" in entry_points
    top = f"manifesto_oci-{VERSION}/"
    with tarfile.open(dist / SDIST) as sdist:
        files = {m.name.removeprefix(top) for m in sdist.getmembers() if m.isfile()}
    assert {"pyproject.toml", "README.md", "manifesto/py.typed", "docs/tutorial.md"} <= files
    assert sorted(f for f in files if f.startswith("manifesto/") and f.endswith(".py")) == package
    assert not [f for f in files if f.startswith("tests/") or "__pycache__" in f or f.endswith(".pyc")]
