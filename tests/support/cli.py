"""Helpers for tests that run the manifesto CLI: exit checks, the pushed digest, media types."""

from __future__ import annotations

import hashlib
import re
from typing import Any

# Spelled out here, not imported from manifesto: the tests check the code against the specs.
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def sha256_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def ok(result: Any) -> str:
    """stdout of a (rc, stdout, stderr) result that must have succeeded."""
    rc, out, err = result
    assert rc == 0, f"exit {rc}\nstdout:\n{out}\nstderr:\n{err}"
    return out


def pushed_digest(result: Any) -> str:
    """`push` prints the list digest as the last line of stdout."""
    out = ok(result)
    last = out.strip().splitlines()[-1]
    assert DIGEST.match(last), f"last stdout line is not a digest: {out!r}"
    return last


def plat(d: dict[str, Any]) -> str:
    """`os/arch[/variant]` of a descriptor's platform object."""
    return "/".join(p for p in (d["os"], d["architecture"], d.get("variant")) if p)
