"""One entry of an image index: the one type `push`, `publish` and `assemble` pass around.

Why one type: a draft's child, an image this run built and pushed by digest, an `image:` entry
copied in and a digest file's claim are all "a manifest the index will name". Each knows some
of: where it was read from, its descriptor, its exact bytes, what its config says, where its
arch tags go. It has two JSON forms, both kept byte-compatible with files already on disk: a
draft's entry (`to_draft`) and a digest-file / report record (`to_record`).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from manifesto.errors import InvalidDigest, InvalidPlatform, InvalidReference, UsageError
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.digest import Digest
from manifesto.oci.platform import Platform
from manifesto.oci.reference import LayoutReference, Reference, parse_location

BUILT = "built"  # a record's `source` for an image this run built


@dataclass(frozen=True)
class Entry:
    """A manifest an index names.

    `source`: where it was read from: a registry or an OCI layout (None: built by this run, or
    claimed by a digest file).
    `descriptor`: as the index names it (after verification: as the target serves it).
    `raw`: the manifest's exact bytes when known (what a copy sends). `config_platform`: what
    its image config says, when read. `arch_refs`: docker-library tags it also goes under.
    `origin`: where a claim about it came from (a digest file), for messages only.
    """

    source: Reference | LayoutReference | None
    descriptor: Descriptor
    raw: bytes | None = None
    config_platform: Platform | None = None
    arch_refs: tuple[Reference, ...] = ()
    origin: str = field(default="", compare=False)

    @property
    def platform(self) -> Platform | None:
        return self.descriptor.platform

    @property
    def digest(self) -> Digest:
        return self.descriptor.digest

    @property
    def size(self) -> int:
        return self.descriptor.size

    @property
    def media_type(self) -> str:
        return self.descriptor.media_type

    @property
    def name(self) -> str:
        """How messages name the entry: its source, or the platform this run built."""
        return self.source.familiar if self.source is not None else f"{self.platform} ({BUILT})"

    @property
    def source_label(self) -> str:
        """The record's `source`: `built`, or the reference it was read from."""
        return BUILT if self.source is None else str(self.source)

    # ---- a draft's entry (store on disk: lists/drafts.py) --------------------------------

    def to_draft(self) -> dict[str, Any]:
        assert self.source is not None and self.raw is not None, "a draft entry is read from a source"
        return {
            "source": str(self.source),
            "descriptor": self.descriptor.to_dict(),
            "manifest": base64.b64encode(self.raw).decode(),
            "config_platform": self.config_platform.to_dict() if self.config_platform else None,
        }

    @classmethod
    def from_draft(cls, data: dict[str, Any]) -> Entry:
        """A draft's entry, its bytes checked against its digest (a tampered draft is refused).

        Its source reads back in any form a verb takes (a layout's as `oci:DIR...`)."""
        descriptor = Descriptor.from_dict(data["descriptor"], "draft entry")
        raw = base64.b64decode(data["manifest"])
        descriptor.digest.verify(raw, f"draft entry {data['source']}")
        return cls(
            source=parse_location(data["source"]),
            descriptor=descriptor,
            raw=raw,
            config_platform=Platform.from_dict(data.get("config_platform")),
        )

    # ---- a record (digest files, --report) ----------------------------------------------

    def to_record(self) -> dict[str, Any]:
        return {
            "platform": str(self.platform),
            "digest": str(self.digest),
            "size": self.size,
            "mediaType": self.media_type,
            "source": self.source_label,
            "archRefs": [str(r) for r in self.arch_refs],
        }

    @classmethod
    def from_record(cls, data: dict[str, Any], where: str) -> Entry:
        """A record as a digest file claims it; `where` (the file) names it in messages."""
        try:
            platform, digest = Platform.parse(data["platform"]), Digest.parse(data["digest"])
            size, media_type = int(data["size"]), str(data["mediaType"])
            source = str(data.get("source", BUILT))
            descriptor = Descriptor(media_type, digest, size, platform)
            return cls(
                source=None if source == BUILT else parse_location(source),
                descriptor=descriptor,
                arch_refs=tuple(Reference.parse(r) for r in data.get("archRefs") or ()),
                origin=where,
            )
        except KeyError as e:
            raise UsageError(f"{where}: not a manifesto digest file (an entry has no {e.args[0]!r})") from None
        except (TypeError, ValueError, InvalidDigest, InvalidPlatform, InvalidReference) as e:
            raise UsageError(f"{where}: not a manifesto digest file ({e})") from None
