"""platforms.yaml → a typed, validated Matrix. Every error names `file:line` of the bad node.

Why: a release matrix is written by hand and read by CI; a typo must stop the pipeline before
anything is built, with the line to fix. Validation is strict (unknown keys, wrong types,
duplicate keys, impossible or duplicate platforms, missing build files) and stops at the first
problem. The only I/O is reading the file and checking that build contexts and Dockerfiles
exist. docs/platforms-yaml.md is the user-facing reference for everything checked here.
The result types live in model.py and are re-exported here.
"""

from __future__ import annotations

import difflib
import os
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import yaml

from manifesto.errors import InvalidPlatform, InvalidReference, SpecError
from manifesto.matrix.buildcache import cache_section
from manifesto.matrix.envsubst import SubstitutionError, substitute
from manifesto.matrix.located import (
    LocatedList,
    LocatedMap,
    YamlProblem,
    parse,
    yaml_error_line,
)
from manifesto.matrix.model import (
    LAYOUT_PREFIX,
    PLACEHOLDERS,
    BuildSettings,
    Entry,
    Matrix,
    Target,
    arch_ref_problem,
    arch_tag_values,
    render_arch_tag,
)
from manifesto.matrix.names import BUILDER_NAMES, DEFAULT_BUILDER
from manifesto.matrix.targets import targets_section
from manifesto.oci.descriptor import ATTESTATIONS, STRIP
from manifesto.oci.mediatype import FORMATS
from manifesto.oci.platform import PLATFORM_ARGS, Platform, duplicates
from manifesto.oci.reference import TAG_SYNTAX, Reference, valid_tag

VERSION = 1
DEFAULT_FORMAT = "oci"
DEFAULT_CONTEXT = "."
DEFAULT_DOCKERFILE = "Dockerfile"
FROM_BASE = "from-base"  # `platforms: from-base`: every platform of the Dockerfile's base

TOP_KEYS = ("version", "image", "tags", "format", "annotations", "build", "arch_tag", "platforms")
BUILD_KEYS = ("builder", "context", "dockerfile", "args", "cache")
ENTRY_KEYS = ("platform", "image", "args", "dockerfile", "context", "attestations")
BUILD_ONLY_ENTRY_KEYS = ("args", "dockerfile", "context")

__all__ = [
    "LAYOUT_PREFIX",
    "PLACEHOLDERS",
    "PLATFORM_ARGS",
    "BuildSettings",
    "Entry",
    "Matrix",
    "Target",
    "arch_tag_values",
    "load",
    "loads",
    "render_arch_tag",
]

_ARG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")  # fullmatch: `$` would let a newline through


# ---- entry points -----------------------------------------------------------------------------


def load(path: Path, env: Mapping[str, str] = os.environ) -> Matrix:
    """Read and validate a platforms.yaml; `env` feeds `${VAR}` in tags."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SpecError(f"cannot read spec: {e.strerror or e}", file=str(path)) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise SpecError(f"not UTF-8 text (byte 0x{data[e.start]:02x})", file=str(path), line=line) from None
    return loads(text, path, env)


def loads(text: str, path: Path, env: Mapping[str, str] = os.environ) -> Matrix:
    """Validate spec text as if read from `path` (relative paths resolve against its folder)."""
    return _Validator(Path(path), env).matrix(text)


# ---- validation -------------------------------------------------------------------------------


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def _suggest(word: str, choices: tuple[str, ...]) -> str | None:
    lowered = {c.lower(): c for c in choices}
    found = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[found[0]] if found else None


@dataclass(frozen=True)
class _Source:
    """Where a build path came from: the text as written and its line (None: a default)."""

    text: str
    line: int | None


class _Validator:
    """Walks the located document once, raising SpecError at the first problem."""

    def __init__(self, path: Path, env: Mapping[str, str]):
        self.path = path
        self.file = str(path)
        self.base = Path(os.path.abspath(path)).parent
        self.env = env
        self.checked: set[Path] = set()

    def fail(self, line: int, message: str) -> NoReturn:
        raise SpecError(message, file=self.file, line=line)

    def rel(self, path: Path) -> str:
        """A path as shown in messages: relative to the spec's folder."""
        return os.path.relpath(path, self.base)

    # -- document ---------------------------------------------------------------------------

    def matrix(self, text: str) -> Matrix:
        try:
            doc, first_line = parse(text)
        except YamlProblem as p:
            self.fail(p.line, p.message)
        except yaml.YAMLError as e:
            message, line = yaml_error_line(e, text)
            self.fail(line, f"invalid YAML: {message}")
        if doc is None:
            self.fail(first_line, "the spec is empty; it needs at least image, tags and platforms")
        if not isinstance(doc, LocatedMap):
            self.fail(first_line, f"the spec must be a mapping (image:, tags:, platforms:, ...), got {_kind(doc)}")
        self.keys(doc, TOP_KEYS, "")
        for key in ("image", "tags", "platforms"):
            if key not in doc:
                self.fail(doc.line, f"missing required key {key!r}")
        self.version(doc)
        targets = targets_section(self, doc)
        tags = self.tags(doc)
        fmt = self.choice(doc, "format", tuple(FORMATS), DEFAULT_FORMAT)
        annotations = self.annotations(doc, fmt)
        build, sources = self.build(doc)
        arch_tag = self.arch_tag(doc, targets)
        entries = self.entries(doc, build, sources, arch_tag)
        if arch_tag is not None:
            refs = tuple(t.reference for t in targets if t.reference is not None)
            problem = arch_ref_problem(arch_tag, refs, tags, entries)
            if problem:
                self.fail(doc.value_line("arch_tag"), problem)
        return Matrix(
            path=self.path,
            image=targets[0],
            mirrors=targets[1:],
            tags=tags,
            format=fmt,
            index_media_type=FORMATS[fmt],
            annotations=annotations,
            build=build,
            arch_tag=arch_tag,
            entries=entries,
            from_base=doc["platforms"] == FROM_BASE,
            platforms_line=doc.value_line("platforms"),
        )

    # -- generic checks ---------------------------------------------------------------------

    def keys(self, m: LocatedMap, allowed: tuple[str, ...], where: str) -> None:
        for key in m:
            line = m.key_line(key)
            if not isinstance(key, str):
                self.fail(line, f"key {m.raw_key(key)!r}{where} is read as {_kind(key)}, not a string")
            if key not in allowed:
                guess = _suggest(key, allowed)
                hint = f"did you mean {guess!r}?" if guess else "expected one of: " + ", ".join(sorted(allowed))
                self.fail(line, f"unknown key {key!r}{where} ({hint})")

    def string(
        self, value: Any, raw: str | None, line: int, what: str, example: str, *, empty: bool = False
    ) -> str:
        """A string value; `example` shows how to quote it (`{raw}` is the source text)."""
        if isinstance(value, str):
            if not empty and not value.strip():
                self.fail(line, f"{what} must not be empty")
            return value
        hint = ""
        if raw is not None and value is not None and not isinstance(value, (list, dict)):
            hint = f"; quote it: {example.replace('{raw}', raw)}"
        self.fail(line, f"{what} must be a string, got {_kind(value)}{hint}")

    def field(self, m: LocatedMap, key: str, what: str | None = None) -> str:
        return self.string(m[key], m.raw(key), m.value_line(key), what or key, key + ': "{raw}"')

    def mapping(self, m: LocatedMap, key: str, what: str) -> LocatedMap:
        value = m[key]
        if not isinstance(value, LocatedMap):
            self.fail(m.value_line(key), f"{what} must be a mapping, got {_kind(value)}")
        return value

    def choice(self, m: LocatedMap, key: str, choices: tuple[str, ...], default: str) -> str:
        if key not in m:
            return default
        value = self.field(m, key)
        if value not in choices:
            guess = _suggest(value, choices)
            hint = f"did you mean {guess!r}?" if guess else "expected one of: " + ", ".join(choices)
            self.fail(m.value_line(key), f"unknown {key} {value!r} ({hint})")
        return value

    def string_map(self, m: LocatedMap, key: str, what: str) -> dict[str, str]:
        """A mapping of non-empty string names to (possibly empty) string values."""
        table = self.mapping(m, key, f"{key} ({what} names to string values)")
        out: dict[str, str] = {}
        for name, value in table.items():
            line = table.key_line(name)
            if not isinstance(name, str) or not name.strip():
                self.fail(line, f"{what} names must be non-empty strings, got {table.raw_key(name)!r}")
            example = name + ': "{raw}"'
            value_line = table.value_line(name)
            out[name] = self.string(value, table.raw(name), value_line, f"{what} {name!r}", example, empty=True)
        return out

    # -- fields -----------------------------------------------------------------------------

    def version(self, doc: LocatedMap) -> None:
        if "version" not in doc:
            return
        value = doc["version"]
        if type(value) is not int:
            self.fail(doc.value_line("version"), f"version must be the number {VERSION}, got {_kind(value)}")
        if value != VERSION:
            self.fail(
                doc.value_line("version"), f"unsupported version {value} (this manifesto reads version {VERSION})"
            )

    def tags(self, doc: LocatedMap) -> tuple[str, ...]:
        seq = doc["tags"]
        line = doc.value_line("tags")
        if not isinstance(seq, LocatedList):
            self.fail(line, f'tags must be a list of strings, e.g. ["1.0.0", "latest"], got {_kind(seq)}')
        if not seq:
            self.fail(line, "tags must not be empty")
        seen: dict[str, int] = {}
        out = []
        for i, item in enumerate(seq):
            line = seq.item_line(i)
            text = self.string(item, seq.raw(i), line, "a tag", '"{raw}"')
            tag = self.expand(text, line)
            if not valid_tag(tag):
                origin = f" (from {text!r})" if tag != text else ""
                self.fail(line, f"invalid tag {tag!r}{origin}: {TAG_SYNTAX}")
            if tag in seen:
                self.fail(line, f"duplicate tag {tag!r} (also on line {seen[tag]})")
            seen[tag] = line
            out.append(tag)
        return tuple(out)

    def expand(self, text: str, line: int) -> str:
        try:
            return substitute(text, self.env)
        except SubstitutionError as e:
            self.fail(line, str(e))

    def annotations(self, doc: LocatedMap, fmt: str) -> dict[str, str]:
        if "annotations" not in doc:
            return {}
        out = self.string_map(doc, "annotations", "annotation")
        if out and fmt == "docker":
            where = f" on line {doc.value_line('format')}" if "format" in doc else ""
            self.fail(
                doc.key_line("annotations"),
                f"annotations need format: oci; a Docker manifest list (format: docker{where}) cannot carry them",
            )
        return out

    def build(self, doc: LocatedMap) -> tuple[BuildSettings, dict[str, _Source]]:
        section = self.mapping(doc, "build", "build") if "build" in doc else None
        sources = {"context": _Source(DEFAULT_CONTEXT, None), "dockerfile": _Source(DEFAULT_DOCKERFILE, None)}
        builder, args, cache = DEFAULT_BUILDER, {}, (None, None)
        if section is not None:
            self.keys(section, BUILD_KEYS, " in build")
            builder = self.choice(section, "builder", BUILDER_NAMES, DEFAULT_BUILDER)
            for key in ("context", "dockerfile"):
                if key in section:
                    sources[key] = _Source(self.field(section, key), section.value_line(key))
            if "args" in section:
                args = self.args(section)
            if "cache" in section:
                cache = cache_section(self, section)
        context = self.resolve(self.base, sources["context"].text)
        dockerfile = self.resolve(context, sources["dockerfile"].text)
        return BuildSettings(builder, context, dockerfile, args, *cache), sources

    def args(self, m: LocatedMap) -> dict[str, str]:
        out = self.string_map(m, "args", "build arg")
        table: LocatedMap = m["args"]
        for name in out:
            if not _ARG_NAME.fullmatch(name):
                self.fail(table.key_line(name), f"invalid build arg name {name!r}")
            if name in PLATFORM_ARGS:
                self.fail(table.key_line(name), f"build arg {name} is set by manifesto for each platform")
        return out

    def arch_tag(self, doc: LocatedMap, targets: tuple[Target, ...]) -> str | None:
        if "arch_tag" not in doc:
            return None
        text = self.field(doc, "arch_tag")
        line = doc.value_line("arch_tag")
        if any(t.is_layout for t in targets):
            self.fail(line, "arch_tag needs a registry image, but image is an OCI layout (oci:...)")
        try:
            fields = list(string.Formatter().parse(text))
        except ValueError as e:
            self.fail(line, f"bad arch_tag template {text!r}: {e}")
        for _, name, spec, conversion in fields:
            if name is None:
                continue
            if name not in PLACEHOLDERS:
                guess = _suggest(name, PLACEHOLDERS) if name else None
                hint = f"did you mean {{{guess}}}?" if guess else "known: " + " ".join(f"{{{p}}}" for p in PLACEHOLDERS)
                self.fail(line, f"unknown placeholder {{{name}}} in arch_tag ({hint})")
            if spec or conversion:
                self.fail(line, f"placeholder {{{name}}} in arch_tag takes no format spec or conversion")
        return text

    # -- platforms --------------------------------------------------------------------------

    def entries(
        self, doc: LocatedMap, build: BuildSettings, sources: dict[str, _Source], arch_tag: str | None
    ) -> tuple[Entry, ...]:
        seq = doc["platforms"]
        if seq == FROM_BASE:  # the base's platforms: resolved at plan time (jobs.coverage)
            # the build files are checked now, as for a written platform (this one stands in)
            self.built_entry(Platform("linux", "amd64"), doc.value_line("platforms"), build, sources, {}, {})
            return ()
        if not isinstance(seq, LocatedList):
            hint = f" (or {FROM_BASE!r}: the base image's platforms)" if isinstance(seq, str) else ""
            self.fail(doc.value_line("platforms"), f"platforms must be a list, got {_kind(seq)}{hint}")
        if not seq:
            self.fail(doc.value_line("platforms"), "platforms must not be empty; list at least one, e.g. - linux/amd64")
        uses_ns = arch_tag is not None and "{arch_ns}" in arch_tag
        named: list[tuple[str, int]] = []  # each entry's platform as written, and its line
        seen_images: dict[str, int] = {}
        out = []
        for i, item in enumerate(seq):
            line = seq.item_line(i)
            if isinstance(item, LocatedMap):
                entry, text, pline = self.mapping_entry(item, line, build, sources)
            elif isinstance(item, str):
                entry = self.built_entry(self.platform(item, line), line, build, sources, {}, {})
                text, pline = item, line
            else:
                self.fail(
                    line,
                    f"a platform entry is a string (- linux/amd64) or a mapping (- platform: ... / - image: ...), "
                    f"got {_kind(item)}",
                )
            named.append((text, pline))
            if entry.platform is not None:
                for earlier, _ in duplicates([e.platform for e in out] + [entry.platform])[:1]:
                    first, first_line = named[earlier]
                    self.fail(pline, f"duplicate platform {text!r} (same as {first!r} on line {first_line})")
                if uses_ns and entry.builds and entry.platform.namespace is None:
                    self.fail(pline, f"arch_tag uses {{arch_ns}}, but {entry.platform} has no docker-library namespace")
            elif entry.image is not None:
                image = str(entry.image)
                if image in seen_images:
                    self.fail(line, f"duplicate image {image!r} (also on line {seen_images[image]})")
                seen_images[image] = line
            out.append(entry)
        return tuple(out)

    def platform(self, text: str, line: int) -> Platform:
        try:
            return Platform.parse(text)
        except InvalidPlatform as e:
            hint = ""
            if ":" in text or "." in text or text.count("/") > 2:
                hint = f" (to assemble an existing image write - image: {text})"
            self.fail(line, f"{e}{hint}")

    def mapping_entry(
        self, m: LocatedMap, line: int, build: BuildSettings, sources: dict[str, _Source]
    ) -> tuple[Entry, str, int]:
        self.keys(m, ENTRY_KEYS, " in platform entry")
        if "platform" not in m and "image" not in m:
            self.fail(
                line, "a platform entry needs 'platform' (to build it) or 'image' (to assemble an existing image)"
            )
        platform, text, pline = None, "", line
        if "platform" in m:
            text = self.field(m, "platform")
            pline = m.value_line("platform")
            platform = self.platform(text, pline)
        if "image" in m:
            for key in BUILD_ONLY_ENTRY_KEYS:
                if key in m:
                    message = f"{key!r} does not apply to an entry with 'image' (it is assembled, not built)"
                    self.fail(m.key_line(key), message)
            image_line = m.value_line("image")
            source = self.field(m, "image")
            try:
                image = Reference.parse(source)
            except InvalidReference as e:
                self.fail(image_line, f"image: {e}")
            attestations = self.choice(m, "attestations", ATTESTATIONS, STRIP)
            return Entry(platform, image, build.context, build.dockerfile, {}, line, attestations), text, pline
        if "attestations" in m:
            self.fail(m.key_line("attestations"), "'attestations' applies to an entry with 'image' (a built image has none)")
        overrides = {
            key: _Source(self.field(m, key), m.value_line(key)) for key in ("context", "dockerfile") if key in m
        }
        args = self.args(m) if "args" in m else {}
        assert platform is not None
        return self.built_entry(platform, line, build, sources, overrides, args), text, pline

    def built_entry(
        self,
        platform: Platform,
        line: int,
        build: BuildSettings,
        sources: dict[str, _Source],
        overrides: dict[str, _Source],
        args: dict[str, str],
    ) -> Entry:
        context_source = overrides.get("context", sources["context"])
        dockerfile_source = overrides.get("dockerfile", sources["dockerfile"])
        context = self.resolve(self.base, context_source.text)
        dockerfile = self.resolve(context, dockerfile_source.text)
        if context not in self.checked:
            where = context_source.line or line
            if not context.exists():
                self.fail(where, f"build context not found: {self.rel(context)} (relative to the spec's folder)")
            if not context.is_dir():
                self.fail(where, f"build context is not a directory: {self.rel(context)}")
            self.checked.add(context)
        if dockerfile not in self.checked:
            if not dockerfile.is_file():
                # Point at where the dockerfile is written; if this entry moved the context
                # under a global dockerfile, at the entry's context; if nothing is written, at
                # the entry being built.
                where = dockerfile_source.line or line
                if "dockerfile" not in overrides and "context" in overrides:
                    where = overrides["context"].line or line
                self.fail(
                    where,
                    f"Dockerfile not found: {self.rel(dockerfile)} "
                    f"(dockerfile {dockerfile_source.text!r} is relative to the context {self.rel(context)})",
                )
            self.checked.add(dockerfile)
        return Entry(platform, None, context, dockerfile, {**build.args, **args}, line)

    @staticmethod
    def resolve(base: Path, text: str) -> Path:
        """Absolute, normalized (symlinks kept); an absolute `text` stays as it is."""
        return Path(os.path.abspath(base / text))
