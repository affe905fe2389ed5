"""HTTP/1.1 for httpx on asyncio streams and h11: the transport of a registry's own origin when
that origin is on loopback or `--insecure` (plain HTTP, or TLS without verification).

Why not httpx's default transport there: it is httpcore on anyio, and loading those two costs
about 25 ms of CPU (a sixth of a `create --push` against a local registry), with anyio cancel
scopes around every read and write after that. Such a client never speaks HTTP/2, so it needs
none of that. This transport keeps what the client relies on: keep-alive connections per origin
under one bound, connect/read/write/pool timeouts, request bodies streamed as they are produced,
a response the server sends while it refuses the rest of a body, and httpx's exception types,
so the one retry policy (retry.py) sees the same faults under the same names. Verified HTTPS,
and any other host a redirect or a token realm leads to, stays on httpx's own transport.
"""

from __future__ import annotations

import asyncio
import select
import ssl
import time
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

import h11
import httpx

KEEPALIVE_EXPIRY = 5.0  # seconds an idle connection is kept: a server closes its own after a while
READ_SIZE = 64 * 1024
MAX_HEAD = 100 * 1024  # a response head may be this long (h11's own default, 16 KiB, is short of real ones)

T = TypeVar("T")
Origin = tuple[str, str, int]


async def _within(step: Awaitable[T], timeout: float | None) -> T:
    if timeout is None:
        return await step
    async with asyncio.timeout(timeout):
        return await step


class _Reader(asyncio.StreamReader):
    """A stream whose bytes received before a reset stay readable, the error after them.

    asyncio's own raises a connection's error as soon as it is lost, dropping what the server
    sent first: a registry that answers an upload (401, 413) and closes before taking the whole
    body would have its answer lost behind "connection reset".
    """

    _lost: BaseException | None = None

    def set_exception(self, exc: BaseException) -> None:
        self._lost = exc
        self.feed_eof()

    async def read(self, n: int = -1) -> bytes:
        data = await super().read(n)
        if not data and self._lost is not None:
            raise self._lost
        return data

    @property
    def pending(self) -> int:
        """Bytes received and not read yet."""
        return len(self._buffer)


async def _open(host: str, port: int, tls: ssl.SSLContext | None) -> tuple[_Reader, asyncio.StreamWriter]:
    loop = asyncio.get_running_loop()
    reader = _Reader(limit=READ_SIZE, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport, _ = await loop.create_connection(
        lambda: protocol, host, port, ssl=tls, server_hostname=host if tls else None
    )
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


def _readable(sock: object) -> bool:
    """Whether something waits to be read on a socket, without waiting."""
    if sock is None:
        return False
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class _Connection:
    """One connection to an origin and its h11 state."""

    def __init__(self, origin: Origin, reader: _Reader, writer: asyncio.StreamWriter):
        self.origin = origin
        self.reader = reader
        self.writer = writer
        self.state = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
        self.idle_since = time.monotonic()

    def silent(self) -> bool:
        """Nothing from the server beyond the last response: no bytes after it, none received
        since, none waiting in the socket (a close the event loop has not read yet). Whatever
        came would otherwise be read as the answer to the next request."""
        return (
            not self.state.trailing_data[0]
            and not self.reader.pending
            and not self.reader.at_eof()
            and not self.writer.is_closing()
            and not _readable(self.writer.get_extra_info("socket"))
        )

    def reusable(self, now: float) -> bool:
        """Idle, not expired, and silent since its last response (asked when it is taken: the
        one place, so bytes that came with the response and those that came since both count)."""
        return self.state.our_state is h11.IDLE and now - self.idle_since < KEEPALIVE_EXPIRY and self.silent()

    async def send(self, event: h11.Event, request: httpx.Request, timeout: float | None) -> None:
        try:
            data = self.state.send(event)
        except h11.LocalProtocolError as e:  # a body longer or shorter than its declared length
            raise httpx.LocalProtocolError(str(e), request=request) from e
        if not data:
            return
        try:
            self.writer.write(data)
            await _within(self.writer.drain(), timeout)
        except TimeoutError:
            raise httpx.WriteTimeout("timed out sending the request", request=request) from None
        except OSError as e:
            raise httpx.WriteError(str(e) or type(e).__name__, request=request) from e

    async def receive(self, request: httpx.Request, timeout: float | None) -> h11.Event | type[h11.PAUSED]:
        while True:
            try:
                event = self.state.next_event()
            except h11.RemoteProtocolError as e:
                raise httpx.RemoteProtocolError(str(e), request=request) from e
            if event is not h11.NEED_DATA:
                return event
            try:
                data = await _within(self.reader.read(READ_SIZE), timeout)
            except TimeoutError:
                raise httpx.ReadTimeout("timed out reading the response", request=request) from None
            except OSError as e:
                raise httpx.ReadError(str(e) or type(e).__name__, request=request) from e
            if not data and self.state.their_state is h11.SEND_RESPONSE:
                raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)
            self.state.receive_data(data)

    def close(self) -> None:
        self.writer.close()


class Http1Transport(httpx.AsyncBaseTransport):
    """Keep-alive HTTP/1.1 connections, at most `limits.max_connections` open at once in all
    (idle ones included), at most `limits.max_keepalive_connections` of them idle."""

    def __init__(self, limits: httpx.Limits):
        self._max = limits.max_connections or 100
        self._slots = asyncio.Semaphore(self._max)
        self._busy = 0  # requests holding a slot: each has at most one connection
        self._keep = limits.max_keepalive_connections if limits.max_keepalive_connections is not None else 20
        self._ssl_context: ssl.SSLContext | None = None  # made on the first https request
        self._idle: dict[Origin, list[_Connection]] = {}
        self._open: set[_Connection] = set()

    def _tls(self) -> ssl.SSLContext:
        """TLS without verification: this transport serves only origins that are trusted as they are."""
        if self._ssl_context is None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.set_alpn_protocols(["http/1.1"])
            self._ssl_context = ctx
        return self._ssl_context

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        url = request.url
        origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        try:
            await _within(self._slots.acquire(), timeout.get("pool"))
        except TimeoutError:
            raise httpx.PoolTimeout("timed out waiting for a connection", request=request) from None
        self._busy += 1
        conn = None
        try:
            conn = self._take(origin) or await self._connect(origin, request, timeout.get("connect"))
            response = await self._exchange(conn, request, timeout)
        except BaseException:
            if conn is not None:
                self._drop(conn)
            self._free()
            raise
        return response

    def _free(self) -> None:
        self._busy -= 1
        self._slots.release()

    def _take(self, origin: Origin) -> _Connection | None:
        idle, now = self._idle.get(origin), time.monotonic()
        while idle:
            conn = idle.pop()
            if conn.reusable(now):
                return conn
            self._drop(conn)
        return None

    async def _connect(self, origin: Origin, request: httpx.Request, timeout: float | None) -> _Connection:
        # room for one more: idle connections (to any origin) count against the bound too
        idle = sorted((c for conns in self._idle.values() for c in conns), key=lambda c: c.idle_since)
        for conn in idle[: max(0, self._busy + len(idle) - self._max)]:
            self._idle[conn.origin].remove(conn)
            self._drop(conn)
        scheme, host, port = origin
        tls = self._tls() if scheme == "https" else None
        try:
            reader, writer = await _within(_open(host, port, tls), timeout)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"timed out connecting to {host}:{port}", request=request) from None
        except OSError as e:  # ssl.SSLError included: a plain-HTTP server answering a handshake
            raise httpx.ConnectError(str(e) or type(e).__name__, request=request) from e
        conn = _Connection(origin, reader, writer)
        self._open.add(conn)
        return conn

    async def _exchange(self, conn: _Connection, request: httpx.Request, timeout: dict) -> httpx.Response:
        try:
            head = h11.Request(method=request.method, target=request.url.raw_path, headers=request.headers.raw)
        except h11.LocalProtocolError:  # not h11's words: they quote the header, which may be a credential
            raise httpx.LocalProtocolError(
                "the request cannot be sent: a header name or value HTTP/1.1 does not allow", request=request
            ) from None
        write, read = timeout.get("write"), timeout.get("read")
        try:
            await conn.send(head, request, write)
            async for chunk in request.stream:  # the body's own failures go up as they are
                await conn.send(h11.Data(data=chunk), request, write)
            await conn.send(h11.EndOfMessage(), request, write)
        except httpx.WriteError:
            pass  # a server may answer and close before taking the whole body: read its answer
        while True:
            event = await conn.receive(request, read)
            if isinstance(event, h11.Response):
                break
            if not isinstance(event, h11.InformationalResponse):
                raise httpx.RemoteProtocolError(f"unexpected {type(event).__name__} before the response", request=request)
        return httpx.Response(
            event.status_code,
            headers=event.headers.raw_items(),
            stream=_Body(self, conn, request, read),
            extensions={"http_version": b"HTTP/" + event.http_version, "reason_phrase": event.reason},
        )

    def _release(self, conn: _Connection, complete: bool) -> None:
        """A response is closed: its connection goes back to the pool if it can carry another."""
        self._free()
        if complete and conn.state.our_state is h11.DONE and conn.state.their_state is h11.DONE:
            conn.state.start_next_cycle()
            idle = self._idle.setdefault(conn.origin, [])
            if sum(len(x) for x in self._idle.values()) < self._keep:
                conn.idle_since = time.monotonic()
                idle.append(conn)
                return
        self._drop(conn)

    def _drop(self, conn: _Connection) -> None:
        self._open.discard(conn)
        conn.close()

    async def aclose(self) -> None:
        for conn in list(self._open):
            self._drop(conn)
        self._idle.clear()


class _Body(httpx.AsyncByteStream):
    """A response body read as it arrives; closing it hands the connection back."""

    def __init__(self, transport: Http1Transport, conn: _Connection, request: httpx.Request, timeout: float | None):
        self._transport = transport
        self._conn = conn
        self._request = request
        self._timeout = timeout
        self._complete = False
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            while True:
                event = await self._conn.receive(self._request, self._timeout)
                if isinstance(event, h11.Data):
                    yield bytes(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    self._complete = True
                    return
                else:
                    raise httpx.RemoteProtocolError(
                        f"unexpected {type(event).__name__} in the response body", request=self._request
                    )
        except BaseException:
            await self.aclose()  # a caller whose read failed may never close the response itself
            raise

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._transport._release(self._conn, self._complete)
