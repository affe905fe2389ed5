"""Test infrastructure: real registries, a token server, busybox test images, helpers.

Import from here in tests: ``from tests.support import require, Registry, ...``.
Fixtures that wrap these live in ``tests/conftest.py``.
"""

from .images import (
    ARCHES,
    PLATFORMS,
    ArchImage,
    LibraryRepo,
    build_image,
    busybox_path,
    inspect_raw,
    library_namespace,
    platform_of,
    push_image,
    push_library_repos,
    skopeo,
)
from .registry import Registry, RegistryStartError, start_registry
from .tokenserver import Scope, TokenRequest, TokenServer, default_acl, parse_scopes
from .tools import (
    CliResult,
    binfmt_available,
    elf_info,
    free_port,
    in_ci,
    missing,
    require,
    run,
    run_cli,
)

__all__ = [
    "ARCHES",
    "PLATFORMS",
    "ArchImage",
    "CliResult",
    "LibraryRepo",
    "Registry",
    "RegistryStartError",
    "Scope",
    "TokenRequest",
    "TokenServer",
    "binfmt_available",
    "build_image",
    "busybox_path",
    "default_acl",
    "elf_info",
    "free_port",
    "in_ci",
    "inspect_raw",
    "library_namespace",
    "missing",
    "parse_scopes",
    "platform_of",
    "push_image",
    "push_library_repos",
    "require",
    "run",
    "run_cli",
    "skopeo",
    "start_registry",
]
