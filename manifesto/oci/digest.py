"""Content digests: validated `algorithm:hex` strings.

Per the OCI image spec (descriptor.md#digests) a digest is `algorithm:encoded`; we accept the
registered algorithms sha256 and sha512 and require lowercase hex of the exact length, because a
registry compares digests as strings and an uppercase or short digest never matches.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from manifesto.errors import DigestMismatch, InvalidDigest

_HEX_LEN = {"sha256": 64, "sha512": 128}
ALGORITHMS = frozenset(_HEX_LEN)  # the registered algorithms accepted
_SHAPE = re.compile(r"^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$")


@dataclass(frozen=True, order=True)
class Digest:
    """A parsed content digest; `str(d)` gives back the canonical string."""

    algorithm: str
    hex: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse `sha256:<64 hex>`; raise InvalidDigest naming what is wrong."""
        m = _SHAPE.fullmatch(text or "")  # not match(): `$` would accept a trailing newline
        if not m:
            raise InvalidDigest(f"invalid digest {text!r}: expected algorithm:hex, e.g. sha256:<64 hex digits>")
        algorithm, encoded = m.groups()
        if algorithm not in _HEX_LEN:
            raise InvalidDigest(f"invalid digest {text!r}: unsupported algorithm {algorithm!r} (sha256, sha512)")
        want = _HEX_LEN[algorithm]
        if len(encoded) != want or not re.fullmatch(r"[0-9a-f]+", encoded):
            raise InvalidDigest(f"invalid digest {text!r}: {algorithm} needs {want} lowercase hex digits")
        return cls(algorithm, encoded)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        """Digest of exactly these bytes."""
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def hasher(self):
        """A fresh hashlib object of this digest's algorithm, for streaming checks."""
        return hashlib.new(self.algorithm)

    def verify(self, data: bytes, what: str = "content") -> None:
        """Raise DigestMismatch unless `data` hashes to this digest."""
        got = Digest.of(data, self.algorithm)
        if got != self:
            raise DigestMismatch(f"{what}: digest mismatch: expected {self}, got {got}")

    @property
    def short(self) -> str:
        """`sha256:0123456789ab`, for tables."""
        return f"{self.algorithm}:{self.hex[:12]}"

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"
