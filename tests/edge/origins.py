"""Test origins on loopback that record every request they see.

`Origins` runs, on one asyncio loop in a background thread:
- `http`: an h11 server answering by path (see `HttpOrigin.respond`), including
  misbehaving WebSocket answers (403/400/200 to an upgrade, a 101 with a wrong
  Accept, a 101 followed by an abrupt close, with or without a partial frame);
- `ws`: a real `websockets` server (echo; `/close/CODE` closes with that code;
  `/flood/N` sends N bytes in 64 KiB binary messages), permessage-deflate on,
  subprotocols "chat" and "superchat" accepted.

Both record what arrived (`Seen`: method, target, headers, body length) in
`Origins.seen`, so tests can assert that nothing reached the origin, or exactly what
did. Reusable by any test: `with Origins() as o: o.http_url, o.ws_url, o.seen`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import h11
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@dataclass
class Seen:
    origin: str  # "http" | "ws"
    method: str
    target: str
    headers: list[tuple[str, str]]  # lowercase names, in arrival order
    body: bytes = b""
    peer: str = ""

    def values(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n == name.lower()]

    def header(self, name: str) -> str | None:
        found = self.values(name)
        return found[0] if found else None


@dataclass
class Origins:
    seen: list[Seen] = field(default_factory=list)
    http_port: int = 0
    ws_port: int = 0
    ws_connections: list[ServerConnection] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _servers: list[Any] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def ws_url(self) -> str:
        return f"http://127.0.0.1:{self.ws_port}"

    def record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def snapshot(self) -> list[Seen]:
        with self._lock:
            return list(self.seen)

    def clear(self) -> None:
        with self._lock:
            self.seen.clear()

    # lifecycle
    def start(self) -> Origins:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def main() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._start())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=main, name="test-origins", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("test origins did not start")
        return self

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        http = await loop.create_server(lambda: HttpOrigin(self), "127.0.0.1", 0)
        self.http_port = http.sockets[0].getsockname()[1]
        ws = await serve(self._ws_handler, "127.0.0.1", 0, process_request=self._ws_record,
                         select_subprotocol=_select_subprotocol, max_size=None,
                         ping_interval=None)
        self.ws_port = ws.sockets[0].getsockname()[1]
        self._servers = [http, ws]

    def stop(self) -> None:
        if self._loop is None:
            return

        async def close() -> None:
            for conn in list(self.ws_connections):
                conn.transport.abort()
            for server in self._servers:
                server.close()
            for server in self._servers:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(server.wait_closed(), 3)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        self._loop = None

    def kill_websockets(self) -> None:
        """Drop every open origin WebSocket at the TCP level (no close frame)."""
        assert self._loop is not None

        def kill() -> None:
            for conn in list(self.ws_connections):
                conn.transport.abort()

        self._loop.call_soon_threadsafe(kill)

    def __enter__(self) -> Origins:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # the websockets origin
    def _ws_record(self, conn: ServerConnection, request: Request) -> Response | None:
        peer = conn.remote_address[0] if conn.remote_address else ""
        self.record(Seen("ws", "GET", request.path,
                         [(k.lower(), v) for k, v in request.headers.raw_items()], peer=peer))
        if request.path.startswith("/http"):
            return conn.respond(200, "plain answer from the ws origin\n")
        return None

    async def _ws_handler(self, conn: ServerConnection) -> None:
        self.ws_connections.append(conn)
        try:
            path = conn.request.path if conn.request else "/"
            if path.startswith("/close/"):
                code = int(path.split("/")[2])
                await conn.close(code, f"closing with {code}")
                return
            if path.startswith("/flood/"):
                total = int(path.split("/")[2])
                chunk = b"x" * 65536
                sent = 0
                while sent < total:
                    await conn.send(chunk[: total - sent])
                    sent += min(len(chunk), total - sent)
                await conn.close(1000, "flood done")
                return
            if path.startswith("/silent"):
                await conn.wait_closed()
                return
            async for message in conn:
                if message == "please close 4001":
                    await conn.close(4001, "asked to")
                    return
                if message == "headers":
                    assert conn.request is not None
                    await conn.send(json.dumps(list(conn.request.headers.raw_items())))
                    continue
                await conn.send(message)
        except Exception:  # the client vanished: that is a test scenario, not an error
            pass
        finally:
            with contextlib.suppress(ValueError):
                self.ws_connections.remove(conn)


def _select_subprotocol(conn: ServerConnection, offered: Sequence[str]) -> str | None:
    """The client's first offer among "chat"/"superchat"; none offered is fine too."""
    return next((p for p in offered if p in ("chat", "superchat")), None)


def _accept(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


class HttpOrigin(asyncio.Protocol):
    """An h11 origin that records requests and answers by path:

    /echo            200 JSON {method, target, headers, body_len}
    /status/N        status N with a short body
    /slow/S          waits S seconds, then 200
    /bytes/N         N bytes with Content-Length;  /chunked/N  N bytes chunked
    /static/*        200 with Cache-Control: no-cache and X-Cloud-Trace-Context set
    /ws-403 /ws-400 /ws-200          that status to an upgrade
    /ws-bad-accept   101 with a wrong Sec-WebSocket-Accept
    /ws-die          real 101, one text frame "hi", then TCP close (no close frame)
    /ws-die-mid      real 101, then half a frame, then TCP close
    /drop-next       200, but the next request on this connection is dropped unanswered
    /fake-101        101 to a plain GET
    /leak-secret     200 echoing the request's X-CF-Secret as response headers
    anything else    200 "ok"
    """

    def __init__(self, origins: Origins) -> None:
        self.origins = origins
        self.conn = h11.Connection(h11.SERVER)
        self.transport: asyncio.Transport | None = None
        self.request: h11.Request | None = None
        self.body = bytearray()
        self.drop_next = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.conn.receive_data(data)
        self._pump()

    def eof_received(self) -> bool:
        self.conn.receive_data(b"")
        self._pump()
        return False

    def _pump(self) -> None:
        assert self.transport is not None
        while True:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError:
                self.transport.close()
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                if event is h11.PAUSED and self.request is not None:
                    pass
                return
            if isinstance(event, h11.Request):
                self.request = event
                self.body = bytearray()
            elif isinstance(event, h11.Data):
                self.body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert self.request is not None
                req = self.request
                self.origins.record(Seen(
                    "http", req.method.decode(), req.target.decode(),
                    [(n.decode(), v.decode("latin-1")) for n, v in req.headers],
                    bytes(self.body)))
                asyncio.get_running_loop().create_task(self.respond(req, bytes(self.body)))
                return
            elif isinstance(event, h11.ConnectionClosed):
                self.transport.close()
                return

    def _send_empty(self, status: int) -> None:
        assert self.transport is not None
        out = self.conn.send(h11.Response(status_code=status, headers=[]))
        out += self.conn.send(h11.EndOfMessage())
        self.transport.write(out)
        with contextlib.suppress(h11.LocalProtocolError):
            self.conn.start_next_cycle()
            self._pump()

    def _send(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None,
              chunked: bool = False) -> None:
        assert self.transport is not None
        hdrs = list(headers or [])
        if not chunked:
            hdrs.append((b"content-length", str(len(body)).encode()))
        else:
            hdrs.append((b"transfer-encoding", b"chunked"))
        out = self.conn.send(h11.Response(status_code=status, headers=hdrs))
        if self.request is not None and self.request.method == b"HEAD":
            body = b""  # same headers as GET, no body
        if body:
            if chunked:
                for i in range(0, len(body), 16384):
                    out += self.conn.send(h11.Data(data=body[i:i + 16384]))
            else:
                out += self.conn.send(h11.Data(data=body))
        out += self.conn.send(h11.EndOfMessage())
        self.transport.write(out)
        if self.conn.our_state is h11.MUST_CLOSE:
            self.transport.close()
            return
        with contextlib.suppress(h11.LocalProtocolError):
            self.conn.start_next_cycle()
            self._pump()

    async def respond(self, req: h11.Request, body: bytes) -> None:
        assert self.transport is not None
        path = req.target.decode().partition("?")[0]
        if self.drop_next:
            self.transport.close()  # the keep-alive race: closed without answering
            return
        if path == "/drop-next":
            self.drop_next = True
        headers = Headers([(n.decode(), v.decode("latin-1")) for n, v in req.headers])
        if path == "/echo":
            payload = json.dumps({
                "method": req.method.decode(), "target": req.target.decode(),
                "headers": [[n.decode(), v.decode("latin-1")] for n, v in req.headers],
                "body_len": len(body)}).encode()
            self._send(200, payload, [(b"content-type", b"application/json")])
        elif path == "/leak-secret":
            # A careless origin echoing the request's secret header back.
            secret = headers.get("x-cf-secret", "")
            self._send(200, b"ok\n", [(b"x-cf-secret", secret.encode()),
                                      (b"X-CF-SECRET", secret.encode())])
        elif path.startswith("/status/"):
            code = int(path.split("/")[2])
            body = b"" if code in (204, 304) else f"status {code} from origin\n".encode()
            self._send(code, body, [] if body else None, chunked=False) if body else \
                self._send_empty(code)
        elif path.startswith("/slow/"):
            await asyncio.sleep(float(path.split("/")[2]))
            if not self.transport.is_closing():
                self._send(200, b"slow ok\n")
        elif path.startswith("/bytes/"):
            self._send(200, b"b" * int(path.split("/")[2]))
        elif path.startswith("/chunked/"):
            self._send(200, b"c" * int(path.split("/")[2]), chunked=True)
        elif path.startswith("/static/"):
            self._send(200, b"console.log('static');\n", [
                (b"content-type", b"application/javascript"), (b"cache-control", b"no-cache"),
                (b"x-cloud-trace-context", b"105445aa7843bc8bf206b12000100000/1;o=1")])
        elif path in ("/ws-403", "/ws-400", "/ws-200"):
            self._send(int(path[4:]), f"upgrade answered {path[4:]}\n".encode())
        elif path == "/fake-101":
            self.transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                 b"Connection: Upgrade\r\n\r\n")
        elif path in ("/ws-bad-accept", "/ws-die", "/ws-die-mid"):
            key = headers.get("sec-websocket-key", "").encode()
            accept = b"d3JvbmcgYWNjZXB0IHZhbHVlIQ==" if path == "/ws-bad-accept" else _accept(key)
            self.transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept
                                 + b"\r\n\r\n")
            if path == "/ws-die":
                self.transport.write(b"\x81\x02hi")
                await asyncio.sleep(0.3)
                self.transport.abort()
            elif path == "/ws-die-mid":
                self.transport.write(b"\x81\x0ahal")  # announces 10 bytes, sends 3
                await asyncio.sleep(0.3)
                self.transport.abort()
        else:
            self._send(200, b"ok\n")


@contextlib.contextmanager
def origins() -> Iterator[Origins]:
    with Origins() as o:
        yield o
