"""Builders behind one protocol: buildah (default), podman, docker buildx."""

from __future__ import annotations

from typing import Any

from manifesto.builders.base import Builder, BuildRequest, BuiltImage, Problem
from manifesto.builders.runner import Runner
from manifesto.errors import UsageError

DEFAULT_BUILDER = "buildah"
BUILDER_NAMES = ("buildah", "podman", "buildx")


def get_builder(name: str = DEFAULT_BUILDER, runner: Runner | None = None, **options: Any) -> Builder:
    """The builder called `name` (buildah, podman, buildx; `docker` means buildx).

    `options` go to the builder's constructor (e.g. storage=, storage_driver=, executable=).
    """
    from manifesto.builders.buildah import BuildahBuilder
    from manifesto.builders.buildx import BuildxBuilder
    from manifesto.builders.podman import PodmanBuilder

    classes: dict[str, type[Any]] = {
        "buildah": BuildahBuilder,
        "podman": PodmanBuilder,
        "buildx": BuildxBuilder,
        "docker": BuildxBuilder,
    }
    cls = classes.get((name or "").strip().lower())
    if cls is None:
        raise UsageError(f"unknown builder {name!r}: choose one of {', '.join(BUILDER_NAMES)}")
    return cls(runner or Runner(), **options)


__all__ = [
    "BUILDER_NAMES",
    "DEFAULT_BUILDER",
    "BuildRequest",
    "Builder",
    "BuiltImage",
    "Problem",
    "Runner",
    "get_builder",
]
