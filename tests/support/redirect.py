"""A redirecting front for a real registry, and the "foreign" host it redirects to (127.0.0.2).

Why: registries hand blobs to storage or a CDN with a 307, and the client must follow without
taking its credentials along, and must never answer a challenge from that other host as if the
registry had sent it. A real registry will not redirect on demand, so `Front` (on 127.0.0.1)
forwards every request to the registry and changes only this:

* a blob GET the registry answers 200 is stashed on `Foreign` and answered with a 307 there
  (the registry authenticated the request first, as a registry redirecting to storage does);
* with ``redirect_realm``, the Bearer realm in the registry's challenges names the front's own
  ``/token``, which answers 307 to Foreign's ``/token`` (a token realm that sends us elsewhere).

`Foreign` (on 127.0.0.2, another origin) records every request it receives, whole. It serves
stashed blobs, or with ``challenge`` set answers them 401 with that WWW-Authenticate; its
``/token`` hands out ``token`` to anyone, so a client that asked would have something to leak.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

_BLOB_GET = re.compile(r"^/v2/.+/blobs/[a-z0-9]+:[0-9a-f]+(\?.*)?$")
_REALM = re.compile(r'realm="[^"]*"')
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "host"}


@dataclass(frozen=True)
class Seen:
    """One request as a server received it: everything a leaked secret could hide in."""

    method: str
    path: str  # with the query string
    headers: Mapping[str, str]  # lower-case names
    body: bytes

    def text(self) -> str:
        heads = "\n".join(f"{k}: {v}" for k, v in self.headers.items())
        return f"{self.method} {self.path}\n{heads}\n\n{self.body.decode('latin-1')}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        seen = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        self.server.owner._record(seen)  # type: ignore[attr-defined]
        status, headers, payload = self.server.owner._answer(seen)  # type: ignore[attr-defined]
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch


class _Server:
    """A threaded HTTP server on `host`, recording what it receives."""

    def __init__(self, host: str):
        self._host = host
        self._lock = threading.Lock()
        self._seen: list[Seen] = []
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def seen(self) -> list[Seen]:
        with self._lock:
            return list(self._seen)

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self._seen.append(seen)

    def _answer(self, seen: Seen) -> tuple[int, dict[str, str], bytes]:
        raise NotImplementedError

    @property
    def netloc(self) -> str:
        assert self._httpd is not None, "not started"
        return f"{self._host}:{self._httpd.server_address[1]}"

    @property
    def url(self) -> str:
        return f"http://{self.netloc}"

    def start(self):  # noqa: ANN201 — returns the subclass
        httpd = ThreadingHTTPServer((self._host, 0), _Handler)
        httpd.daemon_threads = True
        httpd.owner = self  # type: ignore[attr-defined]
        self._httpd = httpd
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None


class Foreign(_Server):
    """Another origin: serves stashed blobs, or challenges with its own realm; records all."""

    def __init__(self, host: str = "127.0.0.2"):
        super().__init__(host)
        self.blobs: dict[str, bytes] = {}
        self.challenge: str | None = None  # a WWW-Authenticate value for blob requests
        self.token = "foreign-token-" + secrets.token_hex(8)

    def bearer_challenge(self) -> str:
        return f'Bearer realm="{self.url}/token",service="foreign.example",scope="repository:x:pull"'

    def _answer(self, seen: Seen) -> tuple[int, dict[str, str], bytes]:
        if seen.path.startswith("/token"):
            doc = {"token": self.token, "access_token": self.token, "expires_in": 300}
            return 200, {"Content-Type": "application/json"}, json.dumps(doc).encode()
        if seen.path.startswith("/blob/"):
            if self.challenge is not None:
                return 401, {"WWW-Authenticate": self.challenge, "Content-Type": "text/plain"}, b"who are you?"
            data = self.blobs.get(seen.path.removeprefix("/blob/"))
            if data is not None:
                return 200, {"Content-Type": "application/octet-stream"}, data
        return 404, {"Content-Type": "text/plain"}, b"not here"


class Front(_Server):
    """Forwards to the registry at `upstream`; redirects blob GETs (and the realm) to `foreign`."""

    def __init__(self, upstream: str, foreign: Foreign, *, redirect_blobs: bool = True, redirect_realm: bool = False):
        super().__init__("127.0.0.1")
        self.upstream = upstream
        self.foreign = foreign
        self.redirect_blobs = redirect_blobs
        self.redirect_realm = redirect_realm

    def _answer(self, seen: Seen) -> tuple[int, dict[str, str], bytes]:
        if self.redirect_realm and seen.path.startswith("/token"):
            return 307, {"Location": f"{self.foreign.url}{seen.path}"}, b""
        headers = {k: v for k, v in seen.headers.items() if k not in _HOP}
        with httpx.Client(base_url=self.upstream, timeout=30) as client:
            r = client.request(seen.method, seen.path, headers=headers, content=seen.body or None)
        if seen.method == "GET" and self.redirect_blobs and r.status_code == 200 and _BLOB_GET.match(seen.path):
            key = secrets.token_hex(8)
            self.foreign.blobs[key] = r.content
            return 307, {"Location": f"{self.foreign.url}/blob/{key}"}, b""
        out = {k: v for k, v in r.headers.items() if k.lower() not in _HOP}
        challenge = r.headers.get("www-authenticate")
        if challenge and self.redirect_realm:
            out["www-authenticate"] = _REALM.sub(f'realm="{self.url}/token"', challenge)
        if seen.method == "HEAD" and "content-length" in r.headers:
            out["Content-Length"] = r.headers["content-length"]
        return r.status_code, out, r.content
