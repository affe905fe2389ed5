"""A registry client speaking the OCI distribution API over httpx, byte-exact.

One client per registry host: one connection pool (HTTP/2 where the server offers it), one
Authenticator, one bound on concurrent requests. It implements the Store protocol
(store/base.py) plus cross-repository mounts. Plain HTTP only for loopback hosts or with
`insecure=True`; otherwise HTTPS with verification and docker's per-registry CA directory.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from manifesto.errors import (
    ContentError,
    DigestMismatch,
    NetworkError,
    NotFound,
    RegistryError,
)
from manifesto.log import get_logger
from manifesto.oci import mediatype
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.digest import Digest
from manifesto.oci.manifest import MAX_MANIFEST_BYTES, detect_media_type
from manifesto.oci.reference import is_loopback_host
from manifesto.store.base import Fetched
from manifesto.store.registry import retry
from manifesto.store.registry.auth import Authenticator, repository_scope
from manifesto.store.registry.credentials import Credential
from manifesto.store.registry.errors import error_for
from manifesto.store.registry.tls import OnFirstUse, ssl_context

log = get_logger("manifesto.registry")

CHUNK = 1024 * 1024
CERTS_DIR = Path(os.environ.get("MANIFESTO_CERTS_D", "/etc/docker/certs.d"))
_OCTET = "application/octet-stream"


class RegistryClient:
    """Talks to one registry. Use as `async with RegistryClient(host) as c: ...`."""

    def __init__(
        self,
        registry: str,
        *,
        credential: Credential | None | Callable[[], Credential | None] = None,
        insecure: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
        max_concurrency: int = 8,
        attempts: int = 5,
        backoff: float = 0.25,
        chunk_size: int | None = None,
        certs_dir: Path = CERTS_DIR,
        timeout: float = 60.0,
    ):
        self.registry = registry
        # Verified HTTPS, except for loopback registries and --insecure: those get HTTPS without
        # verification if they speak it, else plain HTTP (decided once, by the first request).
        self.verified = not (insecure or is_loopback_host(registry))
        self.base = f"https://{registry}"
        self._scheme_known = self.verified
        self._scheme_lock = asyncio.Lock()
        self.auth = Authenticator(registry, credential, attempts=attempts, backoff=backoff, tls_only=self.verified)
        self.attempts = attempts
        self.backoff = backoff
        self.chunk_size = chunk_size
        # Requests that send a body take slots of their own: an upload whose body streams from a
        # GET on this same client must never wait for a slot that uploads are holding.
        self._limit = asyncio.Semaphore(max_concurrency)
        self._uploads = asyncio.Semaphore(max_concurrency)
        kwargs: dict[str, Any] = {
            "timeout": httpx.Timeout(timeout, connect=15.0),
            "follow_redirects": True,
            "headers": {"User-Agent": f"manifesto/{_version()}"},
        }
        if transport is not None:
            kwargs["transport"] = transport
        else:
            limits = httpx.Limits(max_connections=max_concurrency * 2, max_keepalive_connections=max_concurrency)
            if self.verified:
                kwargs.update(verify=ssl_context(registry, certs_dir), http2=True, limits=limits)
            else:  # only the registry's own origin goes unverified; any other host is verified
                own = httpx.AsyncHTTPTransport(verify=False, limits=limits)
                kwargs["mounts"] = {f"https://{registry}": own, f"http://{registry}": own}
                kwargs["transport"] = OnFirstUse(
                    lambda: httpx.AsyncHTTPTransport(verify=ssl_context(registry, certs_dir), limits=limits)
                )
        self.http = httpx.AsyncClient(**kwargs)

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    # ---- one request, with auth and retries -----------------------------------------------

    async def request(
        self,
        method: str,
        url: str,
        *,
        scopes: frozenset[str],
        what: str,
        headers: dict[str, str] | None = None,
        content: Callable[[], Any] | None = None,
        params: dict[str, str] | None = None,
        stream: bool = False,
        replayable: bool = True,
        ok_401: bool = False,
    ) -> httpx.Response:
        """Send a request; answer one 401 with one fresh credential; retry transient faults."""
        if not self._scheme_known:
            await self._choose_scheme()
        if not url.startswith(("http://", "https://")):
            url = self.base + url
        if params:  # merge: an upload Location's own query (_state) must survive
            url = str(httpx.URL(url).copy_merge_params(params))
        # Credentials go only to the registry itself, never to a host an upload Location names.
        own = self._own_origin(url, what)
        auth_value = await self.auth.header(self.http, scopes) if own else None
        limit = self._uploads if content is not None else self._limit
        for round_ in (0, 1):
            hdrs = dict(headers or {})
            if auth_value:
                hdrs["Authorization"] = auth_value

            async def attempt() -> httpx.Response:
                body = content() if content is not None else None
                req = self.http.build_request(method, url, headers=hdrs, content=body)
                started = time.perf_counter()
                resp = await self.http.send(req, stream=True)
                log.debug(
                    "http_request",
                    method=method,
                    url=str(req.url),
                    status=resp.status_code,
                    http_version=resp.http_version,
                    ms=round((time.perf_counter() - started) * 1000, 1),
                )
                if not stream:
                    await resp.aread()
                return resp

            try:
                async with limit:
                    resp = await retry.send(
                        attempt,
                        attempts=self.attempts if replayable else 1,
                        backoff=self.backoff,
                        on_retry=lambda why: log.info("request_retry", what=what, reason=why),
                    )
            except httpx.HTTPError as e:
                raise NetworkError(f"{what}: cannot reach {self.registry}: {_describe(e)}") from None
            if resp.status_code != 401 or round_ == 1 or not replayable or not own:
                break
            challenge = resp.headers.get("www-authenticate", "")
            await resp.aclose()
            auth_value = await self.auth.answer(self.http, challenge, scopes, sent=auth_value)
        if resp.status_code == 401 and ok_401:
            return resp
        if resp.status_code >= 400:
            await resp.aread()
            raise error_for(resp.status_code, resp.content, resp.headers.get("content-type", ""), what)
        return resp

    def _own_origin(self, url: str, what: str) -> bool:
        """Whether `url` is the registry's own origin; a downgrade to plain HTTP is refused."""
        target, base = httpx.URL(url), httpx.URL(self.base)
        if base.scheme == "https" and target.scheme == "http" and not is_loopback_host(target.netloc.decode()):
            raise RegistryError(f"{what}: the registry sent us to plain HTTP ({target.host}); refusing")
        return (target.scheme, target.host, target.port) == (base.scheme, base.host, base.port)

    async def _choose_scheme(self) -> None:
        """HTTPS if the registry answers it, else plain HTTP (only for loopback or --insecure)."""
        async with self._scheme_lock:
            if self._scheme_known:
                return
            try:
                await self.http.get(f"{self.base}/v2/", timeout=httpx.Timeout(10.0, connect=5.0))
            except httpx.TransportError:
                self.base = f"http://{self.registry}"
            log.debug("registry_scheme", registry=self.registry, base=self.base)
            self._scheme_known = True

    async def check_login(self) -> None:
        """GET /v2/ with the credential (answering the challenge); AuthError if it is refused."""
        await self.request("GET", "/v2/", scopes=frozenset(), what=f"login to {self.registry}")

    def _url(self, repo: str, kind: str, reference: str) -> str:
        return f"/v2/{repo}/{kind}/{quote(reference, safe=':@')}"

    # ---- manifests ------------------------------------------------------------------------

    async def get_manifest(self, repo: str, reference: str) -> Fetched:
        what = f"manifest {self.registry}/{repo}{_sep(reference)}{reference}"
        resp = await self.request(
            "GET",
            self._url(repo, "manifests", reference),
            scopes=frozenset({repository_scope(repo, "pull")}),
            headers={"Accept": mediatype.ACCEPT_MANIFESTS},
            what=what,
            stream=True,
        )
        raw = await _read_capped(resp, MAX_MANIFEST_BYTES, what)
        digest = _verified_digest(raw, reference, resp.headers.get("docker-content-digest"), what)
        media_type = detect_media_type(raw, resp.headers.get("content-type"))
        return Fetched(raw=raw, media_type=media_type, digest=digest)

    async def head_manifest(self, repo: str, reference: str) -> Descriptor | None:
        what = f"manifest {self.registry}/{repo}{_sep(reference)}{reference}"
        try:
            resp = await self.request(
                "HEAD",
                self._url(repo, "manifests", reference),
                scopes=frozenset({repository_scope(repo, "pull")}),
                headers={"Accept": mediatype.ACCEPT_MANIFESTS},
                what=what,
            )
        except NotFound:
            return None
        header = resp.headers.get("docker-content-digest")
        media_type = resp.headers.get("content-type", "").split(";")[0].strip()
        if not header or media_type not in mediatype.MANIFESTS:
            return (await self.get_manifest(repo, reference)).descriptor()
        digest = Digest.parse(header)
        if is_digest(reference) and str(digest) != reference:
            raise DigestMismatch(f"{what}: registry named digest {digest}")
        return Descriptor(media_type, digest, _content_length(resp, what))

    async def put_manifest(self, repo: str, reference: str, raw: bytes, media_type: str) -> Digest:
        what = f"manifest {self.registry}/{repo}{_sep(reference)}{reference}"
        if len(raw) > MAX_MANIFEST_BYTES:
            raise ContentError(f"{what}: {len(raw)} bytes; registries refuse manifests over 4 MiB")
        digest = Digest.of(raw)
        if is_digest(reference):
            Digest.parse(reference).verify(raw, what)
        resp = await self.request(
            "PUT",
            self._url(repo, "manifests", reference),
            scopes=frozenset({repository_scope(repo, "pull", "push")}),
            headers={"Content-Type": media_type},
            content=lambda: raw,
            what=what,
        )
        header = resp.headers.get("docker-content-digest")
        if header and header != str(digest):
            raise DigestMismatch(f"{what}: registry stored {header}, we sent {digest}")
        log.info("manifest_pushed", repository=f"{self.registry}/{repo}", reference=reference, digest=str(digest))
        return digest

    # ---- blobs ----------------------------------------------------------------------------

    async def blob_size(self, repo: str, digest: Digest) -> int | None:
        try:
            resp = await self.request(
                "HEAD",
                self._url(repo, "blobs", str(digest)),
                scopes=frozenset({repository_scope(repo, "pull")}),
                what=f"blob {self.registry}/{repo}@{digest}",
            )
        except NotFound:
            return None
        return _content_length(resp, f"blob {self.registry}/{repo}@{digest}")

    async def read_blob(self, repo: str, digest: Digest) -> AsyncIterator[bytes]:
        what = f"blob {self.registry}/{repo}@{digest}"
        resp = await self.request(
            "GET",
            self._url(repo, "blobs", str(digest)),
            scopes=frozenset({repository_scope(repo, "pull")}),
            what=what,
            stream=True,
        )
        hasher = digest.hasher()
        try:
            async for chunk in resp.aiter_bytes(CHUNK):
                hasher.update(chunk)
                yield chunk
        except httpx.HTTPError as e:
            raise NetworkError(f"{what}: download broke off: {_describe(e)}") from None
        finally:
            await resp.aclose()
        if hasher.hexdigest() != digest.hex:
            raise DigestMismatch(f"{what}: content hashes to {digest.algorithm}:{hasher.hexdigest()}")

    async def read_blob_bytes(self, repo: str, digest: Digest, limit: int = 16 * 1024 * 1024) -> bytes:
        """A small blob (a config) in memory, verified."""
        parts, total = [], 0
        async for chunk in self.read_blob(repo, digest):
            total += len(chunk)
            if total > limit:
                raise ContentError(f"blob {digest} is larger than {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)

    async def mount_blob(self, repo: str, descriptor: Descriptor, from_repo: str) -> str | None:
        """Try a cross-repository mount. Returns None when mounted, else an upload Location."""
        what = f"blob mount {from_repo} -> {self.registry}/{repo}"
        scopes = frozenset({repository_scope(repo, "pull", "push"), repository_scope(from_repo, "pull")})
        resp = await self.request(
            "POST",
            f"/v2/{repo}/blobs/uploads/",
            params={"mount": str(descriptor.digest), "from": from_repo},
            scopes=scopes,
            what=what,
            ok_401=True,
        )
        if resp.status_code == 201:
            log.debug("blob_mounted", digest=str(descriptor.digest), source=from_repo, repository=repo)
            return None
        if resp.status_code == 401:
            # The token lacks pull on the source (insufficient_scope): upload instead.
            log.info("blob_mount_refused", digest=str(descriptor.digest), source=from_repo, repository=repo)
            return await self._start_upload(repo)
        if resp.status_code == 202:
            return self._location(resp, what)
        raise RegistryError(f"{what}: unexpected HTTP {resp.status_code}", status=resp.status_code)

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
        session (distribution 2.8 answers 404 BLOB_UPLOAD_INVALID/UNKNOWN to replays).
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
            except (NotFound, NetworkError) as e:
                if await self.blob_size(repo, descriptor.digest) == descriptor.size:
                    return  # the final PUT landed before the connection broke
                if round_ == restarts:
                    raise
                log.info("upload_restart", what=what, reason=str(e))
                location = None

    async def _start_upload(self, repo: str) -> str:
        what = f"blob upload to {self.registry}/{repo}"
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
            content: Callable[[], Any] = lambda: _file_chunks(source)
        else:
            content = lambda: source  # noqa: E731 — a stream is sent once
        resp = await self.request(
            "PUT",
            location,
            params={"digest": str(descriptor.digest)},
            headers={"Content-Type": _OCTET, "Content-Length": str(descriptor.size)},
            content=content,
            scopes=frozenset({repository_scope(repo, "pull", "push")}),
            what=what,
            replayable=isinstance(source, Path),
        )
        self._check_blob_answer(resp, descriptor, what)

    async def _upload_chunked(self, repo: str, location: str, descriptor: Descriptor, source: Path, what: str) -> None:
        assert self.chunk_size
        scopes = frozenset({repository_scope(repo, "pull", "push")})
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
        )
        self._check_blob_answer(resp, descriptor, what)

    def _check_blob_answer(self, resp: httpx.Response, descriptor: Descriptor, what: str) -> None:
        if resp.status_code != 201:
            raise RegistryError(f"{what}: expected 201 Created, got {resp.status_code}", status=resp.status_code)
        header = resp.headers.get("docker-content-digest")
        if header and header != str(descriptor.digest):
            raise DigestMismatch(f"{what}: registry stored {header}")
        log.debug("blob_uploaded", digest=str(descriptor.digest), size=descriptor.size)


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def _sep(reference: str) -> str:
    return "@" if is_digest(reference) else ":"


async def _read_capped(resp: httpx.Response, limit: int, what: str) -> bytes:
    """The body, refusing more than `limit` bytes (a manifest is at most 4 MiB)."""
    parts, total = [], 0
    try:
        async for chunk in resp.aiter_bytes():
            total += len(chunk)
            if total > limit:
                raise ContentError(f"{what}: larger than {limit} bytes; refusing it as a manifest")
            parts.append(chunk)
    except httpx.HTTPError as e:
        raise NetworkError(f"{what}: download broke off: {_describe(e)}") from None
    finally:
        await resp.aclose()
    return b"".join(parts)


def _content_length(resp: httpx.Response, what: str) -> int:
    value = resp.headers.get("content-length", "")
    if not value.isdigit():
        raise ContentError(f"{what}: the registry sent no usable Content-Length ({value!r})")
    return int(value)


def is_digest(reference: str) -> bool:
    """True when a manifest reference is a digest rather than a tag (tags cannot hold ':')."""
    return ":" in reference


def _verified_digest(raw: bytes, reference: str, header: str | None, what: str) -> Digest:
    """sha256 of the bytes, checked against the digest asked for and the one the registry named."""
    digest = Digest.of(raw)
    if is_digest(reference):
        Digest.parse(reference).verify(raw, what)
    if header and header.startswith("sha256:") and header != str(digest):
        raise DigestMismatch(f"{what}: registry says {header}, content hashes to {digest}")
    return digest


def _describe(e: Exception) -> str:
    text = str(e) or type(e).__name__
    return text.splitlines()[0]


def _version() -> str:
    from manifesto import __version__

    return __version__
