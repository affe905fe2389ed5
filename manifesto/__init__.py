"""manifesto: build and publish multi-arch container images.

The public API is the names in `__all__`; each loads on first use so the command line starts
fast (`manifesto --version` imports nothing heavy).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "AuthError": "manifesto.errors",
    "Descriptor": "manifesto.oci.descriptor",
    "Digest": "manifesto.oci.digest",
    "ImageConfig": "manifesto.oci.config",
    "ImageIndex": "manifesto.oci.manifest",
    "ImageManifest": "manifesto.oci.manifest",
    "LayoutStore": "manifesto.store.layout",
    "ManifestoError": "manifesto.errors",
    "NotFound": "manifesto.errors",
    "Platform": "manifesto.oci.platform",
    "Reference": "manifesto.oci.reference",
    "RegistryClient": "manifesto.store.registry.client",
    "UsageError": "manifesto.errors",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'manifesto' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
