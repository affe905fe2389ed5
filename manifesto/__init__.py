"""manifesto: build and publish multi-arch container images.

The public API is the names in `__all__` (docs/api.md): the data types, Registries, the main
jobs (plan, publish, assemble, copy, index_add, index_remove), builder lookup and the whole
error tree. Each loads on first use so the command line starts fast (`manifesto --version`
imports nothing heavy) and `import manifesto` costs nothing until a name is used.
"""

from __future__ import annotations

import importlib

# Not `from typing import TYPE_CHECKING`: importing typing costs ~2 ms at every start
# (`manifesto --version` included); type checkers read this name the same way.
TYPE_CHECKING = False

__version__ = "0.1.0"

if TYPE_CHECKING:  # what type checkers see (py.typed); at run time __getattr__ loads each name
    from typing import Any

    from manifesto.builders import get_builder
    from manifesto.builders.base import BuildRequest, Builder, BuiltImage
    from manifesto.errors import (
        AuthError,
        BuildError,
        ConcurrentUpdate,
        ConnectionLost,
        ContentError,
        DigestMismatch,
        InvalidDigest,
        InvalidPlatform,
        InvalidReference,
        ManifestoError,
        NetworkError,
        NotFound,
        RegistryError,
        SpecError,
        UsageError,
        VerificationError,
    )
    from manifesto.jobs.builds import Options
    from manifesto.jobs.copy import copy
    from manifesto.jobs.index import Edited, index_add, index_remove
    from manifesto.jobs.publish import Result, plan, publish
    from manifesto.jobs.split import assemble
    from manifesto.matrix.plan import Plan
    from manifesto.oci.config import ImageConfig
    from manifesto.oci.descriptor import Descriptor
    from manifesto.oci.digest import Digest
    from manifesto.oci.manifest import ImageIndex, ImageManifest
    from manifesto.oci.platform import Platform
    from manifesto.oci.reference import Reference
    from manifesto.store.layout import LayoutStore
    from manifesto.store.registry.client import RegistryClient
    from manifesto.store.registry.pool import Registries

_ERRORS = "manifesto.errors"
_EXPORTS = {
    # data types (pure: no httpx, no I/O)
    "Descriptor": "manifesto.oci.descriptor",
    "Digest": "manifesto.oci.digest",
    "ImageConfig": "manifesto.oci.config",
    "ImageIndex": "manifesto.oci.manifest",
    "ImageManifest": "manifesto.oci.manifest",
    "Platform": "manifesto.oci.platform",
    "Reference": "manifesto.oci.reference",
    # places
    "LayoutStore": "manifesto.store.layout",
    "Registries": "manifesto.store.registry.pool",
    "RegistryClient": "manifesto.store.registry.client",
    # the main jobs (sync wrappers over async cores) and what they take and give
    "Options": "manifesto.jobs.builds",
    "Plan": "manifesto.matrix.plan",
    "Result": "manifesto.jobs.publish",
    "assemble": "manifesto.jobs.split",
    "copy": "manifesto.jobs.copy",
    "Edited": "manifesto.jobs.index",
    "index_add": "manifesto.jobs.index",
    "index_remove": "manifesto.jobs.index",
    "plan": "manifesto.jobs.publish",
    "publish": "manifesto.jobs.publish",
    # builders
    "BuildRequest": "manifesto.builders.base",
    "Builder": "manifesto.builders.base",
    "BuiltImage": "manifesto.builders.base",
    "get_builder": "manifesto.builders",
    # the whole error tree (manifesto/errors.py)
    "AuthError": _ERRORS,
    "BuildError": _ERRORS,
    "ConcurrentUpdate": _ERRORS,
    "ConnectionLost": _ERRORS,
    "ContentError": _ERRORS,
    "DigestMismatch": _ERRORS,
    "InvalidDigest": _ERRORS,
    "InvalidPlatform": _ERRORS,
    "InvalidReference": _ERRORS,
    "ManifestoError": _ERRORS,
    "NetworkError": _ERRORS,
    "NotFound": _ERRORS,
    "RegistryError": _ERRORS,
    "SpecError": _ERRORS,
    "UsageError": _ERRORS,
    "VerificationError": _ERRORS,
}

# A literal list, so type checkers and linters read it; tests/test_public_api.py checks it
# is sorted and names exactly _EXPORTS and __version__.
__all__ = [
    "AuthError",
    "BuildError",
    "BuildRequest",
    "Builder",
    "BuiltImage",
    "ConcurrentUpdate",
    "ConnectionLost",
    "ContentError",
    "Descriptor",
    "Digest",
    "DigestMismatch",
    "Edited",
    "ImageConfig",
    "ImageIndex",
    "ImageManifest",
    "InvalidDigest",
    "InvalidPlatform",
    "InvalidReference",
    "LayoutStore",
    "ManifestoError",
    "NetworkError",
    "NotFound",
    "Options",
    "Plan",
    "Platform",
    "Reference",
    "Registries",
    "RegistryClient",
    "RegistryError",
    "Result",
    "SpecError",
    "UsageError",
    "VerificationError",
    "__version__",
    "assemble",
    "copy",
    "get_builder",
    "index_add",
    "index_remove",
    "plan",
    "publish",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'manifesto' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
