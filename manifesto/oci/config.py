"""The facts manifesto reads from an image config blob (OCI image spec config.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from manifesto.errors import ContentError
from manifesto.oci.platform import Platform


@dataclass(frozen=True)
class ImageConfig:
    """Platform and a few descriptive facts of an image, from its config JSON."""

    platform: Platform
    created: str | None
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    labels: dict[str, str]

    @classmethod
    def parse(cls, raw: bytes, where: str = "config") -> ImageConfig:
        try:
            doc: Any = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise ContentError(f"{where}: not valid JSON ({e})") from None
        if not isinstance(doc, dict):
            raise ContentError(f"{where}: not a JSON object")
        platform = Platform.from_dict(doc)
        if platform is None:
            raise ContentError(f"{where}: no os/architecture")
        inner = doc.get("config") or {}
        return cls(
            platform=platform,
            created=doc.get("created"),
            entrypoint=tuple(inner.get("Entrypoint") or ()),
            cmd=tuple(inner.get("Cmd") or ()),
            labels=dict(inner.get("Labels") or {}),
        )
