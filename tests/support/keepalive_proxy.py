"""A keep-alive HTTP/1.1 proxy in front of a real registry that injects faults at a seeded rate.

Why: the client's own HTTP/1.1 pool (manifesto/store/registry/http1.py) reuses connections to a
loopback or --insecure registry, and the faults that matter to a pool happen on a REUSED
connection: a server that closes an idle connection just as the client sends on it, bytes
after a complete response that a careless pool reads as the next answer, a reset halfway
through a body. tests/support/faultproxy.py answers with `Connection: close`, so it never
reaches those paths; this proxy keeps every client connection open across requests, forwards
each request to a real `docker-registry` (so upload sessions, digests and Location headers are
the real thing) and, on a fraction `rate` of requests, does one of FAULTS instead.

API::

    from tests.support.keepalive_proxy import FAULTS, KeepAliveProxy

    with KeepAliveProxy(registry.host, seed=3, rate=0.25) as proxy:   # free 127.0.0.1 port
        proxy.host                          # "127.0.0.1:PORT": use it as the registry
        proxy.ref("repo", "tag")            # "127.0.0.1:PORT/repo:tag"
        ...                                 # run the client against proxy.host
        proxy.log                           # [Served(connection, method, path, fault), ...]
        proxy.connections                   # requests carried by each client connection (0 for
                                            # one that sent no HTTP, e.g. a client's TLS probe)
        proxy.faults_done()                 # {fault: count}
    proxy.threads_alive()                   # [] once stopped

Faults (`faults=` narrows the set; each is drawn with equal weight; `only=`, a regex searched
in "METHOD /path", narrows the requests that may be faulted):

  reset            reset the connection (RST) instead of answering; not forwarded
  reset_mid        forward; send the head and half the body (half the head when the body is
                   empty), then reset: the registry acted, the client saw part of an answer
  close_mid        the same, ending with a clean close (FIN) instead of a reset
  503              answer 503 UNAVAILABLE (framed; the connection stays open); not forwarded
  503_retry_after  the same with `Retry-After: 0`
  garbage          send bytes that are no status line, then close; not forwarded
  stray            forward and answer, then send a complete extra response (`200`, empty
                   body) and keep the connection open: a pool that reuses it reads that as
                   the answer to its next request
  idle_close       forward and answer, then close the connection at once
  idle_close_late  forward and answer, then close it `late` seconds later: a request the
                   client sent on it meanwhile is reset unread (and not logged)
  delay            wait `delay` seconds, then forward normally

Determinism: whether a request is faulted, and how, depends only on the seed, the request's
method and path (an upload session's id replaced by `*`, the query dropped) and how many
requests with that method and path came before. Connections and threads interleave
differently on every run; the faults a given command meets do not.

Requests are read whole (h11, either framing) and forwarded one per upstream connection with a
Content-Length; answers are relayed with a Content-Length too. Sockets time out after 30 s;
`stop()` wakes every waiting thread, closes every socket and joins the threads.
"""

from __future__ import annotations

import random
import re
import socket
import struct
import threading
from collections import Counter
from dataclasses import dataclass

import h11

from tests.support.faultproxy import LoopbackProxy, wake_all

FAULTS = (
    "reset",
    "reset_mid",
    "close_mid",
    "503",
    "503_retry_after",
    "garbage",
    "stray",
    "idle_close",
    "idle_close_late",
    "delay",
)

PIECE = 64 * 1024
MAX_HEAD = 100 * 1024
_TIMEOUT = 30.0
_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"te", b"trailer", b"upgrade"}
_UNAVAILABLE = b'{"errors":[{"code":"UNAVAILABLE","message":"injected by the test proxy"}]}'
_STRAY = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
_GARBAGE = (b"HELLO THERE\r\n\r\n", b"HTTP/1.1 2OO OK\r\n\r\n")
_UPLOAD_ID = re.compile(r"(/blobs/uploads/)[^/?]+")


@dataclass(frozen=True)
class Served:
    """One request the proxy read: on which client connection (0, 1, ...) and what it did."""

    connection: int
    method: str
    path: str  # without the query
    fault: str | None


class _Gone(Exception):
    """The client went away, or sent something that is not HTTP/1.1."""


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0): the peer sees 'connection reset', not a clean end."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def _head(status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    lines = [b"HTTP/1.1 %d %s" % (status, reason), *(k + b": " + v for k, v in headers)]
    return b"\r\n".join(lines) + b"\r\n\r\n"


class KeepAliveProxy(LoopbackProxy):
    """See the module docstring. Use as a context manager, or call start() and stop()."""

    def __init__(
        self,
        upstream: str,
        *,
        seed: int = 0,
        rate: float = 0.0,
        faults: tuple[str, ...] = FAULTS,
        delay: float = 0.2,
        late: float = 0.05,
        only: str | None = None,
    ):
        unknown = set(faults) - set(FAULTS)
        if unknown or not faults:
            raise ValueError(f"unknown or no faults: {sorted(unknown)}")
        host, _, port = upstream.rpartition(":")
        self.upstream = (host, int(port))
        self.seed = seed
        self.rate = rate
        self.faults = tuple(faults)
        self.delay = delay
        self.late = late
        self.only = re.compile(only) if only else None
        self.log: list[Served] = []
        self.connections: list[int] = []  # requests read on each client connection, by its number
        self.port = 0
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._open: set[socket.socket] = set()

    # -- public --------------------------------------------------------------------------

    def faults_done(self) -> Counter[str]:
        """How often each fault was injected."""
        with self._lock:
            return Counter(s.fault for s in self.log if s.fault)

    def threads_alive(self) -> list[threading.Thread]:
        with self._lock:
            return [t for t in self._threads if t.is_alive()]

    def start(self) -> KeepAliveProxy:
        self._listen()
        self._spawn(self._accept, "keepalive-proxy-accept")
        return self

    def stop(self) -> None:
        self._stopping.set()
        listener, self._listener = self._listener, None
        with self._lock:
            socks = list(self._open)
        wake_all(listener, socks)
        for _ in range(2):  # the accept thread first: it may start one more connection's thread
            with self._lock:
                threads = list(self._threads)
            for t in threads:
                t.join(timeout=5)

    # -- internals -----------------------------------------------------------------------

    def _spawn(self, target, name: str, *args: object) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lock:
            self._threads = [x for x in self._threads if x.is_alive()]
            self._threads.append(t)
        t.start()

    def _track(self, sock: socket.socket, add: bool) -> None:
        with self._lock:
            (self._open.add if add else self._open.discard)(sock)

    def _accept(self) -> None:
        while (listener := self._listener) is not None:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                number = len(self.connections)
                self.connections.append(0)
            self._track(conn, True)
            if self._stopping.is_set():  # stop() may have run between accept() and _track()
                conn.close()
                return
            self._spawn(self._serve, "keepalive-proxy-conn", conn, number)

    def _choose(self, method: str, target: str) -> tuple[str | None, random.Random]:
        """The fault for this request (None: none) and the random source for its details."""
        key = method + " " + _UPLOAD_ID.sub(r"\1*", target.partition("?")[0])
        with self._lock:
            nth = self._seen[key]
            self._seen[key] += 1
        rng = random.Random(f"{self.seed}/{key}/{nth}")
        if rng.random() >= self.rate or (self.only is not None and not self.only.search(key)):
            return None, rng
        return rng.choice(self.faults), rng

    def _serve(self, client: socket.socket, number: int) -> None:
        client.settimeout(_TIMEOUT)
        pending = b""  # bytes of the next request that came with the previous one
        try:
            while not self._stopping.is_set():
                request, body, pending = self._read_request(client, pending)
                method, target = request.method.decode(), request.target.decode()
                fault, rng = self._choose(method, target)
                with self._lock:
                    self.connections[number] += 1
                    self.log.append(Served(number, method, target.partition("?")[0], fault))
                if fault == "reset":
                    _reset(client)
                    return
                if fault == "garbage":
                    client.sendall(rng.choice(_GARBAGE))
                    return
                if fault in ("503", "503_retry_after"):
                    headers = [(b"Content-Type", b"application/json"), (b"Content-Length", b"%d" % len(_UNAVAILABLE))]
                    if fault == "503_retry_after":
                        headers.append((b"Retry-After", b"0"))
                    client.sendall(_head(503, b"Service Unavailable", headers) + (b"" if method == "HEAD" else _UNAVAILABLE))
                    continue
                if fault == "delay" and self._stopping.wait(self.delay):
                    return
                head, rbody = self._forward(request, body)
                if fault in ("reset_mid", "close_mid"):
                    client.sendall(head + rbody[: len(rbody) // 2] if rbody else head[: len(head) // 2])
                    if fault == "reset_mid":
                        _reset(client)
                    return
                client.sendall(head + rbody + (_STRAY if fault == "stray" else b""))
                if fault == "idle_close" or (fault == "idle_close_late" and not self._stopping.wait(self.late)):
                    return
                if any(k.lower() == b"connection" and b"close" in v.lower() for k, v in request.headers):
                    return
        except (_Gone, OSError, h11.ProtocolError):
            pass
        finally:
            self._track(client, False)
            try:
                client.close()
            except OSError:
                pass

    def _read_request(self, client: socket.socket, pending: bytes) -> tuple[h11.Request, bytes, bytes]:
        """The next whole request on a connection, its body, and the bytes read beyond it."""
        parser = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        if pending:
            parser.receive_data(pending)  # (b"" would mean end of stream to h11)
        request, body = None, []
        while True:
            event = parser.next_event()
            if event is h11.NEED_DATA:
                data = client.recv(PIECE)
                parser.receive_data(data)  # b"": EOF, which the next event reports
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage) and request is not None:
                return request, b"".join(body), parser.trailing_data[0]
            else:  # ConnectionClosed, or a protocol the proxy does not speak
                raise _Gone()

    def _forward(self, request: h11.Request, body: bytes) -> tuple[bytes, bytes]:
        """Send a request to the registry on a fresh connection; its answer's head and body,
        reframed with a Content-Length for the client's keep-alive connection."""
        upstream = socket.create_connection(self.upstream, timeout=_TIMEOUT)
        self._track(upstream, True)
        try:
            conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
            headers = [(k, v) for k, v in request.headers if k.lower() not in _HOP]
            headers += [(b"Content-Length", b"%d" % len(body)), (b"Connection", b"close")]
            out = conn.send(h11.Request(method=request.method, target=request.target, headers=headers))
            out += conn.send(h11.Data(data=body)) if body else b""
            upstream.sendall(out + conn.send(h11.EndOfMessage()))
            response, chunks = None, []
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(upstream.recv(PIECE))
                elif isinstance(event, h11.Response):
                    response = event
                elif isinstance(event, h11.Data):
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage) and response is not None:
                    break
                elif not isinstance(event, h11.InformationalResponse):
                    raise _Gone()  # the registry closed early: the client sees its connection go
        finally:
            self._track(upstream, False)
            upstream.close()
        rbody = b"".join(chunks)
        headers = [(k, v) for k, v in response.headers if k.lower() not in _HOP]
        status = response.status_code
        if request.method == b"HEAD":  # no body, and the length of the one a GET would get
            headers += [(k, v) for k, v in response.headers if k.lower() == b"content-length"]
        elif status not in (204, 304):
            headers.append((b"Content-Length", b"%d" % len(rbody)))
        return _head(status, response.reason or b"", headers), rbody
