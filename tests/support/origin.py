"""The recording test origin: every byte the edge sends it is kept, raw and parsed.

Tests assert what reached the origin (nothing, for a refused request; never the
client's forged secret or X-Forwarded-For; exactly the policy's headers), so the
origin must see the wire exactly. It is a small asyncio server built on h11, plus a
raw WebSocket mode after its own 101. Beside it, in thread mode, a real `websockets`
server (`ws_port`) answers WebSocket sessions the way a production library does
(permessage-deflate, subprotocol selection, close codes); it records into the same log.

The main port (`port`) chooses its behaviour by request path (the edge forwards
paths unchanged):

    /_origin/stats       JSON counters (read directly, not through the edge)
    /echo                200 JSON {method, target, headers (lowercase names), body_len}
    /status/N            status N, short body (none for 204/304)
    /slow/S              200 "slow ok" after S seconds
    /bytes/N             N bytes "b" with Content-Length, written with flow control
    /chunked/N           N bytes "c", chunked
    /static/*            200 with Cache-Control: no-cache and X-Cloud-Trace-Context set
    /drop-next           200, then the next request on this connection is dropped unanswered
    /leak-secret         200 echoing the request's X-CF-Secret as response headers
    /_evil/KIND          a broken or hostile answer (see `evil_response`)
    TRACE anything       the request reflected, headers included
    anything else        200 "ok"
  upgrades (Upgrade: websocket):
    /_bad/NNN            status NNN (200, 403, 426, ...), the connection stays HTTP
    /_bad/accept         101 with a wrong Sec-WebSocket-Accept
    /_bad/noupgrade      101 without Upgrade/Connection headers
    /_bad/h2c            101 switching to h2c
    /_bad/die            101, one text frame "hi", then TCP close (no close frame)
    /_bad/die-mid        101, half a frame, then TCP close
    /ws/flood?n=N        101, then N bytes of binary frames with flow control
    /ws/slowframe        101, then frames trickled seconds apart (keepalive tests)
    anything else        101, echo every data frame, answer pings, echo the close

The `websockets` server (`ws_port`): echo; `/close/CODE` closes with CODE;
`/flood/N` sends N bytes in 64 KiB messages; `/silent` never sends; the message
"headers" answers with the request headers as JSON; `/http*` is a plain 200.

Run in a thread (`RecordingOrigin().start()`, or `with RecordingOrigin() as origin`),
or as a process (`python -m tests.support.origin --port P`, see `origin_process`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import signal
import sys
import threading
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from tests.support.edge import Edge, edge_process
from tests.support.process import LOOPBACK, REPO, ServerProcess, free_port, started
from tests.support.wire import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameError,
    encode_frame,
    parse_frame,
    ws_accept,
)

CHUNK = 65536
TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Paths where the origin misbehaves on purpose: what happens there is not the client's doing.
SPECIAL_PATHS = (b"/_origin", b"/status", b"/slow", b"/bytes", b"/chunked", b"/drop-next",
                 b"/leak-secret", b"/_evil", b"/_bad", b"/ws/")
# /ws/slowframe: a 64 KiB frame sent in halves, then a fragmented message; it pauses
# in the middle of the frame and between two fragments. Each pause is more than twice
# the edge's 1-second keepalive interval, so it always holds a whole silent interval.
SLOWFRAME_PAYLOAD = bytes(range(256)) * 256
SLOWFRAME_GAP = 2.3
TRACE_CONTEXT = b"105445aa7843bc8bf206b12000100000/1;o=1"


@dataclass
class SeenRequest:
    method: bytes
    target: bytes
    http_version: bytes
    headers: list[tuple[bytes, bytes]]  # names as sent on the wire
    body: bytes = b""  # kept up to 1 MiB
    body_len: int = 0  # every body byte received
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)

    def values(self, name: str) -> list[bytes]:
        low = name.lower().encode()
        return [v for k, v in self.headers if k.lower() == low]

    def header(self, name: str) -> str | None:
        """The first value of `name`, decoded, or None."""
        found = self.values(name)
        return found[0].decode("latin-1") if found else None


@dataclass
class SeenConnection:
    raw: bytearray = field(default_factory=bytearray)
    requests: list[SeenRequest] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # the origin's own parse failures
    sent_101: int = 0
    drop_next: bool = False  # /drop-next: leave the next request unanswered


@dataclass(frozen=True)
class Mark:
    """A point in the origin's history; `RecordingOrigin.since(mark)` is what came after."""

    raw: int
    requests: int
    errors: int
    sent_101: int


@dataclass
class Seen:
    """Everything the origin saw after a mark, whatever connection it arrived on
    (the edge may reuse a pooled upstream connection across test cases)."""

    raw: bytes
    requests: list[SeenRequest]
    errors: list[str]
    sent_101: int


@dataclass
class Stats:
    connections: int = 0
    open: int = 0
    ws_open: int = 0
    requests: int = 0
    sent: int = 0
    sent_101: int = 0

    def as_json(self) -> dict[str, int]:
        return {"connections": self.connections, "open": self.open, "ws_open": self.ws_open,
                "requests": self.requests, "sent": self.sent, "sent_101": self.sent_101}


class RecordingOrigin:
    def __init__(self, host: str = LOOPBACK, port: int = 0, record: bool = True,
                 idle_timeout: float | None = None) -> None:
        self.host = host
        # Close keep-alive connections idle this long, as uvicorn (5 s) or Cloud Run do.
        self.idle_timeout = idle_timeout
        self.port = port
        self.ws_port = 0
        self.record = record
        self.seen: list[SeenConnection] = []
        # Global, ordered logs for `since`: raw chunks, requests, parse errors.
        self.raw_log: list[bytes] = []
        self.request_log: list[SeenRequest] = []
        self.error_log: list[str] = []
        self.aborted = 0  # requests the edge abandoned by closing mid-body
        self.stats = Stats()
        self.lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.servers: list[asyncio.Server | Server] = []
        self.thread: threading.Thread | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.websockets: set[asyncio.BaseTransport] = set()  # both kinds, after their 101

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"http://{self.host}:{self.ws_port}"

    # -- inspection (thread-safe snapshots) ---------------------------------------

    def connections(self) -> list[SeenConnection]:
        with self.lock:
            return list(self.seen)

    def mark(self) -> Mark:
        with self.lock:
            return Mark(len(self.raw_log), len(self.request_log), len(self.error_log),
                        self.stats.sent_101)

    def since(self, mark: Mark) -> Seen:
        with self.lock:
            return Seen(b"".join(self.raw_log[mark.raw:]), list(self.request_log[mark.requests:]),
                        list(self.error_log[mark.errors:]), self.stats.sent_101 - mark.sent_101)

    def _log_request(self, conn: SeenConnection | None, request: SeenRequest) -> None:
        self.stats.requests += 1
        if self.record:
            with self.lock:
                if conn is not None:
                    conn.requests.append(request)
                self.request_log.append(request)

    # -- lifecycle ----------------------------------------------------------------

    async def serve(self, websockets_library: bool = False) -> None:
        server = await asyncio.start_server(
            self.handle, self.host, self.port, backlog=4096, limit=1 << 20)
        self.port = server.sockets[0].getsockname()[1]
        self.servers.append(server)
        if websockets_library:
            ws = await serve(self._ws_handler, self.host, 0, process_request=self._ws_record,
                             select_subprotocol=_select_subprotocol, max_size=None,
                             ping_interval=None)
            self.ws_port = ws.sockets[0].getsockname()[1]
            self.servers.append(ws)

    def start(self) -> RecordingOrigin:
        ready = threading.Event()

        def run() -> None:
            self.loop = asyncio.new_event_loop()
            self.loop.run_until_complete(self.serve(websockets_library=True))
            ready.set()
            self.loop.run_forever()
            self.loop.run_until_complete(self._shutdown())
            self.loop.close()

        self.thread = threading.Thread(target=run, name="test-origin", daemon=True)
        self.thread.start()
        if not ready.wait(10):
            raise RuntimeError("test origin did not start")
        return self

    async def _shutdown(self) -> None:
        for server in self.servers:
            server.close()
        for transport in [*self.websockets, *(w.transport for w in self.writers)]:
            transport.abort()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self) -> None:
        if self.loop is not None and self.thread is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)

    def __enter__(self) -> RecordingOrigin:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def kill_websockets(self) -> None:
        """Drop every open WebSocket at the TCP level (no close frame)."""
        assert self.loop is not None

        def kill() -> None:
            for transport in list(self.websockets):
                transport.abort()

        self.loop.call_soon_threadsafe(kill)

    # -- one connection -----------------------------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = SeenConnection()
        if self.record:
            with self.lock:
                self.seen.append(conn)
        self.stats.connections += 1
        self.stats.open += 1
        self.writers.add(writer)
        try:
            await self.http(reader, writer, conn)
        except (ConnectionError, asyncio.IncompleteReadError, FrameError, TimeoutError):
            pass
        finally:
            self.stats.open -= 1
            self.writers.discard(writer)
            self.websockets.discard(writer.transport)
            writer.transport.abort()

    async def read(self, reader: asyncio.StreamReader, conn: SeenConnection) -> bytes:
        data = await reader.read(CHUNK)
        if self.record and data:
            with self.lock:
                conn.raw += data
                self.raw_log.append(data)
        return data

    async def _next_event(self, h: h11.Connection, reader: asyncio.StreamReader,
                          conn: SeenConnection) -> Any:
        """The next h11 event, reading as needed; None when an idle connection timed out."""
        while (event := h.next_event()) is h11.NEED_DATA:
            if self.idle_timeout is not None and h.their_state is h11.IDLE:
                try:
                    async with asyncio.timeout(self.idle_timeout):
                        data = await self.read(reader, conn)
                except TimeoutError:
                    return None  # idle keep-alive connection: close it
            else:
                data = await self.read(reader, conn)
            h.receive_data(data)
        return event

    async def http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   conn: SeenConnection, initial: bytes = b"") -> None:
        h = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 20)
        if initial:
            h.receive_data(initial)
        request: SeenRequest | None = None
        while True:
            try:
                event = await self._next_event(h, reader, conn)
            except h11.RemoteProtocolError as exc:
                await self._protocol_error(writer, conn, str(exc))
                return
            if event is None or event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
                return
            if isinstance(event, h11.Request):
                request = SeenRequest(event.method, event.target, event.http_version,
                                      list(event.headers.raw_items()))
                self._log_request(conn, request)
            elif isinstance(event, h11.Data):
                assert request is not None
                request.body_len += len(event.data)
                if self.record and len(request.body) < (1 << 20):
                    request.body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert request is not None
                request.trailers = list(event.headers.raw_items())
                if _is_upgrade(request):
                    # Whatever follows the upgrade request is the origin's own business.
                    await self.upgrade(reader, writer, conn, request, bytes(h.trailing_data[0]))
                    return
                if conn.drop_next:
                    return  # the keep-alive race: closed without answering
                await self.respond(h, reader, writer, conn, request)
                if h.our_state is h11.MUST_CLOSE or h.their_state is h11.MUST_CLOSE:
                    return
                h.start_next_cycle()

    async def _protocol_error(self, writer: asyncio.StreamWriter, conn: SeenConnection,
                              error: str) -> None:
        if "peer closed connection" in error:
            # The edge abandoned a request mid-body (its client misbehaved):
            # closing the connection is the correct way to abort, not bad HTTP.
            with self.lock:
                self.aborted += 1
            return
        with self.lock:
            conn.errors.append(error)
            self.error_log.append(error)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                     b"Connection: close\r\n\r\n")
        await writer.drain()

    # -- plain HTTP answers ---------------------------------------------------------

    async def send_response(self, h: h11.Connection, writer: asyncio.StreamWriter,
                            request: SeenRequest, status: int, body: bytes,
                            headers: Sequence[tuple[bytes, bytes]] = (),
                            content_type: bytes = b"text/plain") -> None:
        head = [(b"Content-Type", content_type), *headers]
        if status not in (204, 304):
            head.append((b"Content-Length", str(len(body)).encode()))
        writer.write(h.send(h11.Response(status_code=status, headers=head)))
        if body and status not in (204, 304) and request.method != b"HEAD":
            writer.write(h.send(h11.Data(data=body)))
        writer.write(h.send(h11.EndOfMessage()))
        await writer.drain()

    async def stream(self, h: h11.Connection, writer: asyncio.StreamWriter,
                     request: SeenRequest, size: int, fill: bytes, chunked: bool) -> None:
        """`size` bytes of `fill`, written as the edge reads them (flow control)."""
        framing = (b"Transfer-Encoding", b"chunked") if chunked else (
            b"Content-Length", str(size).encode())
        writer.write(h.send(h11.Response(status_code=200, headers=[
            (b"Content-Type", b"application/octet-stream"), framing])))
        block = fill * CHUNK
        left = 0 if request.method == b"HEAD" else size  # HEAD: the same head, no body
        while left > 0:
            piece = block[:min(CHUNK, left)]
            writer.write(h.send(h11.Data(data=piece)))
            await writer.drain()
            self.stats.sent += len(piece)
            left -= len(piece)
        writer.write(h.send(h11.EndOfMessage()))
        await writer.drain()

    async def respond(self, h: h11.Connection, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter, conn: SeenConnection,
                      request: SeenRequest) -> None:
        path = urlsplit(request.target.decode("latin-1")).path
        arg = path.rsplit("/", 1)[1]
        if request.method == b"TRACE":
            # Like any server implementing TRACE: reflect the request it received,
            # headers included (so an injected secret would come back to the client).
            head = b"\r\n".join(k + b": " + v for k, v in request.headers)
            await self.send_response(h, writer, request, 200, request.method + b" "
                                     + request.target + b"\r\n" + head,
                                     content_type=b"message/http")
        elif path == "/_origin/stats":
            await self.send_response(h, writer, request, 200,
                                     json.dumps(self.stats.as_json()).encode(),
                                     content_type=b"application/json")
        elif path == "/echo":
            await self.send_response(h, writer, request, 200, _echo(request),
                                     content_type=b"application/json")
        elif path.startswith("/status/"):
            await self.send_response(h, writer, request, int(arg),
                                     b"status %s from origin\n" % arg.encode())
        elif path.startswith("/slow/"):
            await asyncio.sleep(float(arg))
            await self.send_response(h, writer, request, 200, b"slow ok\n")
        elif path.startswith(("/bytes/", "/chunked/")):
            chunked = path.startswith("/chunked/")
            await self.stream(h, writer, request, int(arg), b"c" if chunked else b"b", chunked)
        elif path.startswith("/static/"):
            await self.send_response(h, writer, request, 200, b"console.log('static');\n", [
                (b"Cache-Control", b"no-cache"), (b"X-Cloud-Trace-Context", TRACE_CONTEXT)],
                content_type=b"application/javascript")
        elif path == "/leak-secret":
            # A careless origin echoing the request's secret header back.
            secret = (request.values("x-cf-secret") or [b""])[0]
            await self.send_response(h, writer, request, 200, b"ok\n", [
                (b"x-cf-secret", secret), (b"X-CF-SECRET", secret)])
        elif path.startswith("/_evil/"):
            await self.misbehave(reader, writer, conn, arg, request)
        else:
            if path == "/drop-next":
                conn.drop_next = True
            await self.send_response(h, writer, request, 200, b"ok\n")

    async def misbehave(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        conn: SeenConnection, kind: str, request: SeenRequest) -> None:
        writer.write(evil_response(kind, request))
        await writer.drain()
        if kind == "fake-101":
            while await self.read(reader, conn):
                pass  # a 101 nobody asked for, then silence until the edge gives up
        raise ConnectionResetError("evil response sent; connection ends here")

    # -- WebSocket side (raw) -------------------------------------------------------

    async def upgrade(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      conn: SeenConnection, request: SeenRequest, leftover: bytes) -> None:
        """Answer an upgrade request and serve the connection to its end."""
        path = urlsplit(request.target.decode("latin-1")).path
        if path.startswith("/_bad/") and path[6:].isdigit():
            body = b"refused by origin"
            writer.write(b"HTTP/1.1 %d Nope\r\nContent-Length: %d\r\n\r\n%s"
                         % (int(path[6:]), len(body), body))
            await writer.drain()
            # Stay in HTTP: whatever comes next must be a new, proxied request.
            await self.http(reader, writer, conn, leftover)
            return
        writer.write(switching_protocols(path, request))
        await writer.drain()
        if path == "/_bad/h2c":
            return
        conn.sent_101 += 1
        self.stats.sent_101 += 1
        self.stats.ws_open += 1
        self.websockets.add(writer.transport)
        try:
            await self.tunnel(reader, writer, conn, request, leftover)
        finally:
            self.stats.ws_open -= 1

    async def tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     conn: SeenConnection, request: SeenRequest, leftover: bytes) -> None:
        url = urlsplit(request.target.decode("latin-1"))
        if url.path in ("/_bad/die", "/_bad/die-mid"):
            # A whole frame then a lost origin, or a frame cut in the middle (10 bytes
            # announced, 3 sent): the edge must tell the client at a frame boundary.
            writer.write(b"\x81\x02hi" if url.path == "/_bad/die" else b"\x81\x0ahal")
            await writer.drain()
            await asyncio.sleep(0.3)
            writer.transport.abort()
        elif url.path == "/ws/flood":
            n = int(parse_qs(url.query).get("n", ["0"])[0])
            await self.ws_flood(reader, writer, conn, leftover, n)
        elif url.path == "/ws/slowframe":
            await self.ws_slowframe(reader, writer, conn, leftover)
        else:
            await self.ws_frames(reader, conn, leftover, writer)

    async def ws_frames(self, reader: asyncio.StreamReader, conn: SeenConnection,
                        leftover: bytes, writer: asyncio.StreamWriter) -> None:
        """Read client frames, answer pings, echo data, echo the close and return."""
        buf = bytearray(leftover)
        while True:
            parsed = parse_frame(buf)
            if parsed is None:
                data = await self.read(reader, conn)
                if not data:
                    return
                buf += data
                continue
            frame, used = parsed
            del buf[:used]
            if not frame.masked:
                raise FrameError("client frame not masked")
            if frame.opcode == OP_CLOSE:
                writer.write(encode_frame(OP_CLOSE, frame.payload[:125], mask=False))
                await writer.drain()
                return
            if frame.opcode == OP_PING:
                writer.write(encode_frame(OP_PONG, frame.payload, mask=False))
            elif frame.opcode in (OP_TEXT, OP_BINARY, OP_CONT):
                writer.write(encode_frame(frame.opcode, frame.payload, fin=frame.fin,
                                          mask=False))
            await writer.drain()

    async def ws_flood(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       conn: SeenConnection, leftover: bytes, n: int) -> None:
        frame = encode_frame(OP_BINARY, b"y" * (CHUNK - 16), mask=False)

        async def pump() -> None:
            left = n
            while left > 0:
                writer.write(frame)
                await writer.drain()
                self.stats.sent += len(frame)
                left -= len(frame)

        pump_task = asyncio.create_task(pump())
        try:
            await self.ws_frames(reader, conn, leftover, writer)
        finally:
            pump_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await pump_task

    async def ws_slowframe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                           conn: SeenConnection, leftover: bytes) -> None:
        """Frames whose bytes arrive seconds apart, so that a keepalive ping is due in
        the middle of a frame and in the middle of a fragmented message."""
        reading = asyncio.create_task(self.ws_frames(reader, conn, leftover, writer))
        try:
            big = encode_frame(OP_BINARY, SLOWFRAME_PAYLOAD, mask=False)
            half = len(big) // 2
            writer.write(big[:half])  # silence in the middle of a frame
            await writer.drain()
            await asyncio.sleep(SLOWFRAME_GAP)
            writer.write(big[half:])
            # ... then in the middle of a fragmented message, at a frame boundary
            writer.write(encode_frame(OP_TEXT, b"frag-1 ", fin=False, mask=False))
            await writer.drain()
            await asyncio.sleep(SLOWFRAME_GAP)
            writer.write(encode_frame(OP_CONT, b"frag-2 ", fin=False, mask=False))
            writer.write(encode_frame(OP_PING, b"origin-ping", mask=False))
            writer.write(encode_frame(OP_CONT, b"frag-3", fin=True, mask=False))
            writer.write(encode_frame(OP_TEXT, b"done", mask=False))
            await writer.drain()
            await reading
        finally:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, FrameError):
                await reading

    # -- WebSocket side (the `websockets` library) ----------------------------------

    def _ws_record(self, conn: ServerConnection, request: Request) -> Response | None:
        self._log_request(None, SeenRequest(
            b"GET", request.path.encode(), b"HTTP/1.1",
            [(k.encode(), v.encode("latin-1")) for k, v in request.headers.raw_items()]))
        if request.path.startswith("/http"):
            return conn.respond(200, "plain answer from the ws origin\n")
        return None

    async def _ws_handler(self, conn: ServerConnection) -> None:
        self.websockets.add(conn.transport)
        try:
            await _ws_session(conn)
        except Exception:  # the client vanished: that is a test scenario, not an error
            pass
        finally:
            self.websockets.discard(conn.transport)


async def _ws_session(conn: ServerConnection) -> None:
    path = conn.request.path if conn.request else "/"
    if path.startswith("/close/"):
        code = int(path.split("/")[2])
        await conn.close(code, f"closing with {code}")
    elif path.startswith("/flood/"):
        left = int(path.split("/")[2])
        while left > 0:
            await conn.send(b"x" * min(CHUNK, left))
            left -= CHUNK
        await conn.close(1000, "flood done")
    elif path.startswith("/silent"):
        await conn.wait_closed()
    else:
        async for message in conn:
            if message == "please close 4001":
                await conn.close(4001, "asked to")
                return
            if message == "headers":
                assert conn.request is not None
                await conn.send(json.dumps(list(conn.request.headers.raw_items())))
                continue
            await conn.send(message)


def _select_subprotocol(conn: ServerConnection, offered: Sequence[str]) -> str | None:
    """The client's first offer among "chat"/"superchat"; none offered is fine too."""
    return next((p for p in offered if p in ("chat", "superchat")), None)


def _echo(request: SeenRequest) -> bytes:
    return json.dumps({
        "method": request.method.decode("latin-1"),
        "target": request.target.decode("latin-1"),
        "headers": [[n.decode("latin-1").lower(), v.decode("latin-1")]
                    for n, v in request.headers],
        "body_len": request.body_len}).encode()


def switching_protocols(path: str, request: SeenRequest) -> bytes:
    """The origin's 101 head: right, or wrong in the way `path` asks for."""
    accept = ws_accept((request.values("sec-websocket-key") or [b""])[0]).encode()
    if path == "/_bad/h2c":
        return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    if path == "/_bad/accept":
        accept = ws_accept(b"not-the-key").encode()
    head = [b"HTTP/1.1 101 Switching Protocols"]
    if path != "/_bad/noupgrade":
        head += [b"Upgrade: websocket", b"Connection: Upgrade"]
    head.append(b"Sec-WebSocket-Accept: " + accept)
    protocols = request.values("sec-websocket-protocol")
    first = protocols[0].split(b",")[0].strip() if protocols else b""
    if TOKEN.fullmatch(first):
        # Like a real server, select only a well-formed subprotocol (RFC 6455 4.1).
        head.append(b"Sec-WebSocket-Protocol: " + first)
    return b"\r\n".join(head) + b"\r\n\r\n"


def evil_response(kind: str, request: SeenRequest) -> bytes:
    """Answers a broken or hostile origin might give (the edge must not relay them
    as they are: 502, or a cleaned-up answer)."""
    secret = (request.values("x-cf-secret") or [b""])[0]
    ok = b"HTTP/1.1 200 OK\r\n"
    switching = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    return {
        "cl-te": ok + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"5\r\nabcde\r\n0\r\n\r\n",
        "two-cl": ok + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nabcdef",
        "bad-te": ok + b"Transfer-Encoding: xchunked\r\n\r\n5\r\nabcde\r\n0\r\n\r\n",
        "unsolicited-101": switching + b"\r\nraw-origin-bytes",
        "fake-101": switching + b"\r\n",  # to a plain GET, the connection then held open
        "secret-header": ok + b"X-CF-Secret: " + secret + b"\r\nContent-Length: 2\r\n\r\nok",
        "early-hints": b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" * 50
                       + ok + b"Content-Length: 2\r\n\r\nok",
        "huge-header": ok + b"X-Big: " + b"h" * 200_000 + b"\r\nContent-Length: 2\r\n\r\nok",
        "garbage": b"NOT HTTP AT ALL\r\n\r\n",
        "nothing": b"",
        "bad-status": b"HTTP/1.1 2000 Huh\r\nContent-Length: 2\r\n\r\nok",
        "nul-header": ok + b"X-A: b\x00c\r\nContent-Length: 2\r\n\r\nok",
        "http09": b"ok-without-any-head",
    }.get(kind, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")


def _is_upgrade(request: SeenRequest) -> bool:
    return any(b"websocket" in v.lower() for v in request.values("upgrade"))


def origin_process(port: int) -> ServerProcess:
    """The recording origin in a process of its own (to be SIGKILLed, or under load)."""
    return ServerProcess([sys.executable, "-m", "tests.support.origin", "--port", str(port)],
                         port, cwd=str(REPO))


def origin_stats(port: int) -> dict[str, int]:
    """The counters of an origin process, read directly (not through the edge)."""
    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/_origin/stats", timeout=5) as r:
        stats: dict[str, int] = json.loads(r.read())
    return stats


@contextlib.contextmanager
def origin_and_edge(settings: Mapping[str, Any] | None = None
                    ) -> Iterator[tuple[ServerProcess, Edge, int]]:
    """An origin process and an edge (admin listener on) in front of it: (origin, edge,
    origin port). The origin runs apart from the test so it can be killed or loaded."""
    port = free_port()
    with started(origin_process(port)) as origin, \
            edge_process(f"http://{LOOPBACK}:{port}", settings=settings) as edge:
        yield origin, edge, port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="wsgate recording test origin")
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--record", action="store_true", help="keep every byte (memory!)")
    args = parser.parse_args(argv)
    server = RecordingOrigin(args.host, args.port, record=args.record)

    async def run() -> None:
        await server.serve()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"test origin listening on {server.host}:{server.port}", file=sys.stderr,
              flush=True)
        await stop.wait()
        await server._shutdown()

    try:
        import uvloop
        uvloop.run(run())
    except ImportError:
        asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
