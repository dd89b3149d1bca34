"""A WebSocket client written out by hand (RFC 6455), to judge every byte of the handshake.

`upgrade` opens the socket over the raw HTTP client and reports what a browser
would reject in the 101; `wait_for_close` then behaves like a passive browser
tab (answering pings) to see whether and when something on the path closes it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import ssl
import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from wsgate.doctor.http_client import Answer, Connection, Route, exchange, open_connection
from wsgate.i18n import _

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OPCODE_CLOSE, OPCODE_PING, OPCODE_PONG = 0x8, 0x9, 0xA
CLOSE_NO_STATUS = 1005  # a close frame without a code (RFC 6455 §7.1.5)


def accept_for(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()  # noqa: S324


def handshake_problems(answer: Answer, key: str) -> list[str]:
    """What a browser would reject in a 101 (RFC 6455 §4.1), empty when fine."""
    problems = []
    if (answer.header("upgrade") or "").strip().lower() != "websocket":
        problems.append(_("Upgrade is {value!r}, not 'websocket'").format(
            value=answer.header("upgrade")))
    tokens = {t.strip().lower() for t in (answer.header("connection") or "").split(",")}
    if "upgrade" not in tokens:
        problems.append(_("Connection is {value!r}, without 'Upgrade'").format(
            value=answer.header("connection")))
    accept = answer.header("sec-websocket-accept")
    if accept is None:
        problems.append(_("Sec-WebSocket-Accept is missing"))
    elif accept.strip() != accept_for(key):
        problems.append(_("Sec-WebSocket-Accept does not match the key"))
    return problems


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """A client frame (clients must mask), payload < 126 bytes."""
    mask = secrets.token_bytes(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked


async def read_exact(conn: Connection, n: int) -> bytes:
    while len(conn.buffered) < n:
        data = await conn.reader.read(65536)
        if not data:
            raise EOFError
        conn.buffered += data
    chunk, conn.buffered = conn.buffered[:n], conn.buffered[n:]
    return chunk


async def read_frame(conn: Connection) -> tuple[int, bytes]:
    first, second = await read_exact(conn, 2)
    length = second & 0x7F
    if length == 126:
        length = struct.unpack("!H", await read_exact(conn, 2))[0]
    elif length == 127:
        length = struct.unpack("!Q", await read_exact(conn, 8))[0]
    mask = await read_exact(conn, 4) if second & 0x80 else b""
    payload = await read_exact(conn, length)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return first & 0x0F, payload


@dataclass(frozen=True)
class Closed:
    """How a watched WebSocket ended (or did not) within the watch."""

    closed: bool
    code: int | None  # None when closed: dropped without a close frame
    after_s: float


async def wait_for_close(conn: Connection, seconds: float) -> Closed:
    """Read frames like a passive browser for `seconds`, answering pings."""
    start = time.monotonic()
    deadline = start + seconds
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return Closed(False, None, time.monotonic() - start)
        try:
            opcode, payload = await asyncio.wait_for(read_frame(conn), remaining)
        except TimeoutError:
            return Closed(False, None, time.monotonic() - start)
        except (EOFError, OSError, ssl.SSLError):
            return Closed(True, None, time.monotonic() - start)
        if opcode == OPCODE_CLOSE:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else CLOSE_NO_STATUS
            return Closed(True, code, time.monotonic() - start)
        if opcode == OPCODE_PING:
            conn.writer.write(masked_frame(OPCODE_PONG, payload[:125]))
            await conn.writer.drain()


async def close_websocket(conn: Connection) -> None:
    try:
        conn.writer.write(masked_frame(OPCODE_CLOSE, struct.pack("!H", 1000)))
        await conn.writer.drain()
    except (OSError, ssl.SSLError):
        pass  # the peer is gone: nothing to close politely
    await conn.close()


@dataclass(frozen=True)
class Handshake:
    answer: Answer
    problems: tuple[str, ...]
    offered: tuple[str, ...]
    selected: str | None


async def upgrade(route: Route, path: str, offered: Sequence[str],
                  extra: Mapping[str, str] | None = None) -> tuple[Connection, Handshake]:
    """Open a WebSocket by hand so that every header of the answer can be judged."""
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    headers = {"Connection": "Upgrade", "Upgrade": "websocket",
               "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": key}
    if offered:
        headers["Sec-WebSocket-Protocol"] = ", ".join(offered)
    headers.update(extra or {})
    conn = await open_connection(route)
    try:
        answer = await exchange(conn, route.target, "GET", path, headers)
    except BaseException:
        await conn.close()
        raise
    problems = tuple(handshake_problems(answer, key)) if answer.status == 101 else ()
    selected = answer.header("sec-websocket-protocol")
    return conn, Handshake(answer, problems, tuple(offered),
                           selected.strip() if selected else None)
