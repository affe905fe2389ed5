"""A Dockerfile's outline for the native builder: global ARGs, stages, and the base of the one stage.

Reading the base comes first and alone (the builder fetches the base's config before the steps
can be interpreted, since ENV of the base feeds expansion). FROM sees only the automatic
platform args (TARGET*, BUILD* with docker's values: containerd-normalized, so arm64's v8 is
dropped) and the global ARGs before it, a build arg winning over a default. One stage only: a
second FROM is refused with its line. `--platform` on FROM must name the target platform (as
`$TARGETPLATFORM` does), since each platform is built from its own base.
"""

from __future__ import annotations

import platform as host
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from manifesto.builders.native.expand import expand
from manifesto.builders.native.steps import Base, Where
from manifesto.errors import InvalidPlatform, UsageError
from manifesto.oci import platform as oci_platform
from manifesto.oci.platform import Platform

_DIRECTIVE = re.compile(r"^#[ \t]*([a-zA-Z][a-zA-Z0-9]*)[ \t]*=[ \t]*(.*?)[ \t]*$")
MULTI_STAGE = "a second FROM (a multi-stage build) needs a builder that builds stages"


class NeedsBuilder(UsageError):
    """An instruction the native builder cannot carry out, with where it is and who can."""

    def __init__(self, where: Where, reason: str, builder: str | None = "buildah"):
        self.where, self.reason, self.builder = where, reason, builder
        hint = f"; use builder: {builder}" if builder else ""
        super().__init__(f"{where}: {reason}{hint}")


@dataclass(frozen=True)
class Source:
    """A parsed Dockerfile: its escape character, global ARGs and stages (FROM, body)."""

    file: str
    escape: str
    globals: tuple[Any, ...]
    stages: tuple[tuple[Any, tuple[Any, ...]], ...]


def read_base(text: str, file: str, args: Mapping[str, str] | None, platform: Platform) -> Base:
    """The FROM of the single build stage for `platform`, global ARGs substituted."""
    src = parse(text, file)
    return stage_base(src, global_scope(src, args or {}, platform), platform)


def platform_args(target: Platform, build: Platform | None = None) -> dict[str, str]:
    """The automatic TARGET* and BUILD* args docker defines (oci.platform), BUILD* being this host."""
    return oci_platform.platform_args(target, build=build or _host_platform(), docker=True)


def _host_platform() -> Platform:
    system, machine = host.system().lower() or "linux", host.machine()
    try:
        return Platform.normalize_parts(system, machine)
    except InvalidPlatform:
        return Platform(system, machine.lower())


def parse(text: str, file: str) -> Source:
    import dockerfile

    try:
        commands = dockerfile.parse_string(text)
    except dockerfile.GoParseError as e:
        raise UsageError(f"{file}: {e}") from None
    globals_: list[Any] = []
    stages: list[tuple[Any, list[Any]]] = []
    for cmd in commands:
        name = cmd.cmd.upper()
        if name == "FROM":
            stages.append((cmd, []))
        elif stages:
            stages[-1][1].append(cmd)
        elif name == "ARG":
            globals_.append(cmd)
        else:
            raise UsageError(f"{file}:{cmd.start_line}: {name} before the first FROM (only ARG may come first)")
    if not stages:
        raise UsageError(f"{file}: no FROM: the Dockerfile has no stage to build")
    return Source(file, escape_token(text, file), tuple(globals_), tuple((f, tuple(b)) for f, b in stages))


def escape_token(text: str, file: str) -> str:
    """The escape character the `# escape=` directive sets (parser directives are the first lines)."""
    for line in text.lstrip("\ufeff").splitlines():
        m = _DIRECTIVE.match(line)
        if not m:
            break
        if m.group(1).lower() == "escape":
            if m.group(2) not in ("\\", "`"):
                raise UsageError(f"{file}: invalid escape token {m.group(2)!r}: it must be ` or \\")
            return m.group(2)
    return "\\"


def where_of(src: Source, cmd: Any) -> Where:
    return Where(src.file, cmd.start_line)


def expanded(src: Source, cmd: Any, word: str, env: dict[str, str]) -> str:
    try:
        return expand(word, env, src.escape)
    except UsageError as e:
        raise UsageError(f"{where_of(src, cmd)}: {e}") from None


def global_scope(src: Source, args: Mapping[str, str], target: Platform) -> dict[str, str]:
    """What FROM may use: the automatic platform args, then each global ARG (build arg, else default)."""
    scope = platform_args(target)
    for cmd in src.globals:
        for item in cmd.value:
            key, eq, default = item.partition("=")
            if key in args:
                scope[key] = args[key]
            elif eq:
                scope[key] = expanded(src, cmd, default, scope)
    return scope


def stage_base(src: Source, scope: dict[str, str], target: Platform) -> Base:
    cmd = src.stages[0][0]
    where = where_of(src, cmd)
    if len(src.stages) > 1:
        raise NeedsBuilder(where_of(src, src.stages[1][0]), MULTI_STAGE)
    value = list(cmd.value)
    if len(value) not in (1, 3) or (len(value) == 3 and value[1].upper() != "AS"):
        raise UsageError(f"{where}: FROM takes an image and optionally `AS name`")
    for name, given in flag_values(src, cmd, {"platform"}).items():
        wanted = expanded(src, cmd, given or "", scope)
        try:
            asked = Platform.parse(wanted)
        except InvalidPlatform as e:
            raise UsageError(f"{where}: FROM --{name}={given}: {e}") from None
        if not asked.same_as(target):
            raise UsageError(
                f"{where}: FROM --platform={given} asks for {asked}, but this build is for {target}: "
                "the native builder takes each platform's own base (use --platform=$TARGETPLATFORM)"
            )
    image = expanded(src, cmd, value[0], scope)
    if not image:
        raise UsageError(f"{where}: the base name ({value[0]}) is empty after ARG substitution")
    return Base(None if image == "scratch" else image, where)


def flag_values(src: Source, cmd: Any, allowed: set[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for flag in cmd.flags:
        name, eq, value = flag.removeprefix("--").partition("=")
        if name not in allowed:
            raise UsageError(f"{where_of(src, cmd)}: unknown flag --{name} for {cmd.cmd.upper()}")
        out[name] = value if eq else None
    return out
