"""Matrix → Plan: what `manifesto publish` will build, copy and push, decided before any I/O.

Why: the plan is pure so `--dry-run` shows exactly what a real run does, and tests can check
filtering and build args without a builder or a registry. It reads no Dockerfile: each build
step carries the builder build.builder asks for (`auto` included); jobs.builds resolves `auto`
to native or buildah per Dockerfile, for the run and for `--dry-run`. jobs.publish runs a Plan
step by step; render() is the text `--dry-run` prints.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from manifesto.errors import UsageError
from manifesto.matrix.model import Matrix, Target
from manifesto.oci.descriptor import STRIP
from manifesto.oci.mediatype import format_name
from manifesto.oci.platform import PLATFORM_ARGS, Platform, platform_args
from manifesto.oci.reference import LAYOUT_PREFIX, Reference


@dataclass(frozen=True)
class BuildStep:
    """Build one platform. `args` is complete: global, entry, then the TARGET* platform args.

    `builder` is the builder build.builder asks for (auto, native, buildah, ...); for `auto`,
    jobs.builds.choose_builders says which one runs it, and why.
    """

    platform: Platform
    context: Path
    dockerfile: Path
    args: dict[str, str]
    arch_refs: tuple[Reference, ...]
    builder: str = "buildah"


@dataclass(frozen=True)
class AssembleStep:
    """Copy an existing image into the index; platform None means: read it from its config."""

    source: Reference
    platform: Platform | None
    attestations: str = STRIP  # keep|strip the source's attestation manifests (model.Entry)


Step = BuildStep | AssembleStep


@dataclass(frozen=True)
class Plan:
    """Every step of a publish, in matrix order, and the index they end in."""

    matrix: Matrix
    steps: tuple[Step, ...]
    tags: tuple[str, ...]
    target: Target
    index_media_type: str
    annotations: dict[str, str]
    mirrors: tuple[Target, ...] = ()  # the other targets of an `image:` list (Matrix.mirrors)

    @property
    def targets(self) -> tuple[Target, ...]:
        """Every target: the first (built images are pushed there), then the mirrors."""
        return (self.target, *self.mirrors)

    @property
    def builder(self) -> str:
        """The builder setting (build.builder or --builder; `auto` chooses per step)."""
        return self.matrix.build.builder

    @property
    def builders(self) -> tuple[str, ...]:
        """The builders the build steps ask for (`auto` unresolved), each once, in step order."""
        return tuple(dict.fromkeys(s.builder for s in self.build_steps))

    @property
    def build_steps(self) -> tuple[BuildStep, ...]:
        return tuple(s for s in self.steps if isinstance(s, BuildStep))

    @property
    def assemble_steps(self) -> tuple[AssembleStep, ...]:
        return tuple(s for s in self.steps if isinstance(s, AssembleStep))

    @property
    def filtered(self) -> bool:
        """True when `--platform` left some of the matrix out."""
        return len(self.steps) < len(self.matrix.entries)


def make_plan(matrix: Matrix, only: Sequence[Platform] | None = None) -> Plan:
    """Turn a matrix into steps; `only` (the `--platform` filter) keeps just those platforms.

    A filter naming a platform the matrix lacks is a UsageError. A `platforms: from-base`
    matrix must have its platforms already (model.with_platforms: the matrix is pure). Entries with only `image:`
    have no platform until publish reads their config, so a filter never selects them.
    """
    if matrix.from_base and not matrix.entries:
        raise UsageError(
            f"{matrix.path}: platforms: from-base is resolved from the registry first "
            "(jobs.coverage.resolve_from_base; jobs.publish.plan does it)"
        )
    wanted = _dedupe(only or ())
    if wanted:
        declared = matrix.platforms
        missing = [p for p in wanted if not any(p.same_as(d) for d in declared)]
        if missing:
            raise UsageError(_missing_message(matrix, missing))
    steps: list[Step] = []
    for entry in matrix.entries:
        if wanted and (entry.platform is None or not any(entry.platform.same_as(p) for p in wanted)):
            continue
        if entry.image is not None:
            steps.append(AssembleStep(source=entry.image, platform=entry.platform, attestations=entry.attestations))
            continue
        assert entry.platform is not None
        steps.append(
            BuildStep(
                platform=entry.platform,
                context=entry.context,
                dockerfile=entry.dockerfile,
                args={**entry.args, **platform_args(entry.platform)},
                arch_refs=matrix.arch_refs(entry.platform),
                builder=matrix.build.builder,
            )
        )
    return Plan(
        matrix=matrix,
        steps=tuple(steps),
        tags=matrix.tags,
        target=matrix.image,
        index_media_type=matrix.index_media_type,
        annotations=dict(matrix.annotations),
        mirrors=matrix.mirrors,
    )


def _dedupe(platforms: Sequence[Platform]) -> list[Platform]:
    out: list[Platform] = []
    for p in platforms:
        if not any(p.same_as(q) for q in out):
            out.append(p)
    return out


def _missing_message(matrix: Matrix, missing: list[Platform]) -> str:
    names = ", ".join(str(p) for p in missing)
    verb = "is" if len(missing) == 1 else "are"
    has = ", ".join(str(p) for p in matrix.platforms) or "no declared platforms"
    message = f"platform {names} {verb} not in {matrix.path} (it has: {has})"
    if any(e.platform is None for e in matrix.entries):
        message += "; entries with only 'image:' cannot be selected until they declare 'platform:'"
    return message


# ---- rendering --------------------------------------------------------------------------------


def render(plan: Plan, *, push_by_digest: bool = False, builders: Sequence[str] | None = None) -> str:
    """The human-readable plan `--dry-run` prints: one row per step, then the index.

    With `push_by_digest` it shows what that run does: built images by digest only (no arch
    tags), `image:` entries left to `manifesto assemble`, and no index. `builders` is the text
    of each build step's BUILDER cell, in build-step order (jobs.builds.choose_builders: the
    builder that runs it and why); without it the cell shows the builder asked for.
    """
    if builders is not None and len(builders) != len(plan.build_steps):
        raise ValueError(f"render: {len(builders)} builder(s) for {len(plan.build_steps)} build step(s)")
    cells = iter(builders if builders is not None else [s.builder for s in plan.build_steps])
    matrix = plan.matrix
    base = Path(os.path.abspath(matrix.path)).parent
    total = len(matrix.entries)
    builds, assembles = len(plan.build_steps), len(plan.assemble_steps)
    counts = [f"{builds} build{'s' if builds != 1 else ''}"]
    if assembles:
        counts.append(f"{assembles} assembled")
    noun = "entry" if total == 1 else "entries"
    selected = f"{len(plan.steps)} of {total} {noun}" if plan.filtered else f"{total} {noun}"
    lines = [f"plan for {matrix.path}: {selected} ({', '.join(counts)}), builder {plan.builder}"]
    if plan.build_steps:
        common = "".join(f"{k}={v} " for k, v in matrix.build.args.items())
        lines.append(f"  build args: {common + '+ ' if common else ''}{', '.join(PLATFORM_ARGS)} per platform")
    lines.append("")

    rows: list[list[list[str]]] = []
    show_args = False
    for step in plan.steps:
        if isinstance(step, BuildStep):
            extra = _extra_args(step, matrix.build.args)
            show_args = show_args or bool(extra)
            push = [_by_digest(plan.target)] if push_by_digest else [*map(_by_digest, plan.targets), *map(str, step.arch_refs)]
            source = f"{_rel(step.context, base)} ({_rel(step.dockerfile, step.context)})"
            builder = next(cells)
            rows.append([[str(step.platform)], ["build"], [builder], [source], [extra or "-"], push])
        else:
            platform = str(step.platform) if step.platform else "(from config)"
            push = ["(by manifesto assemble)"] if push_by_digest else [_by_digest(t) for t in plan.targets]
            rows.append([[platform], ["assemble"], [""], [str(step.source)], ["-"], push])
    header = ["PLATFORM", "STEP", "BUILDER", "FROM", "ARGS", "PUSHED AS"]
    if not show_args:
        header.pop(4)
        rows = [row[:4] + row[5:] for row in rows]
    widths = [max([len(header[i])] + [len(text) for row in rows for text in row[i]]) for i in range(len(header))]
    lines.append(_row(header, widths))
    for row in rows:
        for n in range(max(len(cell) for cell in row)):
            lines.append(_row([cell[n] if n < len(cell) else "" for cell in row], widths))

    lines.append("")
    if push_by_digest:
        lines.append("index: not pushed (--push-by-digest moves no tag; `manifesto assemble` pushes the index")
        lines.append(f"  under {', '.join(plan.tags)}, and the arch tags, from the digest files of every platform)")
        if plan.mirrors:
            mirrors = ", ".join(_shown(t, base) for t in plan.mirrors)
            lines.append(f"  images go to {plan.target} only; `manifesto assemble` copies them to {mirrors}")
        return "\n".join(lines) + "\n"
    lines.append("index")
    fields = [
        ("media type", [f"{plan.index_media_type} ({format_name(plan.index_media_type)})"]),
        ("targets" if plan.mirrors else "target", [_shown(t, base) for t in plan.targets]),
        ("tags", [", ".join(plan.tags)]),
    ]
    if plan.filtered:
        fields.append(("partial", [f"only {selected}: the tags move to an index without the others"]))
    if plan.annotations:
        fields.append(("annotations", [f"{k}={v}" for k, v in plan.annotations.items()]))
    label_width = max(len(label) for label, _ in fields)
    for label, values in fields:
        for n, value in enumerate(values):
            lines.append(f"  {(label if n == 0 else ''):<{label_width}}  {value}".rstrip())
    return "\n".join(lines) + "\n"


def _row(cells: list[str], widths: list[int]) -> str:
    return ("  " + "  ".join(f"{c:<{w}}" for c, w in zip(cells, widths))).rstrip()


def _extra_args(step: BuildStep, common: dict[str, str]) -> str:
    """Args this step adds or changes beyond the global ones (platform args left out)."""
    return " ".join(
        f"{k}={v}" for k, v in step.args.items() if k not in PLATFORM_ARGS and common.get(k) != v
    )


def _by_digest(target: Target) -> str:
    if target.reference is not None:
        return f"{target.reference.name}@<digest>"
    return "layout, by digest"


def _shown(target: Target, base: Path) -> str:
    return str(target) if not target.is_layout else _layout(target, base)


def _layout(target: Target, base: Path) -> str:
    assert target.layout is not None
    return f"{LAYOUT_PREFIX}{_rel(target.layout, base)}"


def _rel(path: Path, base: Path) -> str:
    return os.path.relpath(path, base)
