"""The admin listener: Prometheus metrics (`/metrics`), liveness (`/healthz`) and
readiness (`/readyz`: 503 while the edge drains, so a load balancer stops sending).

Kept apart from the public listener so metrics are never exposed to clients. With
several workers it runs once, in the supervisor, over a registry that sums the
workers' multiprocess files (see `wsgate.edge.supervisor`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

import h11
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

# (method, target) → (status, JSON body): the balancer's /origins endpoints.
OriginsHandler = Callable[[bytes, bytes], tuple[int, bytes]]


class _AdminProtocol(asyncio.Protocol):
    def __init__(self, registry: CollectorRegistry, ready: Callable[[], bool],
                 origins: OriginsHandler | None = None) -> None:
        self.registry = registry
        self.ready = ready
        self.origins = origins
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=8192)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.conn.receive_data(data)
        try:
            while True:
                event = self.conn.next_event()
                if event is h11.NEED_DATA:
                    return
                if isinstance(event, h11.Request):
                    self._answer(event)
                elif isinstance(event, h11.EndOfMessage):
                    if (self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE):
                        self.conn.start_next_cycle()
                    else:
                        self.transport.close()
                        return
                elif isinstance(event, h11.ConnectionClosed):
                    self.transport.close()
                    return
        except h11.ProtocolError:
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n"
                                 b"connection: close\r\n\r\n")
            self.transport.close()

    def _answer(self, req: h11.Request) -> None:
        assert self.transport is not None
        path = req.target.partition(b"?")[0]
        ctype = b"text/plain; charset=utf-8"
        if path == b"/metrics":
            status, body, ctype = 200, generate_latest(self.registry), \
                CONTENT_TYPE_LATEST.encode()
        elif path == b"/healthz":
            status, body = 200, b"ok\n"
        elif path == b"/readyz":
            status, body = (200, b"ready\n") if self.ready() else (503, b"draining\n")
        elif self.origins is not None and (path == b"/origins" or path.startswith(b"/origins/")):
            (status, body), ctype = self.origins(req.method, req.target), b"application/json"
        else:
            status, body = 404, b"not found: try /metrics, /healthz or /readyz\n"
        headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]
        out = self.conn.send(h11.Response(status_code=status, headers=headers))
        if req.method != b"HEAD":
            out += self.conn.send(h11.Data(data=body))
        out += self.conn.send(h11.EndOfMessage())
        self.transport.write(out)


async def start_admin(host: str, port: int, registry: CollectorRegistry,
                      ready: Callable[[], bool],
                      origins: OriginsHandler | None = None) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _AdminProtocol(registry, ready, origins), host,
                                    port, reuse_address=True)
