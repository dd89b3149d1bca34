"""Connections to origins: a keep-alive pool per origin, TLS with SNI and verification.

A connection returns to the pool only when its last request was sent and its last
response read to the end, with nothing more pending; anything else is closed. Idle
pooled connections are not reused after `upstream_idle` seconds, a little under common origin
keep-alive timeouts (uvicorn's is 5 s), so the edge rarely picks one the origin is closing;
one sweep timer per pool closes them at most half that again later.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

from wsgate.config import Origin
from wsgate.edge.exchange import classify_connect_error
from wsgate.edge.stream import StreamProtocol


@dataclass(slots=True, eq=False)
class Upstream:
    origin: Origin
    proto: StreamProtocol
    done: bool = False  # request sent and response read to the end, origin keeps it open
    reused: bool = False
    idle_since: float = 0.0  # loop time it went back to the pool

    @property
    def alive(self) -> bool:
        return not self.proto.eof and not self.proto.lost and not self.proto.chunks

    def reusable(self) -> bool:
        return self.alive and self.done

    def close(self) -> None:
        self.proto.close()


class UpstreamPool:
    def __init__(self, *, connect_timeout: float, idle_timeout: float, keepalive: int,
                 high_water: int, ca_file: str = "") -> None:
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.keepalive = keepalive
        self.high_water = high_water
        self._idle: dict[Origin, list[Upstream]] = {}
        self._tls: ssl.SSLContext | None = None
        self._ca_file = ca_file
        self._sweeper: asyncio.TimerHandle | None = None

    def tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context(cafile=self._ca_file or None)
        return self._tls

    async def acquire(self, origin: Origin, loop: asyncio.AbstractEventLoop) -> Upstream:
        """A pooled connection to `origin`, or a new one (`loop`: the caller's, kept by
        its protocol; in Python 3.11 every get_running_loop() is a getpid() call)."""
        idle = self._idle.get(origin)
        if idle:
            # Newest first: once one is too old, the rest are older still.
            fresh_after = loop.time() - self.idle_timeout
            while idle:
                up = idle.pop()
                if up.alive and up.idle_since > fresh_after:
                    up.done = False
                    up.reused = True
                    return up
                up.close()
        return await self.connect(origin, loop)

    async def connect(self, origin: Origin, loop: asyncio.AbstractEventLoop) -> Upstream:
        """A new connection within `connect_timeout`. The deadline is one timer that
        cancels this task, as `asyncio.timeout()` does, without its two
        get_running_loop() calls (~8 % of a handshake's samples)."""
        high_water = self.high_water
        task = asyncio.current_task(loop)
        assert task is not None
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        timer = loop.call_later(self.connect_timeout, expire)
        try:
            if origin.tls:
                _, proto = await loop.create_connection(
                    lambda: StreamProtocol(high_water, loop), origin.host, origin.port,
                    ssl=self.tls_context(), server_hostname=origin.host)
            else:
                _, proto = await loop.create_connection(
                    lambda: StreamProtocol(high_water, loop), origin.host, origin.port)
        except asyncio.CancelledError:
            # Ours (the deadline) unless someone else cancelled the task too.
            if expired and task.uncancel() == 0:
                raise classify_connect_error(TimeoutError()) from None
            raise
        except Exception as exc:
            raise classify_connect_error(exc) from None
        finally:
            timer.cancel()
        if expired:
            # The connection was made as the deadline fired: withdraw the cancellation
            # request our timer made, as asyncio.timeout() does, and keep it.
            task.uncancel()
        # asyncio and uvloop both set TCP_NODELAY on TCP transports already.
        return Upstream(origin, proto)

    def release(self, up: Upstream) -> None:
        """Back to the pool if fully read and healthy; closed otherwise."""
        idle = self._idle.setdefault(up.origin, [])
        if not up.reusable() or len(idle) >= self.keepalive or self.idle_timeout <= 0:
            up.close()
            return
        loop = up.proto.loop
        up.idle_since = loop.time()
        idle.append(up)
        if self._sweeper is None:
            self._sweeper = loop.call_later(self.idle_timeout / 2, self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close pooled connections idle longer than `idle_timeout`. One timer per pool,
        not one per release (a uvloop timer costs more than the rest of a release):
        `acquire` never hands out an expired one, and the sweep frees them at most
        half an idle timeout late."""
        self._sweeper = None
        stale_before = loop.time() - self.idle_timeout
        left = False
        for idle in self._idle.values():
            keep = []
            for up in idle:
                if up.alive and up.idle_since > stale_before:
                    keep.append(up)
                else:
                    up.close()
            idle[:] = keep
            left = left or bool(keep)
        if left:
            self._sweeper = loop.call_later(self.idle_timeout / 2, self._sweep, loop)

    def close_all(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for idle in self._idle.values():
            for up in idle:
                up.close()
            idle.clear()
