"""Image references: `[registry[:port]/]repository[:tag][@digest]`.

Grammar from the distribution reference package (reference.go): the first path component is a
registry when it holds `.` or `:`, is `localhost`, or has uppercase letters; otherwise the
reference is on Docker Hub, where single-component names live under `library/`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

from manifesto.errors import InvalidReference
from manifesto.oci.digest import ALGORITHMS, Digest

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
# Every name Docker Hub answers to, in references and in credential stores alike.
HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"})

_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # fullmatch only: see valid_tag
TAG_SYNTAX = "a tag is 1-128 of A-Z a-z 0-9 _ . - and cannot start with . or -"
_HOSTNAME = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?))*$")
_MAX_NAME = 255


@dataclass(frozen=True)
class Reference:
    """A parsed image reference. `tag` and `digest` are both optional; both may be present."""

    registry: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        """Parse a registry reference (`docker://` in front allowed), raising InvalidReference
        with the exact reason; parse_location() also takes `oci:DIR[:TAG|@DIGEST]`."""
        layout = f"{text}: an OCI layout, where a registry reference is needed"
        try:
            ref = cls._parse(text)
        except InvalidReference as e:
            if text.startswith(LAYOUT_PREFIX):  # `oci:./out:1` would read as a bad registry port
                raise InvalidReference(layout) from e
            raise
        if text.startswith(LAYOUT_PREFIX) and ref.registry == DOCKER_HUB:
            # `oci:out` parses as Docker Hub's `oci` image, tag `out`: a layout was meant, or
            # the ambiguity is the user's to lift
            raise InvalidReference(f"{layout} (docker://{text} names the Docker Hub image)")
        return ref

    @classmethod
    def _parse(cls, text: str) -> Reference:
        if not text or text != text.strip():
            raise InvalidReference(f"invalid reference {text!r}: empty or surrounded by spaces")
        rest, digest = text.removeprefix(DOCKER_PREFIX), None
        if "@" in rest:
            rest, _, dtext = rest.partition("@")
            try:
                digest = Digest.parse(dtext)
            except Exception as e:
                raise InvalidReference(f"invalid reference {text!r}: {e}") from None
        registry, path = _split_registry(rest)
        tag = None
        last_slash = path.rfind("/")
        colon = path.rfind(":")
        if colon > last_slash:
            path, tag = path[:colon], path[colon + 1 :]
            if not valid_tag(tag):
                raise InvalidReference(f"invalid reference {text!r}: bad tag {tag!r}")
        if not path:
            raise InvalidReference(f"invalid reference {text!r}: missing repository name")
        if path.lower() != path:
            raise InvalidReference(f"invalid reference {text!r}: repository name must be lowercase")
        for component in path.split("/"):
            if not _COMPONENT.fullmatch(component):
                raise InvalidReference(f"invalid reference {text!r}: bad repository component {component!r}")
        if registry is None:
            registry = DOCKER_HUB
        else:
            _check_registry(registry, text)
            registry = canonical_registry(registry)
        if registry == DOCKER_HUB and "/" not in path:
            path = f"library/{path}"
        if len(registry) + 1 + len(path) > _MAX_NAME:
            raise InvalidReference(f"invalid reference {text!r}: name longer than {_MAX_NAME} characters")
        return cls(registry, path, tag, digest)

    # ---- views ---------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """`registry/repository`, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def reference(self) -> str:
        """What goes after /manifests/: the digest if there is one, else the tag (latest)."""
        return str(self.digest) if self.digest else (self.tag or "latest")

    @property
    def api_host(self) -> str:
        """The host to talk HTTP to (Docker Hub's API lives on another name)."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def familiar(self) -> str:
        """The short form people type (`golang:alpine` for docker.io/library/golang:alpine)."""
        name = self.name
        if self.registry == DOCKER_HUB:
            # Like docker's FamiliarName: `library/` goes only from a one-component name, and the
            # short form must not read back as another reference (`0.0/x` would name a registry,
            # `oci:1` a layout).
            short = self.repository
            if short.startswith("library/") and short.count("/") == 1:
                short = short.removeprefix("library/")
            if _split_registry(short)[0] is None and not (short + self._suffix()).startswith(LAYOUT_PREFIX):
                name = short
        return name + self._suffix()

    def _suffix(self) -> str:
        return (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def __str__(self) -> str:
        return self.name + self._suffix()

    def with_tag(self, tag: str | None) -> Reference:
        """Same repository, another tag (digest dropped)."""
        return replace(self, tag=check_tag(tag) if tag is not None else None, digest=None)

    def with_digest(self, digest: Digest) -> Reference:
        """Same repository, pinned to a digest (tag dropped)."""
        return replace(self, tag=None, digest=digest)

    def in_repository(self, other: Reference) -> Reference:
        """This reference's tag/digest, but in another repository."""
        return replace(other, tag=self.tag, digest=self.digest)

    @property
    def is_loopback(self) -> bool:
        """True when the registry is on this machine (plain HTTP allowed without --insecure)."""
        return is_loopback_host(self.registry)


def canonical_registry(host: str) -> str:
    """`docker.io` for any name of Docker Hub (HUB_ALIASES, any case), else `host` unchanged.

    References and credential lookups both go through here, so a login filed under one Hub name
    is found for an image named with another.
    """
    return DOCKER_HUB if host.lower() in HUB_ALIASES else host


def is_digest(reference: str) -> bool:
    """Whether a manifest reference (what follows /manifests/) is a digest rather than a tag.

    A registry tag cannot hold ':', but an OCI layout's ref name can (`v1:x` is one), so the
    test is a known digest algorithm before the first ':', not the ':' alone.
    """
    algorithm, sep, _ = reference.partition(":")
    return bool(sep) and algorithm in ALGORITHMS


def valid_tag(tag: str) -> bool:
    """Whether `tag` is a valid tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`, nothing after it.

    The one tag grammar: references, platforms.yaml tags, --tag and `oci:DIR:TAG` all ask here.
    fullmatch, because `$` in match() would accept a trailing newline.
    """
    return _TAG.fullmatch(tag) is not None


# An OCI image layout directory where a reference could be (skopeo's and buildah's transport
# name): `oci:DIR[:TAG]` for copy and FROM, `oci:DIR` for a matrix target.
LAYOUT_PREFIX = "oci:"


# A registry reference may carry skopeo's transport name in front: `docker://REF`.
DOCKER_PREFIX = "docker://"


@dataclass(frozen=True)
class LayoutReference:
    """`oci:DIR[:TAG|@DIGEST]`: an OCI image layout directory and, optionally, one manifest in it."""

    path: str
    tag: str | None = None
    digest: Digest | None = None

    @property
    def reference(self) -> str | None:
        """The manifest to read in the layout: the digest, else the tag; None for "its only tag"."""
        return str(self.digest) if self.digest else self.tag

    @property
    def familiar(self) -> str:
        return str(self)

    def with_digest(self, digest: Digest) -> LayoutReference:
        """The same layout, pinned to a digest (tag dropped)."""
        return replace(self, tag=None, digest=digest)

    def __str__(self) -> str:
        return LAYOUT_PREFIX + self.path + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


def parse_location(text: str) -> Reference | LayoutReference:
    """Any reference a verb takes: `oci:DIR[:TAG|@DIGEST]`, `docker://REF` or a plain REF.

    The one place that tells a layout from a registry reference (skopeo's transport names),
    so every verb reads the same forms the same way.
    """
    if text.startswith(LAYOUT_PREFIX):
        return parse_layout(text)
    return Reference.parse(text)


def parse_layout(text: str) -> LayoutReference:
    """`oci:DIR[:TAG|@DIGEST]`. A ':' followed by no valid tag, or an '@' by no digest, belongs to DIR."""
    rest = text.removeprefix(LAYOUT_PREFIX)
    digest = None
    head, sep, tail = rest.rpartition("@")
    if sep and is_digest(tail):
        try:
            digest = Digest.parse(tail)
        except Exception as e:
            raise InvalidReference(f"invalid reference {text!r}: {e}") from None
        path, tag = head, None
    else:
        path, sep, tag = rest.rpartition(":")
        if not (sep and valid_tag(tag)):
            path, tag = rest, None
    if not path:
        raise InvalidReference(f"{text}: oci: needs a directory, e.g. oci:./out:1.0")
    return LayoutReference(path, tag, digest)


def check_tag(tag: str) -> str:
    """Return `tag` if it is valid, else raise InvalidReference saying what a tag may be."""
    if not valid_tag(tag):
        raise InvalidReference(f"invalid tag {tag!r}: {TAG_SYNTAX}")
    return tag


def _split_registry(text: str) -> tuple[str | None, str]:
    first, sep, rest = text.partition("/")
    if not sep:
        return None, text
    if "." in first or ":" in first or first == "localhost" or first.lower() != first:
        return first, rest
    return None, text


def _check_registry(registry: str, text: str) -> None:
    host, port = split_host_port(registry)
    if port is not None and (not port.isdigit() or not 0 < int(port) < 65536):
        raise InvalidReference(f"invalid reference {text!r}: bad registry port {port!r}")
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise InvalidReference(f"invalid reference {text!r}: bad registry address {host!r}") from None
    elif not _HOSTNAME.fullmatch(host):
        raise InvalidReference(f"invalid reference {text!r}: bad registry host {host!r}")


def split_host_port(registry: str) -> tuple[str, str | None]:
    """Split `host:port`, `[::1]:5000` or `host`."""
    if registry.startswith("["):
        end = registry.find("]")
        if end == -1:
            return registry, None
        host, rest = registry[: end + 1], registry[end + 1 :]
        return host, rest[1:] if rest.startswith(":") else None
    host, sep, port = registry.rpartition(":")
    return (host, port) if sep else (registry, None)


def is_loopback_host(registry: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1, with or without a port."""
    host = split_host_port(registry)[0].strip("[]").lower()
    if host == "localhost":  # other *.localhost names resolve through DNS: not trusted
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
