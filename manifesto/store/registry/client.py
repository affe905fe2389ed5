"""A registry client speaking the OCI distribution API over httpx, byte-exact.

One client per registry host: one connection pool (HTTP/2 where the server offers it), one
Authenticator, one bound on concurrent requests. It implements the Store protocol
(store/protocol.py) plus the Mounter ability (cross-repository mounts). Plain HTTP only for loopback hosts or with
`insecure=True`; otherwise HTTPS with verification and docker's per-registry CA directory.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from manifesto.errors import (
    AuthError,
    ConnectionLost,
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
from manifesto.oci.reference import is_digest, is_loopback_host
from manifesto.store.protocol import Fetched, ManifestRef
from manifesto.store.registry import retry
from manifesto.store.registry.auth import Authenticator, repository_scope
from manifesto.store.registry.bodies import DOING, content_length, read_capped, verified_digest
from manifesto.store.registry.lookup import Credential
from manifesto.store.registry.ratelimit import RateLimit, describe_window
from manifesto.store.registry.ratelimit import parse as parse_rate_limit
from manifesto.store.registry.errors import error_for
from manifesto.store.registry.tls import CERTS_DIR, OnFirstUse, ssl_context, unverified_transport
from manifesto.store.registry.uploads import Uploads

log = get_logger("manifesto.registry")


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port filled in."""
    return url.scheme, url.host, url.port or {"https": 443, "http": 80}.get(url.scheme)


class RegistryClient(Uploads):
    """Talks to one registry. Use as `async with RegistryClient(host) as c: ...`."""

    def __init__(
        self,
        registry: str,
        *,
        credential: Credential | None | Callable[[], Credential | None] = None,
        insecure: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
        max_concurrency: int = 8,
        attempts: int = retry.ATTEMPTS,
        backoff: float = retry.BACKOFF,
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
        self.auth = Authenticator(
            registry, credential, attempts=attempts, backoff=backoff, tls_only=self.verified, certs_dir=certs_dir
        )
        self.attempts = attempts
        self.backoff = backoff
        self.chunk_size = chunk_size
        self.certs_dir = certs_dir
        self.rate_limit: RateLimit | None = None  # the last one the registry announced
        self._rate_warned = False
        # Requests that send a body take slots of their own: an upload whose body streams from a
        # GET on this same client must never wait for a slot that uploads are holding.
        self._limit = asyncio.Semaphore(max_concurrency)
        self._uploads = asyncio.Semaphore(max_concurrency)
        self._cancels: list[asyncio.Future[None]] = []  # check_push's sessions, cancelled meanwhile
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
                own = unverified_transport(limits)
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
        """Close the connections, after check_push's session cancels are done; when the run is
        being cancelled itself (Ctrl-C), those are cancelled too rather than waited for."""
        try:
            if self._cancels:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    for pending in self._cancels:
                        pending.cancel()
                await asyncio.gather(*self._cancels, return_exceptions=True)
        finally:
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
        max_body: int | None = None,
        doing: str | None = None,
    ) -> httpx.Response:
        """Send a request; answer one 401 with one fresh credential; retry transient faults.

        The body is read inside each attempt (unless `stream`), so a body cut short is retried
        like any failed request; `max_body` caps it (ContentError, not retried). `doing` names
        the exchange in "connection lost while ..." messages.
        """
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
                if max_body is not None:  # bounded reads take no compression: see read_capped
                    hdrs["Accept-Encoding"] = "identity"
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
                if not stream or max_body is not None:
                    try:
                        if max_body is not None:
                            await read_capped(resp, max_body, what)
                        else:
                            await resp.aread()
                    finally:
                        await resp.aclose()
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
                doing = doing or f"{DOING.get(method, 'sending')} {what}"
                raise retry.network_error(
                    e, registry=self.registry, what=what, doing=doing, certs_dir=self.certs_dir
                ) from None
            if resp.status_code == 401 and not self._same_origin(resp.url):
                # A challenge from wherever a redirect led is not the registry's: never answered.
                await resp.aclose()
                raise AuthError(
                    f"{what}: the registry sent us to {resp.url.netloc.decode()}, which asks for "
                    f"credentials; manifesto sends credentials only to {self.registry}"
                )
            if resp.status_code != 401 or round_ == 1 or not replayable or not own:
                break
            challenge = resp.headers.get("www-authenticate", "")
            await resp.aclose()
            auth_value = await self.auth.answer(self.http, challenge, scopes, sent=auth_value)
        self._note_rate_limit(resp)
        if resp.status_code == 401 and ok_401:
            return resp
        if resp.status_code >= 400:
            await resp.aread()
            error = error_for(resp.status_code, resp.content, resp.headers.get("content-type", ""), what)
            if isinstance(error, RegistryError):
                error.retry_after = retry.retry_after_seconds(resp.headers.get("retry-after"))
                if replayable and resp.status_code in retry.RETRY_STATUSES and self.attempts > 1:
                    error.attempts = self.attempts  # retry.send made them all
                    error.args = (f"{error} ({self.attempts} attempts)",)
            raise error
        return resp

    def _note_rate_limit(self, resp: httpx.Response) -> None:
        """Keep the pull limit the registry announces; warn once when it is running out."""
        found = parse_rate_limit(resp.headers)
        if found is None:
            return
        self.rate_limit = found
        if found.low and not self._rate_warned:
            self._rate_warned = True
            log.warning(
                "rate_limit_running_out",
                registry=self.registry,
                remaining=found.remaining,
                limit=found.limit,
                window=describe_window(found.window),
            )

    async def read_rate_limit(self, repo: str, reference: ManifestRef) -> RateLimit | None:
        """The registry's pull limit, from ONE HEAD of a manifest (a HEAD is not a pull on
        Docker Hub); None when the registry announces none. NotFound when there is no such
        manifest. No warning: the caller shows what it found."""
        reference = str(reference)
        self.rate_limit, warned, self._rate_warned = None, self._rate_warned, True
        try:
            await self.request(
                "HEAD",
                self._url(repo, "manifests", reference),
                scopes=frozenset({repository_scope(repo, "pull")}),
                headers={"Accept": mediatype.ACCEPT_MANIFESTS},
                what=f"manifest {self.registry}/{repo}{_sep(reference)}{reference}",
            )
        finally:
            self._rate_warned = warned
        return self.rate_limit

    def _own_origin(self, url: str, what: str) -> bool:
        """Whether `url` is the registry's own origin; a downgrade to plain HTTP is refused."""
        if url.startswith(self.base + "/"):  # the registry's own scheme and authority, verbatim
            return True
        target, base = httpx.URL(url), httpx.URL(self.base)
        if base.scheme == "https" and target.scheme == "http" and not is_loopback_host(target.netloc.decode()):
            raise RegistryError(f"{what}: the registry sent us to plain HTTP ({target.host}); refusing")
        return self._same_origin(target)

    def _same_origin(self, url: httpx.URL) -> bool:
        """Whether `url` (a request's, or a response's after redirects) is the registry's origin.

        Credentials and challenges belong to that origin (scheme, host, port) alone: a response
        is judged by where it came from in the end, never by the URL that started the chain.
        """
        return _origin(url) == _origin(httpx.URL(self.base))

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

    @property
    def name(self) -> str:
        """The registry host: the stable name of this place (Store protocol)."""
        return self.registry

    def _url(self, repo: str, kind: str, reference: str) -> str:
        return f"/v2/{repo}/{kind}/{quote(reference, safe=':@')}"

    # ---- manifests ------------------------------------------------------------------------

    async def get_manifest(self, repo: str, reference: ManifestRef) -> Fetched:
        reference = str(reference)
        name = f"{self.registry}/{repo}{_sep(reference)}{reference}"
        what = f"manifest {name}"
        resp = await self.request(
            "GET",
            self._url(repo, "manifests", reference),
            scopes=frozenset({repository_scope(repo, "pull")}),
            headers={"Accept": mediatype.ACCEPT_MANIFESTS},
            what=what,
            max_body=MAX_MANIFEST_BYTES,
            doing=f"reading the manifest of {name}",
        )
        raw = resp.content
        digest = verified_digest(raw, reference, resp.headers.get("docker-content-digest"), what)
        media_type = detect_media_type(raw, resp.headers.get("content-type"), what)
        return Fetched(raw=raw, media_type=media_type, digest=digest)

    async def head_manifest(self, repo: str, reference: ManifestRef) -> Descriptor | None:
        reference = str(reference)
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
        return Descriptor(media_type, digest, content_length(resp, what))

    async def put_manifest(self, repo: str, reference: ManifestRef, raw: bytes, media_type: str) -> Digest:
        reference = str(reference)
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
        return content_length(resp, f"blob {self.registry}/{repo}@{digest}")

    async def read_blob(self, repo: str, digest: Digest) -> AsyncGenerator[bytes, None]:
        """A blob as a stream, verified at the end. A download cut short is ConnectionLost:
        what was already passed on cannot be taken back, so the caller restarts (transfer.py)."""
        what, doing = f"blob {self.registry}/{repo}@{digest}", f"downloading blob {digest} from {self.registry}/{repo}"
        resp = await self.request(
            "GET",
            self._url(repo, "blobs", str(digest)),
            scopes=frozenset({repository_scope(repo, "pull")}),
            what=what,
            stream=True,
            doing=doing,
        )
        hasher = digest.hasher()
        try:
            # As the network hands them over (≤ 64 KiB): re-chunking to 1 MiB held ~3 MiB more per
            # blob in flight (a cross-registry copy of five 64 MiB blobs peaked at 52 MiB, now 37).
            async for chunk in resp.aiter_bytes():
                hasher.update(chunk)
                yield chunk
        except httpx.HTTPError as e:
            raise ConnectionLost(doing, 1, _describe(e)) from None
        finally:
            await resp.aclose()
        if hasher.hexdigest() != digest.hex:
            raise DigestMismatch(f"{what}: content hashes to {digest.algorithm}:{hasher.hexdigest()}")

    async def read_blob_bytes(self, repo: str, digest: Digest, limit: int = 16 * 1024 * 1024) -> bytes:
        """A small blob (a config) in memory, verified; a body cut short is retried whole."""
        what = f"blob {self.registry}/{repo}@{digest}"
        resp = await self.request(
            "GET",
            self._url(repo, "blobs", str(digest)),
            scopes=frozenset({repository_scope(repo, "pull")}),
            what=what,
            max_body=limit,
            doing=f"downloading blob {digest} from {self.registry}/{repo}",
        )
        digest.verify(resp.content, what)
        return resp.content

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

    async def check_push(self, repo: str, name: str | None = None) -> None:
        """Raise unless we may push to `repo`: open a blob upload session there, then cancel it.

        Why not GET /v2/: on a token registry anonymous pull tokens go to anyone, so only asking
        for pull+push on the repository, as a push will, proves anything. AuthError when refused,
        NetworkError when unreachable; writes nothing (an abandoned session expires on its own).
        The session is cancelled while the caller goes on (the answer is in already); aclose()
        waits for that.
        """
        scopes = frozenset({repository_scope(repo, "pull", "push")})
        resp = await self.request(
            "POST", f"/v2/{repo}/blobs/uploads/", scopes=scopes, what=f"push to {name or f'{self.registry}/{repo}'}"
        )
        location = resp.headers.get("location")
        if location:  # distribution deletes an upload session on DELETE of its Location
            self._cancels.append(asyncio.ensure_future(self._cancel_upload(str(resp.url.join(location)), scopes)))

    async def _cancel_upload(self, url: str, scopes: frozenset[str]) -> None:
        try:
            await self.request("DELETE", url, scopes=scopes, what="cancel upload")
        except (AuthError, NotFound, RegistryError, NetworkError):
            pass  # a registry may refuse the cancel: the session expires on its own


def _sep(reference: str) -> str:
    return "@" if is_digest(reference) else ":"


def _describe(e: Exception) -> str:
    text = str(e) or type(e).__name__
    return text.splitlines()[0]


def _version() -> str:
    from manifesto import __version__

    return __version__
