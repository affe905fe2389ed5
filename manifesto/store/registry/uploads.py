"""Blob uploads (distribution spec, "Pushing blobs"): monolithic or chunked, into a session
the registry opens, verified by the digest the registry answers with.

A part of RegistryClient kept in its own module (the client inherits it): it relies on the
client's `request`, `blob_size`, `registry` and `chunk_size`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx

from manifesto.errors import ContentError, DigestMismatch, ManifestoError, NetworkError, NotFound, RegistryError
from manifesto.log import get_logger
from manifesto.oci.descriptor import Descriptor
from manifesto.store.registry.auth import repository_scope
from manifesto.store.registry.bodies import file_chunks
from manifesto.store.registry.retry import RETRY_STATUSES

log = get_logger("manifesto.registry")

_OCTET = "application/octet-stream"


class Uploads:
    """Blob uploads for RegistryClient."""

    registry: str
    chunk_size: int | None
    request: Callable[..., Any]
    blob_size: Callable[..., Any]

    async def write_blob(
        self,
        repo: str,
        descriptor: Descriptor,
        source: Path | AsyncIterator[bytes],
        *,
        location: str | None = None,
    ) -> None:
        """Upload a blob (monolithic, or chunked with `chunk_size`), verifying the result.

        A file source is re-readable, so a broken upload session is restarted from a new
        session (distribution 2.8 answers 404 BLOB_UPLOAD_INVALID/UNKNOWN to replays). Whatever
        the source, a broken upload first asks whether the final PUT landed anyway (this is the
        one place that asks: a caller streaming the blob only decides whether to start over).
        """
        what = f"blob upload {self.registry}/{repo}@{descriptor.digest}"
        restarts = 2 if isinstance(source, Path) else 0
        for round_ in range(restarts + 1):
            if location is None:
                location = await self._start_upload(repo)
            try:
                if self.chunk_size and isinstance(source, Path):
                    await self._upload_chunked(repo, location, descriptor, source, what)
                else:
                    await self._upload_monolithic(repo, location, descriptor, source, what)
                return
            except (NotFound, NetworkError, RegistryError) as e:
                if isinstance(e, RegistryError) and e.status not in RETRY_STATUSES:
                    raise  # the registry refused the blob: nothing broke on the way
                if await self._landed(repo, descriptor):
                    return  # the final PUT landed before the connection broke
                if round_ == restarts or isinstance(e, RegistryError):
                    raise
                log.info("upload_restart", what=what, reason=str(e))
                location = None

    async def _landed(self, repo: str, descriptor: Descriptor) -> bool:
        """Whether a broken upload's blob is there all the same (its final PUT's answer was lost).

        A HEAD that fails too answers no: the upload's own error is the one worth reporting.
        """
        try:
            return await self.blob_size(repo, descriptor.digest) == descriptor.size
        except ManifestoError as e:
            log.debug("upload_check_failed", digest=str(descriptor.digest), reason=str(e))
            return False

    async def _start_upload(self, repo: str) -> str:
        what = f"push to {self.registry}/{repo} (blob upload)"
        resp = await self.request(
            "POST",
            f"/v2/{repo}/blobs/uploads/",
            scopes=frozenset({repository_scope(repo, "pull", "push")}),
            what=what,
        )
        return self._location(resp, what)

    def _location(self, resp: httpx.Response, what: str) -> str:
        loc = resp.headers.get("location")
        if not loc:
            raise RegistryError(f"{what}: registry gave no upload Location", status=resp.status_code)
        return str(resp.url.join(loc))

    async def _upload_monolithic(
        self, repo: str, location: str, descriptor: Descriptor, source: Path | AsyncIterator[bytes], what: str
    ) -> None:
        if isinstance(source, Path):
            content: Callable[[], Any] = lambda: _sized(file_chunks(source), descriptor, what)
        else:
            content = lambda: _sized(source, descriptor, what)  # noqa: E731 — a stream is sent once
        resp = await self.request(
            "PUT",
            location,
            params={"digest": str(descriptor.digest)},
            headers={"Content-Type": _OCTET, "Content-Length": str(descriptor.size)},
            content=content,
            scopes=frozenset({repository_scope(repo, "pull", "push")}),
            what=what,
            replayable=isinstance(source, Path),
            doing=f"uploading blob {descriptor.digest} to {self.registry}/{repo}",
        )
        self._check_blob_answer(resp, descriptor, what)

    async def _upload_chunked(self, repo: str, location: str, descriptor: Descriptor, source: Path, what: str) -> None:
        assert self.chunk_size
        scopes = frozenset({repository_scope(repo, "pull", "push")})
        doing = f"uploading blob {descriptor.digest} to {self.registry}/{repo}"
        offset = 0
        with source.open("rb") as f:
            while offset < descriptor.size:
                data = f.read(self.chunk_size)
                if not data:
                    break
                end = offset + len(data) - 1
                resp = await self.request(
                    "PATCH",
                    location,
                    headers={"Content-Type": _OCTET, "Content-Range": f"{offset}-{end}", "Content-Length": str(len(data))},
                    content=lambda d=data: d,
                    scopes=scopes,
                    what=what,
                    replayable=False,
                    doing=doing,
                )
                location = self._location(resp, what)
                offset = end + 1
        resp = await self.request(
            "PUT",
            location,
            params={"digest": str(descriptor.digest)},
            headers={"Content-Type": _OCTET, "Content-Length": "0"},
            scopes=scopes,
            what=what,
            replayable=False,
            doing=doing,
        )
        self._check_blob_answer(resp, descriptor, what)

    def _check_blob_answer(self, resp: httpx.Response, descriptor: Descriptor, what: str) -> None:
        if resp.status_code != 201:
            raise RegistryError(f"{what}: expected 201 Created, got {resp.status_code}", status=resp.status_code)
        header = resp.headers.get("docker-content-digest")
        if header and header != str(descriptor.digest):
            raise DigestMismatch(f"{what}: registry stored {header}")
        log.debug("blob_uploaded", digest=str(descriptor.digest), size=descriptor.size)


async def _sized(chunks: AsyncIterator[bytes], descriptor: Descriptor, what: str) -> AsyncIterator[bytes]:
    """`chunks`, refused as soon as they outgrow the blob's size or end short of it: the upload
    declares that size as its Content-Length, and a source that disagrees with its own
    descriptor (a registry or a layout serving other bytes) is bad content, not a transport fault."""
    sent = 0
    async for chunk in chunks:
        sent += len(chunk)
        if sent > descriptor.size:
            raise ContentError(f"{what}: the source has more than the {descriptor.size} bytes its descriptor says")
        yield chunk
    if sent != descriptor.size:
        raise ContentError(f"{what}: the source has {sent} bytes, not the {descriptor.size} its descriptor says")
