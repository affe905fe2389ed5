"""A fault-injecting HTTP/1.1 proxy in front of a real registry, for network-fault tests.

Why: house rule 8 — faults a real registry will not produce on demand (a connection reset in the
middle of an upload, a body cut short, a 503 on the third request) are injected between the
client and a real `docker-registry`, so everything else (upload sessions, digests, Location
headers) is the real thing. The client addresses the proxy as if it were the registry; the
Host header is passed through unchanged, so the registry's own Location headers point back at
the proxy.

API::

    from tests.support.faultproxy import FaultProxy, Reset, Cut, Respond, Delay

    with FaultProxy(registry.host) as proxy:           # listens on a free 127.0.0.1 port
        proxy.host                                      # "127.0.0.1:PORT": use it as the registry
        proxy.ref("repo", "tag")                        # "127.0.0.1:PORT/repo:tag"
        rule = proxy.add(Reset(after=1 << 20), method="PUT", path=r"/blobs/uploads/", times=1)
        proxy.add(Cut(after=100), method="GET", path=r"/manifests/", skip=1)  # from the 2nd match
        proxy.add(Respond(503), path=r"/v2/app/", times=2)
        proxy.add(Delay(0.5), method="HEAD")
        ...                                             # run the client against proxy.host
        rule.hits                                       # how often the rule's action fired
        proxy.requests("PUT", r"/blobs/uploads/")       # what passed through (Passed entries)
        proxy.remove(rule); proxy.clear_rules(); proxy.clear_log()

Actions (the first rule that matches a request and still has `times` left acts; others pass):

  Reset(after=N)     let N bytes of the REQUEST body through to the registry, then reset the
                     client connection (RST) and drop the upstream one: a mid-upload reset.
                     after=0 resets right after the request headers.
  Cut(after=N)       forward the request; send the registry's status line and headers (its own
                     Content-Length) and N bytes of the RESPONSE body, then close: a short body.
  Respond(status, body=b"", headers={})
                     answer this instead of the registry (the request body is read and dropped).
  Delay(seconds)     wait, then forward normally.
  Headers(headers)   forward normally, adding these headers to the registry's response.

Matching: `method` (exact, None = any), `path` (regex searched in the request target, query
included), `skip` (let the first `skip` matches pass untouched), `times` (act on at most that
many matches after the skipped ones; None = every one).

Every request is logged as a `Passed` (method, path, query, status or None when no status line
reached the client, the action's name or None, request and response body bytes relayed).
Bodies are streamed in 64 KiB pieces, never buffered whole. One request per client connection
(responses carry `Connection: close`). Sockets time out after 30 s; `stop()` closes everything.
"""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Self

PIECE = 64 * 1024
_TIMEOUT = 30.0
_MAX_HEAD = 64 * 1024


@dataclass(frozen=True)
class Reset:
    after: int = 0


@dataclass(frozen=True)
class Cut:
    after: int = 0


@dataclass(frozen=True)
class Respond:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Delay:
    seconds: float


@dataclass(frozen=True)
class Headers:
    headers: dict[str, str]


Action = Reset | Cut | Respond | Delay | Headers


@dataclass
class Rule:
    action: Action
    method: str | None = None
    path: str | None = None
    skip: int = 0
    times: int | None = None
    seen: int = 0  # matches so far
    hits: int = 0  # times the action fired

    def matches(self, method: str, target: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path is None or re.search(self.path, target) is not None
        )


@dataclass(frozen=True)
class Passed:
    method: str
    path: str
    query: str
    status: int | None
    action: str | None
    sent: int  # request body bytes relayed to the registry
    received: int  # response body bytes relayed to the client


class _Closed(Exception):
    """The peer went away (or sent something that is not HTTP)."""


class _Reader:
    """Buffered reads from a socket: lines, exact lengths, pieces."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""

    def _fill(self) -> bool:
        data = self.sock.recv(PIECE)
        if not data:
            return False
        self.buf += data
        return True

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            if len(self.buf) > _MAX_HEAD or not self._fill():
                raise _Closed()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def head(self) -> bytes:
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > _MAX_HEAD or not self._fill() or self.buf.startswith(b"\x16"):
                raise _Closed()  # gone, too long, or a TLS hello (a client probing for HTTPS)
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        return head

    def piece(self, most: int) -> bytes:
        if not self.buf and not self._fill():
            raise _Closed()
        data, self.buf = self.buf[:most], self.buf[most:]
        return data

    def until_eof(self) -> bytes:
        if not self.buf and not self._fill():
            return b""
        data, self.buf = self.buf, b""
        return data


def _parse_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    first, *rest = head.decode("latin-1").split("\r\n")
    headers = []
    for line in rest:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return first, headers


def _get(headers: list[tuple[str, str]], name: str) -> str | None:
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def _render(first: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [first, *(f"{k}: {v}" for k, v in headers if k.lower() != "connection"), "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class _Budget:
    """Counts body bytes relayed; raises _Stop once `limit` is reached (None = no limit)."""

    def __init__(self, limit: int | None):
        self.limit = limit
        self.count = 0

    def room(self, want: int) -> int:
        return want if self.limit is None else min(want, self.limit - self.count)


class _Stop(Exception):
    pass


def _relay_body(src: _Reader, dst: socket.socket | None, headers: list[tuple[str, str]], budget: _Budget, *, eof_ok: bool) -> None:
    """Relay one message body (Content-Length, chunked, or until EOF) from src to dst."""

    def send(data: bytes) -> None:
        while data:
            n = budget.room(len(data))
            if n <= 0:
                raise _Stop()
            if dst is not None:
                dst.sendall(data[:n])
            budget.count += n
            if n < len(data):
                raise _Stop()
            data = data[n:]

    if (_get(headers, "transfer-encoding") or "").lower().endswith("chunked"):
        while True:
            size_line = src.line()
            send(size_line + b"\r\n")
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, then the blank line
                    trailer = src.line()
                    send(trailer + b"\r\n")
                    if not trailer:
                        return
            left = size + 2  # data and its CRLF
            while left:
                data = src.piece(min(left, PIECE))
                left -= len(data)
                send(data)
        return
    length = _get(headers, "content-length")
    if length is not None:
        left = int(length)
        while left:
            data = src.piece(min(left, PIECE))
            left -= len(data)
            send(data)
        return
    if eof_ok:
        while data := src.until_eof():
            send(data)


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0): the peer sees 'connection reset', not a clean end."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class LoopbackProxy:
    """What every test proxy here is: a listener on a free 127.0.0.1 port, its address and
    references through it, and `with` (start, then stop)."""

    port: int
    _listener: socket.socket | None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def ref(self, repo: str, tag_or_digest: str | None = None) -> str:
        if not tag_or_digest:
            return f"{self.host}/{repo}"
        sep = "@" if ":" in tag_or_digest else ":"
        return f"{self.host}/{repo}{sep}{tag_or_digest}"

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        listener.settimeout(0.5)  # accept() wakes up to notice stop() even if shutdown did not
        self.port = listener.getsockname()[1]
        self._listener = listener

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class FaultProxy(LoopbackProxy):
    """See the module docstring. Use as a context manager, or call start() and stop()."""

    def __init__(self, upstream: str):
        host, _, port = upstream.rpartition(":")
        self.upstream = (host, int(port))
        self.rules: list[Rule] = []
        self.log: list[Passed] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._open: set[socket.socket] = set()
        self._busy = 0  # connections being served
        self.port = 0

    # -- public --------------------------------------------------------------------------

    def add(
        self, action: Action, *, method: str | None = None, path: str | None = None, skip: int = 0, times: int | None = None
    ) -> Rule:
        rule = Rule(action, method, path, skip, times)
        with self._lock:
            self.rules.append(rule)
        return rule

    def remove(self, rule: Rule) -> None:
        with self._lock:
            self.rules.remove(rule)

    def clear_rules(self) -> None:
        with self._lock:
            self.rules.clear()

    def clear_log(self) -> None:
        with self._lock:
            self.log.clear()

    def requests(self, method: str | None = None, path: str | None = None) -> list[Passed]:
        """Logged requests matching `method` and the `path` regex (searched in path?query).

        Waits (up to 5 s) for connections still being served: a client may have its whole
        answer before the proxy has closed the sockets and logged the request.
        """
        deadline = time.monotonic() + 5
        while self._busy and time.monotonic() < deadline:
            time.sleep(0.01)
        with self._lock:
            entries = list(self.log)
        return [
            p
            for p in entries
            if (method is None or p.method == method)
            and (path is None or re.search(path, f"{p.path}?{p.query}" if p.query else p.path))
        ]

    def start(self) -> FaultProxy:
        self._listen()
        accept = threading.Thread(target=self._accept, name="faultproxy-accept", daemon=True)
        accept.start()
        self._threads.append(accept)
        return self

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        with self._lock:
            socks = list(self._open)
        wake_all(listener, socks)
        for t in self._threads:
            t.join(timeout=5)

    # -- internals -----------------------------------------------------------------------

    def _accept(self) -> None:
        while (listener := self._listener) is not None:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,), name="faultproxy-conn", daemon=True)
            with self._lock:
                self._busy += 1  # before the thread runs: requests() must not miss it
            t.start()
            with self._lock:
                self._threads = [x for x in self._threads if x.is_alive()]
                self._threads.append(t)

    def _pick(self, method: str, target: str) -> Action | None:
        with self._lock:
            for rule in self.rules:
                if not rule.matches(method, target):
                    continue
                rule.seen += 1
                if rule.seen <= rule.skip or (rule.times is not None and rule.hits >= rule.times):
                    continue
                rule.hits += 1
                return rule.action
        return None

    def _track(self, sock: socket.socket, add: bool) -> None:
        with self._lock:
            (self._open.add if add else self._open.discard)(sock)

    def _serve(self, client: socket.socket) -> None:
        try:
            self._serve_one(client)
        finally:
            with self._lock:
                self._busy -= 1

    def _serve_one(self, client: socket.socket) -> None:
        client.settimeout(_TIMEOUT)
        self._track(client, True)
        upstream: socket.socket | None = None
        entry: dict = {}
        try:
            reader = _Reader(client)
            first, headers = _parse_head(reader.head())
            method, target, _ = first.split(" ", 2)
            path, _, query = target.partition("?")
            entry = {"method": method, "path": path, "query": query, "status": None, "action": None, "sent": 0, "received": 0}
            action = self._pick(method, target)
            entry["action"] = type(action).__name__ if action else None
            if isinstance(action, Delay):
                time.sleep(action.seconds)
            if isinstance(action, Respond):
                _relay_body(reader, None, headers, _Budget(None), eof_ok=False)
                hdrs = [("Content-Length", str(len(action.body))), *action.headers.items()]
                client.sendall(_render(f"HTTP/1.1 {action.status} Injected", hdrs) + (b"" if method == "HEAD" else action.body))
                entry["status"] = action.status
                return
            if isinstance(action, Reset) and action.after == 0:
                _reset(client)
                return
            upstream = socket.create_connection(self.upstream, timeout=_TIMEOUT)
            self._track(upstream, True)
            upstream.sendall(_render(first, headers))
            sent = _Budget(action.after if isinstance(action, Reset) else None)
            try:
                _relay_body(reader, upstream, headers, sent, eof_ok=False)
            except _Stop:
                entry["sent"] = sent.count
                _reset(client)
                return
            finally:
                entry["sent"] = sent.count
            up = _Reader(upstream)
            status_line, rheaders = _parse_head(up.head())
            status = int(status_line.split(" ", 2)[1])
            entry["status"] = status
            if isinstance(action, Headers):
                rheaders = [*rheaders, *action.headers.items()]
            client.sendall(_render(status_line, rheaders))
            if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
                return
            received = _Budget(action.after if isinstance(action, Cut) else None)
            try:
                _relay_body(up, client, rheaders, received, eof_ok=True)
            except _Stop:
                pass  # the rest is never sent: the client sees a short body
            finally:
                entry["received"] = received.count
        except (_Closed, OSError, ValueError, IndexError):
            pass
        finally:
            for s in (upstream, client):
                if s is not None:
                    self._track(s, False)
                    try:
                        s.close()
                    except OSError:
                        pass
            if entry:
                with self._lock:
                    self.log.append(Passed(**entry))


def wake_all(listener: socket.socket | None, sockets: list[socket.socket]) -> None:
    """Close a test proxy's listener and shut its connections down, waking every thread blocked
    in accept() or in a read on them (a proxy's stop() then joins those threads)."""
    if listener is not None:
        try:
            listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        listener.close()
    for s in sockets:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
