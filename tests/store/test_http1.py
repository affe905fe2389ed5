"""The HTTP/1.1 transport of a loopback or --insecure registry's own origin (store/registry/http1.py).

Each test scripts a raw asyncio TCP server on 127.0.0.1 (count connections, answer late, cut a
body short, answer an upload early...) and checks what the client relies on from httpx's own
transport: keep-alive reuse and its limits, the connection bound, httpx's exception types (the
retry policy in retry.py decides by them), streamed request bodies, early answers, cancellation,
TLS without verification, and that a real registry client uses this transport and loads neither
httpcore nor anyio.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from manifesto.store.registry import http1
from manifesto.store.registry.http1 import Http1Transport
from tests.support.certs import write_self_signed

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def run(coro: Awaitable[object], limit: float = 5.0) -> object:
    """Run one test's coroutine with a hard bound, so a hang fails rather than stalls."""

    async def bounded() -> object:
        return await asyncio.wait_for(coro, limit)

    return asyncio.run(bounded())


def timeout(seconds: float = 1.0, **kw: float) -> httpx.Timeout:
    return httpx.Timeout(seconds, **kw)


def client(limits: httpx.Limits | None = None, **kw: object) -> httpx.AsyncClient:
    transport = Http1Transport(limits or httpx.Limits(max_connections=4, max_keepalive_connections=4), **kw)
    return httpx.AsyncClient(transport=transport, timeout=timeout())


async def until(condition: Callable[[], bool], seconds: float = 1.0) -> None:
    """Wait (bounded) for something the server observes asynchronously."""
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    assert condition()


# ---- the scripted server ---------------------------------------------------------------------


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]


@dataclass
class Peer:
    """One accepted connection, as the server's handler sees it."""

    server: Server
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    index: int

    async def request(self) -> Request | None:
        """The next request head; None when the client closed the connection between requests."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as e:
            if e.partial:
                raise
            self.server.eofs += 1
            return None
        except ConnectionError:
            self.server.eofs += 1
            return None
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if line)}
        self.server.requests.append(Request(method, target, headers))
        return self.server.requests[-1]

    async def body(self, req: Request) -> bytes:
        if "content-length" in req.headers:
            data = await self.reader.readexactly(int(req.headers["content-length"]))
            self.server.chunks.append(data)
            return data
        if req.headers.get("transfer-encoding", "").lower() != "chunked":
            return b""
        out = b""
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            data = await self.reader.readexactly(size + 2)
            if size == 0:
                return out
            self.server.chunks.append(data[:-2])
            self.server.chunk_seen.set()
            out += data[:-2]

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def stall(self) -> None:
        """Answer nothing more: wait (bounded) until the client closes the connection."""
        while await asyncio.wait_for(self.reader.read(65536), 5):
            pass


Handler = Callable[[Peer], Awaitable[None]]


class Server:
    """A loopback server whose every connection runs `handler`; it counts connections, the most
    open at once, and the connections the client closed between requests (`eofs`)."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None):
        self.handler = handler
        self.tls = tls
        self.connections = 0
        self.open = 0
        self.peak = 0
        self.eofs = 0
        self.requests: list[Request] = []
        self.chunks: list[bytes] = []  # request-body pieces, as they came
        self.chunk_seen = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        self.connections += 1
        self.open += 1
        self.peak = max(self.peak, self.open)
        try:
            await self.handler(Peer(self, reader, writer, self.connections))
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, asyncio.CancelledError):
            pass  # the client went away, or the test is over
        finally:
            self.open -= 1
            writer.close()


def keepalive(answer: bytes = OK, delay: float = 0.0) -> Handler:
    """Serve requests on the connection until the client closes it."""

    async def handle(peer: Peer) -> None:
        while (req := await peer.request()) is not None:
            await peer.body(req)
            if delay:
                await asyncio.sleep(delay)
            await peer.send(answer)

    return handle


def tls_context(directory: Path) -> ssl.SSLContext:
    cert_path, key_path = write_self_signed(directory, "manifesto http1 test")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_path, key_path)
    return ctx


# ---- keep-alive ------------------------------------------------------------------------------


def test_sequential_requests_reuse_one_connection():
    async def main() -> None:
        async with Server(keepalive()) as server, client() as http:
            for _ in range(3):
                r = await http.get(f"{server.url}/v2/")
                assert (r.status_code, r.content, r.http_version) == (200, b"ok", "HTTP/1.1")
            assert server.connections == 1
            assert [r.target for r in server.requests] == ["/v2/"] * 3

    run(main())


def test_path_and_query_reach_the_server_as_sent():
    async def main() -> None:
        async with Server(keepalive()) as server, client() as http:
            await http.get(f"{server.url}/v2/r/tags/list?n=2&last=a%2Fb")
            assert server.requests[0].target == "/v2/r/tags/list?n=2&last=a%2Fb"
            assert server.requests[0].headers["host"] == f"127.0.0.1:{server.port}"

    run(main())


def test_a_response_not_read_to_the_end_gives_up_its_connection():
    big = b"HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n" + b"x" * 300000

    async def main() -> None:
        async with Server(keepalive(big)) as server, client() as http:
            async with http.stream("GET", f"{server.url}/big") as r:
                assert r.status_code == 200  # body left unread
            await until(lambda: server.eofs == 1)  # the server sees that connection closed
            r = await http.get(f"{server.url}/big")
            assert len(r.content) == 300000
            assert server.connections == 2

    run(main())


def test_connection_close_from_the_server_is_honoured():
    # the server says `Connection: close` but would serve more on that socket: the client must not
    close = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"

    async def main() -> None:
        async with Server(keepalive(close)) as server, client() as http:
            for _ in range(2):
                assert (await http.get(f"{server.url}/")).status_code == 200
            assert server.connections == 2

    run(main())


def test_idle_connections_beyond_max_keepalive_are_closed():
    async def main() -> None:
        arrived = asyncio.Event()

        async def handle(peer: Peer) -> None:
            while await peer.request() is not None:
                if len(server.requests) == 3:
                    arrived.set()
                await asyncio.wait_for(arrived.wait(), 1)  # three connections at once
                await peer.send(OK)

        limits = httpx.Limits(max_connections=3, max_keepalive_connections=1)
        async with Server(handle) as server, client(limits) as http:
            got = await asyncio.gather(*(http.get(f"{server.url}/{i}") for i in range(3)))
            assert [r.status_code for r in got] == [200] * 3 and server.connections == 3
            await until(lambda: server.eofs == 2)
            assert server.open == 1  # one kept, the two beyond the limit closed
            assert (await http.get(f"{server.url}/again")).status_code == 200
            assert server.connections == 3  # the kept one carried it

    run(main())


def test_an_idle_connection_the_server_closed_is_not_reused():
    async def main() -> None:
        async def handle(peer: Peer) -> None:  # one answer, then close without saying so
            await peer.request()
            await peer.send(OK)

        async with Server(handle) as server, client() as http:
            assert (await http.get(f"{server.url}/1")).status_code == 200
            await until(lambda: server.open == 0)
            await asyncio.sleep(0.05)  # the client's loop sees the EOF
            assert (await http.get(f"{server.url}/2")).status_code == 200
            assert server.connections == 2

    run(main())


def test_a_close_the_event_loop_has_not_read_yet_is_seen_before_reuse():
    """The server's FIN is in the kernel but the client's loop has not run since: the idle
    connection must still not be handed out (its request would meet a closed connection)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    closed = threading.Event()

    def serve() -> None:  # a thread, so the close happens while the client's loop is blocked
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(OK)
            conn.recv(1)  # waits for the client's go-ahead byte... or its close
        closed.set()

    async def main() -> None:
        transport = Http1Transport(httpx.Limits(max_connections=2, max_keepalive_connections=2))
        async with httpx.AsyncClient(transport=transport, timeout=timeout()) as http:
            assert (await http.get(f"http://127.0.0.1:{port}/1")).status_code == 200
            [conn] = transport._idle[("http", "127.0.0.1", port)]
            conn.writer.write(b"x")  # the server closes once this arrives
            await conn.writer.drain()
            assert closed.wait(2)
            time.sleep(0.05)  # blocking on purpose: the loop must not read the FIN first
            assert not conn.reader.at_eof()  # the loop has not seen it...
            assert transport._take(("http", "127.0.0.1", port)) is None  # ...the socket has

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        run(main())
    finally:
        listener.close()
        thread.join(2)


def test_an_expired_idle_connection_is_not_reused(monkeypatch):
    monkeypatch.setattr(http1, "KEEPALIVE_EXPIRY", 0.05)

    async def main() -> None:
        async with Server(keepalive()) as server, client() as http:
            await http.get(f"{server.url}/1")
            await asyncio.sleep(0.1)
            await http.get(f"{server.url}/2")
            assert server.connections == 2
            await until(lambda: server.eofs == 1)  # the expired one was closed, not leaked

    run(main())


# ---- the bound -------------------------------------------------------------------------------


def test_never_more_than_max_connections_at_once():
    async def main() -> None:
        limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)
        async with Server(keepalive(delay=0.05)) as server, client(limits) as http:
            got = await asyncio.gather(*(http.get(f"{server.url}/{i}") for i in range(6)))
            assert [r.status_code for r in got] == [200] * 6
            assert server.peak == 2 and server.connections == 2

    run(main())


def test_the_bound_counts_idle_connections_to_another_origin():
    # two origins (a registry's https:// and http:// share one transport): idle connections to
    # the first stay open while the second gets new ones; httpx's own pool closes idle ones first
    async def main() -> None:
        limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)
        async with Server(keepalive(delay=0.05)) as a, Server(keepalive(delay=0.05)) as b, client(limits) as http:
            await asyncio.gather(*(http.get(f"{a.url}/{i}") for i in range(2)))
            assert a.open == 2  # kept alive
            seen = []

            async def handle(peer: Peer) -> None:
                while await peer.request() is not None:
                    await asyncio.sleep(0.05)  # for the server to see what the client closed
                    seen.append(a.open + b.open)
                    await peer.send(OK)

            b.handler = handle
            await asyncio.gather(*(http.get(f"{b.url}/{i}") for i in range(2)))
            assert max(seen) <= 2, f"{max(seen)} connections open at once with max_connections=2"

    run(main())


def test_waiting_too_long_for_a_connection_is_a_pool_timeout():
    async def main() -> None:
        release = asyncio.Event()

        async def handle(peer: Peer) -> None:
            while await peer.request() is not None:
                await release.wait()
                await peer.send(OK)

        async with Server(handle) as server, client(httpx.Limits(max_connections=1)) as http:
            first = asyncio.create_task(http.get(f"{server.url}/slow"))
            await until(lambda: len(server.requests) == 1)
            with pytest.raises(httpx.PoolTimeout):
                await http.get(f"{server.url}/waits", timeout=timeout(pool=0.1))
            release.set()
            assert (await first).status_code == 200
            assert (await http.get(f"{server.url}/after")).status_code == 200

    run(main())


# ---- faults under httpx's names --------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_refused_is_a_connect_error():
    async def main() -> None:
        async with client() as http:
            with pytest.raises(httpx.ConnectError):
                await http.get(f"http://127.0.0.1:{_free_port()}/")

    run(main())


def test_a_server_that_never_completes_the_connection_is_a_connect_timeout():
    # the TCP accept queue is full (backlog 0, never accepted): the handshake never completes
    async def main() -> None:
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(0)
            port = listener.getsockname()[1]
            fillers = []
            try:
                for _ in range(3):
                    s = socket.socket()
                    s.setblocking(False)
                    s.connect_ex(("127.0.0.1", port))
                    fillers.append(s)
                await asyncio.sleep(0.05)
                async with client() as http:
                    with pytest.raises(httpx.ConnectTimeout):
                        await http.get(f"http://127.0.0.1:{port}/", timeout=timeout(connect=0.2))
            finally:
                for s in fillers:
                    s.close()

    run(main())


def test_a_tls_handshake_left_unanswered_is_a_connect_timeout():
    async def main() -> None:
        async def handle(peer: Peer) -> None:
            await asyncio.sleep(5)  # reads nothing, answers nothing

        async with Server(handle) as server, client() as http:
            with pytest.raises(httpx.ConnectTimeout):
                await http.get(f"https://127.0.0.1:{server.port}/", timeout=timeout(connect=0.2))

    run(main())


def test_a_server_closing_without_a_response_is_a_remote_protocol_error():
    async def main() -> None:
        async def handle(peer: Peer) -> None:
            await peer.request()  # then close

        async with Server(handle) as server, client() as http:
            with pytest.raises(httpx.RemoteProtocolError):
                await http.get(f"{server.url}/")

    run(main())


@pytest.mark.parametrize("line", [b"HTTP/1.1 abc\r\n\r\n", b"garbage\r\n\r\n", b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n"])
def test_a_malformed_response_head_is_a_remote_protocol_error(line):
    async def main() -> None:
        async def handle(peer: Peer) -> None:
            await peer.request()
            await peer.send(line)
            await asyncio.sleep(1)

        async with Server(handle) as server, client() as http:
            with pytest.raises(httpx.RemoteProtocolError):
                await http.get(f"{server.url}/")

    run(main())


def test_a_body_cut_short_is_a_transport_error_when_read():
    async def main() -> None:
        async def handle(peer: Peer) -> None:
            await peer.request()
            await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)  # then close

        async with Server(handle) as server, client() as http:
            async with http.stream("GET", f"{server.url}/") as r:
                assert r.status_code == 200
                with pytest.raises(httpx.TransportError) as caught:
                    await r.aread()
            assert isinstance(caught.value, (httpx.RemoteProtocolError, httpx.ReadError))

    run(main())


def test_a_body_that_fails_while_read_frees_its_slot_without_a_close():
    """A caller whose read of a body fails may never close the response (a retried 503 read
    with aread): the failed body hands its slot back itself, or the next request waits forever."""

    async def main() -> None:
        async def handle(peer: Peer) -> None:
            req = await peer.request()
            if req is not None and req.target == "/cut":
                await peer.send(b"HTTP/1.1 503 Busy\r\nContent-Length: 100\r\n\r\nshort")  # then close
                return
            await peer.send(OK)
            await peer.stall()

        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with Server(handle) as server, client(limits) as http:
            response = await http.send(http.build_request("GET", f"{server.url}/cut"), stream=True)
            with pytest.raises(httpx.RemoteProtocolError):
                await response.aread()  # and never closed
            assert (await http.get(f"{server.url}/next", timeout=timeout(pool=0.5))).status_code == 200

    run(main())


@pytest.mark.parametrize("when", ["later", "same-packet", "garbage"])
def test_bytes_after_a_response_are_never_read_as_the_next_answer(when):
    """Whatever a server sends beyond a response (a stale answer in the same packet, a notice
    while the connection is idle, garbage) makes the connection unusable: the next request
    gets its own answer on a new connection."""
    stale = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 5\r\n\r\nSTALE"

    async def main() -> None:
        async def handle(peer: Peer) -> None:
            if await peer.request() is None:
                return
            if peer.index > 1:
                await peer.send(OK)
                await peer.stall()
                return
            first = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst"
            if when == "same-packet":
                await peer.send(first + stale)
            else:
                await peer.send(first)
                await asyncio.sleep(0.05)
                await peer.send(stale if when == "later" else b"\x00\x01 not http")
            await peer.stall()

        async with Server(handle) as server, client() as http:
            assert (await http.get(f"{server.url}/1")).content == b"first"
            await asyncio.sleep(0.15)
            second = await http.get(f"{server.url}/2")
            assert (second.status_code, second.content) == (200, b"ok")
            assert server.connections == 2

    run(main())


def test_a_long_response_head_is_read():
    """Real registries send long headers (Link pagination, policy headers): 40 KB is fine."""

    async def main() -> None:
        async def handle(peer: Peer) -> None:
            await peer.request()
            head = b"HTTP/1.1 200 OK\r\nLink: <" + b"x" * 40_000 + b">\r\nContent-Length: 2\r\n\r\nok"
            for i in range(0, len(head), 4096):  # in pieces, so the client holds an incomplete head
                await peer.send(head[i : i + 4096])
                await asyncio.sleep(0.005)
            await peer.stall()

        async with Server(handle) as server, client() as http:
            response = await http.get(f"{server.url}/")
            assert response.status_code == 200 and len(response.headers["link"]) == 40_002

    run(main())


def test_an_http_1_0_answer_says_so_and_ends_at_the_close():
    async def main() -> None:
        async def handle(peer: Peer) -> None:
            await peer.request()
            await peer.send(b"HTTP/1.0 200 OK\r\n\r\nuntil the end")  # no length: the close ends it

        async with Server(handle) as server, client() as http:
            response = await http.get(f"{server.url}/")
            assert (response.http_version, response.content) == ("HTTP/1.0", b"until the end")

    run(main())


def test_slow_headers_are_a_read_timeout_and_the_connection_is_dropped():
    async def main() -> None:
        async def handle(peer: Peer) -> None:
            while (req := await peer.request()) is not None:
                if req.target == "/slow":
                    await asyncio.sleep(0.5)
                await peer.send(OK)

        async with Server(handle) as server, client(httpx.Limits(max_connections=1)) as http:
            with pytest.raises(httpx.ReadTimeout):
                await http.get(f"{server.url}/slow", timeout=timeout(read=0.1))
            assert (await http.get(f"{server.url}/fast")).status_code == 200
            assert server.connections == 2  # the late answer is never read as the next one's

    run(main())


def test_a_slow_body_is_a_read_timeout():
    async def main() -> None:
        async def handle(peer: Peer) -> None:
            await peer.request()
            await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
            await asyncio.sleep(1)

        async with Server(handle) as server, client() as http:
            with pytest.raises(httpx.ReadTimeout):
                await http.get(f"{server.url}/", timeout=timeout(read=0.1))

    run(main())


def test_a_server_that_reads_no_body_is_a_write_timeout():
    async def main() -> None:
        async def handle(peer: Peer) -> None:
            await peer.request()
            await asyncio.sleep(2)  # never reads the body, never answers

        async with Server(handle) as server, client() as http:
            with pytest.raises(httpx.WriteTimeout):
                await http.put(f"{server.url}/", content=b"x" * (64 << 20), timeout=timeout(write=0.2))

    run(main())


def test_tls_to_a_plain_http_server_is_a_connect_error():
    async def main() -> None:
        async def handle(peer: Peer) -> None:
            await peer.reader.read(1024)  # the ClientHello
            await peer.send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

        async with Server(handle) as server, client() as http:
            with pytest.raises(httpx.ConnectError):
                await http.get(f"https://127.0.0.1:{server.port}/")

    run(main())


# ---- request bodies --------------------------------------------------------------------------


def test_an_async_iterator_body_is_streamed_chunked():
    async def main() -> None:
        async with Server(keepalive()) as server, client() as http:

            async def body() -> AsyncIterator[bytes]:
                yield b"first"
                # the server has this piece before the iterator produces the next one
                await asyncio.wait_for(server.chunk_seen.wait(), 1)
                yield b"second"

            r = await http.put(f"{server.url}/upload", content=body())
            assert r.status_code == 200
            assert server.requests[0].headers.get("transfer-encoding") == "chunked"
            assert b"".join(server.chunks) == b"firstsecond"

    run(main())


def test_a_bytes_body_goes_with_its_length():
    async def main() -> None:
        async with Server(keepalive()) as server, client() as http:
            await http.put(f"{server.url}/upload", content=b"x" * 100_000)
            await http.put(f"{server.url}/upload", content=b"y" * 10)
            assert [r.headers.get("content-length") for r in server.requests] == ["100000", "10"]
            assert server.chunks == [b"x" * 100_000, b"y" * 10] and server.connections == 1

    run(main())


@pytest.mark.parametrize("error", [ValueError("bad piece"), OSError(5, "cannot read the layer file")])
def test_a_failing_body_iterator_raises_its_own_error_and_drops_the_connection(error):
    async def main() -> None:
        async with Server(keepalive()) as server, client(httpx.Limits(max_connections=1)) as http:
            await http.get(f"{server.url}/warm")

            async def body() -> AsyncIterator[bytes]:
                yield b"some"
                raise error

            with pytest.raises(type(error)) as caught:
                await http.put(f"{server.url}/upload", content=body())
            assert caught.value is error  # not wrapped as an httpx.WriteError or the like
            assert (await http.get(f"{server.url}/after")).status_code == 200  # slot released
            assert server.connections == 2  # the half-sent one was not reused

    run(main())


@pytest.mark.parametrize("linger", [False, True], ids=["close", "shutdown-then-close"])
def test_an_answer_sent_while_refusing_a_large_body_reaches_the_client(linger):
    # a 413 (or 401) answered before the body ends, then the server closes (a reset, as data is
    # left unread): the client must get the 413, not a WriteError/ReadError
    async def main() -> None:
        async def handle(peer: Peer) -> None:
            await peer.request()
            await peer.send(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbig!")
            if linger:
                peer.writer.write_eof()
                await asyncio.sleep(0.2)

        async def body() -> AsyncIterator[bytes]:
            for _ in range(256):
                yield b"x" * 65536

        async with Server(handle) as server, client() as http:
            try:
                r = await http.put(f"{server.url}/upload", content=body())
            except httpx.TransportError as e:  # the answer had arrived: it must not be lost
                pytest.fail(f"the server's 413 was lost to {type(e).__name__}: {e}")
            assert (r.status_code, r.content) == (413, b"big!")

    run(main())


def test_an_answer_sent_before_a_small_body_is_read_still_arrives():
    # the server answers 401 at once but reads the (small) body before closing: no reset
    async def main() -> None:
        async def handle(peer: Peer) -> None:
            req = await peer.request()
            await peer.send(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
            await peer.body(req)
            while (req := await peer.request()) is not None:
                await peer.body(req)
                await peer.send(OK)

        async with Server(handle) as server, client() as http:
            r = await http.put(f"{server.url}/upload", content=b"x" * 1000)
            assert r.status_code == 401
            assert (await http.get(f"{server.url}/")).status_code == 200
            assert server.connections == 1  # a complete exchange: the connection carries on

    run(main())


# ---- response framing ------------------------------------------------------------------------


def test_head_with_a_content_length_has_no_body_and_keeps_the_connection():
    async def main() -> None:
        async def handle(peer: Peer) -> None:
            while (req := await peer.request()) is not None:
                if req.method == "HEAD":
                    await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nDocker-Content-Digest: sha256:ab\r\n\r\n")
                else:
                    await peer.send(OK)

        async with Server(handle) as server, client() as http:
            r = await http.head(f"{server.url}/v2/r/manifests/1")
            assert (r.status_code, r.headers["content-length"], r.content) == (200, "1234", b"")
            assert (await http.get(f"{server.url}/v2/")).content == b"ok"
            assert server.connections == 1

    run(main())


def test_204_has_no_body_and_keeps_the_connection():
    async def main() -> None:
        async with Server(keepalive(b"HTTP/1.1 204 No Content\r\n\r\n")) as server, client() as http:
            for _ in range(2):
                r = await http.delete(f"{server.url}/v2/r/manifests/sha256:ab")
                assert (r.status_code, r.content) == (204, b"")
            assert server.connections == 1

    run(main())


def test_a_chunked_response_is_read_whole_and_keeps_the_connection():
    async def main() -> None:
        async def handle(peer: Peer) -> None:
            while await peer.request() is not None:
                await peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
                await asyncio.sleep(0.02)
                await peer.send(b"6\r\n world\r\n0\r\n\r\n")

        async with Server(handle) as server, client() as http:
            assert (await http.get(f"{server.url}/1")).content == b"hello world"
            assert (await http.get(f"{server.url}/2")).content == b"hello world"
            assert server.connections == 1

    run(main())


def test_informational_responses_before_the_final_one_are_skipped():
    async def main() -> None:
        async def handle(peer: Peer) -> None:
            while (req := await peer.request()) is not None:
                await peer.send(b"HTTP/1.1 100 Continue\r\n\r\n")
                await peer.body(req)
                await peer.send(b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n")
                await peer.send(b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\nLocation: /v2/r/blobs/x\r\n\r\ndone")

        async with Server(handle) as server, client() as http:
            r = await http.put(f"{server.url}/up", content=b"data", headers={"Expect": "100-continue"})
            assert (r.status_code, r.content, r.headers["location"]) == (201, b"done", "/v2/r/blobs/x")
            assert (await http.get(f"{server.url}/again")).status_code == 201
            assert server.connections == 1

    run(main())


# ---- cancellation ----------------------------------------------------------------------------


def _stalling(stall_in_body: bool) -> Handler:
    async def handle(peer: Peer) -> None:
        while (req := await peer.request()) is not None:
            if req.target == "/stall":
                if stall_in_body:
                    await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
                await peer.stall()
                return
            await peer.body(req)
            await peer.send(OK)

    return handle


@pytest.mark.parametrize("where", ["headers", "body"])
def test_a_cancelled_request_closes_its_connection_and_frees_its_slot(where):
    async def main() -> None:
        async with Server(_stalling(where == "body")) as server, client(httpx.Limits(max_connections=1)) as http:
            await http.get(f"{server.url}/warm")  # an idle connection the cancelled request takes
            task = asyncio.create_task(http.get(f"{server.url}/stall"))
            await until(lambda: len(server.requests) == 2)
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await until(lambda: server.open == 0)  # the server sees it closed
            assert (await http.get(f"{server.url}/after", timeout=timeout(pool=0.5))).status_code == 200
            assert server.connections == 2

    run(main())


def test_a_cancelled_upload_closes_its_connection_and_frees_its_slot():
    async def main() -> None:
        async with Server(keepalive()) as server, client(httpx.Limits(max_connections=1)) as http:

            async def body() -> AsyncIterator[bytes]:
                yield b"part"
                await asyncio.sleep(5)
                yield b"never"

            task = asyncio.create_task(http.put(f"{server.url}/upload", content=body()))
            await asyncio.wait_for(server.chunk_seen.wait(), 1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await until(lambda: server.open == 0)
            assert (await http.get(f"{server.url}/after", timeout=timeout(pool=0.5))).status_code == 200
            assert server.connections == 2

    run(main())


# ---- TLS, closing ----------------------------------------------------------------------------


def test_https_to_a_self_signed_loopback_server_works_unverified(tmp_path):
    async def main() -> None:
        async with Server(keepalive(), tls=tls_context(tmp_path)) as server, client() as http:
            for _ in range(2):
                r = await http.get(f"{server.url}/v2/")
                assert (r.status_code, r.content) == (200, b"ok")
            assert server.connections == 1

    run(main())


def test_aclose_closes_every_connection():
    async def main() -> None:
        async with Server(_stalling(True)) as server:
            transport = Http1Transport(httpx.Limits(max_connections=4, max_keepalive_connections=4))
            http = httpx.AsyncClient(transport=transport, timeout=timeout())
            await asyncio.gather(*(http.get(f"{server.url}/{i}") for i in range(3)))
            assert server.connections == 3
            async with http.stream("GET", f"{server.url}/stall") as r:  # one in use, two idle
                assert r.status_code == 200
                assert server.open == 3
                await transport.aclose()
                await until(lambda: server.open == 0)

    run(main())


# ---- the registry client ---------------------------------------------------------------------


def test_a_loopback_registry_client_uses_this_transport(registry):
    from manifesto.store.registry.client import RegistryClient

    async def main() -> None:
        async with RegistryClient(registry.host) as c:
            for scheme in ("http", "https"):
                assert isinstance(c.http._transport_for_url(httpx.URL(f"{scheme}://{registry.host}/v2/")), Http1Transport)
            assert not isinstance(c.http._transport_for_url(httpx.URL("https://auth.example.com/token")), Http1Transport)
            await c.check_login()

    run(main(), limit=30)


_INSPECT_PROBE = """
import sys
from manifesto.cli.main import main
try:
    rc = main(["inspect", sys.argv[1]])
except SystemExit as e:
    rc = e.code
print("rc", rc or 0, *(m for m in ("httpcore", "anyio") if m in sys.modules))
"""


def test_inspect_against_a_loopback_registry_loads_neither_httpcore_nor_anyio(registry, arch_images):
    from manifesto.jobs.copy import copy

    image = arch_images["amd64"]
    ref = registry.ref("t/http1-inspect") + ":1"
    copy(f"oci:{image.layout}:{image.tag}", ref)
    out = subprocess.run([sys.executable, "-c", _INSPECT_PROBE, ref], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.splitlines()[-1] == "rc 0", out.stdout + out.stderr


def test_a_header_http_does_not_allow_is_a_local_error_that_does_not_quote_it():
    """A token service that pads its token gives an Authorization value HTTP/1.1 refuses: the
    error is httpx's own type (the retry policy leaves it alone) and names no header value."""

    async def main() -> None:
        async with Server(keepalive()) as server, client() as http:
            with pytest.raises(httpx.LocalProtocolError) as caught:
                await http.get(f"{server.url}/", headers={"Authorization": "Bearer s3cret "})
            assert "s3cret" not in str(caught.value)
            assert server.connections == 0 or server.requests == []

    run(main())


def test_a_body_longer_than_its_declared_length_is_a_local_error():
    async def body() -> AsyncIterator[bytes]:
        yield b"x" * 20

    async def main() -> None:
        async with Server(keepalive()) as server, client() as http:
            with pytest.raises(httpx.LocalProtocolError):
                await http.put(f"{server.url}/", content=body(), headers={"Content-Length": "10"})

    run(main())
