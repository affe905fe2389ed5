"""Registry authentication: challenges, Basic, and the Bearer token flow.

The registry answers 401 with `WWW-Authenticate` (RFC 7235). For `Basic` we send the
credential; for `Bearer` we fetch a token from the realm (distribution's token.md: GET with
service and scope, Basic credentials if any) or, holding an identity token, by OAuth2 POST with
grant_type=refresh_token (oauth.md). Tokens are cached per scope set until `expires_in` (default
60 s) runs out. One 401 gets one new token; a second 401 is an answer, never a loop. A refused
token discredits every token issued at or before it (revoked, or the registry's clock runs
ahead): the retry uses one fetched after the refusal, never another cached one as old.
Credentials go only to the realm the registry named: a redirect away from it carries no
Authorization (httpx drops it) and an identity token is never posted on to another place.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from manifesto.errors import AuthError, RegistryError
from manifesto.log import get_logger
from manifesto.redact import register_secret
from manifesto.oci.reference import is_loopback_host
from manifesto.store.registry import retry
from manifesto.store.registry.lookup import Credential
from manifesto.store.registry.tls import CERTS_DIR
from manifesto.store.registry.errors import parse_body

log = get_logger("manifesto.auth")

_TOKEN68 = re.compile(r"[A-Za-z0-9._~+/-]+=*")
_SCHEME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# An unquoted value: an RFC token, read leniently up to the next comma or space, so that a bare
# URL (`realm=https://auth.example.com/token`, not RFC-valid) is kept whole, not cut at its colon.
_BARE_VALUE = re.compile(r'[^\s,"]+')
DEFAULT_EXPIRES = 60
CLOCK_SKEW = 5


@dataclass(frozen=True)
class Challenge:
    """One challenge of a WWW-Authenticate header: scheme (lowercase) and its parameters."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def scopes(self) -> frozenset[str]:
        return frozenset(self.params.get("scope", "").split())


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a WWW-Authenticate value into challenges (RFC 7235 §4.1, quoted strings with escapes)."""
    out: list[Challenge] = []
    i, n = 0, len(header)

    def skip(chars: str = " \t") -> None:
        nonlocal i
        while i < n and header[i] in chars:
            i += 1

    while i < n:
        skip(" \t,")
        m = _SCHEME.match(header, i)
        if not m:
            break
        scheme = m.group(0).lower()
        i = m.end()
        params: dict[str, str] = {}
        challenge = Challenge(scheme, params)
        out.append(challenge)
        skip()
        # token68 form (e.g. `Basic abc==`): a token not followed by `=<value>`
        m68 = _TOKEN68.match(header, i)
        if m68 and header[m68.end() :].lstrip(" \t")[:1] in ("", ","):
            i = m68.end()
            continue
        while i < n:
            skip(" \t,")
            mk = _SCHEME.match(header, i)
            if not mk:
                break
            j = mk.end()
            while j < n and header[j] in " \t":
                j += 1
            if j >= n or header[j] != "=":
                # the start of the next challenge
                break
            key = mk.group(0).lower()
            j += 1
            while j < n and header[j] in " \t":
                j += 1
            if j < n and header[j] == '"':
                j += 1
                buf = []
                while j < n and header[j] != '"':
                    if header[j] == "\\" and j + 1 < n:
                        j += 1
                    buf.append(header[j])
                    j += 1
                value = "".join(buf)
                j += 1
            else:
                mv = _BARE_VALUE.match(header, j)
                value = mv.group(0) if mv else ""
                j = mv.end() if mv else j
            params[key] = value
            i = j
            skip()
            if i < n and header[i] == ",":
                i += 1
    return out


def repository_scope(repo: str, *actions: str) -> str:
    return f"repository:{repo}:{','.join(actions)}"


def _scope_key(scopes: frozenset[str]) -> frozenset[tuple[str, frozenset[str]]]:
    """Scopes compared as sets: `repository:a:push,pull` equals `repository:a:pull,push`."""
    merged: dict[str, set[str]] = {}
    for scope in scopes:
        resource, _, actions = scope.rpartition(":")
        merged.setdefault(resource, set()).update(a for a in actions.split(",") if a)
    return frozenset((r, frozenset(a)) for r, a in merged.items())


def merge_scopes(*groups: frozenset[str] | set[str]) -> frozenset[str]:
    """Union of scopes, actions of one resource merged into a single scope string."""
    key = _scope_key(frozenset().union(*groups))
    return frozenset(f"{resource}:{','.join(sorted(actions))}" for resource, actions in key)


@dataclass
class _Token:
    value: str
    scopes: frozenset[tuple[str, frozenset[str]]]
    expires_at: float
    serial: int  # order of issue: a refused token discredits every token at or below its serial


class Authenticator:
    """Holds one registry's credential, its auth scheme once learned, and cached tokens."""

    def __init__(
        self,
        registry: str,
        credential: Credential | None | Callable[[], Credential | None],
        clock=time.monotonic,
        attempts: int = retry.ATTEMPTS,
        backoff: float = retry.BACKOFF,
        tls_only: bool = True,
        certs_dir: Path = CERTS_DIR,
    ):
        """`credential` may be a function: it is called once, when a registry first challenges
        (an anonymous registry never costs a keyring or credential-helper lookup). `certs_dir`:
        where the client loads the registry's CAs from, for a token service's TLS failure."""
        self.registry = registry
        self.certs_dir = certs_dir
        self._credential = credential
        self.attempts = attempts
        self.backoff = backoff
        self.tls_only = tls_only  # a verified HTTPS registry's token realm must be HTTPS too
        self._clock = clock
        self._challenge: Challenge | None = None
        self._tokens: list[_Token] = []
        self._serials: dict[str, int] = {}  # every token value fetched -> its latest serial
        self._fetching = asyncio.Lock()
        self.token_fetches = 0

    @property
    def credential(self) -> Credential | None:
        if callable(self._credential):
            self._credential = self._credential()
        return self._credential

    def _covers(self, token: _Token, wanted: frozenset[str]) -> bool:
        have = dict(token.scopes)
        return all(actions <= have.get(resource, frozenset()) for resource, actions in _scope_key(wanted))

    async def header(self, http: httpx.AsyncClient, scopes: frozenset[str]) -> str | None:
        """The Authorization value to send up front for a request needing `scopes`, if known."""
        ch = self._challenge
        if ch is None:
            return None
        if ch.scheme == "basic":
            return self._basic()
        if ch.scheme == "bearer":
            cached = self._cached(scopes)
            if cached is None:
                async with self._fetching:  # concurrent requests for one scope share one fetch
                    cached = self._cached(scopes) or await self._fetch_token(http, ch, scopes)
            return f"Bearer {cached}"
        return None

    def _cached(self, scopes: frozenset[str], exact: bool = False) -> str | None:
        """The newest unexpired token covering `scopes` (newest: see `_distrust`); with `exact`,
        only one fetched for exactly these scopes."""
        now = self._clock()
        self._tokens = [t for t in self._tokens if t.expires_at > now]
        key = _scope_key(scopes)
        for token in reversed(self._tokens):
            if token.expires_at > now and (token.scopes == key if exact else self._covers(token, scopes)):
                return token.value
        return None

    async def answer(
        self, http: httpx.AsyncClient, www_authenticate: str, scopes: frozenset[str], sent: str | None = None
    ) -> str:
        """Handle a 401 to a request sent with `sent`: return the Authorization to retry with.

        Learns the scheme; for Bearer, distrusts the refused token (see `_distrust`) and fetches
        one fresh token, unless a concurrent request already fetched, after this refusal's
        token, one that covers these scopes. Call it only for the registry's own challenges.
        """
        challenges = parse_challenges(www_authenticate or "")
        chosen = next((c for c in challenges if c.scheme == "bearer"), None) or next(
            (c for c in challenges if c.scheme == "basic"), None
        )
        if chosen is None:
            raise AuthError(f"{self.registry}: unsupported authentication challenge {www_authenticate!r}")
        self._challenge = chosen
        if chosen.scheme == "basic":
            value = self._basic()
            if value is None:
                raise AuthError(f"{self.registry}: authentication required; run `manifesto login {self.registry}`")
            return value
        wanted = merge_scopes(scopes, chosen.scopes)
        refused = sent.removeprefix("Bearer ") if sent and sent.startswith("Bearer ") else None
        async with self._fetching:
            if refused is not None:
                self._distrust(refused, chosen.params.get("error"))
            # A token is cached under the scopes it was asked for, but a token service may grant
            # fewer (a mount token without pull on the source): after a refusal, only a token
            # asked for exactly these scopes will do.
            value = self._cached(wanted, exact=True) or await self._fetch_token(http, chosen, wanted)
        return f"Bearer {value}"

    def _distrust(self, refused: str, error: str | None) -> None:
        """Drop the refused token and, unless it was merely too narrow, every token issued with it.

        RFC 6750 §3.1: `insufficient_scope` means the token is good but does not cover the
        request (a mount from a repository we may not pull): only it goes. Otherwise (an
        `invalid_token`, or no reason given) the cause — revocation, the registry's clock
        running ahead of `expires_in` — applies as much to every token issued at or before it,
        whatever its scopes. Requests take the newest covering token, so one that survives and
        covers the request was fetched after the request took its token: a genuinely new one
        (shared by concurrent requests refused alike), never another as old as the refused.
        """
        if error == "insufficient_scope":
            self._tokens = [t for t in self._tokens if t.value != refused]
            return
        serial = self._serials.get(refused, self.token_fetches)
        self._tokens = [t for t in self._tokens if t.serial > serial]

    def _basic(self) -> str | None:
        cred = self.credential
        if cred is None or cred.kind != "password":
            return None
        raw = f"{cred.username}:{cred.secret}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    async def _fetch_token(self, http: httpx.AsyncClient, ch: Challenge, scopes: frozenset[str]) -> str:
        realm = ch.params.get("realm")
        if not realm:
            raise AuthError(f"{self.registry}: bearer challenge without a realm")
        realm_url = httpx.URL(realm)
        if self.tls_only and realm_url.scheme != "https" and not is_loopback_host(realm_url.netloc.decode()):
            raise AuthError(f"{self.registry}: refusing to fetch a token over plain HTTP from {realm_url.host}")
        service = ch.params.get("service")
        ordered = sorted(scopes)
        cred = self.credential
        self.token_fetches += 1
        if cred is not None and cred.kind == "identity_token":
            form = {"grant_type": "refresh_token", "refresh_token": cred.secret, "client_id": "manifesto"}
            if service:
                form["service"] = service
            if ordered:
                form["scope"] = " ".join(ordered)
            send = lambda: http.post(realm, data=form, follow_redirects=False)  # noqa: E731
        else:
            params = [("service", service)] if service else []
            params += [("scope", s) for s in ordered]
            headers = {}
            if cred is not None:
                params.append(("account", cred.username))
                headers["Authorization"] = self._basic() or ""
            send = lambda: http.get(realm, params=params, headers=headers, follow_redirects=False)  # noqa: E731
        host = httpx.URL(realm).host
        try:
            response = await retry.send(send, attempts=self.attempts, backoff=self.backoff)
        except httpx.HTTPError as e:
            raise retry.network_error(
                e,
                registry=self.registry,
                what=self.registry,
                doing=f"fetching a token from {host}",
                certs_dir=self.certs_dir,
                peer=f"its token service {host}",
            ) from None
        if response.is_redirect:  # a redirect would take our username, password or refresh token along
            where = response.next_request.url.host if response.next_request else "elsewhere"
            raise AuthError(
                f"{self.registry}: token service {host} redirected to {where}; manifesto asks for "
                "tokens only at the realm the registry names"
            )
        if response.status_code != 200:
            _, message = parse_body(response.content, response.headers.get("content-type", ""))
            detail = f" (HTTP {response.status_code})" + (f": {message}" if message else "")
            if response.status_code in (401, 403):
                raise AuthError(f"{self.registry}: token service refused{detail} (check your credentials: `manifesto login`)")
            raise RegistryError(f"{self.registry}: token service {host} failed{detail}", status=response.status_code)
        try:
            doc = response.json()
        except ValueError:
            raise AuthError(f"{self.registry}: token service answered with something that is not JSON") from None
        value = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(value, str) or not value:
            raise AuthError(f"{self.registry}: token service answered without a token")
        expires = doc.get("expires_in")
        if not isinstance(expires, int) or expires <= 0:
            expires = DEFAULT_EXPIRES
        register_secret(value)
        serial = self._serials[value] = self.token_fetches
        self._tokens.append(_Token(value, _scope_key(scopes), self._clock() + max(expires - CLOCK_SKEW, 1), serial))
        log.debug("token_fetched", registry=self.registry, scopes=ordered, expires_in=expires)
        return value

