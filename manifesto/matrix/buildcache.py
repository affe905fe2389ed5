"""`build.cache` of platforms.yaml: the registry repositories of a shared layer cache.

Why a module of its own: spec.py walks the document; this is the one rule for what a cache
repository may be, checked with spec.py's validator (file:line errors) and by the CLI for
`--cache-from`/`--cache-to`. buildah and podman take a repository without tag or digest
(`--cache-from REPO`, `--cache-to REPO`): they tag cached layers there themselves.
"""

from __future__ import annotations

from typing import Any

from manifesto.errors import InvalidReference, UsageError
from manifesto.oci.reference import LAYOUT_PREFIX, Reference

CACHE_KEYS = ("from", "to")


def cache_repository(text: str, what: str) -> str:
    """`text` if it names a registry repository (no tag, no digest); UsageError otherwise."""
    if text.startswith(LAYOUT_PREFIX):
        raise UsageError(f"{what} {text!r} must be a registry repository (buildah caches layers in a registry)")
    try:
        ref = Reference.parse(text)
    except InvalidReference as e:
        raise UsageError(f"{what}: {e}") from None
    if ref.tag is not None or ref.digest is not None:
        raise UsageError(f"{what} {text!r} must be a repository without tag or digest (buildah tags it itself)")
    return text


def cache_section(validator: Any, build: Any) -> tuple[str | None, str | None]:
    """(from, to) of `build.cache`, each a repository or None; errors through `validator`."""
    section = validator.mapping(build, "cache", "build.cache ({from: REPO, to: REPO})")
    validator.keys(section, CACHE_KEYS, " in build.cache")
    if not section:
        validator.fail(build.value_line("cache"), "build.cache needs 'from', 'to' or both")
    out: dict[str, str | None] = {"from": None, "to": None}
    for key in CACHE_KEYS:
        if key in section:
            text = validator.field(section, key, f"build.cache.{key}")
            try:
                out[key] = cache_repository(text, f"build.cache.{key}")
            except UsageError as e:
                validator.fail(section.value_line(key), str(e))
    return out["from"], out["to"]
