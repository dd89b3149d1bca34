"""The WebSocket tunnel: after a verified 101 the two transports are joined directly.

Each side's `data_received` writes the chunk straight into the other transport: no
queue, no task, no copy. Flow control is the transports' own: when one side's write
buffer passes its high-water mark (`pause_writing`), the other side stops reading
until it drains (`resume_writing`), so a slow reader pauses the fast writer and
memory per tunnel stays within about two write buffers.

The edge speaks on the client's stream only at a frame boundary of the
origin→client direction (tracked by `FrameTracker`): keepalive pings, close 1001 on
shutdown, close 1011 when the origin is lost. If the origin dies in the middle of a
frame the boundary is lost for good, so the edge just closes the TCP connection (the
client sees 1006). After the edge has sent its own close frame, further origin data
is dropped (a close must be the last frame). Pongs answering the edge's pings travel
on to the origin: RFC 6455 §5.5.3 allows unsolicited pongs and endpoints ignore them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Literal

from wsgate.edge.frames import FrameTracker
from wsgate.policy.websocket import PING_FRAME, close_frame

ClosedBy = Literal["client", "origin", "edge"]


class _ClientSide(asyncio.Protocol):
    __slots__ = ("t",)

    def __init__(self, tunnel: Tunnel) -> None:
        self.t = tunnel

    def data_received(self, data: bytes) -> None:
        t = self.t
        t.to_origin += len(data)
        t.origin.write(data)
        # The client's close frame is looked for only where it normally is: alone in
        # its chunk (masked, FIN + opcode 8, length exactly header + payload). This
        # keeps the client → origin direction free of per-frame work; a close frame
        # coalesced with other frames is missed, which only affects the log's
        # closeCode/closedBy.
        if data[0] == 0x88 and len(data) <= 131 and t.first_close is None:
            t.note_client_close(data)

    def eof_received(self) -> bool:
        t = self.t
        if t.first_gone is None:
            t.first_gone = "client"
        if t.origin.can_write_eof() and not t.origin.is_closing():
            t.origin.write_eof()  # pass the half-close on; keep relaying origin → client
            return True
        t.origin.close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.t.client_lost()

    def pause_writing(self) -> None:
        self.t.origin.pause_reading()

    def resume_writing(self) -> None:
        self.t.origin.resume_reading()


class _OriginSide(asyncio.Protocol):
    __slots__ = ("t",)

    def __init__(self, tunnel: Tunnel) -> None:
        self.t = tunnel

    def data_received(self, data: bytes) -> None:
        self.t.down(data)

    def eof_received(self) -> bool:
        return False  # the origin is done: close, and connection_lost handles the rest

    def connection_lost(self, exc: Exception | None) -> None:
        self.t.origin_lost()

    def pause_writing(self) -> None:
        self.t.client.pause_reading()

    def resume_writing(self) -> None:
        self.t.client.resume_reading()


class Tunnel:
    __slots__ = (
        "client",
        "client_close",
        "client_done",
        "context",
        "down_blocked",
        "edge_close",
        "error_class",
        "first_close",
        "first_gone",
        "on_done",
        "origin",
        "origin_done",
        "pending_close",
        "ping_handle",
        "ping_interval",
        "ping_mark",
        "started",
        "to_client",
        "to_origin",
        "tracker",
    )

    def __init__(self, client: asyncio.Transport, origin: asyncio.Transport, *,
                 ping_interval: float, on_done: Callable[[Tunnel, Any], None],
                 context: Any = None) -> None:
        self.client = client
        self.origin = origin
        # on_done(tunnel, context) rather than a closure: a lambda and its cells cost
        # ~0.3 KB per open tunnel, against a budget of 4 KB per idle WebSocket.
        self.on_done = on_done
        self.context = context
        self.ping_interval = ping_interval
        self.tracker = FrameTracker()  # origin → client (unmasked frames)
        self.client_close: int | None = None  # close code the client sent, if seen
        self.to_client = 0
        self.to_origin = 0
        self.first_close: ClosedBy | None = None
        self.first_gone: ClosedBy | None = None
        self.edge_close: int | None = None  # close code the edge itself sent
        self.pending_close: int | None = None  # waiting for a frame boundary
        self.down_blocked = False
        self.error_class: str | None = None
        self.client_done = False
        self.origin_done = False
        self.ping_handle: asyncio.TimerHandle | None = None
        self.ping_mark = -1
        self.started = time.monotonic()

    def start(self, client_leftover: bytes, origin_leftover: bytes,
              loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Swap both transports onto the tunnel and relay what arrived early (`loop`:
        the caller's, which saves a getpid() per handshake in Python 3.11)."""
        self.client.set_protocol(_ClientSide(self))
        self.origin.set_protocol(_OriginSide(self))
        if origin_leftover:
            self.down(origin_leftover)
        if client_leftover:
            _ClientSide(self).data_received(client_leftover)
        # The HTTP layer may have paused reading; the tunnel does its own flow control.
        self.client.resume_reading()
        self.origin.resume_reading()
        if self.ping_interval > 0:
            self.ping_mark = self.to_client + self.to_origin
            loop = loop if loop is not None else asyncio.get_running_loop()
            self.ping_handle = loop.call_later(self.ping_interval, self._ping)

    def note_client_close(self, data: bytes) -> None:
        n = len(data)
        if n < 6 or not data[1] & 0x80 or (data[1] & 0x7F) != n - 6:
            return
        self.first_close = "client"
        if n >= 8:
            self.client_close = ((data[6] ^ data[2]) << 8) | (data[7] ^ data[3])
        else:
            self.client_close = 1005

    def down(self, data: bytes) -> None:
        """Origin → client."""
        if self.down_blocked:
            return
        tracker = self.tracker
        tracker.feed(data)
        self.to_client += len(data)
        self.client.write(data)
        if tracker.closed:
            if self.first_close is None:
                self.first_close = "origin"
        elif self.pending_close is not None and tracker.at_boundary:
            self._send_close(self.pending_close)

    def _send_close(self, code: int) -> None:
        self.pending_close = None
        if self.tracker.closed or self.edge_close is not None or self.client.is_closing():
            return
        frame = close_frame(code, b"going away" if code == 1001 else b"origin connection lost")
        self.client.write(frame)
        self.to_client += len(frame)
        self.edge_close = code
        self.down_blocked = True

    def shutdown(self, code: int = 1001) -> None:
        """Edge going away: close frame now if at a boundary, else at the next one."""
        if self.tracker.at_boundary:
            self._send_close(code)
        else:
            self.pending_close = code

    def _ping(self) -> None:
        self.ping_handle = None
        if self.client_done or self.origin_done:
            return
        seen = self.to_client + self.to_origin
        if (seen == self.ping_mark and self.tracker.at_boundary and not self.tracker.closed
                and self.edge_close is None):
            self.client.write(PING_FRAME)
            self.to_client += len(PING_FRAME)
            seen += len(PING_FRAME)
        self.ping_mark = seen
        self.ping_handle = asyncio.get_running_loop().call_later(self.ping_interval, self._ping)

    def client_lost(self) -> None:
        if self.client_done:
            return
        self.client_done = True
        if self.first_gone is None:
            self.first_gone = "client"
        if not self.origin_done:
            self.origin.close()  # flushes what the client sent last (its close frame)
        self._maybe_done()

    def origin_lost(self) -> None:
        if self.origin_done:
            return
        self.origin_done = True
        if self.first_gone is None:
            self.first_gone = "origin"
        if not self.client_done:
            if not self.tracker.closed and self.edge_close is None:
                # The origin vanished without a close frame.
                if self.tracker.at_boundary:
                    self._send_close(1011)
                    self.error_class = "origin-lost"
                else:
                    self.error_class = "origin-lost-mid-frame"
            self.client.close()
        self._maybe_done()

    def abort(self) -> None:
        self.client.abort()
        self.origin.abort()

    def _maybe_done(self) -> None:
        if self.client_done and self.origin_done:
            if self.ping_handle is not None:
                self.ping_handle.cancel()
                self.ping_handle = None
            self.on_done(self, self.context)

    # results for the session log
    @property
    def close_code(self) -> int | None:
        if self.edge_close is not None:
            return self.edge_close
        if self.first_close == "client":
            return self.client_close
        return self.tracker.close_code if self.tracker.closed else self.client_close

    @property
    def closed_by(self) -> ClosedBy:
        if self.edge_close == 1001:
            return "edge"
        if self.edge_close == 1011 or self.error_class:
            return "origin"
        return self.first_close or self.first_gone or "client"
