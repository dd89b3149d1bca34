"""Connections to origins: a keep-alive pool per origin, TLS with SNI and verification.

A connection returns to the pool only when its last request was sent and its last
response read to the end, with nothing more pending; anything else is closed. Idle
pooled connections are closed after `upstream_idle` seconds, a little under common origin keep-alive
timeouts (uvicorn's is 5 s), so the edge rarely picks one the origin is closing.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass

from wsgate.config import Origin
from wsgate.edge.stream import StreamProtocol

# Response heads bigger than this are an origin fault (the edge answers 502).
MAX_RESPONSE_HEAD = 65536


class UpstreamError(Exception):
    """A failure talking to the origin, with the status to answer and a stable class."""

    def __init__(self, status: int, error_class: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_class = error_class
        self.message = message


def classify_connect_error(exc: BaseException) -> UpstreamError:
    if isinstance(exc, TimeoutError):
        return UpstreamError(504, "connect-timeout", "timed out connecting to the origin")
    if isinstance(exc, ConnectionRefusedError):
        return UpstreamError(502, "connect-refused", "connection refused by the origin")
    if isinstance(exc, socket.gaierror):
        return UpstreamError(502, "dns-error", "origin host name not found")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return UpstreamError(502, "tls-verify", f"origin TLS certificate rejected: "
                             f"{exc.verify_message}")
    if isinstance(exc, ssl.SSLError):
        return UpstreamError(502, "tls-error", f"TLS handshake with the origin failed: "
                             f"{exc.reason}")
    if isinstance(exc, OSError):
        return UpstreamError(502, "connect-error",
                             f"cannot connect to the origin: {exc.strerror or exc}")
    return UpstreamError(502, "connect-error", f"cannot connect to the origin: {exc}")


@dataclass(slots=True, eq=False)
class Upstream:
    origin: Origin
    proto: StreamProtocol
    done: bool = False  # request sent and response read to the end, origin keeps it open
    reused: bool = False
    idle_timer: asyncio.TimerHandle | None = None

    @property
    def alive(self) -> bool:
        return not self.proto.eof and not self.proto.lost and not self.proto.chunks

    def reusable(self) -> bool:
        return self.alive and self.done

    def close(self) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
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

    def tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context(cafile=self._ca_file or None)
        return self._tls

    async def acquire(self, origin: Origin) -> Upstream:
        idle = self._idle.get(origin)
        while idle:
            up = idle.pop()
            if up.idle_timer is not None:
                up.idle_timer.cancel()
                up.idle_timer = None
            if up.alive:
                up.done = False
                up.reused = True
                return up
            up.close()
        return await self.connect(origin)

    async def connect(self, origin: Origin) -> Upstream:
        loop = asyncio.get_running_loop()
        high_water = self.high_water
        try:
            async with asyncio.timeout(self.connect_timeout):
                if origin.tls:
                    _, proto = await loop.create_connection(
                        lambda: StreamProtocol(high_water), origin.host, origin.port,
                        ssl=self.tls_context(), server_hostname=origin.host)
                else:
                    _, proto = await loop.create_connection(
                        lambda: StreamProtocol(high_water), origin.host, origin.port)
        except Exception as exc:
            raise classify_connect_error(exc) from None
        # asyncio and uvloop both set TCP_NODELAY on TCP transports already.
        return Upstream(origin, proto)

    def release(self, up: Upstream) -> None:
        """Back to the pool if fully read and healthy; closed otherwise."""
        idle = self._idle.setdefault(up.origin, [])
        if not up.reusable() or len(idle) >= self.keepalive or self.idle_timeout <= 0:
            up.close()
            return
        idle.append(up)
        up.idle_timer = up.proto.loop.call_later(
            self.idle_timeout, self._expire, up)

    def _expire(self, up: Upstream) -> None:
        up.idle_timer = None
        idle = self._idle.get(up.origin)
        if idle and up in idle:
            idle.remove(up)
        up.close()

    def close_all(self) -> None:
        for idle in self._idle.values():
            for up in idle:
                up.close()
            idle.clear()
