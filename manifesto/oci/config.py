"""The facts manifesto reads from an image config blob (OCI image spec config.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from manifesto.errors import ContentError
from manifesto.oci.platform import Platform


@dataclass(frozen=True)
class ImageConfig:
    """Platform and a few descriptive facts of an image, from its config JSON.

    `platform` is None for a config that names no os/architecture: valid content (cosign
    signatures say "", an artifact's image config may be `{}`), but no platform image.
    """

    platform: Platform | None
    created: str | None
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    labels: dict[str, str]

    @classmethod
    def parse(cls, raw: bytes, where: str = "config", *, require_platform: bool = True) -> ImageConfig:
        """Read a config blob; one that names no platform is an error unless `require_platform` is off."""
        try:
            doc: Any = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            raise ContentError(f"{where}: not valid JSON ({e})") from None
        if not isinstance(doc, dict):
            raise ContentError(f"{where}: not a JSON object")
        platform = Platform.from_dict(doc) if doc.get("os") and doc.get("architecture") else None
        if platform is None and require_platform:
            raise ContentError(f"{where}: no os/architecture")
        inner = doc.get("config") or {}
        if not isinstance(inner, dict):
            raise ContentError(f"{where}: config must be an object")
        labels = inner.get("Labels") or {}
        if not isinstance(labels, dict):
            raise ContentError(f"{where}: Labels must be an object")
        created = doc.get("created")
        return cls(
            platform=platform,
            created=created if isinstance(created, str) else None,
            entrypoint=_command(inner.get("Entrypoint"), f"{where}: Entrypoint"),
            cmd=_command(inner.get("Cmd"), f"{where}: Cmd"),
            labels={str(k): str(v) for k, v in labels.items()},
        )


def _command(value: Any, where: str) -> tuple[str, ...]:
    """Entrypoint/Cmd: a list of strings; a bare string (seen in the wild) is one element."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ContentError(f"{where}: must be a list of strings")
