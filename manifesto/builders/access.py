"""Registry settings for buildah and podman: the registries and credentials manifesto itself uses.

buildah and podman read their own settings (registries.conf, auth.json), not manifesto's: without
this a base image on a loopback registry fails with "server gave HTTP response to HTTPS client",
and a `manifesto login` never reaches the builder. For each build, the registries the Dockerfile
pulls from are named (FROM, COPY --from, RUN --mount from=, after global ARG substitution as
BuildKit does it) and two files are written into a private 0700 directory that is removed when
the build ends, however it ends:

- auth.json (containers-auth.json(5), mode 0600), passed with --authfile: the credential
  manifesto resolves for each of those registries (manifesto login, then docker's config and
  helpers), over the auth file the tool would otherwise read first (REGISTRY_AUTH_FILE, else
  `$XDG_RUNTIME_DIR/containers/auth.json`), so `buildah login` entries for other registries keep
  working. Always passed: an existing --authfile also keeps a DOCKER_CONFIG without config.json
  from failing every pull ("checking authfile"). The secret is only ever in that file: never in
  argv, the environment or a log line.
- registries.conf (containers-registries.conf(5)), only when a base is on a loopback registry
  (`is_loopback_host`, the rule manifesto's client follows) or the run is --insecure: the
  registries.conf the tool would read, with just those registries marked `insecure = true`,
  passed with CONTAINERS_REGISTRIES_CONF (buildah 1.28 and podman 4.3 both honour it). Every
  other registry keeps TLS verification, and drop-in files (registries.conf.d, short-name
  aliases) still apply. This is narrower than `--tls-verify=false`, which covers every registry.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import tempfile
import tomllib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from manifesto.builders.base import BuildRequest
from manifesto.errors import BuildError, InvalidReference, UsageError
from manifesto.oci.reference import Reference, is_loopback_host
from manifesto.store.registry.credential import Credential, normalize_host
from manifesto.store.registry.dockerconfig import TOKEN_USERNAME

Resolve = Callable[[str], Credential | None]

SYSTEM_REGISTRIES_CONF = Path("/etc/containers/registries.conf")


def default_resolve(host: str) -> Credential | None:
    """manifesto's own credential lookup (imported late: it may load the keyring)."""
    from manifesto.store.registry.lookup import resolve

    return resolve(host)


@dataclass(frozen=True)
class Access:
    """What one build is given: the file for `--authfile`, and `env` for its environment."""

    authfile: Path
    registries_conf: Path | None
    hosts: tuple[str, ...]
    insecure_hosts: tuple[str, ...]

    @property
    def env(self) -> dict[str, str]:
        return {"CONTAINERS_REGISTRIES_CONF": str(self.registries_conf)} if self.registries_conf else {}


@contextmanager
def registry_access(
    request: BuildRequest,
    builtins: Mapping[str, str],
    resolve: Resolve | None = None,
    environ: Mapping[str, str] | None = None,
) -> Iterator[Access]:
    """The private auth file (and registries.conf) for building `request`; removed on exit.

    `builtins` are the ARGs the tool defines itself (TARGETPLATFORM...), usable in FROM.
    """
    environ = os.environ if environ is None else environ
    resolve = resolve or default_resolve
    hosts = pulled_registries(request, builtins, short_names(environ))
    insecure = plain_http_hosts(request, hosts)
    credentials = {h: c for h in hosts if (c := resolve(h)) is not None}
    directory = Path(tempfile.mkdtemp(prefix="manifesto-build-", dir=_private_parent(environ)))
    try:
        authfile = directory / "auth.json"
        doc = auth_document(_json_object(_seed_authfile(environ)), credentials)
        _write_private(authfile, json.dumps(doc, indent=1).encode())
        conf = None
        if insecure:
            conf = directory / "registries.conf"
            base = _base_registries_conf(environ)
            _write_private(conf, registries_conf(_toml(base), insecure).encode())
        yield Access(authfile, conf, hosts, insecure)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def pulled_registries(
    request: BuildRequest, builtins: Mapping[str, str], names: ShortNames | None = None
) -> tuple[str, ...]:
    """The registries `request` talks to: those its Dockerfile pulls images from (see
    base_registries; a short name's docker.io and, with `names`, its alias) and those of its
    registry cache (`cache_from`, `cache_to`)."""
    try:
        text = request.dockerfile.read_text(errors="replace")
    except OSError:
        text = None  # the build itself reports a missing Dockerfile
    hosts: set[str] = set()
    for resolver in (None, names) if names is not None else (None,):
        if text is not None:
            hosts.update(base_registries(text, request.args, builtins, str(request.dockerfile), resolver))
    for repo in (request.cache_from, request.cache_to):
        if repo:
            try:
                hosts.add(Reference.parse(repo).registry)
            except InvalidReference:
                continue  # the build itself reports it
    return tuple(sorted(hosts))


def plain_http_hosts(request: BuildRequest, hosts: tuple[str, ...]) -> tuple[str, ...]:
    """Those of `hosts` reached without TLS verification: loopback ones, or all with --insecure."""
    return tuple(h for h in hosts if request.insecure or is_loopback_host(h))


# ---- which registries a Dockerfile pulls from ------------------------------------------------

_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")
_MOUNT_FROM = re.compile(r"(?:^|,)from=([^,\s]+)")


def base_registries(
    text: str,
    args: Mapping[str, str],
    builtins: Mapping[str, str],
    name: str = "Dockerfile",
    short_names: ShortNames | None = None,
) -> tuple[str, ...]:
    """The registries (sorted, distinct) of the images a Dockerfile pulls (pulled_images)."""
    return tuple(sorted({ref.registry for ref in pulled_images(text, args, builtins, name, short_names)}))


def pulled_images(
    text: str,
    args: Mapping[str, str],
    builtins: Mapping[str, str],
    name: str = "Dockerfile",
    short_names: ShortNames | None = None,
    unresolved: list[str] | None = None,
) -> tuple[Reference, ...]:
    """The references (distinct, in order) of the images a Dockerfile pulls.

    BuildKit's own parser (package `dockerfile`) reads it. Global ARGs (before the first FROM)
    take the build arg, else their default, as BuildKit expands FROM. Stage names and numbers and
    `scratch` name no image; a name invalid after expansion (an ARG left unset) is skipped for the
    build to report. A Dockerfile the parser rejects (no instructions, an unterminated heredoc) is
    a BuildError naming `name` before anything runs: buildah fails only at that step, unclearly.

    With `short_names`, a name without a registry (`centos:7`) is the image buildah pulls for it
    (its alias, or docker.io when that is the only search registry); one that may be pulled from
    elsewhere is skipped. Each name skipped (invalid, or a short name of no one place) is added
    to `unresolved`: the build key cannot say what such an image is.
    """
    import dockerfile  # loaded only when building: it starts a Go runtime

    try:
        commands = dockerfile.parse_string(text)
    except dockerfile.GoParseError as e:
        raise BuildError(f"{name}: {e}") from None
    meta = global_args(commands, args, builtins)
    scope = {**builtins, **meta}
    stages: set[str] = set()
    images: list[str] = []
    for command in commands:
        keyword = command.cmd.upper()
        if keyword == "FROM":
            words = command.value
            if words:
                images.append(expand(words[0], scope))
                if words[0].lower() in stages or images[-1].lower() in stages:
                    images.pop()
                if len(words) >= 3 and words[1].lower() == "as":
                    stages.add(words[2].lower())
        elif keyword == "COPY":
            images += [f[len("--from=") :] for f in command.flags if f.lower().startswith("--from=")]
        elif keyword == "RUN":
            for flag in command.flags:
                if flag.lower().startswith("--mount="):
                    images += _MOUNT_FROM.findall(flag[len("--mount=") :])
    refs: dict[str, Reference] = {}
    for image in images:
        word = expand(image, scope)
        if any(w.lower() in stages or w.isdigit() or w.lower() == "scratch" for w in (image, word)):
            continue
        ref = image_reference(word, short_names)
        if ref is None:
            if unresolved is not None:
                unresolved.append(image)
            continue
        refs.setdefault(str(ref), ref)
    return tuple(refs.values())


def global_args(commands: Any, args: Mapping[str, str], builtins: Mapping[str, str]) -> dict[str, str]:
    """The global ARGs (those before the first FROM) of parsed Dockerfile `commands`: the build
    arg, else the default expanded, as BuildKit expands FROM with them."""
    meta: dict[str, str] = {}
    for command in commands:
        keyword = command.cmd.upper()
        if keyword == "FROM":
            break
        if keyword == "ARG":
            for token in command.value:
                var, eq, default = token.partition("=")
                if var in args:
                    meta[var] = args[var]
                elif eq:
                    meta[var] = expand(_unquote(default), {**builtins, **meta})
    return meta


def image_reference(word: str, short_names: ShortNames | None = None) -> Reference | None:
    """The image an expanded FROM word names (a short name through `short_names`, when given);
    None when it names no one image."""
    if short_names is not None and is_short_name(word):
        word = short_names.resolve(word) or ""
    try:
        return Reference.parse(word)
    except InvalidReference:
        return None


def is_short_name(name: str) -> bool:
    """Whether an image name has no registry part (`busybox`, `library/busybox:1`)."""
    first, slash, _ = name.partition("/")
    return not slash or not ("." in first or ":" in first or first == "localhost")


@dataclass(frozen=True)
class ShortNames:
    """How buildah turns a short name into an image, as far as it is certain.

    containers-registries.conf(5): an alias (registries.conf, its drop-in directories, the
    short-name alias cache) names the image; otherwise each unqualified-search registry is tried
    in turn. Only an alias that every file agrees on, or docker.io as the one search registry
    every file names, is certain; the precedence between files is left alone.
    """

    aliases: Mapping[str, frozenset[str]]
    search: frozenset[tuple[str, ...]]

    def resolve(self, name: str) -> str | None:
        """The full name buildah pulls for the short `name`; None when that is not certain."""
        repo, at, digest = name.partition("@")
        path, colon, tag = repo.rpartition(":") if ":" in repo else (repo, "", "")
        suffix = (colon + tag) + (at + digest)
        targets = self.aliases.get(path, frozenset())
        if len(targets) == 1:
            return next(iter(targets)) + suffix
        if targets or self.search != {("docker.io",)}:
            return None
        return "docker.io/" + name


def short_names(environ: Mapping[str, str] | None = None) -> ShortNames:
    """What the registries.conf files buildah reads say about short names (ShortNames)."""
    environ = os.environ if environ is None else environ
    home = environ.get("HOME")
    files = [_base_registries_conf(environ)]
    dirs = [SYSTEM_REGISTRIES_CONF.parent / "registries.conf.d"]
    if home:
        dirs.append(Path(home) / ".config" / "containers" / "registries.conf.d")
        files.append(Path(home) / ".cache" / "containers" / "short-name-aliases.conf")
    files.append(Path("/var/cache/containers/short-name-aliases.conf"))
    for directory in dirs:
        files += sorted(directory.glob("*.conf")) if directory.is_dir() else []
    aliases: dict[str, set[str]] = {}
    search: set[tuple[str, ...]] = set()
    for path in files:
        doc = _toml(path)
        for short, target in _dict(doc.get("aliases")).items():
            aliases.setdefault(str(short), set()).add(str(target))
        found = doc.get("unqualified-search-registries")
        if found is None:
            found = _dict(_dict(doc.get("registries")).get("search")).get("registries")  # v1
        if isinstance(found, list):
            search.add(tuple(str(r) for r in found))
    return ShortNames({k: frozenset(v) for k, v in aliases.items()}, frozenset(search))


def expand(word: str, scope: Mapping[str, str]) -> str:
    """`$V`, `${V}`, `${V:-x}`, `${V-x}`, `${V:+x}`, `${V+x}` from scope; unset is empty."""

    def one(m: re.Match[str]) -> str:
        name = m[1] or m[4]
        value = scope.get(name)
        op, word = m[2], m[3] or ""
        if op == ":-":
            return value if value else word
        if op == "-":
            return value if value is not None else word
        if op == ":+":
            return word if value else ""
        if op == "+":
            return word if value is not None else ""
        return value or ""

    return _VARIABLE.sub(one, word)


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


# ---- auth.json ----------------------------------------------------------------------------------


def auth_document(seed: dict[str, Any], credentials: Mapping[str, Credential]) -> dict[str, Any]:
    """`seed` (an auth.json document) with an `auths` entry for each credential.

    Any entry or credential helper the seed has for the same registry (under any spelling,
    repository-scoped keys too) is dropped, as it would win over ours. An identity token is
    written as docker writes it, `identitytoken` beside `auth` = base64("user:").
    """
    doc = dict(seed)
    auths = {k: v for k, v in _dict(doc.get("auths")).items() if _host_of(k) not in credentials}
    helpers = {k: v for k, v in _dict(doc.get("credHelpers")).items() if _host_of(k) not in credentials}
    for host, cred in sorted(credentials.items()):
        if cred.kind == "identity_token":
            user = "" if cred.username == TOKEN_USERNAME else cred.username
            auths[host] = {"auth": _b64(f"{user}:"), "identitytoken": cred.secret}
        else:
            auths[host] = {"auth": _b64(f"{cred.username}:{cred.secret}")}
    doc["auths"] = auths
    if helpers or "credHelpers" in doc:
        doc["credHelpers"] = helpers
    return doc


def _seed_authfile(environ: Mapping[str, str]) -> Path:
    """The auth file buildah/podman read first when given no --authfile."""
    if environ.get("REGISTRY_AUTH_FILE"):
        return Path(environ["REGISTRY_AUTH_FILE"])
    runtime = environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "containers" / "auth.json"
    return Path(f"/run/containers/{os.getuid()}/auth.json")


def _json_object(path: Path) -> dict[str, Any]:
    """A JSON object from `path`; anything else (missing, unreadable, not an object) is {}."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _host_of(key: object) -> str | None:
    if not isinstance(key, str):
        return None
    try:
        return normalize_host(key)
    except UsageError:
        return None


def _dict(value: object) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# ---- registries.conf ----------------------------------------------------------------------------


def registries_conf(base: dict[str, Any], insecure: tuple[str, ...]) -> str:
    """`base` (a parsed registries.conf) with each of `insecure` allowed plain HTTP.

    A v2 file (`[[registry]]`) gets the flag on the entry whose prefix (or location) is the
    host, or a new `location = host` entry; a v1 file (`[registries.insecure]`) gets the host
    added to its list, since containers/image refuses a file that mixes the two.
    """
    doc = json.loads(json.dumps(base, default=str))  # a deep copy; datetimes (never used) as text
    if isinstance(doc.get("registries"), dict):  # v1
        table = doc["registries"].setdefault("insecure", {})
        listed = table.setdefault("registries", [])
        listed += [h for h in insecure if h not in listed]
        return toml_text(doc)
    entries = doc.get("registry")
    entries = entries if isinstance(entries, list) else []
    for host in insecure:
        same = [e for e in entries if isinstance(e, dict) and (e.get("prefix") or e.get("location")) == host]
        for entry in same:
            entry["insecure"] = True
        if not same:
            entries.append({"location": host, "insecure": True})
    doc["registry"] = entries
    return toml_text(doc)


def _base_registries_conf(environ: Mapping[str, str]) -> Path:
    """The registries.conf containers/image reads (a per-user file replaces the system one)."""
    if environ.get("CONTAINERS_REGISTRIES_CONF"):
        return Path(environ["CONTAINERS_REGISTRIES_CONF"])
    home = environ.get("HOME")
    user = Path(home) / ".config" / "containers" / "registries.conf" if home else None
    return user if user is not None and user.is_file() else SYSTEM_REGISTRIES_CONF


def _toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise BuildError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise BuildError(f"{path} is not valid TOML ({e}); buildah and podman cannot use it either") from None


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def toml_text(doc: Mapping[str, Any], path: tuple[str, ...] = ()) -> str:
    """A TOML document for the JSON-like `doc`: tables and arrays of tables as headers."""
    plain, tables, arrays = [], [], []
    for key, value in doc.items():
        if isinstance(value, dict):
            tables.append((key, value))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            arrays.append((key, value))
        else:
            plain.append(f"{_key(key)} = {_value(value)}")
    out = "\n".join(plain) + ("\n" if plain else "")
    for key, value in tables:
        name = ".".join(_key(k) for k in (*path, key))
        out += f"\n[{name}]\n" + toml_text(value, (*path, key))
    for key, items in arrays:
        name = ".".join(_key(k) for k in (*path, key))
        for item in items:
            out += f"\n[[{name}]]\n" + toml_text(item, (*path, key))
    return out


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _string(key)


def _string(text: str) -> str:
    # JSON string escapes are TOML basic-string escapes; DEL must be escaped in TOML too.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    return _string(str(value))


# ---- files ----------------------------------------------------------------------------------------


def _private_parent(environ: Mapping[str, str]) -> str | None:
    """$XDG_RUNTIME_DIR (per-user, memory-backed) when usable, else the temp dir."""
    runtime = environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime) and os.access(runtime, os.W_OK | os.X_OK):
        return runtime
    return None


def _write_private(path: Path, data: bytes) -> None:
    """Create `path` with mode 0600 from the start (never world-readable, not even briefly)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
