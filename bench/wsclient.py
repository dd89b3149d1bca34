"""Cheap benchmark clients: blocking raw sockets and pre-built masked frames.

A full WebSocket library on the client would spend more CPU than the proxy
under test, and the client shares CPU 0 with the origin. So frames are built
once, masking is done once at build time, and reading walks frame headers only
(ping frames a proxy may inject are skipped, never counted as echoes).
Every loop here is bounded by a count and a deadline.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

try:  # the C speedup when built, else websockets' pure-Python version
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover
    from websockets.utils import apply_mask

MASK = b"\x37\xfa\x21\x3d"  # fixed: the frames are pre-built, the echo is checked by length
WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's sample key; the origin computes the accept
RECV_SIZE = 256 * 1024


class BenchError(RuntimeError):
    """A target misbehaved (refused, closed, wrong answer): the figure is invalid."""


def client_frame(payload: bytes, opcode: int = 0x2) -> bytes:
    """One final, masked client frame."""
    length = len(payload)
    first = 0x80 | opcode
    if length < 126:
        header = bytes((first, 0x80 | length))
    elif length < 65536:
        header = bytes((first, 0x80 | 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((first, 0x80 | 127)) + length.to_bytes(8, "big")
    return header + MASK + apply_mask(payload, MASK)


CLOSE_FRAME = client_frame((1000).to_bytes(2, "big"), opcode=0x8)


def upgrade_request(host: str, port: int, path: str = "/ws",
                    extra: dict[str, str] | None = None) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {WS_KEY}", "Sec-WebSocket-Version: 13",
             "User-Agent: wsgate-bench"]
    lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def connect(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_upgrade(sock: socket.socket) -> bytes:
    """Read the 101 head; return any bytes that followed it (start of the frame stream)."""
    data = b""
    for _ in range(64):  # a head is at most a few reads
        chunk = sock.recv(65536)
        if not chunk:
            raise BenchError("connection closed during the handshake")
        data += chunk
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            if not data.startswith(b"HTTP/1.1 101"):
                raise BenchError("upgrade refused: " + data[:end].split(b"\r\n")[0].decode(
                    "latin-1", "replace"))
            return data[end + 4:]
    raise BenchError("handshake response head too long")


class FrameReader:
    """Counts the data frames arriving on one socket; skips control frames."""

    def __init__(self, sock: socket.socket, leftover: bytes = b"") -> None:
        self.sock = sock
        self.buf = bytearray(leftover)
        self.pos = 0

    def read(self, frames: int) -> int:
        """Block until `frames` data frames have arrived; return their payload bytes."""
        got = 0
        payload_bytes = 0
        buf = self.buf
        pos = self.pos
        while True:
            size = len(buf)
            while got < frames and size - pos >= 2:
                length = buf[pos + 1] & 0x7F
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
                if size - start < length:
                    break
                opcode = buf[pos] & 0x0F
                if opcode == 0x8:
                    raise BenchError("the target closed the WebSocket")
                if opcode < 0x8:
                    got += 1
                    payload_bytes += length
                pos = start + length
            if got >= frames:
                break
            if pos > RECV_SIZE:  # keep the buffer small without a copy per frame
                del buf[:pos]
                pos = 0
            chunk = self.sock.recv(RECV_SIZE)
            if not chunk:
                raise BenchError("connection closed while waiting for echoes")
            buf += chunk
        if pos == len(buf):
            buf.clear()
            pos = 0
        self.pos = pos
        return payload_bytes


@dataclass
class WsConn:
    sock: socket.socket
    reader: FrameReader

    def round_trip(self, frame: bytes) -> None:
        self.sock.sendall(frame)
        self.reader.read(1)

    def close(self, timeout: float = 5.0) -> None:
        """Clean close: our close frame, the server's answer, then TCP close."""
        try:
            self.sock.settimeout(timeout)
            self.sock.sendall(CLOSE_FRAME)
            for _ in range(1000):
                if not self.sock.recv(65536):
                    break
        except OSError:
            pass
        finally:
            self.sock.close()


def open_ws(port: int, request: bytes, timeout: float = 10.0) -> WsConn:
    sock = connect(port, timeout=timeout)
    try:
        sock.sendall(request)
        leftover = read_upgrade(sock)
    except BaseException:
        sock.close()
        raise
    return WsConn(sock, FrameReader(sock, leftover))


def handshakes(port: int, request: bytes, count: int, deadline: float) -> int:
    """Open and cleanly close WebSockets one after another; return how many completed."""
    done = 0
    for _ in range(count):
        if time.monotonic() > deadline:
            break
        open_ws(port, request).close()
        done += 1
    return done


def pipelined(conns: list[WsConn], batch: bytes, frames_per_batch: int, rounds: int,
              deadline: float) -> int:
    """Each round: send a batch of frames on every connection, then read all echoes back.

    Returns the number of messages echoed.
    """
    done = 0
    for _ in range(rounds):
        if time.monotonic() > deadline:
            break
        for conn in conns:
            conn.sock.sendall(batch)
        for conn in conns:
            conn.reader.read(frames_per_batch)
        done += frames_per_batch * len(conns)
    return done


def timed_round_trips(conns: list[WsConn], frame: bytes, rounds: int, deadline: float,
                      clock: Callable[[], int] = time.perf_counter_ns) -> list[list[int]]:
    """Interleaved: each round does one round trip on every connection, in rotating order.

    Returns the latencies in ns per connection. Rotating the order keeps any
    position effect (cache, scheduler) from always favouring one target.
    """
    samples: list[list[int]] = [[] for _ in conns]
    n = len(conns)
    for r in range(rounds):
        if time.monotonic() > deadline:
            break
        for k in range(n):
            i = (r + k) % n
            conn = conns[i]
            t0 = clock()
            conn.sock.sendall(frame)
            conn.reader.read(1)
            samples[i].append(clock() - t0)
    return samples


def open_many(port: int, request: bytes, count: int, deadline: float,
              batch: int = 200) -> list[WsConn]:
    """Open `count` WebSockets, `batch` handshakes in flight at a time."""
    conns: list[WsConn] = []
    try:
        while len(conns) < count:
            if time.monotonic() > deadline:
                raise BenchError(f"only {len(conns)} of {count} WebSockets opened in time")
            pending = [connect(port) for _ in range(min(batch, count - len(conns)))]
            for sock in pending:
                sock.sendall(request)
            for sock in pending:
                try:
                    conns.append(WsConn(sock, FrameReader(sock, read_upgrade(sock))))
                except BaseException:
                    sock.close()
                    raise
    except BaseException:
        close_many(conns)
        raise
    return conns


def close_many(conns: list[WsConn], timeout: float = 5.0) -> None:
    """Send every close frame first, then wait for each side to finish (bounded)."""
    for conn in conns:
        with contextlib.suppress(OSError):
            conn.sock.sendall(CLOSE_FRAME)
    end = time.monotonic() + timeout
    for conn in conns:
        try:
            conn.sock.settimeout(max(0.01, end - time.monotonic()))
            for _ in range(1000):
                if not conn.sock.recv(65536):
                    break
        except OSError:
            pass
        finally:
            conn.sock.close()
