"""What a Dockerfile asks of the native builder, once read: config changes and file layers.

The interpreter (instructions.py) reads a Dockerfile for one platform in two phases: first the
base (FROM, after global ARGs), then — given the base image's config, whose ENV later
instructions may expand — the steps. Each ConfigStep carries the whole `config` object as it
is after that instruction; the layer writer (layer.py with context.py) turns each CopyStep
into one layer. The builder (builder.py) assembles config, history and rootfs from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Where:
    """A Dockerfile position for messages: `file:line`."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class CopyStep:
    """COPY or ADD from the build context: one layer.

    `sources` are context-relative patterns after variable expansion; `dest` is absolute (WORKDIR
    already applied; a trailing "/" kept, it means "into this directory"). `chown` is numeric
    (uid, gid); `chmod` an octal mode applied to every copied file and directory; `add` marks ADD
    (a local tar archive is extracted).
    """

    sources: tuple[str, ...]
    dest: str
    where: Where
    add: bool = False
    chmod: int | None = None
    chown: tuple[int, int] | None = None
    created_by: str = ""  # the history text docker records for this step


@dataclass(frozen=True)
class ConfigStep:
    """A config-only instruction: `config` is the image config's whole `config` object after it
    (keys as in the OCI image config: Env, Cmd, Entrypoint, WorkingDir, User, Labels,
    ExposedPorts, Volumes, StopSignal, Shell, Healthcheck, ...; keys of the base kept as they
    were), `created_by` the history text docker records for it.

    `mkdir` is set by WORKDIR (any directory but "/"): buildkit and buildah both create that
    directory, so the step adds one layer holding it and its parents (mode 0755, owner `owner`,
    the numeric USER in force, or 0:0) and its history entry is not an empty layer.
    """

    config: dict[str, Any] = field(default_factory=dict)
    created_by: str = ""
    where: Where | None = None
    mkdir: str | None = None
    owner: tuple[int, int] | None = None


@dataclass(frozen=True)
class Base:
    """The FROM of the one build stage: an image reference (registry or `oci:DIR[:TAG]`), or
    None for `scratch`."""

    image: str | None
    where: Where


@dataclass(frozen=True)
class Recipe:
    """A Dockerfile read for one platform: its base and its steps in order.

    `config` is the image config's `config` object after every step: ONBUILD changes it without
    a history entry (as docker records it), and a base without PATH gets docker's default PATH
    even when no step follows, so the builder takes this, not the last ConfigStep's. `author`
    is the top-level `author` MAINTAINER set, or None to keep the base's.
    """

    base: Base
    steps: tuple[CopyStep | ConfigStep, ...]
    config: dict[str, Any] | None = None
    author: str | None = None
