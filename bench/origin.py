"""The benchmark's origin: a WebSocket echo server that also serves a 30 KB asset.

It must be cheap enough not to hide the proxy in front of it, so it is one
asyncio `Protocol` on uvloop: no framework, no per-request task, responses
pre-built. HTTP/1.1 keep-alive (pipelining too) for `GET /static/x.js`; any
request with `Upgrade: websocket` is answered 101 and its frames echoed back.

Like a guarded origin, it refuses (403) a request without the right secret
header, so a proxy that forgets to inject it fails loudly instead of being
measured doing less work. `GET /_bench/headers` answers the request headers it
received as JSON (the secret's value replaced) so the harness can record that
each proxy really forwarded what it should.

Run: `python bench/origin.py --port 9000` (secret from $WSGATE_SECRET).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import signal
import socket
from typing import cast

try:  # the C speedup when built, else websockets' pure-Python version
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover
    from websockets.utils import apply_mask

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
ASSET_SIZE = 30 * 1024
MAX_HEAD = 64 * 1024


def _response(status: str, body: bytes, content_type: bytes, close: bool = False) -> bytes:
    head = (
        b"HTTP/1.1 " + status.encode() + b"\r\n"
        b"Content-Type: " + content_type + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n"
        + (b"Connection: close\r\n" if close else b"")
        + b"\r\n"
    )
    return head + body


ASSET = _response("200 OK", b"/* bench asset */\n".ljust(ASSET_SIZE, b"x"),
                  b"application/javascript")
NOT_FOUND = _response("404 Not Found", b"not found\n", b"text/plain")
FORBIDDEN = _response("403 Forbidden", b"direct access is forbidden\n", b"text/plain", True)
BAD_REQUEST = _response("400 Bad Request", b"bad request\n", b"text/plain", True)


def _frame_header(first: int, length: int) -> bytes:
    if length < 126:
        return bytes((first, length))
    if length < 65536:
        return bytes((first, 126)) + length.to_bytes(2, "big")
    return bytes((first, 127)) + length.to_bytes(8, "big")


class Origin(asyncio.Protocol):
    # Set by main(): the lowercase header name and the value every request must carry.
    secret_header: bytes = b""
    secret_value: bytes = b""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.ws = False
        self.closing = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; the API is the same.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.ws:
            self._frames()
            return
        while not self.ws and not self.closing:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEAD:
                    self._finish(BAD_REQUEST)
                return
            head = bytes(self.buf[:end])
            del self.buf[: end + 4]
            self._request(head)
        if self.ws and self.buf:
            self._frames()

    def _finish(self, response: bytes) -> None:
        assert self.transport is not None
        self.closing = True
        self.transport.write(response)
        self.transport.close()

    def _request(self, head: bytes) -> None:
        assert self.transport is not None
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3:
            self._finish(BAD_REQUEST)
            return
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                self._finish(BAD_REQUEST)
                return
            headers[name.strip().lower()] = value.strip()
        if self.secret_header and headers.get(self.secret_header) != self.secret_value:
            self._finish(FORBIDDEN)
            return
        target = parts[1]
        if headers.get(b"upgrade", b"").lower() == b"websocket":
            key = headers.get(b"sec-websocket-key", b"")
            accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            self.ws = True
            return
        if target == b"/static/x.js":
            self.transport.write(ASSET)
        elif target == b"/_bench/headers":
            shown = [[k.decode("latin-1"), "<secret>" if k == self.secret_header
                      else v.decode("latin-1")] for k, v in headers.items()]
            self.transport.write(_response("200 OK", json.dumps(shown).encode(),
                                           b"application/json"))
        else:
            self.transport.write(NOT_FOUND)
        if headers.get(b"connection", b"").lower() == b"close":
            self.closing = True
            self.transport.close()

    def _frames(self) -> None:
        """Echo every complete client frame; leave a partial one in the buffer."""
        assert self.transport is not None
        buf = self.buf
        size = len(buf)
        pos = 0
        out: list[bytes] = []
        while size - pos >= 2:
            first = buf[pos]
            length = buf[pos + 1] & 0x7F
            masked = buf[pos + 1] & 0x80
            start = pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buf[start:start + 2], "big")
                start += 2
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buf[start:start + 8], "big")
                start += 8
            if masked:
                start += 4
            if size - start < length:
                break
            payload = bytes(buf[start:start + length])
            if masked:
                payload = apply_mask(payload, bytes(buf[start - 4:start]))
            opcode = first & 0x0F
            pos = start + length
            if opcode == 0x8:  # close: answer it, then the server closes TCP
                out.append(_frame_header(0x88, length) + payload)
                self.transport.write(b"".join(out))
                self.closing = True
                self.transport.close()
                del buf[:pos]
                return
            if opcode == 0x9:  # ping -> pong
                out.append(_frame_header(0x8A, length) + payload)
            elif opcode != 0xA:  # data frames (and continuations) are echoed as they came
                out.append(_frame_header(first, length))
                out.append(payload)
        if pos:
            del buf[:pos]
        if out:
            self.transport.write(b"".join(out))


async def serve(host: str, port: int) -> None:
    """`host` may list several loopback addresses (comma-separated): one process then
    answers on each, which is how the bench prices several origins without changing
    the origin's work."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Origin, host.split(","), port, backlog=4096,
                                      reuse_address=True)
    for sock in server.sockets:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"origin listening on {host}:{port}", flush=True)
    await stop.wait()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on, or several separated by commas")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret-header", default="X-CF-Secret")
    parser.add_argument("--secret-env", default="WSGATE_SECRET",
                        help="environment variable holding the secret; unset = no check")
    args = parser.parse_args()
    secret = os.environ.get(args.secret_env, "")
    if secret:
        Origin.secret_header = args.secret_header.lower().encode("latin-1")
        Origin.secret_value = secret.encode("latin-1")
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.host, args.port))
    else:
        uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
