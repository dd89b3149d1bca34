"""A recording test origin: every byte the edge sends it is kept, raw and parsed.

The hostile tests assert what reached the origin (nothing, for a refused request;
never the client's forged secret or X-Forwarded-For), so the origin must see the
wire exactly. It is a small asyncio server built on h11 (the same parser the edge
uses upstream), plus a raw WebSocket mode after its own 101.

Behaviour is chosen by the request path (the edge forwards paths unchanged):

    /_origin/stats       JSON counters (read directly, not through the edge)
    /big?n=N             N bytes of body (Content-Length), written with flow control
    /slow?ms=M           answers 200 after M milliseconds
    /status/NNN          answers status NNN
    anything else        200 "origin-ok"
  upgrades (Upgrade: websocket):
    /_bad/accept         101 with a wrong Sec-WebSocket-Accept
    /_bad/noupgrade      101 without Upgrade/Connection headers
    /_bad/NNN            status NNN (200, 403, 426, ...), connection stays HTTP
    /ws/flood?n=N        101, then N bytes of binary frames with flow control
    /ws/slowframe        101, then frames trickled byte-slices apart (keepalive tests)
    anything else        101, echo every data frame, answer pings, echo the close

Run in a thread (`OriginServer().start()`) for the corpus, or as a process
(`python -m tests.hostile.origin --port P`) for the fault and load tests.
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
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import h11

from tests.hostile.wire import (
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
# /ws/slowframe: a 64 KiB frame sent in halves, then a fragmented message; it pauses
# in the middle of the frame and between two fragments. Each pause is more than twice
# the edge's 1-second keepalive interval, so it always holds a whole silent interval.
SLOWFRAME_PAYLOAD = bytes(range(256)) * 256
SLOWFRAME_GAP = 2.3


@dataclass
class SeenRequest:
    method: bytes
    target: bytes
    http_version: bytes
    headers: list[tuple[bytes, bytes]]  # names as sent on the wire
    body: bytes = b""
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)

    def values(self, name: str) -> list[bytes]:
        low = name.lower().encode()
        return [v for k, v in self.headers if k.lower() == low]


@dataclass
class SeenConnection:
    raw: bytearray = field(default_factory=bytearray)
    requests: list[SeenRequest] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # the origin's own parse failures
    sent_101: int = 0


@dataclass(frozen=True)
class Mark:
    """A point in the origin's history; `OriginServer.since(mark)` is what came after."""

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


class OriginServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, record: bool = True,
                 idle_timeout: float | None = None) -> None:
        self.host = host
        # Close keep-alive connections idle this long, as uvicorn (5 s) or Cloud Run do.
        self.idle_timeout = idle_timeout
        self.port = port
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
        self.server: asyncio.Server | None = None
        self.thread: threading.Thread | None = None
        self.writers: set[asyncio.StreamWriter] = set()

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

    # -- lifecycle ----------------------------------------------------------------

    async def serve(self) -> None:
        self.server = await asyncio.start_server(
            self.handle, self.host, self.port, backlog=4096, limit=1 << 20)
        self.port = self.server.sockets[0].getsockname()[1]

    def start(self) -> OriginServer:
        ready = threading.Event()

        def run() -> None:
            self.loop = asyncio.new_event_loop()
            self.loop.run_until_complete(self.serve())
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
        if self.server is not None:
            self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self) -> None:
        if self.loop is not None and self.thread is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)

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
            writer.transport.abort()

    async def read(self, reader: asyncio.StreamReader, conn: SeenConnection) -> bytes:
        data = await reader.read(CHUNK)
        if self.record and data:
            with self.lock:
                conn.raw += data
                self.raw_log.append(data)
        return data

    async def http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   conn: SeenConnection, initial: bytes = b"") -> None:
        h = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 20)
        if initial:
            h.receive_data(initial)
        request: SeenRequest | None = None
        while True:
            try:
                event = h.next_event()
            except h11.RemoteProtocolError as exc:
                if "peer closed connection" in str(exc):
                    # The edge abandoned a request mid-body (its client misbehaved):
                    # closing the connection is the correct way to abort, not bad HTTP.
                    with self.lock:
                        self.aborted += 1
                    return
                with self.lock:
                    conn.errors.append(str(exc))
                    self.error_log.append(str(exc))
                writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                             b"Connection: close\r\n\r\n")
                await writer.drain()
                return
            if event is h11.NEED_DATA:
                if self.idle_timeout is not None and h.their_state is h11.IDLE:
                    try:
                        async with asyncio.timeout(self.idle_timeout):
                            data = await self.read(reader, conn)
                    except TimeoutError:
                        return  # idle keep-alive connection: close it
                else:
                    data = await self.read(reader, conn)
                h.receive_data(data)
                continue
            if event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
                return
            if isinstance(event, h11.Request):
                request = SeenRequest(event.method, event.target, event.http_version,
                                      list(event.headers.raw_items()))
                self.stats.requests += 1
                if self.record:
                    with self.lock:
                        conn.requests.append(request)
                        self.request_log.append(request)
                continue
            if isinstance(event, h11.Data):
                assert request is not None
                if self.record and len(request.body) < (1 << 20):
                    request.body += event.data
                continue
            if isinstance(event, h11.EndOfMessage):
                assert request is not None
                request.trailers = list(event.headers.raw_items())
                if _is_upgrade(request):
                    # Whatever follows the upgrade request is the origin's own business.
                    await self.upgrade(reader, writer, conn, request, bytes(h.trailing_data[0]))
                    return
                await self.respond(h, writer, request)
                if h.our_state is h11.MUST_CLOSE or h.their_state is h11.MUST_CLOSE:
                    return
                h.start_next_cycle()

    async def send_response(self, h: h11.Connection, writer: asyncio.StreamWriter, status: int,
                            body: bytes, content_type: bytes = b"text/plain") -> None:
        writer.write(h.send(h11.Response(status_code=status, headers=[
            (b"Content-Type", content_type), (b"Content-Length", str(len(body)).encode())])))
        writer.write(h.send(h11.Data(data=body)))
        writer.write(h.send(h11.EndOfMessage()))
        await writer.drain()

    async def respond(self, h: h11.Connection, writer: asyncio.StreamWriter,
                      request: SeenRequest) -> None:
        url = urlsplit(request.target.decode("latin-1"))
        query = parse_qs(url.query)
        path = url.path
        if path == "/_origin/stats":
            await self.send_response(h, writer, 200, json.dumps(self.stats.as_json()).encode(),
                                     b"application/json")
        elif path == "/big":
            n = int(query.get("n", ["0"])[0])
            writer.write(h.send(h11.Response(status_code=200, headers=[
                (b"Content-Type", b"application/octet-stream"),
                (b"Content-Length", str(n).encode())])))
            block = b"x" * CHUNK
            left = n
            while left > 0:
                piece = block[:min(CHUNK, left)]
                writer.write(h.send(h11.Data(data=piece)))
                await writer.drain()
                self.stats.sent += len(piece)
                left -= len(piece)
            writer.write(h.send(h11.EndOfMessage()))
            await writer.drain()
        elif path == "/slow":
            await asyncio.sleep(int(query.get("ms", ["1000"])[0]) / 1000)
            await self.send_response(h, writer, 200, b"slow-ok")
        elif path.startswith("/_evil/"):
            writer.write(evil_response(path[7:], request))
            await writer.drain()
            raise ConnectionResetError("evil response sent; connection ends here")
        elif request.method == b"TRACE":
            # Like any server implementing TRACE: reflect the request it received,
            # headers included (so an injected secret would come back to the client).
            head = b"\r\n".join(k + b": " + v for k, v in request.headers)
            await self.send_response(h, writer, 200, request.method + b" " + request.target
                                     + b"\r\n" + head, b"message/http")
        elif path.startswith("/status/"):
            await self.send_response(h, writer, int(path.rsplit("/", 1)[1]), b"status")
        else:
            await self.send_response(h, writer, 200, b"origin-ok")

    # -- WebSocket side -----------------------------------------------------------

    async def upgrade(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      conn: SeenConnection, request: SeenRequest, leftover: bytes) -> None:
        """Answer an upgrade request and serve the connection to its end."""
        path = urlsplit(request.target.decode("latin-1")).path
        key = (request.values("sec-websocket-key") or [b""])[0]
        if path.startswith("/_bad/") and path[6:].isdigit():
            status = int(path[6:])
            body = b"refused by origin"
            writer.write(b"HTTP/1.1 %d Nope\r\nContent-Length: %d\r\n\r\n%s"
                         % (status, len(body), body))
            await writer.drain()
            # Stay in HTTP: whatever comes next must be a new, proxied request.
            await self.http(reader, writer, conn, leftover)
            return
        accept = ws_accept(key).encode()
        head = [b"HTTP/1.1 101 Switching Protocols"]
        if path == "/_bad/h2c":
            writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            await writer.drain()
            return
        if path == "/_bad/accept":
            accept = ws_accept(b"not-the-key").encode()
        if path != "/_bad/noupgrade":
            head += [b"Upgrade: websocket", b"Connection: Upgrade"]
        head.append(b"Sec-WebSocket-Accept: " + accept)
        protocols = request.values("sec-websocket-protocol")
        first = protocols[0].split(b",")[0].strip() if protocols else b""
        if TOKEN.fullmatch(first):
            # Like a real server, select only a well-formed subprotocol (RFC 6455 4.1).
            head.append(b"Sec-WebSocket-Protocol: " + first)
        writer.write(b"\r\n".join(head) + b"\r\n\r\n")
        await writer.drain()
        conn.sent_101 += 1
        self.stats.sent_101 += 1
        self.stats.ws_open += 1
        try:
            if path == "/ws/flood":
                n = int(parse_qs(urlsplit(request.target.decode()).query).get("n", ["0"])[0])
                await self.ws_flood(reader, writer, conn, leftover, n)
            elif path == "/ws/slowframe":
                await self.ws_slowframe(reader, writer, conn, leftover)
            else:
                await self.ws_echo(reader, writer, conn, leftover)
        finally:
            self.stats.ws_open -= 1

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

    async def ws_echo(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      conn: SeenConnection, leftover: bytes) -> None:
        await self.ws_frames(reader, conn, leftover, writer)

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


def evil_response(kind: str, request: SeenRequest) -> bytes:
    """Answers a broken or hostile origin might give (the edge must not relay them
    as they are: 502, or a cleaned-up answer)."""
    secret = (request.values("x-cf-secret") or [b""])[0]
    ok = b"HTTP/1.1 200 OK\r\n"
    return {
        "cl-te": ok + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"5\r\nabcde\r\n0\r\n\r\n",
        "two-cl": ok + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nabcdef",
        "bad-te": ok + b"Transfer-Encoding: xchunked\r\n\r\n5\r\nabcde\r\n0\r\n\r\n",
        "unsolicited-101": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                           b"Connection: Upgrade\r\n\r\nraw-origin-bytes",
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="wsgate test origin")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--record", action="store_true", help="keep every byte (memory!)")
    args = parser.parse_args(argv)
    server = OriginServer(args.host, args.port, record=args.record)

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
