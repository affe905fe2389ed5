"""The curated public API: a sorted `__all__`, every name real, and a lazy `import manifesto`."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import manifesto
from manifesto.errors import ManifestoError

ROOT = Path(__file__).resolve().parents[1]


def test_all_is_sorted_and_unique() -> None:
    assert list(manifesto.__all__) == sorted(manifesto.__all__)
    assert len(set(manifesto.__all__)) == len(manifesto.__all__)


def test_all_names_the_core_types() -> None:
    expected = {"Descriptor", "Digest", "ImageIndex", "ImageManifest", "ManifestoError", "Platform", "Reference", "RegistryClient", "__version__"}
    assert expected <= set(manifesto.__all__)


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
