"""Raw HTTP/1.1 and WebSocket wire helpers for the hardening tests.

The hostile tests talk to the edge over plain sockets so that they can send bytes
no well-behaved client library would produce, and read back exactly what the edge
wrote. Everything here is small, strict and bounded: every read has a deadline and
a size cap, so a misbehaving edge makes a test fail instead of hang.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import socket
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_READ = 8 * 1024 * 1024  # never hold more than this of one answer in a test

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def ws_accept(key: bytes | str) -> str:
    raw = key.encode() if isinstance(key, str) else key
    return base64.b64encode(hashlib.sha1(raw + WS_GUID).digest()).decode()


def new_ws_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def upgrade_request(path: str = "/ws", host: str = "app.example.com", key: str | None = None,
                    extra: bytes = b"") -> bytes:
    key = key or new_ws_key()
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n").encode() + extra + b"\r\n"


# ---------------------------------------------------------------- WebSocket frames

def encode_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, mask: bool = True,
                 rsv: int = 0) -> bytes:
    """One frame; client frames are masked (RFC 6455 5.3), server frames are not."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload)
    mask_bit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", first, mask_bit | n)
    elif n < 65536:
        head = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + apply_mask(payload, key)


def apply_mask(payload: bytes, key: bytes) -> bytes:
    if not payload:
        return b""
    # int XOR over the whole payload: fast enough for multi-megabyte test frames.
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    value = int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")
    return value.to_bytes(len(payload), "big")


def close_payload(code: int, reason: str = "") -> bytes:
    return struct.pack("!H", code) + reason.encode()


@dataclass(frozen=True)
class Frame:
    fin: bool
    rsv: int
    opcode: int
    masked: bool
    payload: bytes

    @property
    def close_code(self) -> int | None:
        if self.opcode != OP_CLOSE or len(self.payload) < 2:
            return None
        return int(struct.unpack("!H", self.payload[:2])[0])


class FrameError(Exception):
    """The byte stream is not a valid sequence of WebSocket frames."""


def parse_frame(buf: bytes | bytearray) -> tuple[Frame, int] | None:
    """Parse one frame from the front of `buf`: (frame, bytes used) or None if incomplete."""
    if len(buf) < 2:
        return None
    b0, b1 = buf[0], buf[1]
    opcode = b0 & 0x0F
    if opcode not in (0, 1, 2, 8, 9, 10):
        raise FrameError(f"reserved opcode {opcode:#x}")
    masked = bool(b1 & 0x80)
    n = b1 & 0x7F
    pos = 2
    if n == 126:
        if len(buf) < 4:
            return None
        n = struct.unpack("!H", bytes(buf[2:4]))[0]
        pos = 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n = struct.unpack("!Q", bytes(buf[2:10]))[0]
        pos = 10
    if opcode >= 8 and (n > 125 or not b0 & 0x80):
        raise FrameError("control frame longer than 125 bytes or fragmented")
    key = b""
    if masked:
        if len(buf) < pos + 4:
            return None
        key = bytes(buf[pos:pos + 4])
        pos += 4
    if len(buf) < pos + n:
        return None
    payload = bytes(buf[pos:pos + n])
    if masked:
        payload = apply_mask(payload, key)
    return Frame(bool(b0 & 0x80), (b0 >> 4) & 7, opcode, masked, payload), pos + n


# ---------------------------------------------------------------- HTTP responses

@dataclass
class Response:
    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    raw_head: bytes

    def header(self, name: str) -> bytes | None:
        low = name.lower().encode()
        for key, value in self.headers:
            if key.lower() == low:
                return value
        return None

    def header_all(self, name: str) -> list[bytes]:
        low = name.lower().encode()
        return [v for k, v in self.headers if k.lower() == low]


class Incomplete(Exception):
    pass


def parse_response(buf: bytes, request_method: bytes = b"GET") -> tuple[Response, int]:
    """Parse one response from the front of `buf`; raise Incomplete when more is needed.

    A malformed response raises ValueError: the edge must always write valid HTTP.
    """
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        raise Incomplete
    head = buf[:end]
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ValueError(f"bad status line {lines[0][:100]!r}")
    status = int(parts[1])
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise ValueError(f"bad response header line {line[:100]!r}")
        headers.append((name, value.strip()))
    pos = end + 4
    resp = Response(status, parts[2] if len(parts) > 2 else b"", headers, b"", buf[:pos])
    te = resp.header("transfer-encoding")
    cl = resp.header("content-length")
    if status < 200 or status in (204, 304) or request_method == b"HEAD":
        return resp, pos
    if te is not None:
        if te.lower() != b"chunked":
            raise ValueError(f"unexpected transfer-encoding {te!r}")
        body = bytearray()
        while True:
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                raise Incomplete
            size = int(buf[pos:line_end].split(b";")[0], 16)
            pos = line_end + 2
            if size == 0:
                trailer_end = buf.find(b"\r\n\r\n", pos - 2)
                if trailer_end < 0:
                    raise Incomplete
                resp.body = bytes(body)
                return resp, trailer_end + 4
            if len(buf) < pos + size + 2:
                raise Incomplete
            body += buf[pos:pos + size]
            pos += size + 2
    if cl is not None:
        n = int(cl)
        if len(buf) < pos + n:
            raise Incomplete
        resp.body = buf[pos:pos + n]
        return resp, pos + n
    # Read-until-close framing: complete only when the peer has closed.
    raise Incomplete


@dataclass
class Exchange:
    """What one raw conversation with the edge produced."""

    raw: bytes = b""
    responses: list[Response] = field(default_factory=list)
    closed: bool = False  # the edge closed (EOF or reset) within the deadline
    reset: bool = False
    timed_out: bool = False
    malformed: str = ""

    @property
    def statuses(self) -> list[int]:
        return [r.status for r in self.responses]


def parse_all(raw: bytes, closed: bool, methods: list[bytes] | None = None) -> tuple[
        list[Response], str]:
    out: list[Response] = []
    pos = 0
    while pos < len(raw):
        method = (methods or [])[len(out)] if methods and len(out) < len(methods) else b"GET"
        try:
            resp, used = parse_response(raw[pos:], method)
        except Incomplete:
            if closed:
                # Read-until-close body (no length): everything left is the body.
                try:
                    resp, used = _parse_until_close(raw[pos:])
                except ValueError as exc:
                    return out, str(exc)
                out.append(resp)
                return out, ""
            return out, ""
        except ValueError as exc:
            return out, str(exc)
        pos += used
        if 100 <= resp.status < 200 and resp.status != 101:
            continue  # interim (100 Continue): not an answer to count
        out.append(resp)
        if resp.status == 101:
            break  # the rest is WebSocket frames
    return out, ""


def _parse_until_close(buf: bytes) -> tuple[Response, int]:
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        raise ValueError(f"truncated response head {buf[:100]!r}")
    resp, pos = parse_response(buf[: end + 4] + b"", b"HEAD")
    if resp.header("content-length") is not None or resp.header("transfer-encoding") is not None:
        raise ValueError("response truncated before its declared length")
    resp.body = buf[pos:]
    return resp, len(buf)


def exchange(port: int, chunks: list[bytes] | tuple[bytes, ...], *, expect: int = 1,
             timeout: float = 5.0, gap: float = 0.0, shutdown_write: bool = False,
             host: str = "127.0.0.1", methods: list[bytes] | None = None,
             until_close: bool = False) -> Exchange:
    """Send `chunks` (with `gap` seconds between them), then read until `expect`
    complete responses arrived (or, with `until_close`, until the edge closes), the
    edge closed, or `timeout` passed."""
    ex = Exchange()
    buf = bytearray()
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for i, chunk in enumerate(chunks):
                if i and gap:
                    time.sleep(gap)
                sock.sendall(chunk)
            if shutdown_write:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            # The edge may close (after answering) before we finished sending:
            # EPIPE, ECONNRESET or ENOTCONN; what it answered is still readable.
            ex.reset = True
        while len(buf) < MAX_READ:
            responses, bad = parse_all(bytes(buf), False, methods)
            if bad or (len(responses) >= expect and not until_close):
                break
            left = deadline - time.monotonic()
            if left <= 0:
                ex.timed_out = True
                break
            sock.settimeout(left)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                ex.timed_out = True
                break
            except ConnectionResetError:
                ex.closed = ex.reset = True
                break
            if not data:
                ex.closed = True
                break
            buf += data
    ex.raw = bytes(buf)
    ex.responses, ex.malformed = parse_all(ex.raw, ex.closed, methods)
    return ex


def raw_exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send bytes, read until the server closes (or `timeout`)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        return recv_until_closed(sock, timeout=timeout)


def recv_until_closed(sock: socket.socket, initial: bytes = b"", timeout: float = 5.0) -> bytes:
    """Everything the peer sends until it closes, resets, or `timeout` passes."""
    sock.settimeout(timeout)
    data = initial
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        data += chunk
    return data


# ---------------------------------------------------------------- asyncio WebSocket client

class WsClient:
    """A minimal raw asyncio WebSocket client: pre-built handshake, strict frame parser."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 response: Response, leftover: bytes) -> None:
        self.reader = reader
        self.writer = writer
        self.response = response
        self.buf = bytearray(leftover)

    @classmethod
    async def connect(cls, port: int, path: str = "/ws", *, host: str = "127.0.0.1",
                      timeout: float = 10.0, extra: bytes = b"",
                      request: bytes | None = None) -> WsClient:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port), timeout)
        try:
            key = new_ws_key()
            writer.write(request or upgrade_request(path, key=key, extra=extra))
            buf = bytearray()
            async with asyncio.timeout(timeout):
                while b"\r\n\r\n" not in buf:
                    data = await reader.read(65536)
                    if not data:
                        raise ConnectionError(f"closed during handshake after {bytes(buf)!r}")
                    buf += data
            end = buf.index(b"\r\n\r\n") + 4
            resp, _ = parse_response(bytes(buf[:end]), b"HEAD")
            if resp.status != 101:
                raise HandshakeRefused(resp)
            if request is None and resp.header("sec-websocket-accept") != ws_accept(key).encode():
                raise ConnectionError("101 with a wrong Sec-WebSocket-Accept")
            return cls(reader, writer, resp, bytes(buf[end:]))
        except BaseException:
            writer.close()
            raise

    async def send(self, opcode: int, payload: bytes = b"", *, fin: bool = True) -> None:
        self.writer.write(encode_frame(opcode, payload, fin=fin))
        await self.writer.drain()

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def recv_frame(self, timeout: float = 10.0) -> Frame | None:
        """The next frame, or None on EOF. Frames from the server must be unmasked."""
        async with asyncio.timeout(timeout):
            while True:
                parsed = parse_frame(self.buf)
                if parsed is not None:
                    frame, used = parsed
                    del self.buf[:used]
                    if frame.masked:
                        raise FrameError("server frame is masked")
                    return frame
                data = await self.reader.read(65536)
                if not data:
                    if self.buf:
                        raise FrameError(f"EOF inside a frame ({len(self.buf)} bytes left)")
                    return None
                self.buf += data

    async def close(self, code: int = 1000, timeout: float = 10.0) -> Frame | None:
        """Clean close: send a close frame, wait for the peer's close frame, then EOF."""
        with contextlib.suppress(ConnectionError):
            await self.send(OP_CLOSE, close_payload(code))
        reply = None
        with contextlib.suppress(ConnectionError):
            while True:
                frame = await self.recv_frame(timeout)
                if frame is None or frame.opcode == OP_CLOSE:
                    reply = frame
                    break
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
        return reply

    def abort(self) -> None:
        self.writer.transport.abort()


class HandshakeRefused(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__(f"handshake answered {response.status}")
        self.response = response


# ---------------------------------------------------------------- process figures

def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def thread_count(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise RuntimeError(f"no Threads for pid {pid}")
