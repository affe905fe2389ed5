"""Builders behind one protocol: buildah, podman, docker buildx, native; `auto` picks per Dockerfile.

The builder names are defined beside the spec (matrix/names.py, below this layer, so the pure
matrix checks them) and offered here beside get_builder; this module imports no builder until
one is asked for, so the CLI's `--builder` choices cost nothing; the protocol types and Runner
load on first use. `auto` (the default) is no builder of its own: choose() turns it into
`native` for a Dockerfile that needs no execution and `buildah` for one that does, saying why;
jobs.builds calls it for each build step, for the run and for `publish --dry-run`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from manifesto.errors import ManifestoError, UsageError
from manifesto.matrix.names import AUTO, BUILDER_NAMES, BUILDERS, DEFAULT_BUILDER

if TYPE_CHECKING:
    from manifesto.builders.base import Builder, BuildRequest, BuiltImage, Problem
    from manifesto.builders.runner import Runner

WRITES_ONLY = frozenset({"native"})  # builders that never execute the image's commands (no qemu needed)
BUILDER_ALIASES = {"docker": "buildx"}  # accepted by get_builder, not offered as a choice

_CLASSES = {
    "buildah": ("manifesto.builders.buildah", "BuildahBuilder"),
    "podman": ("manifesto.builders.podman", "PodmanBuilder"),
    "buildx": ("manifesto.builders.buildx", "BuildxBuilder"),
    "native": ("manifesto.builders.native.builder", "NativeBuilder"),
}
_EXPORTS = {
    "BuildRequest": "manifesto.builders.base",
    "Builder": "manifesto.builders.base",
    "BuiltImage": "manifesto.builders.base",
    "Problem": "manifesto.builders.base",
    "Runner": "manifesto.builders.runner",
}


@dataclass(frozen=True)
class Choice:
    """The builder one Dockerfile gets, and why `auto` chose it (shown by `publish --dry-run`;
    empty when the builder was named, not chosen)."""

    builder: str
    reason: str

    def __str__(self) -> str:
        return f"{self.builder} ({self.reason})" if self.reason else self.builder


def choose(name: str, dockerfile: Path) -> Choice:
    """The builder for `dockerfile` when build.builder (or --builder) says `name`.

    `auto` reads the Dockerfile: native when nothing in it needs execution (no RUN, one stage,
    nothing only an executing builder can do: instructions.needs_execution), else buildah, with
    the `file:line` in the way. Another name is taken as given. A Dockerfile that cannot be read
    or parsed goes to buildah, whose own error will say what is wrong with it.
    """
    key = BUILDER_ALIASES.get(name, name)
    if key != AUTO:
        return Choice(key, "")  # as configured: nothing to explain
    from manifesto.builders.native.instructions import needs_execution

    try:
        text = dockerfile.read_text(encoding="utf-8")
        found = needs_execution(text, dockerfile.name)
    except (OSError, UnicodeDecodeError, ManifestoError) as e:
        return Choice("buildah", f"auto: the Dockerfile was not read natively ({str(e).splitlines()[0] if str(e) else e})")
    if found is None:
        return Choice("native", "auto: no instruction needs execution")
    return Choice("buildah", f"auto: {found}")


def get_builder(name: str = "buildah", runner: Runner | None = None, **options: Any) -> Builder:
    """The builder called `name` (buildah, podman, buildx, native; `docker` means buildx).

    `options` go to the builder's constructor (e.g. storage=, storage_driver=, executable=).
    `auto` is no builder: choose() turns it into one per Dockerfile first.
    """
    key = (name or "").strip().lower()
    key = BUILDER_ALIASES.get(key, key)
    if key == AUTO:
        raise UsageError("builder auto is chosen per Dockerfile: pick the builder with manifesto.builders.choose first")
    if key not in _CLASSES:
        raise UsageError(f"unknown builder {name!r}: choose one of {', '.join(BUILDER_NAMES)}")
    module, cls = _CLASSES[key]
    from manifesto.builders.runner import Runner

    return getattr(importlib.import_module(module), cls)(runner or Runner(), **options)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'manifesto.builders' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AUTO",
    "BUILDERS",
    "BUILDER_ALIASES",
    "BUILDER_NAMES",
    "WRITES_ONLY",
    "Choice",
    "DEFAULT_BUILDER",
    "BuildRequest",
    "Builder",
    "BuiltImage",
    "Problem",
    "Runner",
    "choose",
    "get_builder",
]
