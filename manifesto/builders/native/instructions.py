"""Read a Dockerfile for one platform: its base, then the steps the native builder carries out.

The native builder writes images without executing anything, so it must record exactly what
docker (buildkit's dockerfile2llb) records for each instruction, and refuse, with the file and
line, whatever needs execution or another builder. The Dockerfile is parsed by the `dockerfile`
package (buildkit's own parser: directives, escapes, continuations, comments, heredocs);
variable expansion is expand.py, following buildkit: ENV, LABEL, ARG defaults, WORKDIR, USER,
EXPOSE, VOLUME, STOPSIGNAL, COPY/ADD (sources, dest, --chown, --chmod) expand; CMD, ENTRYPOINT,
SHELL, HEALTHCHECK, MAINTAINER and ONBUILD do not. FROM sees only the global ARGs (those before
it) and the automatic platform args; a stage sees the base's Env, its own ARGs (a global ARG
must be re-declared to be visible) and its ENVs, the later of an ARG and an ENV of one name
winning (buildkit's rule; buildah lets ENV win always).

Where buildah 1.28 records something else, docker/buildkit is followed: history texts are
buildkit's (`ENV A=b`, `CMD ["x"]`, `COPY a /b # buildkit`; buildah writes `/bin/sh -c #(nop)
...` unexpanded) and ARG has a history entry; an ENTRYPOINT clears the base's CMD but not a CMD
set earlier in the Dockerfile; SHELL applies to shell-form CMD and ENTRYPOINT (buildah ignores
it); an EXPOSE range gives one port each (buildah keeps `90-91/tcp`); a scratch base gets
WorkingDir "/" and every base lacking PATH gets docker's default PATH; CMD sets ArgsEscaped;
Healthcheck, Shell and OnBuild are kept in the config (buildah's OCI config drops them). WORKDIR
creates its directory in a layer, as both buildkit and buildah do.
"""

from __future__ import annotations

import copy
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from manifesto.builders.native.expand import expand, words
from manifesto.builders.native.history import format_duration, parse_duration, plain_list, quoted_list
from manifesto.builders.native.source import (
    MULTI_STAGE,
    NeedsBuilder,
    Source,
    flag_values,
    global_scope,
    parse,
    platform_args,
    read_base,
    stage_base,
    where_of,
)
from manifesto.builders.native.steps import ConfigStep, CopyStep, Recipe, Where
from manifesto.errors import UsageError
from manifesto.oci.platform import Platform

__all__ = ["NeedsBuilder", "Unsupported", "interpret", "needs_execution", "platform_args", "read_base"]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SHELL = ("/bin/sh", "-c")
_REMOTE = re.compile(r"^(https?|git|ssh)://|^git@")
_SIGNALS = set(
    "ABRT ALRM BUS CHLD CLD CONT FPE HUP ILL INT IO IOT KILL PIPE POLL PROF PWR QUIT SEGV STKFLT "
    "STOP SYS TERM TRAP TSTP TTIN TTOU URG USR1 USR2 VTALRM WINCH XCPU XFSZ".split()
)
_COPY_FLAGS = {"from", "chown", "chmod", "link", "parents", "exclude"}
_ADD_FLAGS = {"chown", "chmod", "link", "keep-git-dir", "checksum", "unpack", "exclude"}
_HEALTH_FLAGS = {"interval", "timeout", "start-period", "start-interval", "retries"}


@dataclass(frozen=True)
class Unsupported:
    """Why `builder: auto` cannot build a Dockerfile natively: the first instruction in the way."""

    where: Where
    reason: str
    builder: str | None = "buildah"

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


def interpret(
    text: str,
    file: str,
    args: Mapping[str, str] | None,
    platform: Platform,
    base_config: Mapping[str, Any] | None,
) -> Recipe:
    """Every instruction after FROM for `platform`, given the base image's `config` object."""
    src = parse(text, file)
    scope = global_scope(src, args or {}, platform)
    base = stage_base(src, scope, platform)
    config = copy.deepcopy(dict(base_config or {}))
    if config.get("OnBuild"):
        triggers = "; ".join(config["OnBuild"])
        raise NeedsBuilder(base.where, f"the base image has ONBUILD triggers to run ({triggers})")
    if base.image is None:
        config.setdefault("WorkingDir", "/")
    env = list(config.get("Env") or [])
    if platform.os != "windows" and not any(e.partition("=")[0] == "PATH" for e in env):
        env.append("PATH=" + DEFAULT_PATH)
    config["Env"] = env
    stage = _Stage(src, dict(args or {}), scope, config)
    for cmd in src.stages[0][1]:
        stage.dispatch(cmd)
    return Recipe(base, tuple(stage.steps), config=copy.deepcopy(stage.config), author=stage.author)


def needs_execution(text: str, file: str) -> Unsupported | None:
    """The first instruction the native builder refuses whatever the base and args, or None.

    A cheap static check for `builder: auto`: RUN, a second FROM, COPY --from, ADD of a URL,
    --chown by name, a WORKDIR after a USER name, and what the native builder does not
    implement. Refusals that depend on the base or the context (ONBUILD triggers, a USER name
    the base sets, ...) are found by interpret() and the builder: jobs.builds then falls back.
    """
    src = parse(text, file)
    user = ""  # the last literal USER (one with a variable is left to interpret())
    for cmd in src.stages[0][1]:
        refusal = _refusal(cmd)
        if refusal:
            return Unsupported(where_of(src, cmd), *refusal)
        name = cmd.cmd.upper()
        if name == "USER" and cmd.value:
            user = "" if "$" in cmd.value[0] else cmd.value[0]
        elif name == "WORKDIR" and user and _numeric_owner(user) is None and cmd.value and cmd.value[0] != "/":
            reason = f"WORKDIR creates {cmd.value[0]} owned by USER {user}: only the image's /etc/passwd resolves that name"
            return Unsupported(where_of(src, cmd), reason)
    if len(src.stages) > 1:
        return Unsupported(where_of(src, src.stages[1][0]), MULTI_STAGE)
    return None


def _refusal(cmd: Any) -> tuple[str, str | None] | None:
    """Why the native builder refuses `cmd` whatever the scope: (reason, builder that can), or None."""
    name = cmd.cmd.upper()
    if name == "RUN":
        return "RUN needs a builder that executes commands", "buildah"
    if name not in ("COPY", "ADD"):
        return None
    flags = {f.removeprefix("--").partition("=")[0]: f.partition("=")[2] for f in cmd.flags}
    if "from" in flags:
        return f"COPY --from={flags['from']} needs a builder that builds stages or pulls images", "buildah"
    for unsupported in ("parents", "exclude"):
        if unsupported in flags:
            return f"{name} --{unsupported} is not supported by the native builder", None
    if cmd.heredocs:
        return f"{name} from a here-document is not supported by the native builder", None
    if name == "ADD" and ({"keep-git-dir", "checksum"} & flags.keys() or any(_REMOTE.match(s) for s in cmd.value[:-1])):
        return "ADD of a URL or a git repository needs a builder that fetches it", "buildah"
    chown = flags.get("chown", "")
    if chown and "$" not in chown and _numeric_owner(chown) is None:
        return f"{name} --chown={chown} names a user or group: only the image's /etc/passwd resolves it", "buildah"
    return None


def _numeric_owner(text: str) -> tuple[int, int] | None:
    """`uid[:gid]` as numbers (a lone uid is also the gid, as docker does), or None for names."""
    user, colon, group = text.partition(":")
    if not user.isdigit() or (colon and not group.isdigit()):
        return None
    return int(user), int(group) if colon else int(user)


def _clean(path: str) -> str:
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/")


def _ports(spec: str) -> list[str]:
    """`[ip:][host:]port[-port][/proto]` as docker's `port/proto` keys, one per port of a range."""
    container = spec.split(":")[-1]
    port, _, proto = container.partition("/")
    if not port:
        raise UsageError(f"no port specified: {spec}<empty>")
    proto = proto.lower() or "tcp"
    if proto not in ("tcp", "udp", "sctp"):
        raise UsageError(f"invalid proto: {proto}")
    start, dash, end = port.partition("-")
    if not start.isdigit() or (dash and not end.isdigit()):
        raise UsageError(f"invalid containerPort: {port}")
    first, last = int(start), int(end) if dash else int(start)
    if last > 65535 or last < first:
        raise UsageError(f"invalid containerPort: {port}")
    return [f"{p}/{proto}" for p in range(first, last + 1)]


def _valid_signal(text: str) -> bool:
    if re.fullmatch(r"[+-]?[0-9]+", text):
        return int(text) != 0
    name = text.upper().removeprefix("SIG")
    return name in _SIGNALS or re.fullmatch(r"RTMIN(\+[0-9]+)?|RTMAX(-[0-9]+)?", name) is not None


class _Stage:
    """The build stage being interpreted: its config, variable scope and steps so far."""

    def __init__(self, src: Source, args: dict[str, str], globals_: dict[str, str], config: dict[str, Any]):
        self.src, self.args, self.globals, self.config = src, args, globals_, config
        self.scope = dict(e.partition("=")[::2] for e in config["Env"])
        self.steps: list[CopyStep | ConfigStep] = []
        self.author: str | None = None
        self.cmd_set = False

    def dispatch(self, cmd: Any) -> None:
        name = cmd.cmd.upper()
        where = where_of(self.src, cmd)
        refusal = _refusal(cmd)
        if refusal:
            raise NeedsBuilder(where, *refusal)
        handler = getattr(self, "do_" + name.lower(), None)
        if handler is None:
            raise UsageError(f"{where}: unknown instruction: {name}")
        try:
            handler(cmd, where)
        except NeedsBuilder:
            raise
        except UsageError as e:
            raise UsageError(f"{where}: {name}: {e}") from None

    # ---- helpers ----------------------------------------------------------------------------

    def x(self, word: str) -> str:
        return expand(word, self.scope, self.src.escape)

    def commit(self, where: Where, text: str, **layer: Any) -> None:
        self.steps.append(ConfigStep(copy.deepcopy(self.config), text, where, **layer))

    def merge(self, key: str, items: dict[str, Any]) -> None:
        """Add to a map-valued config key; keys sorted as Go writes maps."""
        merged = dict(self.config.get(key) or {})
        merged.update(items)
        self.config[key] = dict(sorted(merged.items()))

    def pairs(self, cmd: Any) -> list[tuple[str, str]]:
        value = list(cmd.value)
        if not value or len(value) % 2:
            raise UsageError("needs name=value pairs")
        expanded = [self.x(v) for v in value]  # all before any applies, as buildkit does
        return list(zip(expanded[::2], expanded[1::2]))

    def one(self, cmd: Any) -> str:
        if len(cmd.value) != 1:
            raise UsageError("takes exactly one argument")
        return cmd.value[0]

    def command_line(self, cmd: Any) -> list[str]:
        if cmd.json:
            return list(cmd.value)
        shell = list(self.config.get("Shell") or DEFAULT_SHELL)
        return shell + [" ".join(cmd.value)]

    # ---- instructions -----------------------------------------------------------------------

    def do_env(self, cmd: Any, where: Where) -> None:
        pairs = self.pairs(cmd)
        env = list(self.config.get("Env") or [])
        for key, value in pairs:
            entry = f"{key}={value}"
            index = next((i for i, e in enumerate(env) if e.partition("=")[0] == key), None)
            if index is None:
                env.append(entry)
            else:
                env[index] = entry
            self.scope[key] = value
        self.config["Env"] = env
        self.commit(where, "ENV " + " ".join(f"{k}={v}" for k, v in pairs))

    def do_label(self, cmd: Any, where: Where) -> None:
        pairs = self.pairs(cmd)
        self.merge("Labels", dict(pairs))
        self.commit(where, "LABEL " + " ".join(f"{k}={v}" for k, v in pairs))

    def do_arg(self, cmd: Any, where: Where) -> None:
        if not cmd.value:
            raise UsageError("needs at least one name")
        texts = []
        for item in cmd.value:
            key, eq, default = item.partition("=")
            value: str | None = None
            if key in self.args:
                value = self.args[key]
            elif eq:
                value = self.x(default)
            elif key in self.globals:
                value = self.globals[key]
            if value is not None:
                self.scope[key] = value
            texts.append(key if value is None else f"{key}={value}")
        self.commit(where, "ARG " + " ".join(texts))

    def do_workdir(self, cmd: Any, where: Where) -> None:
        path = self.x(self.one(cmd))
        if not path:
            raise UsageError("the path is empty")
        current = self.config.get("WorkingDir") or "/"
        workdir = _clean(path if path.startswith("/") else f"{current}/{path}")
        self.config["WorkingDir"] = workdir
        if workdir == "/":
            self.commit(where, "WORKDIR /")
            return
        user = self.config.get("User") or ""
        owner = _numeric_owner(user) if user else None
        if user and owner is None:
            reason = f"WORKDIR creates {workdir} owned by USER {user}: only the image's /etc/passwd resolves that name"
            raise NeedsBuilder(where, reason)
        self.commit(where, "WORKDIR " + workdir, mkdir=workdir, owner=owner)

    def do_user(self, cmd: Any, where: Where) -> None:
        user = self.x(self.one(cmd))
        self.config["User"] = user
        self.commit(where, "USER " + user)

    def do_expose(self, cmd: Any, where: Where) -> None:
        specs = [w for v in cmd.value for w in words(v, self.scope, self.src.escape)]
        if not specs:
            raise UsageError("needs at least one port")
        ports = [p for spec in specs for p in _ports(spec)]
        self.merge("ExposedPorts", {p: {} for p in ports})
        self.commit(where, "EXPOSE " + plain_list(ports))

    def do_volume(self, cmd: Any, where: Where) -> None:
        volumes = [self.x(v).strip() for v in cmd.value]
        if not volumes or "" in volumes:
            raise UsageError("a volume cannot be an empty string")
        self.merge("Volumes", {v: {} for v in volumes})
        self.commit(where, "VOLUME " + plain_list(volumes))

    def do_stopsignal(self, cmd: Any, where: Where) -> None:
        signal = self.x(self.one(cmd))
        if not _valid_signal(signal):
            raise UsageError(f"invalid signal: {signal}")
        self.config["StopSignal"] = signal
        self.commit(where, "STOPSIGNAL " + signal)

    def do_shell(self, cmd: Any, where: Where) -> None:
        if not cmd.json:
            raise UsageError('needs the JSON form, e.g. SHELL ["/bin/bash", "-c"]')
        if not cmd.value:
            raise UsageError("needs at least one argument")
        self.config["Shell"] = list(cmd.value)
        self.commit(where, "SHELL " + plain_list(list(cmd.value)))

    def do_cmd(self, cmd: Any, where: Where) -> None:
        args = self.command_line(cmd)
        self._set_command("Cmd", args)
        self.config["ArgsEscaped"] = True
        self.cmd_set = True
        self.commit(where, "CMD " + quoted_list(args))

    def do_entrypoint(self, cmd: Any, where: Where) -> None:
        args = self.command_line(cmd)
        self._set_command("Entrypoint", args)
        if not self.cmd_set:
            self.config.pop("Cmd", None)
        self.commit(where, "ENTRYPOINT " + quoted_list(args))

    def _set_command(self, key: str, args: list[str]) -> None:
        if args:
            self.config[key] = args
        else:  # `CMD []`: an empty list, which the image config omits
            self.config.pop(key, None)

    def do_healthcheck(self, cmd: Any, where: Where) -> None:
        if not cmd.value:
            raise UsageError("needs NONE or CMD")
        kind, rest = cmd.value[0].upper(), list(cmd.value[1:])
        times = {"Interval": 0, "Timeout": 0, "StartPeriod": 0, "StartInterval": 0}
        retries = 0
        if kind == "NONE":
            if rest:
                raise UsageError("NONE takes no arguments")
            test = ["NONE"]
        elif kind == "CMD":
            if not rest:
                raise UsageError("missing command after CMD")
            test = ["CMD", *rest] if cmd.json else ["CMD-SHELL", " ".join(rest)]
            flags = flag_values(self.src, cmd, _HEALTH_FLAGS)
            for key, flag in zip(times, ("interval", "timeout", "start-period", "start-interval")):
                ns = parse_duration(flags[flag] or "") if flags.get(flag) else 0
                if ns and ns < 1_000_000:
                    raise UsageError(f"--{flag} cannot be less than 1ms")
                times[key] = ns
            if flags.get("retries"):
                if not re.fullmatch(r"[+-]?[0-9]+", flags["retries"] or ""):
                    raise UsageError(f"--retries is not a number: {flags['retries']}")
                retries = int(flags["retries"] or 0)
                if retries < 0:
                    raise UsageError(f"--retries cannot be negative ({retries})")
        else:
            raise UsageError(f"unknown type {kind!r} (try CMD)")
        health: dict[str, Any] = {"Test": test, **{k: v for k, v in times.items() if v}}
        if retries:
            health["Retries"] = retries
        self.config["Healthcheck"] = health
        shown = " ".join(f"{k}:{format_duration(v)}" for k, v in times.items())
        self.commit(where, f"HEALTHCHECK {{Test:{plain_list(test)} {shown} Retries:{retries}}}")

    def do_onbuild(self, cmd: Any, where: Where) -> None:
        trigger = (cmd.sub_cmd or "").upper()
        if trigger == "ONBUILD":
            raise UsageError("chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
        if trigger in ("FROM", "MAINTAINER"):
            raise UsageError(f"{trigger} isn't allowed as an ONBUILD trigger")
        expression = re.sub(r"(?i)^\s*ONBUILD\s*", "", cmd.original)
        self.config["OnBuild"] = [*(self.config.get("OnBuild") or []), expression]

    def do_maintainer(self, cmd: Any, where: Where) -> None:
        self.author = self.one(cmd)
        self.commit(where, "MAINTAINER " + self.author)

    def do_copy(self, cmd: Any, where: Where) -> None:
        self._copy(cmd, where, add=False)

    def do_add(self, cmd: Any, where: Where) -> None:
        self._copy(cmd, where, add=True)

    def _copy(self, cmd: Any, where: Where, *, add: bool) -> None:
        name = "ADD" if add else "COPY"
        flags = flag_values(self.src, cmd, _ADD_FLAGS if add else _COPY_FLAGS)
        if len(cmd.value) < 2:
            raise UsageError("needs at least one source and a destination")
        parts = [self.x(v) for v in cmd.value]
        sources, dest = parts[:-1], parts[-1]
        if not add and any(_REMOTE.match(s) for s in sources):
            raise UsageError("a source cannot be a URL (ADD fetches URLs)")
        if add and any(_REMOTE.match(s) for s in sources):
            raise NeedsBuilder(where, "ADD of a URL or a git repository needs a builder that fetches it")
        target = self._destination(dest)
        if len(sources) > 1 and not target.endswith("/"):
            raise UsageError("with more than one source the destination must be a directory and end with /")
        chown_text = self.x(flags.get("chown") or "")
        chown = _numeric_owner(chown_text) if chown_text else None
        if chown_text and chown is None:
            reason = f"{name} --chown={chown_text} names a user or group: only the image's /etc/passwd resolves it"
            raise NeedsBuilder(where, reason)
        chmod_text = self.x(flags.get("chmod") or "")
        chmod = None
        if chmod_text:
            if not re.fullmatch(r"[0-7]+", chmod_text) or int(chmod_text, 8) > 0o7777:
                raise UsageError(f"invalid --chmod={chmod_text}: it must be octal, 0 to 7777")
            chmod = int(chmod_text, 8)
        unpack = add
        if "unpack" in flags:
            unpack = (flags["unpack"] or "true").lower() in ("1", "t", "true")
        shown = [name]
        shown += [f"--chown={chown_text}"] if chown_text else []
        shown += [f"--chmod={chmod_text}"] if chmod_text else []
        created_by = " ".join([*shown, *sources, dest]) + " # buildkit"
        step = CopyStep(tuple(sources), target, where, unpack, chmod, chown, created_by)
        self.steps.append(step)

    def _destination(self, dest: str) -> str:
        """`dest` made absolute against WORKDIR; a trailing "/" (or "/.", or ".") kept as "/"."""
        if dest in ("", "."):
            dest = "./"
        into = dest.endswith("/") or dest.endswith("/.")
        workdir = self.config.get("WorkingDir") or "/"
        full = _clean(dest if dest.startswith("/") else f"{workdir}/{dest}")
        return full + "/" if into and not full.endswith("/") else full
