"""The Credential value and the registry host it is filed under, shared by every credential source.

Both sources (`logins`, `dockerconfig`) and the facade that orders them (`lookup`) need
these; keeping them here, importing nothing but errors and the pure reference module, is what
lets the facade import the sources without an import cycle. Import them from
`manifesto.store.registry.lookup`. Docker Hub's names come from `oci.reference`, the one list
references use too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from manifesto.errors import UsageError
from manifesto.oci.reference import canonical_registry

Kind = Literal["password", "identity_token"]

_KINDS = ("password", "identity_token")
_HOST_END = re.compile(r"[/?#]")


@dataclass(frozen=True, repr=False)
class Credential:
    """A username and secret for one registry; the repr never shows the secret.

    Credentials end up in tracebacks, debug output and test failures, so hiding the
    secret in repr is the one place that covers all of them.
    """

    username: str
    secret: str
    kind: Kind = "password"

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"credential kind must be one of {_KINDS}, not {self.kind!r}")

    def __repr__(self) -> str:
        return f"Credential(username={self.username!r}, secret='***', kind={self.kind!r})"


def normalize_host(server: str) -> str:
    """Reduce a server string to the registry host it names, for comparing config keys.

    docker config keys come as "host", "https://host", "https://host/v1/" or "http://host",
    and Docker Hub answers to several names; all of them must find the same entry.
    """
    text = server.strip()
    _, sep, rest = text.partition("://")
    if sep:
        text = rest
    text = _HOST_END.split(text, maxsplit=1)[0].rsplit("@", 1)[-1].lower()
    if not text:
        raise UsageError(f"not a registry host: {server!r}")
    return canonical_registry(text)


def _try_normalize(server: object) -> str | None:
    """normalize_host for keys read from a file, where junk must not stop the lookup."""
    if not isinstance(server, str):
        return None
    try:
        return normalize_host(server)
    except UsageError:
        return None
