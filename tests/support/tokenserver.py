"""A real Docker-token-protocol authorization server for tests (stdlib HTTP in a thread).

Why: distribution 2.8's `auth: token` mode needs a token issuer; tests must provoke
every corner of the protocol (anonymous tokens, insufficient scope on cross-repo
mounts, expiry, refresh tokens, `token` vs `access_token`) and count fetches, which
no hosted service allows. The server signs ES256 (or RS256) JWTs with a throwaway
key and writes a self-signed certificate for that key as the registry's
``rootcertbundle``; each JWT carries the certificate in ``x5c`` (what distribution
uses to find the key) plus the libtrust ``kid``.

Protocol (distribution docs: spec/auth/token.md, spec/auth/oauth.md, spec/auth/jwt.md):

* ``GET /token?service=S&scope=A&scope=B`` with optional Basic auth. Every ``scope``
  value may itself hold several space-separated scopes. Answer:
  ``{"token", "access_token", "expires_in", "issued_at"}`` (+``refresh_token`` when
  ``offline_token=true`` and the client authenticated).
* ``POST /token`` form: ``grant_type=password`` (username, password) or
  ``grant_type=refresh_token`` (refresh_token); ``service``, ``scope`` (space
  separated), ``client_id``, ``access_type=offline``. Answer: ``{"access_token",
  "scope", "expires_in", "issued_at"}`` (+``refresh_token`` for offline/refresh).

Claims: iss, sub, aud (a STRING: distribution 2.8 rejects a list), exp, nbf, iat,
jti, access=[{type, name, actions}]. Granted actions = requested ∩ ACL(user, repo).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .certs import self_signed

DEFAULT_SERVICE = "manifesto-test-registry"
DEFAULT_ISSUER = "manifesto-test-issuer"
DEFAULT_USERS: Mapping[str, str] = {"alice": "alice-secret", "bob": "bob-secret"}

# distribution 2.8 accepts a token up to this long after its `exp` (and before `nbf`).
REGISTRY_LEEWAY_SECONDS = 60

TokenField = Literal["both", "token", "access_token"]
Acl = Callable[[str | None, str], Iterable[str]]
"""ACL(user or None for anonymous, repository name) -> allowed actions."""


def default_acl(user: str | None, repo: str) -> set[str]:
    """Authenticated users may do anything; anonymous users may pull."""
    if user:
        return {"pull", "push", "delete", "*"}
    return {"pull"}


@dataclasses.dataclass(frozen=True)
class Scope:
    """One resource scope, e.g. ``repository:library/busybox:pull,push``."""

    type: str
    name: str
    actions: frozenset[str]

    @classmethod
    def parse(cls, text: str) -> Scope:
        # type[(class)]:name:actions — the name may itself contain ':' (host:port/repo)
        rtype, sep, rest = text.partition(":")
        name, sep2, actions = rest.rpartition(":")
        if not sep or not sep2 or not rtype or not name:
            raise ValueError(f"malformed scope {text!r}")
        return cls(rtype, name, frozenset(a for a in actions.split(",") if a))

    @property
    def key(self) -> str:
        return f"{self.type}:{self.name}"

    def __str__(self) -> str:
        return f"{self.key}:{','.join(sorted(self.actions))}"


def parse_scopes(values: Iterable[str]) -> dict[str, frozenset[str]]:
    """Parse repeated and/or space-separated scope values into {type:name -> actions}."""
    out: dict[str, set[str]] = {}
    for value in values:
        for part in value.split():
            s = Scope.parse(part)
            out.setdefault(s.key, set()).update(s.actions)
    return {k: frozenset(v) for k, v in out.items()}


@dataclasses.dataclass(frozen=True)
class TokenRequest:
    """One request the token server received (for assertions and counting)."""

    method: str
    grant_type: str | None  # None for GET; "password" / "refresh_token" for POST
    user: str | None  # authenticated user; None for anonymous or failed auth
    service: str | None
    scopes: dict[str, frozenset[str]]  # requested, e.g. {"repository:a/b": {"pull","push"}}
    granted: dict[str, frozenset[str]]  # what the issued token allows ({} if none issued)
    status: int
    client_id: str | None = None
    offline: bool = False  # offline_token=true (GET) / access_type=offline (POST)
    time: float = 0.0

    def wants(self, repo: str, *actions: str) -> bool:
        """True if this request asked for *actions* on repository *repo*."""
        return set(actions) <= self.scopes.get(f"repository:{repo}", frozenset())


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def libtrust_key_id(public_key: Any) -> str:
    """The libtrust key id distribution uses for `kid`: base32(sha256(SPKI DER)[:30]) in 4-char groups."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(b32[i : i + 4] for i in range(0, len(b32), 4))


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self.server.owner._handle(self, "GET")

    def do_POST(self) -> None:
        self.server.owner._handle(self, "POST")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: TokenServer


class TokenServer:
    """Threaded token server on a free 127.0.0.1 port. Mutable per test via ``configure``."""

    def __init__(
        self,
        directory: str | Path,
        *,
        service: str = DEFAULT_SERVICE,
        issuer: str = DEFAULT_ISSUER,
        users: Mapping[str, str] | None = None,
        acl: Acl | None = None,
        expires_in: int = 300,
        allow_anonymous: bool = True,
        token_field: TokenField | None = None,
        strict_expiry: bool = False,
        alg: Literal["ES256", "RS256"] = "ES256",
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.service = service
        self.issuer = issuer
        self.alg = alg
        self._lock = threading.Lock()
        self._defaults = dict(
            users=dict(DEFAULT_USERS if users is None else users),
            acl=acl or default_acl,
            expires_in=expires_in,
            allow_anonymous=allow_anonymous,
            token_field=token_field,
            strict_expiry=strict_expiry,
            valid_for=None,
        )
        self._apply(self._defaults)
        self._requests: list[TokenRequest] = []
        self._refresh_tokens: dict[str, str] = {}  # refresh token -> user
        self._failures: list[tuple[int, bytes]] = []
        self._make_key()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- configuration ---------------------------------------------------------------

    def _apply(self, cfg: Mapping[str, Any]) -> None:
        self.users: dict[str, str] = dict(cfg["users"])
        self.acl: Acl = cfg["acl"]
        self.expires_in: int = cfg["expires_in"]
        self.allow_anonymous: bool = cfg["allow_anonymous"]
        self.token_field: TokenField | None = cfg["token_field"]
        self.strict_expiry: bool = cfg["strict_expiry"]
        self.valid_for: int | None = cfg["valid_for"]

    _UNSET: Any = object()

    def configure(
        self,
        *,
        users: Mapping[str, str] | None = _UNSET,
        acl: Acl | None = _UNSET,
        expires_in: int = _UNSET,
        allow_anonymous: bool = _UNSET,
        token_field: TokenField | None = _UNSET,
        strict_expiry: bool = _UNSET,
        valid_for: int | None = _UNSET,
    ) -> TokenServer:
        """Change behaviour for the rest of the test (``reset`` restores defaults).

        ``strict_expiry=True`` back-dates ``exp`` by distribution's 60 s leeway so the
        registry itself starts rejecting a token ``expires_in`` seconds after issue.
        ``valid_for=N`` makes the registry reject tokens N seconds after issue while
        ``expires_in`` still announces the full lifetime (a revoked token, a registry clock
        running ahead); ``None`` turns it off.
        """
        with self._lock:
            if users is not self._UNSET:
                self.users = dict(users or {})
            if acl is not self._UNSET:
                self.acl = acl or default_acl
            if expires_in is not self._UNSET:
                self.expires_in = int(expires_in)
            if allow_anonymous is not self._UNSET:
                self.allow_anonymous = bool(allow_anonymous)
            if token_field is not self._UNSET:
                self.token_field = token_field
            if strict_expiry is not self._UNSET:
                self.strict_expiry = bool(strict_expiry)
            if valid_for is not self._UNSET:
                self.valid_for = valid_for
        return self

    def reset(self) -> None:
        """Restore constructor settings, forget refresh tokens, clear log and faults."""
        with self._lock:
            self._apply(self._defaults)
            self._requests.clear()
            self._refresh_tokens.clear()
            self._failures.clear()

    def fail_next(self, status: int = 503, count: int = 1, body: bytes = b"") -> None:
        """Answer the next *count* requests with *status* (fault injection)."""
        with self._lock:
            self._failures.extend([(status, body)] * count)

    def revoke_refresh_tokens(self) -> None:
        with self._lock:
            self._refresh_tokens.clear()

    # -- introspection ---------------------------------------------------------------

    @property
    def requests(self) -> list[TokenRequest]:
        """A snapshot of the request log."""
        with self._lock:
            return list(self._requests)

    def clear_log(self) -> None:
        with self._lock:
            self._requests.clear()

    def count(self, *, method: str | None = None, ok: bool | None = None) -> int:
        """Number of logged requests, optionally only by method / success."""
        return sum(
            1
            for r in self.requests
            if (method is None or r.method == method)
            and (ok is None or (r.status == 200) == ok)
        )

    @property
    def url(self) -> str:
        assert self._httpd is not None, "token server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def realm(self) -> str:
        return f"{self.url}/token"

    # -- keys -----------------------------------------------------------------------

    def _make_key(self) -> None:
        if self.alg == "ES256":
            key: Any = ec.generate_private_key(ec.SECP256R1())
        else:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cert = self_signed(key, self.issuer)
        self._key = key
        self._cert = cert
        self.kid = libtrust_key_id(key.public_key())
        self._x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
        self.rootcertbundle = self.directory / "token-root.pem"
        self.rootcertbundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    @property
    def public_key_pem(self) -> bytes:
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    # -- tokens ---------------------------------------------------------------------

    def grant(self, user: str | None, requested: Mapping[str, frozenset[str]]) -> dict[str, frozenset[str]]:
        """Apply the ACL: requested ∩ allowed, per resource; empty grants dropped."""
        granted: dict[str, frozenset[str]] = {}
        for key, actions in requested.items():
            rtype, _, name = key.partition(":")
            if rtype.startswith("repository"):
                allowed = set(self.acl(user, name))
            else:  # registry:catalog:* and friends: authenticated users only
                allowed = {"*"} if user else set()
            got = frozenset(actions & allowed)
            if got:
                granted[key] = got
        return granted

    def issue(
        self,
        user: str | None,
        granted: Mapping[str, Iterable[str]],
        *,
        expires_in: int | None = None,
        audience: Any = None,
    ) -> str:
        """Mint a signed JWT directly (also used by the HTTP handler).

        *audience* overrides ``aud`` (e.g. a list, to see distribution reject it).
        """
        now = int(time.time())
        lifetime = self.expires_in if expires_in is None else expires_in
        exp = now + lifetime
        if self.strict_expiry:
            exp -= REGISTRY_LEEWAY_SECONDS
        if self.valid_for is not None and expires_in is None:
            exp = now + self.valid_for - REGISTRY_LEEWAY_SECONDS
        access = []
        for key, actions in granted.items():
            rtype, _, name = key.partition(":")
            access.append({"type": rtype, "name": name, "actions": sorted(actions)})
        claims = {
            "iss": self.issuer,
            "sub": user or "",
            "aud": self.service if audience is None else audience,
            "exp": exp,
            "nbf": now - 1,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        headers = {"typ": "JWT", "x5c": self._x5c, "kid": self.kid}
        return jwt.encode(claims, self._key, algorithm=self.alg, headers=headers)

    def decode(self, token: str) -> dict[str, Any]:
        """Verify and decode a token this server issued (for assertions)."""
        return jwt.decode(
            token,
            self._key.public_key(),
            algorithms=[self.alg],
            audience=self.service,
            leeway=REGISTRY_LEEWAY_SECONDS,
        )

    # -- HTTP -----------------------------------------------------------------------

    def start(self) -> TokenServer:
        httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, name=f"tokenserver:{httpd.server_address[1]}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> TokenServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _basic_user(self, handler: BaseHTTPRequestHandler) -> tuple[bool, str | None]:
        """(credentials_present, authenticated_user_or_None)."""
        header = handler.headers.get("Authorization")
        if not header:
            return False, None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return True, None
        try:
            name, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except Exception:
            return True, None
        return True, self._check(name, password)

    def _check(self, name: str, password: str) -> str | None:
        expected = self.users.get(name)
        if expected is not None and secrets.compare_digest(expected, password):
            return name
        return None

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
        url = urlsplit(h.path)
        query = parse_qs(url.query, keep_blank_values=True)
        body = b""
        if method == "POST":
            length = int(h.headers.get("Content-Length") or 0)
            body = h.rfile.read(length) if length else b""
        if failure is not None:
            status, fbody = failure
            self._log(TokenRequest(method, None, None, None, {}, {}, status, time=time.time()))
            self._send(h, status, fbody, "text/plain")
            return
        if url.path.rstrip("/") != "/token":
            self._send_json(h, 404, {"error": "not_found"})
            return
        if method == "GET":
            self._handle_get(h, query)
        else:
            form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
            self._handle_post(h, form)

    def _handle_get(self, h: BaseHTTPRequestHandler, q: dict[str, list[str]]) -> None:
        service = q.get("service", [None])[0]
        try:
            scopes = parse_scopes(q.get("scope", []))
        except ValueError as e:
            self._log(TokenRequest("GET", None, None, service, {}, {}, 400, time=time.time()))
            self._send_json(h, 400, {"errors": [{"code": "INVALID_SCOPE", "message": str(e)}]})
            return
        offline = q.get("offline_token", ["false"])[0].lower() == "true"
        client_id = q.get("client_id", [None])[0]
        present, user = self._basic_user(h)

        def log(status: int, granted: dict[str, frozenset[str]]) -> None:
            self._log(
                TokenRequest("GET", None, user, service, scopes, granted, status, client_id, offline, time.time())
            )

        if (present and user is None) or (not present and not self.allow_anonymous):
            log(401, {})
            self._send_json(
                h,
                401,
                {"details": "incorrect username or password" if present else "authentication required"},
                extra={"WWW-Authenticate": 'Basic realm="manifesto-test-token"'},
            )
            return
        if service is not None and service != self.service:
            log(400, {})
            self._send_json(h, 400, {"details": f"unknown service {service!r}"})
            return
        granted = self.grant(user, scopes)
        token = self.issue(user, granted)
        payload: dict[str, Any] = {
            "expires_in": self.expires_in,
            "issued_at": _now_rfc3339(),
        }
        field = self.token_field or "both"
        if field in ("both", "token"):
            payload["token"] = token
        if field in ("both", "access_token"):
            payload["access_token"] = token
        if offline and user:
            payload["refresh_token"] = self._new_refresh_token(user)
        log(200, granted)
        self._send_json(h, 200, payload)

    def _handle_post(self, h: BaseHTTPRequestHandler, form: dict[str, list[str]]) -> None:
        def one(name: str) -> str | None:
            return form.get(name, [None])[0]

        grant_type = one("grant_type")
        service = one("service")
        client_id = one("client_id")
        offline = one("access_type") == "offline"
        try:
            scopes = parse_scopes(form.get("scope", []))
        except ValueError as e:
            self._log(TokenRequest("POST", grant_type, None, service, {}, {}, 400, client_id, offline, time.time()))
            self._send_json(h, 400, {"error": "invalid_scope", "error_description": str(e)})
            return
        user: str | None = None
        refresh: str | None = None
        error: str | None = None
        if grant_type == "password":
            user = self._check(one("username") or "", one("password") or "")
            if user is None:
                error = "invalid_grant"
            elif offline:
                refresh = self._new_refresh_token(user)
        elif grant_type == "refresh_token":
            refresh = one("refresh_token") or ""
            with self._lock:
                user = self._refresh_tokens.get(refresh)
            if user is None:
                error, refresh = "invalid_grant", None
        else:
            error = "unsupported_grant_type"
        if error is None and service is not None and service != self.service:
            error = "invalid_request"
        if error is not None:
            status = 400  # RFC 6749 §5.2
            self._log(TokenRequest("POST", grant_type, user if error == "invalid_request" else None,
                                   service, scopes, {}, status, client_id, offline, time.time()))
            self._send_json(h, status, {"error": error})
            return
        granted = self.grant(user, scopes)
        token = self.issue(user, granted)
        payload: dict[str, Any] = {
            "scope": " ".join(str(Scope(*k.split(":", 1), v)) for k, v in granted.items()),
            "expires_in": self.expires_in,
            "issued_at": _now_rfc3339(),
            "token_type": "Bearer",
        }
        field = self.token_field or "access_token"
        if field in ("both", "token"):
            payload["token"] = token
        if field in ("both", "access_token"):
            payload["access_token"] = token
        if refresh:
            payload["refresh_token"] = refresh
        self._log(TokenRequest("POST", grant_type, user, service, scopes, granted, 200, client_id, offline, time.time()))
        self._send_json(h, 200, payload)

    def _new_refresh_token(self, user: str) -> str:
        tok = "rt-" + secrets.token_urlsafe(24)
        with self._lock:
            self._refresh_tokens[tok] = user
        return tok

    def _log(self, req: TokenRequest) -> None:
        with self._lock:
            self._requests.append(req)

    def _send_json(self, h: BaseHTTPRequestHandler, status: int, obj: Any, extra: Mapping[str, str] | None = None) -> None:
        self._send(h, status, json.dumps(obj).encode(), "application/json", extra)

    @staticmethod
    def _send(
        h: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        ctype: str,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Cache-Control", "no-store")
        for k, v in (extra or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)


def _now_rfc3339() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
