"""RegistryClient under faults a real registry will not produce on demand (httpx.MockTransport).

Each test scripts the registry's answers, runs the client with `attempts`/`backoff=0`, and then
checks both the outcome and the exact requests sent: how many, in what order, with which
headers, query strings and bodies. The happy paths live in the real-registry tests.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import math
import ssl
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest

from manifesto.errors import (
    AuthError,
    ConnectionLost,
    ContentError,
    DigestMismatch,
    NetworkError,
    NotFound,
    RegistryError,
)
from manifesto.oci import mediatype
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.digest import Digest
from manifesto.store.protocol import Fetched
from manifesto.store.registry import auth as auth_module
from manifesto.store.registry import retry
from manifesto.store.registry.auth import Authenticator
from manifesto.store.registry.client import RegistryClient
from manifesto.store.registry.lookup import Credential
from manifesto.transfer import Copier, Place
from tests.support.memstore import MemoryStore

HOST = "127.0.0.1:5000"
REALM = "https://auth.example.com/token"
CHALLENGE = f'Bearer realm="{REALM}",service="registry.example",scope="repository:r:pull"'
MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": mediatype.OCI_MANIFEST,
        "config": {"mediaType": mediatype.OCI_CONFIG, "digest": "sha256:" + "a" * 64, "size": 2},
        "layers": [],
    },
    indent=2,
).encode()
MANIFEST_DIGEST = Digest.of(MANIFEST)
BLOB = bytes(range(256)) * 4  # 1024 bytes
BLOB_DESC = Descriptor("application/octet-stream", Digest.of(BLOB), len(BLOB))

Handler = Callable[[httpx.Request], httpx.Response]


class Fake:
    """A scripted registry: `handler` answers, `seen` records (the scheme probe of /v2/ aside)."""

    def __init__(self, handler: Handler):
        self.handler = handler
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path == "/v2/" and request.url.host != "auth.example.com":
            return httpx.Response(200)  # the client's scheme probe; not part of any test
        self.seen.append(request)
        return self.handler(request)

    def client(self, **kwargs) -> RegistryClient:
        kwargs.setdefault("attempts", 3)
        kwargs.setdefault("backoff", 0)
        return RegistryClient(HOST, transport=httpx.MockTransport(self), **kwargs)

    def count(self, method: str, path_part: str = "", host: str | None = None) -> int:
        return len(self.matching(method, path_part, host))

    def matching(self, method: str, path_part: str = "", host: str | None = None) -> list[httpx.Request]:
        return [
            r
            for r in self.seen
            if r.method == method and path_part in r.url.path and (host is None or r.url.host == host)
        ]


def run(fake: Fake, body: Callable[[RegistryClient], object], **kwargs):
    async def go():
        async with fake.client(**kwargs) as c:
            return await body(c)  # type: ignore[misc]

    return asyncio.run(go())


def manifest_response(raw: bytes = MANIFEST, **headers: str) -> httpx.Response:
    return httpx.Response(200, content=raw, headers={"Content-Type": mediatype.OCI_MANIFEST, **headers})


def distribution_error(status: int, code: str, message: str = "x", **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"errors": [{"code": code, "message": message}]}, headers=headers)


# ---- retries ------------------------------------------------------------------------------------


def test_503_then_200_is_retried() -> None:
    answers = iter([httpx.Response(503, text="busy"), manifest_response()])
    fake = Fake(lambda r: next(answers))
    fetched = run(fake, lambda c: c.get_manifest("r", "v1"))
    assert fetched.raw == MANIFEST and fetched.digest == MANIFEST_DIGEST
    assert fake.count("GET", "/manifests/v1") == 2


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_retryable_statuses_are_retried_until_attempts_run_out(status: int) -> None:
    fake = Fake(lambda r: httpx.Response(status, text="try later"))
    with pytest.raises(RegistryError) as info:
        run(fake, lambda c: c.get_manifest("r", "v1"), attempts=3)
    assert fake.count("GET", "/manifests/v1") == 3
    assert info.value.status == status  # the registry's last answer is what the user sees
    assert f"HTTP {status}" in str(info.value)


def test_429_retry_after_seconds_is_honoured() -> None:
    answers = iter([httpx.Response(429, headers={"Retry-After": "1"}), manifest_response()])
    fake = Fake(lambda r: next(answers))
    started = time.monotonic()
    run(fake, lambda c: c.get_manifest("r", "v1"))
    waited = time.monotonic() - started
    assert 0.9 <= waited < 5
    assert fake.count("GET") == 2


def test_429_retry_after_http_date_is_honoured() -> None:
    # HTTP dates have whole seconds: aim at the second after next, so the wait is in (1, 2].
    when = email.utils.formatdate(math.ceil(time.time()) + 1, usegmt=True)
    answers = iter([httpx.Response(429, headers={"Retry-After": when}), manifest_response()])
    fake = Fake(lambda r: next(answers))
    started = time.monotonic()
    run(fake, lambda c: c.get_manifest("r", "v1"))
    waited = time.monotonic() - started
    assert 0.9 <= waited < 5
    assert fake.count("GET") == 2


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the retry waits instead of sleeping them."""
    recorded: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(seconds: float, *args, **kwargs):
        recorded.append(seconds)
        return await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    return recorded


@pytest.mark.parametrize(
    "header",
    ["86400", email.utils.formatdate(time.time() + 86400, usegmt=True)],
    ids=["seconds", "http-date"],
)
def test_huge_retry_after_is_capped(header: str, sleeps: list[float]) -> None:
    answers = iter([httpx.Response(503, headers={"Retry-After": header}), manifest_response()])
    fake = Fake(lambda r: next(answers))
    run(fake, lambda c: c.get_manifest("r", "v1"))
    assert sleeps and max(sleeps) == retry.MAX_RETRY_AFTER == 30


@pytest.mark.parametrize(
    "value, expected",
    [
        ("0", 0.0),
        ("1", 1.0),
        (" 7 ", 7.0),
        ("30", 30.0),
        ("31", 30.0),
        ("999999999999", 30.0),
        (email.utils.formatdate(1_000_010, usegmt=True), 10.0),  # 10 s after `now`
        (email.utils.formatdate(1_000_000 + 10**6, usegmt=True), 30.0),  # far future: capped
        (email.utils.formatdate(999_000, usegmt=True), 0.0),  # in the past: now
        (None, None),
        ("", None),
        ("soon", None),
        ("-1", None),
        ("1.5", None),
    ],
)
def test_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert retry.retry_after_seconds(value, now=1_000_000) == expected


def test_retry_after_date_in_the_past_means_now() -> None:
    assert retry.retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


@pytest.mark.parametrize(
    "status, error",
    [(400, RegistryError), (403, AuthError), (404, NotFound), (405, RegistryError), (409, RegistryError), (422, RegistryError)],
)
def test_other_4xx_are_never_retried(status: int, error: type[Exception]) -> None:
    fake = Fake(lambda r: distribution_error(status, "SOMETHING", "refused"))
    with pytest.raises(error):
        run(fake, lambda c: c.get_manifest("r", "v1"), attempts=5)
    assert fake.count("GET") == 1


@pytest.mark.parametrize("exc", [httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError, httpx.ReadTimeout])
def test_transport_errors_are_retried_then_network_error(exc: type[httpx.TransportError]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc("connection refused", request=request)

    fake = Fake(handler)
    with pytest.raises(NetworkError) as info:
        run(fake, lambda c: c.get_manifest("r", "v1"), attempts=2)
    assert fake.count("GET", "/manifests/") == 2
    message = str(info.value)
    if exc is httpx.ConnectError:  # nothing answered
        assert f"cannot reach {HOST}: connection refused (2 attempts)" in message
    else:  # the registry was reached, then the connection broke
        assert message == f"connection lost while reading the manifest of {HOST}/r:v1 after 2 attempts: connection refused"
    assert "\n" not in message


def test_transport_error_then_success() -> None:
    calls = iter([httpx.ConnectError, None])

    def handler(request: httpx.Request) -> httpx.Response:
        exc = next(calls)
        if exc:
            raise exc("refused", request=request)
        return manifest_response()

    fake = Fake(handler)
    assert run(fake, lambda c: c.get_manifest("r", "v1"), attempts=2).digest == MANIFEST_DIGEST


# ---- auth ---------------------------------------------------------------------------------------


def bearer_registry(token_doc: dict | Callable[[httpx.Request], dict], accept: Callable[[str], bool], ok: Handler) -> Fake:
    """Registry answering 401 + CHALLENGE unless `accept(Authorization)`; token service at REALM."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example.com":
            doc = token_doc(request) if callable(token_doc) else token_doc
            return httpx.Response(200, json=doc)
        if not accept(request.headers.get("authorization", "")):
            return httpx.Response(
                401,
                json={"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
                headers={"WWW-Authenticate": CHALLENGE},
            )
        return ok(request)

    return Fake(handler)


def test_401_is_answered_by_one_token_fetch_and_one_retry() -> None:
    fake = bearer_registry({"token": "t1", "expires_in": 300}, lambda a: a == "Bearer t1", lambda r: manifest_response())

    async def twice(c: RegistryClient):
        await c.get_manifest("r", "v1")
        await c.get_manifest("r", "v2")  # the cached token goes up front: no 401, no fetch
        return c.auth.token_fetches

    assert run(fake, twice) == 1
    gets = fake.matching("GET", "/manifests/")
    assert [r.headers.get("authorization") for r in gets] == [None, "Bearer t1", "Bearer t1"]
    (token_request,) = fake.matching("GET", host="auth.example.com")
    assert token_request.url.params["service"] == "registry.example"
    assert token_request.url.params.get_list("scope") == ["repository:r:pull"]
    assert "authorization" not in token_request.headers  # anonymous: no credential to send


def test_second_401_raises_auth_error_without_looping() -> None:
    fake = bearer_registry({"token": "refused"}, lambda a: False, lambda r: manifest_response())
    with pytest.raises(AuthError) as info:
        run(fake, lambda c: c.get_manifest("r", "v1"), attempts=5)
    assert fake.count("GET", host="auth.example.com") == 1
    assert fake.count("GET", "/manifests/") == 2
    assert "HTTP 401" in str(info.value)


def test_token_response_with_access_token_only() -> None:
    fake = bearer_registry({"access_token": "oauth-t"}, lambda a: a == "Bearer oauth-t", lambda r: manifest_response())
    assert run(fake, lambda c: c.get_manifest("r", "v1")).digest == MANIFEST_DIGEST


@pytest.mark.parametrize("doc", [{}, {"token": ""}, {"token": 5}, {"expires_in": 60}])
def test_token_response_without_a_token_is_an_auth_error(doc: dict) -> None:
    fake = bearer_registry(doc, lambda a: False, lambda r: manifest_response())
    with pytest.raises(AuthError, match="without a token"):
        run(fake, lambda c: c.get_manifest("r", "v1"))


def _token_service_failing(error: Exception) -> Fake:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example.com":
            raise error
        return httpx.Response(401, headers={"WWW-Authenticate": CHALLENGE})

    return Fake(handler)


def test_a_token_service_nobody_answers_is_cannot_reach() -> None:
    fake = _token_service_failing(httpx.ConnectError("connection refused"))
    with pytest.raises(NetworkError) as info:
        run(fake, lambda c: c.get_manifest("r", "v1"), attempts=2)
    assert str(info.value) == f"{HOST}: cannot reach its token service auth.example.com: connection refused (2 attempts)"


def test_a_token_service_failing_tls_verification_names_the_ca_fix(tmp_path: Path) -> None:
    bad = ssl.SSLCertVerificationError(1, "certificate verify failed")
    bad.verify_message = "self-signed certificate"
    error = httpx.ConnectError("tls")
    error.__cause__ = bad
    fake = _token_service_failing(error)
    with pytest.raises(NetworkError) as info:
        run(fake, lambda c: c.get_manifest("r", "v1"), attempts=3, certs_dir=tmp_path)
    assert str(info.value) == (
        f"{HOST}: TLS certificate verification failed for auth.example.com, where the registry sent us "
        f"(self-signed certificate); put its CA in {tmp_path}/{HOST}/ca.crt"
    )
    assert fake.count("GET", host="auth.example.com") == 1  # a certificate is not retried


def test_a_token_service_connection_cut_is_connection_lost() -> None:
    fake = _token_service_failing(httpx.ReadError("connection reset by peer"))
    with pytest.raises(ConnectionLost, match="while fetching a token from auth.example.com after 2 attempts"):
        run(fake, lambda c: c.get_manifest("r", "v1"), attempts=2)


def test_token_service_refusal_is_an_auth_error_with_a_hint() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example.com":
            return httpx.Response(401, json={"details": "incorrect username or password"})
        return httpx.Response(401, headers={"WWW-Authenticate": CHALLENGE})

    with pytest.raises(AuthError) as info:
        run(Fake(handler), lambda c: c.get_manifest("r", "v1"))
    assert "token service refused (HTTP 401)" in str(info.value)
    assert "manifesto login" in str(info.value)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _token_service(docs: list[dict]) -> tuple[httpx.AsyncClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=docs[min(len(seen), len(docs)) - 1])

    return httpx.AsyncClient(transport=httpx.MockTransport(handler)), seen


@pytest.mark.parametrize("expires_in", [None, 0, -5, "300", 1.5])
def test_missing_or_bad_expires_in_means_60_seconds(expires_in: object) -> None:
    doc: dict = {"token": "t1"}
    if expires_in is not None:
        doc["expires_in"] = expires_in
    clock = Clock()
    scopes = frozenset({"repository:r:pull"})

    async def go() -> list[str | None]:
        http, seen = _token_service([doc, {"token": "t2"}])
        async with http:
            a = Authenticator(HOST, None, clock=clock)
            got = [await a.answer(http, CHALLENGE, scopes)]
            clock.now = auth_module.DEFAULT_EXPIRES - auth_module.CLOCK_SKEW - 1
            got.append(await a.header(http, scopes))
            clock.now = auth_module.DEFAULT_EXPIRES
            got.append(await a.header(http, scopes))
            assert len(seen) == a.token_fetches == 2
            return got

    assert auth_module.DEFAULT_EXPIRES == 60
    assert asyncio.run(go()) == ["Bearer t1", "Bearer t1", "Bearer t2"]


def test_expires_in_is_respected() -> None:
    clock = Clock()
    scopes = frozenset({"repository:r:pull"})

    async def go() -> list[str | None]:
        http, _ = _token_service([{"token": "t1", "expires_in": 300}, {"token": "t2", "expires_in": 300}])
        async with http:
            a = Authenticator(HOST, None, clock=clock)
            got = [await a.answer(http, CHALLENGE, scopes)]
            clock.now = 290
            got.append(await a.header(http, scopes))
            clock.now = 300
            got.append(await a.header(http, scopes))
            return got

    assert asyncio.run(go()) == ["Bearer t1", "Bearer t1", "Bearer t2"]


def test_cached_token_is_per_scope() -> None:
    scopes_a = frozenset({"repository:a:pull"})
    scopes_ab = frozenset({"repository:a:pull,push"})

    async def go() -> tuple[list[str | None], list[list[str]]]:
        http, seen = _token_service([{"token": "t1"}, {"token": "t2"}])
        async with http:
            a = Authenticator(HOST, None)
            got = [await a.answer(http, f'Bearer realm="{REALM}",service="s"', scopes_a)]
            got.append(await a.header(http, frozenset({"repository:a:pull"})))  # covered
            got.append(await a.header(http, scopes_ab))  # push not covered: new token
            got.append(await a.header(http, frozenset({"repository:a:push"})))  # now covered
            return got, [r.url.params.get_list("scope") for r in seen]

    got, scopes_asked = asyncio.run(go())
    assert got == ["Bearer t1", "Bearer t1", "Bearer t2", "Bearer t2"]
    assert scopes_asked == [["repository:a:pull"], ["repository:a:pull,push"]]


def test_expired_token_is_refetched_up_front() -> None:
    n = iter(range(1, 10))
    fake = bearer_registry(lambda r: {"token": f"t{next(n)}"}, lambda a: a.startswith("Bearer t"), lambda r: manifest_response())
    clock = Clock()

    async def go(c: RegistryClient) -> int:
        c.auth = Authenticator(HOST, None, clock=clock)
        await c.get_manifest("r", "v1")
        clock.now = 3600
        await c.get_manifest("r", "v1")
        return c.auth.token_fetches

    assert run(fake, go) == 2
    gets = fake.matching("GET", "/manifests/")
    assert [r.headers.get("authorization") for r in gets] == [None, "Bearer t1", "Bearer t2"]


def test_identity_token_uses_oauth_refresh_token_post() -> None:
    def token(request: httpx.Request) -> dict:
        return {"access_token": "from-refresh", "expires_in": 300}

    fake = bearer_registry(token, lambda a: a == "Bearer from-refresh", lambda r: manifest_response())
    cred = Credential("alice", "identity-xyz", kind="identity_token")
    run(fake, lambda c: c.get_manifest("r", "v1"), credential=cred)
    assert fake.count("GET", host="auth.example.com") == 0
    (post,) = fake.matching("POST", host="auth.example.com")
    assert post.headers["content-type"] == "application/x-www-form-urlencoded"
    form = {k: v for k, (v,) in parse_qs(post.content.decode()).items()}
    assert form == {
        "grant_type": "refresh_token",
        "refresh_token": "identity-xyz",
        "client_id": "manifesto",
        "service": "registry.example",
        "scope": "repository:r:pull",
    }
    assert "authorization" not in post.headers  # the identity token is the credential


def test_password_credential_uses_basic_on_the_token_get() -> None:
    fake = bearer_registry({"token": "t"}, lambda a: a == "Bearer t", lambda r: manifest_response())
    run(fake, lambda c: c.get_manifest("r", "v1"), credential=Credential("alice", "s3cret"))
    (get,) = fake.matching("GET", host="auth.example.com")
    assert get.headers["authorization"] == "Basic " + base64.b64encode(b"alice:s3cret").decode()
    assert get.url.params["account"] == "alice"


def test_basic_challenge_is_answered_with_the_credential() -> None:
    want = "Basic " + base64.b64encode(b"bob:pw").decode()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != want:
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="Registry Realm"'})
        return manifest_response()

    fake = Fake(handler)

    async def twice(c: RegistryClient):
        await c.get_manifest("r", "v1")
        await c.get_manifest("r", "v1")

    run(fake, twice, credential=Credential("bob", "pw"))
    assert [r.headers.get("authorization") for r in fake.seen] == [None, want, want]


def test_basic_challenge_without_credential_says_login() -> None:
    fake = Fake(lambda r: httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="x"'}))
    with pytest.raises(AuthError, match="manifesto login"):
        run(fake, lambda c: c.get_manifest("r", "v1"))
    assert fake.count("GET") == 1


# ---- digests ------------------------------------------------------------------------------------


def test_manifest_bytes_not_matching_the_requested_digest() -> None:
    other = Digest.of(b"something else")
    fake = Fake(lambda r: manifest_response())
    with pytest.raises(DigestMismatch) as info:
        run(fake, lambda c: c.get_manifest("r", str(other)))
    assert str(other) in str(info.value)
    assert fake.count("GET") == 1  # a mismatch is an answer, not a fault to retry


def test_docker_content_digest_header_disagreeing() -> None:
    lie = "sha256:" + "0" * 64
    fake = Fake(lambda r: manifest_response(**{"Docker-Content-Digest": lie}))
    with pytest.raises(DigestMismatch) as info:
        run(fake, lambda c: c.get_manifest("r", "v1"))
    assert lie in str(info.value) and str(MANIFEST_DIGEST) in str(info.value)


def test_docker_content_digest_header_agreeing() -> None:
    fake = Fake(lambda r: manifest_response(**{"Docker-Content-Digest": str(MANIFEST_DIGEST)}))
    fetched = run(fake, lambda c: c.get_manifest("r", str(MANIFEST_DIGEST)))
    assert fetched.raw == MANIFEST  # exact bytes, not re-serialized
    assert fetched.media_type == mediatype.OCI_MANIFEST


def test_head_manifest_naming_another_digest() -> None:
    fake = Fake(
        lambda r: httpx.Response(
            200,
            headers={
                "Docker-Content-Digest": "sha256:" + "1" * 64,
                "Content-Type": mediatype.OCI_MANIFEST,
                "Content-Length": str(len(MANIFEST)),
            },
        )
    )
    with pytest.raises(DigestMismatch):
        run(fake, lambda c: c.head_manifest("r", str(MANIFEST_DIGEST)))


def test_put_manifest_by_a_digest_the_bytes_do_not_have_sends_nothing() -> None:
    fake = Fake(lambda r: httpx.Response(201))
    with pytest.raises(DigestMismatch):
        run(fake, lambda c: c.put_manifest("r", "sha256:" + "2" * 64, MANIFEST, mediatype.OCI_MANIFEST))
    assert fake.seen == []


def test_put_manifest_registry_storing_another_digest() -> None:
    fake = Fake(lambda r: httpx.Response(201, headers={"Docker-Content-Digest": "sha256:" + "3" * 64}))
    with pytest.raises(DigestMismatch):
        run(fake, lambda c: c.put_manifest("r", "v1", MANIFEST, mediatype.OCI_MANIFEST))


def test_put_manifest_sends_exact_bytes_and_content_type() -> None:
    fake = Fake(lambda r: httpx.Response(201, headers={"Docker-Content-Digest": str(MANIFEST_DIGEST)}))
    digest = run(fake, lambda c: c.put_manifest("r", "v1", MANIFEST, mediatype.OCI_MANIFEST))
    assert digest == MANIFEST_DIGEST
    (put,) = fake.seen
    assert put.content == MANIFEST
    assert put.headers["content-type"] == mediatype.OCI_MANIFEST


def test_manifest_over_4_mib_is_refused_before_sending() -> None:
    big = b'{"schemaVersion":2,"layers":[],"pad":"' + b"x" * (5 * 1024 * 1024) + b'"}'
    fake = Fake(lambda r: httpx.Response(201))
    with pytest.raises(ContentError, match="4 MiB"):
        run(fake, lambda c: c.put_manifest("r", "v1", big, mediatype.OCI_MANIFEST))
    assert fake.seen == []


def test_blob_content_not_matching_its_digest() -> None:
    fake = Fake(lambda r: httpx.Response(200, content=BLOB[:-1] + b"!"))

    async def read(c: RegistryClient) -> bytes:
        return await c.read_blob_bytes("r", BLOB_DESC.digest)

    with pytest.raises(DigestMismatch):
        run(fake, read)


# ---- uploads ------------------------------------------------------------------------------------


@pytest.fixture
def blob_file(tmp_path: Path) -> Path:
    path = tmp_path / "blob"
    path.write_bytes(BLOB)
    return path


async def _stream(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 100):
        yield data[i : i + 100]


@pytest.mark.parametrize(
    "location, put_host, put_path",
    [
        ("/v2/r/blobs/uploads/u1?_state=abc", "127.0.0.1", "/v2/r/blobs/uploads/u1"),
        ("u1?_state=abc", "127.0.0.1", "/v2/r/blobs/uploads/u1"),  # relative to the POST's URL
        ("https://127.0.0.1:5000/v2/r/blobs/uploads/u1?_state=abc", "127.0.0.1", "/v2/r/blobs/uploads/u1"),
        ("https://uploads.example.com/bucket/u1?_state=abc", "uploads.example.com", "/bucket/u1"),
    ],
)
def test_upload_location_relative_or_absolute_keeps_its_query(location: str, put_host: str, put_path: str, blob_file: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(202, headers={"Location": location})
        if request.method == "PUT":
            return httpx.Response(201, headers={"Docker-Content-Digest": str(BLOB_DESC.digest)})
        return httpx.Response(404)

    fake = Fake(handler)
    run(fake, lambda c: c.write_blob("r", BLOB_DESC, blob_file))
    (put,) = fake.matching("PUT")
    assert (put.url.host, put.url.path) == (put_host, put_path)
    assert dict(put.url.params) == {"_state": "abc", "digest": str(BLOB_DESC.digest)}
    assert put.content == BLOB
    assert put.headers["content-type"] == "application/octet-stream"
    assert put.headers["content-length"] == str(len(BLOB))


def test_chunked_upload_patches_with_content_range_then_puts_digest(blob_file: Path) -> None:
    states = iter(range(1, 100))

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method in ("POST", "PATCH"):
            return httpx.Response(202, headers={"Location": f"/v2/r/blobs/uploads/u1?_state=s{next(states)}"})
        if request.method == "PUT":
            return httpx.Response(201, headers={"Docker-Content-Digest": str(BLOB_DESC.digest)})
        return httpx.Response(404)

    fake = Fake(handler)
    run(fake, lambda c: c.write_blob("r", BLOB_DESC, blob_file), chunk_size=300)
    assert [r.method for r in fake.seen] == ["POST", "PATCH", "PATCH", "PATCH", "PATCH", "PUT"]
    patches = fake.matching("PATCH")
    assert [p.headers["content-range"] for p in patches] == ["0-299", "300-599", "600-899", "900-1023"]
    assert [p.headers["content-length"] for p in patches] == ["300", "300", "300", "124"]
    assert b"".join(p.content for p in patches) == BLOB
    # each request goes to the Location the previous answer gave
    assert [p.url.params["_state"] for p in patches] == ["s1", "s2", "s3", "s4"]
    (put,) = fake.matching("PUT")
    assert dict(put.url.params) == {"_state": "s5", "digest": str(BLOB_DESC.digest)}
    assert put.content == b""


def test_broken_upload_restarts_from_a_new_session(blob_file: Path) -> None:
    sessions = iter(["u1", "u2", "u3"])
    put_answers = iter([distribution_error(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry")])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(202, headers={"Location": f"/v2/r/blobs/uploads/{next(sessions)}?_state=x"})
        if request.method == "PUT":
            return next(put_answers, httpx.Response(201, headers={"Docker-Content-Digest": str(BLOB_DESC.digest)}))
        if request.method == "HEAD":
            return httpx.Response(404)
        return httpx.Response(500)

    fake = Fake(handler)
    run(fake, lambda c: c.write_blob("r", BLOB_DESC, blob_file))
    assert [r.method for r in fake.seen] == ["POST", "PUT", "HEAD", "POST", "PUT"]
    puts = fake.matching("PUT")
    assert [p.url.path.rsplit("/", 1)[1] for p in puts] == ["u1", "u2"]
    assert puts[1].content == BLOB  # the file was read again from the start


def test_broken_chunked_upload_restarts_from_a_new_session(blob_file: Path) -> None:
    sessions = iter(["u1", "u2"])
    patch_answers = iter([distribution_error(404, "BLOB_UPLOAD_INVALID", "blob upload invalid")])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(202, headers={"Location": f"/v2/r/blobs/uploads/{next(sessions)}"})
        if request.method == "PATCH":
            return next(patch_answers, httpx.Response(202, headers={"Location": request.url.path}))
        if request.method == "PUT":
            return httpx.Response(201)
        return httpx.Response(404)

    fake = Fake(handler)
    run(fake, lambda c: c.write_blob("r", BLOB_DESC, blob_file), chunk_size=600)
    assert [r.method for r in fake.seen] == ["POST", "PATCH", "HEAD", "POST", "PATCH", "PATCH", "PUT"]
    assert b"".join(p.content for p in fake.matching("PATCH")[1:]) == BLOB


def test_broken_upload_from_a_stream_is_not_restarted() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(202, headers={"Location": "/v2/r/blobs/uploads/u1"})
        return distribution_error(404, "BLOB_UPLOAD_UNKNOWN")

    fake = Fake(handler)
    with pytest.raises(NotFound):
        run(fake, lambda c: c.write_blob("r", BLOB_DESC, _stream(BLOB)))
    assert fake.count("POST") == 1
    assert fake.count("PUT") == 1


def test_stream_body_is_sent_once_even_on_503() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(202, headers={"Location": "/v2/r/blobs/uploads/u1"})
        return httpx.Response(503)

    fake = Fake(handler)
    with pytest.raises(RegistryError):
        run(fake, lambda c: c.write_blob("r", BLOB_DESC, _stream(BLOB)), attempts=5)
    assert fake.count("PUT") == 1  # a consumed stream cannot be replayed


def test_final_put_failing_after_the_blob_landed_is_success(blob_file: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(202, headers={"Location": "/v2/r/blobs/uploads/u1?_state=x"})
        if request.method == "PUT":
            return distribution_error(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry")
        if request.method == "HEAD":
            return httpx.Response(200, headers={"Content-Length": str(len(BLOB))})
        return httpx.Response(500)

    fake = Fake(handler)
    run(fake, lambda c: c.write_blob("r", BLOB_DESC, blob_file))
    assert [r.method for r in fake.seen] == ["POST", "PUT", "HEAD"]
    (head,) = fake.matching("HEAD")
    assert head.url.path == f"/v2/r/blobs/{BLOB_DESC.digest}"


def test_connection_lost_after_the_final_put_landed_is_success(blob_file: Path) -> None:
    """The PUT is stored but the answer is lost; the replay gets BLOB_UPLOAD_UNKNOWN; HEAD shows it."""
    landed = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(202, headers={"Location": "/v2/r/blobs/uploads/u1?_state=x"})
        if request.method == "PUT":
            if not landed:
                landed.append(request.content)
                raise httpx.ReadError("connection reset by peer", request=request)
            return distribution_error(404, "BLOB_UPLOAD_UNKNOWN")
        if request.method == "HEAD":
            return httpx.Response(200, headers={"Content-Length": str(len(BLOB))}) if landed else httpx.Response(404)
        return httpx.Response(500)

    fake = Fake(handler)
    run(fake, lambda c: c.write_blob("r", BLOB_DESC, blob_file))
    assert landed == [BLOB]
    assert [r.method for r in fake.seen] == ["POST", "PUT", "PUT", "HEAD"]


def test_head_showing_a_different_size_is_not_success(blob_file: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(202, headers={"Location": "/v2/r/blobs/uploads/u1"})
        if request.method == "PUT":
            return distribution_error(404, "BLOB_UPLOAD_UNKNOWN")
        return httpx.Response(200, headers={"Content-Length": "1"})

    fake = Fake(handler)
    with pytest.raises(NotFound):
        run(fake, lambda c: c.write_blob("r", BLOB_DESC, blob_file))
    assert fake.count("POST") == 3  # the first session and two restarts, then give up


def test_a_failing_head_after_a_broken_upload_keeps_the_upload_error() -> None:
    """The "did the PUT land?" HEAD fails too: the user hears why the upload broke, not the HEAD."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(202, headers={"Location": "/v2/r/blobs/uploads/u1"})
        if request.method == "PUT":
            return distribution_error(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry")
        return httpx.Response(400, text="head broke")

    fake = Fake(handler)
    with pytest.raises(NotFound, match="blob upload unknown"):
        run(fake, lambda c: c.write_blob("r", BLOB_DESC, _stream(BLOB)))
    assert fake.count("HEAD") == 1


def test_a_broken_streamed_copy_asks_once_per_attempt_whether_the_put_landed() -> None:
    """One HEAD per broken upload (write_blob's); the copier only restarts from the source."""
    puts = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "HEAD":
            return httpx.Response(404)
        if request.method == "POST":
            return httpx.Response(202, headers={"Location": f"/v2/dst/blobs/uploads/u{len(puts)}"})
        if request.method == "PUT":
            puts.append(request)
            if len(puts) == 1:
                raise httpx.ReadError("connection reset by peer", request=request)
            return httpx.Response(201)
        return httpx.Response(500)

    fake = Fake(handler)
    source = MemoryStore("source")  # another store: the blob is streamed from it
    source.blobs[("src", BLOB_DESC.digest)] = BLOB

    async def go(c: RegistryClient) -> None:
        await Copier(Place(c, "dst")).blob(Place(source, "src"), BLOB_DESC)

    run(fake, go, attempts=1)
    assert len(puts) == 2
    blob_heads = fake.matching("HEAD", f"/v2/dst/blobs/{BLOB_DESC.digest}")
    assert len(blob_heads) == 2  # before copying, and once after the broken PUT


def test_upload_answer_without_location_is_a_registry_error(blob_file: Path) -> None:
    fake = Fake(lambda r: httpx.Response(202))
    with pytest.raises(RegistryError, match="no upload Location"):
        run(fake, lambda c: c.write_blob("r", BLOB_DESC, blob_file))


def test_upload_answer_naming_another_digest(blob_file: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(202, headers={"Location": "/v2/r/blobs/uploads/u1"})
        return httpx.Response(201, headers={"Docker-Content-Digest": "sha256:" + "4" * 64})

    with pytest.raises(DigestMismatch):
        run(Fake(handler), lambda c: c.write_blob("r", BLOB_DESC, blob_file))


# ---- mounts -------------------------------------------------------------------------------------


def test_mount_answered_201_is_done() -> None:
    fake = Fake(lambda r: httpx.Response(201, headers={"Location": f"/v2/r/blobs/{BLOB_DESC.digest}"}))
    assert run(fake, lambda c: c.mount_blob("r", BLOB_DESC, "src")) is None
    (post,) = fake.seen
    assert dict(post.url.params) == {"mount": str(BLOB_DESC.digest), "from": "src"}


def test_mount_answered_202_continues_into_that_upload_session(blob_file: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(202, headers={"Location": "/v2/r/blobs/uploads/from-mount?_state=m"})
        if request.method == "PUT":
            return httpx.Response(201)
        return httpx.Response(404)

    async def mount_then_upload(c: RegistryClient) -> str | None:
        location = await c.mount_blob("r", BLOB_DESC, "src")
        assert location is not None
        await c.write_blob("r", BLOB_DESC, blob_file, location=location)
        return location

    fake = Fake(handler)
    run(fake, mount_then_upload)
    assert [r.method for r in fake.seen] == ["POST", "PUT"]  # no second session
    (put,) = fake.matching("PUT")
    assert put.url.path == "/v2/r/blobs/uploads/from-mount"
    assert dict(put.url.params) == {"_state": "m", "digest": str(BLOB_DESC.digest)}


def test_mount_answered_401_falls_back_to_a_plain_upload(blob_file: Path) -> None:
    insufficient = f'Bearer realm="{REALM}",service="registry.example",scope="repository:src:pull",error="insufficient_scope"'

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example.com":
            return httpx.Response(200, json={"token": "push-only"})
        if request.method == "POST" and "mount" in request.url.params:
            return httpx.Response(401, headers={"WWW-Authenticate": insufficient})
        if request.headers.get("authorization") != "Bearer push-only":
            return httpx.Response(401, headers={"WWW-Authenticate": CHALLENGE})
        if request.method == "POST":
            return httpx.Response(202, headers={"Location": "/v2/r/blobs/uploads/plain?_state=p"})
        if request.method == "PUT":
            return httpx.Response(201)
        return httpx.Response(404)

    async def copy(c: RegistryClient) -> None:
        location = await c.mount_blob("r", BLOB_DESC, "src")
        assert location is not None and "/uploads/plain" in location
        await c.write_blob("r", BLOB_DESC, blob_file, location=location)

    fake = Fake(handler)
    run(fake, copy)
    registry_side = [r for r in fake.seen if r.url.host != "auth.example.com"]
    mounts = [r for r in registry_side if r.method == "POST" and "mount" in r.url.params]
    plain = [r for r in registry_side if r.method == "POST" and "mount" not in r.url.params]
    assert 1 <= len(mounts) <= 2  # one 401 answered at most once, never a loop
    assert len(plain) == 1 and plain[0].headers["authorization"] == "Bearer push-only"
    (put,) = fake.matching("PUT")
    assert put.url.path == "/v2/r/blobs/uploads/plain" and put.content == BLOB
    assert fake.count("GET", host="auth.example.com") <= 2


def test_copier_mounts_within_one_registry_and_counts_it() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "HEAD":
            return httpx.Response(404)
        if request.method == "POST":
            return httpx.Response(201)
        return httpx.Response(500)

    fake = Fake(handler)

    async def go(c: RegistryClient):
        copier = Copier(Place(c, "dst"))
        await asyncio.gather(copier.blob(Place(c, "src"), BLOB_DESC), copier.blob(Place(c, "src"), BLOB_DESC))
        return copier.stats

    stats = run(fake, go)
    assert (stats.blobs_mounted, stats.blobs_uploaded) == (1, 0)
    # once per digest per run; no HEAD first: the mount answers whether the target has it
    assert fake.count("HEAD") == 0 and fake.count("POST") == 1


def test_copier_streams_into_the_mount_session_when_mount_answers_202() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "HEAD":
            return httpx.Response(404)
        if request.method == "POST":
            return httpx.Response(202, headers={"Location": "/v2/dst/blobs/uploads/m1?_state=q"})
        if request.method == "GET" and request.url.path.startswith("/v2/src/blobs/"):
            return httpx.Response(200, content=BLOB)
        if request.method == "PUT":
            return httpx.Response(201)
        return httpx.Response(500)

    fake = Fake(handler)

    async def go(c: RegistryClient):
        copier = Copier(Place(c, "dst"))
        await copier.blob(Place(c, "src"), BLOB_DESC)
        return copier.stats

    stats = run(fake, go)
    assert (stats.blobs_mounted, stats.blobs_uploaded, stats.bytes_uploaded) == (0, 1, len(BLOB))
    assert [r.method for r in fake.seen] == ["POST", "HEAD", "GET", "PUT"]  # mount refused: is it there?
    (put,) = fake.matching("PUT")
    assert put.url.path == "/v2/dst/blobs/uploads/m1" and put.content == BLOB


def test_fetched_descriptor_is_of_the_exact_bytes() -> None:
    fetched = Fetched(MANIFEST, mediatype.OCI_MANIFEST, MANIFEST_DIGEST)
    d = fetched.descriptor()
    assert (d.media_type, d.digest, d.size) == (mediatype.OCI_MANIFEST, MANIFEST_DIGEST, len(MANIFEST))


def test_a_cancelled_run_does_not_wait_for_the_access_probe_s_cancel() -> None:
    """check_push cancels its upload session in the background; Ctrl-C (the run's task
    cancelled) must not then wait for a registry slow to answer that DELETE."""

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(202, headers={"Location": "/v2/r/blobs/uploads/abc"})
        if request.method == "DELETE":
            await asyncio.sleep(30)
        return httpx.Response(204)

    async def run() -> None:
        async with RegistryClient(HOST, transport=httpx.MockTransport(handler), attempts=1) as client:
            await client.check_push("r", f"{HOST}/r")
            await asyncio.sleep(30)  # the push the probe was for

    async def main() -> float:
        task = asyncio.ensure_future(run())
        await asyncio.sleep(0.3)
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - started

    assert asyncio.run(main()) < 5
