"""Platforms: parse, normalize and compare `os/arch[/variant]` like containerd does.

Normalization follows containerd's platforms package (x86_64→amd64, aarch64→arm64, armhf→arm/v7,
armel→arm/v6, bare arm→arm/v7), with one deliberate difference taken from docker-library: an
explicit `arm64/v8` keeps its `v8` (it is arm64's default variant, so comparisons treat
`arm64` and `arm64/v8` as the same platform). User input is validated strictly; platforms read
from fetched documents are taken as they are (attestations say unknown/unknown).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

from manifesto.errors import InvalidPlatform

_ARCH_ALIASES: dict[str, tuple[str, str | None]] = {
    "x86_64": ("amd64", None),
    "x86-64": ("amd64", None),
    "amd64": ("amd64", None),
    "aarch64": ("arm64", None),
    "arm64": ("arm64", None),
    "arm64v8": ("arm64", "v8"),
    "arm": ("arm", None),  # bare `arm` (also as a one-word alias) is arm/v7, below
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v6"),
    "armv7": ("arm", "v7"),
    "armv7l": ("arm", "v7"),
    "armv8l": ("arm", "v8"),  # `uname -m` of a 32-bit process on a 64-bit ARM CPU (linux32)
    "armv6": ("arm", "v6"),
    "armv6l": ("arm", "v6"),
    "armv5": ("arm", "v5"),
    "arm32v7": ("arm", "v7"),
    "arm32v6": ("arm", "v6"),
    "arm32v5": ("arm", "v5"),
    "i386": ("386", None),
    "i486": ("386", None),
    "i586": ("386", None),
    "i686": ("386", None),
    "x86": ("386", None),
    "386": ("386", None),
    "ppc64el": ("ppc64le", None),
    "ppc64le": ("ppc64le", None),
    "s390x": ("s390x", None),
    "riscv64": ("riscv64", None),
    "mips64el": ("mips64le", None),
    "mips64le": ("mips64le", None),
    "loong64": ("loong64", None),
    "loongarch64": ("loong64", None),
}

# Variants each architecture can have; an architecture not listed takes none.
_VARIANTS: dict[str, re.Pattern[str]] = {
    "arm": re.compile(r"^v[5-8]$"),
    "arm64": re.compile(r"^v(8|9)(\.[0-9])?$"),
    "amd64": re.compile(r"^v[1-4]$"),
    "riscv64": re.compile(r"^[a-z0-9]+$"),
}

_OS_ALIASES = {"macos": "darwin", "osx": "darwin"}
_WORD = re.compile(r"^[a-z0-9][a-z0-9._-]*$")

# docker-library's per-architecture namespaces (amd64/, arm64v8/, arm32v7/, ...).
_NAMESPACES = {
    ("amd64", None): "amd64",
    ("arm64", "v8"): "arm64v8",
    ("arm", "v7"): "arm32v7",
    ("arm", "v6"): "arm32v6",
    ("arm", "v5"): "arm32v5",
    ("386", None): "i386",
    ("ppc64le", None): "ppc64le",
    ("s390x", None): "s390x",
    ("riscv64", None): "riscv64",
    ("mips64le", None): "mips64le",
}

# What `uname -m` says on each platform (what a built image's RUN step records).
_UNAME = {
    "amd64": "x86_64",
    "arm64": "aarch64",
    "arm": "armv7l",
    "386": "i686",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "mips64le": "mips64",
}


@dataclass(frozen=True)
class Platform:
    """One target platform. Fields are named as in the OCI image index."""

    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None
    os_features: tuple[str, ...] = field(default=())

    # ---- construction -------------------------------------------------------------------

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse user input: `linux/arm64/v8`, `linux/amd64`, or a bare alias (`aarch64`)."""
        raw = (text or "").strip()
        parts = raw.lower().split("/")
        if not raw or any(not p for p in parts) or len(parts) > 3:
            raise InvalidPlatform(f"invalid platform {text!r}: expected os/arch[/variant], e.g. linux/arm64/v8")
        if len(parts) == 1:
            if parts[0] not in _ARCH_ALIASES:
                raise InvalidPlatform(f"invalid platform {text!r}: expected os/arch[/variant], e.g. linux/arm64/v8")
            parts = ["linux", parts[0]]
        os_name, arch = parts[0], parts[1]
        variant = parts[2] if len(parts) == 3 else None
        return cls.normalize_parts(os_name, arch, variant, text=text)

    @classmethod
    def normalize_parts(
        cls, os_name: str, arch: str, variant: str | None = None, *, text: str | None = None
    ) -> Platform:
        """Build a validated, normalized platform from its parts."""
        label = text if text is not None else "/".join(p for p in (os_name, arch, variant) if p)
        os_name = _OS_ALIASES.get(os_name.lower(), os_name.lower())
        arch = arch.lower()
        variant = variant.lower() if variant else None
        if not _WORD.fullmatch(os_name):
            raise InvalidPlatform(f"invalid platform {label!r}: bad os {os_name!r}")
        if arch in _ARCH_ALIASES:
            arch, implied = _ARCH_ALIASES[arch]
            if implied and variant and variant != implied:
                raise InvalidPlatform(f"invalid platform {label!r}: {implied} implied by the name contradicts {variant}")
            variant = variant or implied
        elif not _WORD.fullmatch(arch):
            raise InvalidPlatform(f"invalid platform {label!r}: bad architecture {arch!r}")
        if arch == "arm" and variant is None:
            variant = "v7"
        if variant is not None:
            allowed = _VARIANTS.get(arch)
            if allowed is None or not allowed.fullmatch(variant):
                raise InvalidPlatform(f"invalid platform {label!r}: {arch} has no variant {variant!r}")
        return cls(os_name, arch, variant)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Platform | None:
        """Take a descriptor's `platform` object (or an image config) as it is, unvalidated."""
        if not isinstance(data, dict) or "os" not in data or "architecture" not in data:
            return None
        features = data.get("os.features") or ()
        return cls(
            os=str(data["os"]),
            architecture=str(data["architecture"]),
            variant=str(data["variant"]) if data.get("variant") else None,
            os_version=str(data["os.version"]) if data.get("os.version") else None,
            os_features=tuple(str(f) for f in features) if isinstance(features, list) else (),
        )

    # ---- views ----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The OCI `platform` object."""
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        if self.variant:
            out["variant"] = self.variant
        return out

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    def key(self) -> tuple[str, str, str, str]:
        """Identity for comparisons and duplicate checks: arm64 and arm64/v8 are one platform."""
        variant = self.variant or ""
        if self.architecture == "arm64" and variant == "v8":
            variant = ""
        if self.architecture == "arm" and variant == "":
            variant = "v7"
        return (self.os, self.architecture, variant, self.os_version or "")

    def same_as(self, other: Platform) -> bool:
        """Same platform after normalization (os.version compared only when both give it)."""
        a, b = self.key(), other.key()
        if not (self.os_version and other.os_version):
            return a[:3] == b[:3]
        return a == b

    def with_(self, **changes: Any) -> Platform:
        """A copy with some fields changed."""
        return replace(self, **changes)

    @property
    def is_unknown(self) -> bool:
        """True for the unknown/unknown platform that attestation manifests carry."""
        return self.os == "unknown" and self.architecture == "unknown"

    @property
    def namespace(self) -> str | None:
        """docker-library's namespace for this platform (`arm64v8`), if it has one."""
        variant = self.variant
        if self.architecture == "arm64":
            variant = "v8"
        if self.os == "windows" and self.architecture == "amd64":
            return "winamd64"
        return _NAMESPACES.get((self.architecture, variant)) if self.os == "linux" else None

    @property
    def uname_machine(self) -> str | None:
        """What `uname -m` prints on this platform, if known."""
        if self.architecture == "arm" and self.variant in ("v5", "v6"):
            return f"armv{self.variant[1]}l"
        return _UNAME.get(self.architecture)


def normalized(platform: Platform) -> Platform:
    """A platform as containerd normalizes it (aarch64 → arm64, x86_64 → amd64, arm → arm/v7),
    os.version and os.features kept; a spelling that does not normalize is kept as it is
    (platforms read from documents are not validated)."""
    try:
        norm = Platform.normalize_parts(platform.os, platform.architecture, platform.variant)
    except InvalidPlatform:
        return platform
    return replace(platform, os=norm.os, architecture=norm.architecture, variant=norm.variant)


def matches(a: Platform, b: Platform) -> bool:
    """Whether two platforms are the same once normalized: the one rule for "is this image (its
    config, an index entry) the platform asked for". Platforms fetched from documents come as
    written, so a config saying linux/aarch64 is linux/arm64 (and arm64/v8) here; os.version
    is compared only when both give it (Platform.same_as)."""
    return normalized(a).same_as(normalized(b))


class _Placed(Protocol):
    @property
    def platform(self) -> Platform | None: ...


_P = TypeVar("_P", bound=_Placed)


def pick(entries: Iterable[_P], platform: Platform) -> tuple[_P, ...]:
    """The entries of an index (descriptors, or anything with a `platform`) that are `platform`,
    in index order: the one rule for picking a child, as containerd matches it (matches();
    attestations, unknown/unknown, never match a real platform). Callers decide what several
    matches mean: a base takes the first, as docker does; a build output must hold one."""
    return tuple(e for e in entries if e.platform is not None and not e.platform.is_unknown and matches(e.platform, platform))


def contrast(a: Platform, b: Platform) -> tuple[str, str]:
    """Both platforms as text that shows where they differ, for a contradiction message.

    `os/arch/variant` alone can read the same on both sides ("windows/amd64 but windows/amd64"):
    os.version and os.features are added, on both sides, when they differ.
    """
    extra_a: list[str] = []
    extra_b: list[str] = []
    if (a.os_version or "") != (b.os_version or ""):
        extra_a.append(f"os.version {a.os_version or 'none'}")
        extra_b.append(f"os.version {b.os_version or 'none'}")
    if sorted(a.os_features) != sorted(b.os_features):
        extra_a.append(f"os.features {','.join(a.os_features) or 'none'}")
        extra_b.append(f"os.features {','.join(b.os_features) or 'none'}")

    def text(p: Platform, extra: list[str]) -> str:
        return f"{p} ({'; '.join(extra)})" if extra else str(p)

    return text(a, extra_a), text(b, extra_b)


def duplicates(platforms: Iterable[Platform | None]) -> list[tuple[int, int]]:
    """Positions naming a platform already named: (the latest earlier one, this one), in order.

    The one duplicate rule for every list of platforms (a matrix, `--platform`, an index's
    entries): the same `key()` after normalization, so arm64 and arm64/v8 collide while two
    os.versions of windows/amd64 do not. None (an entry without a platform) is skipped.
    """
    seen: dict[tuple[str, ...], int] = {}
    out = []
    for i, p in enumerate(platforms):
        if p is None:
            continue
        key = p.key()
        if key in seen:
            out.append((seen[key], i))
        seen[key] = i
    return out


def parse_all(texts: list[str]) -> list[Platform]:
    """Parse several platforms and refuse duplicates after normalization."""
    out: list[Platform] = []
    for text in texts:  # one at a time: a duplicate is named before a later text is parsed
        out.append(Platform.parse(text))
        for first, again in duplicates(out)[:1]:
            raise InvalidPlatform(f"duplicate platform {texts[again]!r} (same as {texts[first]!r})")
    return out


# docker buildx's automatic platform build args (Dockerfile reference, "Automatic platform ARGs
# in the global scope"): the plan passes them, builders recognise them, the spec reserves them.
PLATFORM_ARGS = ("TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT")
# ... and those naming the platform that runs the build (defined by the builder, never passed)
BUILD_PLATFORM_ARGS = ("BUILDPLATFORM", "BUILDOS", "BUILDARCH", "BUILDVARIANT")


def platform_args(platform: Platform, *, build: Platform | None = None, docker: bool = False) -> dict[str, str]:
    """The automatic platform build args: TARGET* for `platform` and, given `build`, BUILD*.

    As given by default (TARGETVARIANT "" without one): what the plan passes; callers that
    need a tool's own spelling normalize first (buildah derives them from the containerd-
    normalized platform). With `docker`, the values docker itself defines: arm64's v8 and
    amd64's v1 dropped (`linux/arm64`, TARGETVARIANT ""), which a Dockerfile interpreted
    natively must see.
    """
    out = _args(PLATFORM_ARGS, platform, docker)
    if build is not None:
        out.update(_args(BUILD_PLATFORM_ARGS, build, docker))
    return out


def docker_variant(platform: Platform) -> str:
    """The variant as docker's automatic args spell it: arm64's v8 and amd64's v1 are dropped."""
    variant = platform.variant or ""
    if (platform.architecture, variant) in (("arm64", "v8"), ("amd64", "v1")):
        return ""
    return variant


def _args(names: tuple[str, str, str, str], platform: Platform, docker: bool) -> dict[str, str]:
    variant = docker_variant(platform) if docker else platform.variant or ""
    whole = "/".join(x for x in (platform.os, platform.architecture, variant) if x)
    return dict(zip(names, (whole, platform.os, platform.architecture, variant), strict=True))
