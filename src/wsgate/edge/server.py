"""The edge proxy's server: it wires the parts together. Client connections are
driven by `edge/client.py` with the rules of `edge/exchange.py`; origins come from
the pool in `edge/upstream.py`; a verified upgrade becomes a `Tunnel`; every
exchange and every WebSocket session leaves through `log_exchange` or
`tunnel_done`, one event each (design.md, phase 7).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import time
from collections.abc import Callable

from wsgate.config import EdgeConfig
from wsgate.edge.admission import Admission
from wsgate.edge.balancer import Balancer
from wsgate.edge.client import ClientConnection
from wsgate.edge.exchange import EdgeRules, Exchange
from wsgate.edge.metrics import EdgeMetrics
from wsgate.edge.tunnel import Tunnel
from wsgate.edge.upstream import UpstreamPool
from wsgate.logs.events import EventWriter, edge_line, emit


class EdgeServer:
    def __init__(self, config: EdgeConfig, logger: logging.Logger,
                 metrics: EdgeMetrics | None = None, writer: EventWriter | None = None) -> None:
        self.config = config
        self.logger = logger
        # Event lines go straight to the writer (a batched write); through `logging`
        # only when no writer is given.
        self.write_line: Callable[[str], None] = (
            writer.write_line if writer is not None
            else lambda line: emit(logger, json.loads(line)))
        self.metrics = metrics or EdgeMetrics()
        self.scheme = "https" if config.tls_cert else "http"
        lim, tmo = config.limits, config.timeouts
        self.rules = EdgeRules.from_config(config)
        self.pool = UpstreamPool(connect_timeout=tmo.connect, idle_timeout=tmo.upstream_idle,
                                 keepalive=lim.upstream_keepalive,
                                 high_water=lim.write_buffer_bytes,
                                 ca_file=config.origin_ca_file)
        self.connections: set[ClientConnection] = set()
        self.tunnels: set[Tunnel] = set()
        # Open client connections are the two sets above: admission asks them, so its
        # max_connections count cannot drift from what is really open.
        self.admission = Admission(
            config.admission, self.metrics, write_line=self.write_line,
            open_connections=lambda: len(self.connections) + len(self.tunnels))
        # Routes with several origins: affinity, health checks, draining (docs/origins.md).
        self.balancer = Balancer(config, self.metrics)
        self.draining = False
        self.retiring = False  # a reload: draining, but WebSockets stay open
        self.listener: asyncio.Server | None = None
        self.loop: asyncio.AbstractEventLoop | None = None  # set by start()

    async def start(self, sock: socket.socket | None = None) -> asyncio.Server:
        loop = self.loop = asyncio.get_running_loop()
        tls = None
        if self.config.tls_cert:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(self.config.tls_cert, self.config.tls_key)
        if sock is not None:
            self.listener = await loop.create_server(
                lambda: ClientConnection(self), sock=sock, ssl=tls, backlog=4096)
        else:
            host, port = self.config.listen_addr
            self.listener = await loop.create_server(
                lambda: ClientConnection(self), host, port, ssl=tls, backlog=4096,
                reuse_address=True)
        await self.balancer.start()
        return self.listener

    @property
    def bound(self) -> tuple[str, int]:
        assert self.listener is not None
        addr = self.listener.sockets[0].getsockname()
        return str(addr[0]), int(addr[1])

    def open_websockets(self) -> int:
        return len(self.tunnels)

    async def retire(self, limit: float | None) -> None:
        """For a reload: stop accepting now, let in-flight HTTP finish and idle keep-alive
        connections end, but leave WebSockets open until they close by themselves or
        `limit` seconds pass (None: no limit); then shut down as `shutdown` does."""
        self.draining = self.retiring = True
        if self.listener is not None:
            self.listener.close()
        for conn in list(self.connections):
            if conn.idle:
                conn.stop_idle()
        deadline = None if limit is None else time.monotonic() + limit
        while self.connections or self.tunnels:
            if deadline is not None and time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.05)
        await self.shutdown()

    async def shutdown(self) -> None:
        """Stop accepting, let in-flight HTTP finish, close WebSockets with 1001, and
        force whatever is left closed when the drain timeout ends."""
        self.draining = True
        self.retiring = False
        if self.listener is not None:
            self.listener.close()
        for conn in list(self.connections):
            if conn.idle:
                conn.stop_idle()
        for tunnel in list(self.tunnels):
            tunnel.shutdown(1001)
        deadline = time.monotonic() + self.config.timeouts.drain
        # Polling keeps the per-connection paths free of shutdown bookkeeping.
        while (self.connections or self.tunnels) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            conn.abort()
        for tunnel in list(self.tunnels):
            tunnel.abort()
        self.pool.close_all()
        self.balancer.stop()
        self.admission.flush()
        await asyncio.sleep(0)

    # Phase 7: one event per exchange, one per WebSocket session.
    def log_exchange(self, ex: Exchange, *, quiet: bool = False) -> None:
        """`quiet`: counted in the metrics, its event left to a flood summary."""
        ex.finish()
        seconds = time.monotonic() - ex.t0
        severity, message = ex.outcome()
        route = ex.route
        if not quiet:
            self.write_line(edge_line(
                message, severity, ex.method.decode("latin-1"), _url(ex), ex.status, seconds,
                ex.client_ip, ex.user_agent.decode("latin-1"), ex.req_id.decode("ascii"),
                route.pattern if route else None, _upstream(ex), ex.websocket,
                ex.from_client, ex.to_client,
                error_class=ex.error_class, error=ex.error))
        self.metrics.request_done(route.pattern if route else "-", ex.status, seconds,
                                  ex.from_client, ex.to_client)
        if ex.error_class and ex.status >= 500:
            self.metrics.upstream_error(ex.error_class)

    def tunnel_opened(self, tunnel: Tunnel, ex: Exchange) -> None:
        self.tunnels.add(tunnel)
        if ex.origin is not None:
            self.balancer.websocket_opened(ex.origin, tunnel)
        self.metrics.websocket_opened(ex.route.pattern if ex.route else "-",
                                      time.monotonic() - ex.t0)

    def release_session(self, ex: Exchange) -> None:
        """The place admission control gave an upgrade is free again (its tunnel ended,
        or it never became one)."""
        assert ex.admitted is not None
        self.admission.close_websocket(ex.client_ip, ex.admitted.url)
        ex.admitted = None

    def tunnel_done(self, tunnel: Tunnel, ex: Exchange) -> None:
        ex.finish()
        self.tunnels.discard(tunnel)
        if ex.origin is not None:
            self.balancer.websocket_closed(ex.origin, tunnel)
        if ex.admitted is not None:
            self.release_session(ex)
        duration = time.monotonic() - tunnel.started
        error_class = tunnel.error_class
        route = ex.route
        self.write_line(edge_line(
            "Edge Proxy Error" if error_class else "websocket session",
            "ERROR" if error_class else "INFO", "GET", _url(ex), 101,
            duration + (tunnel.started - ex.t0), ex.client_ip, ex.user_agent.decode("latin-1"),
            ex.req_id.decode("ascii"), route.pattern if route else None,
            _upstream(ex), True, tunnel.to_origin, tunnel.to_client,
            ws_duration_ms=round(duration * 1000), close_code=tunnel.close_code,
            closed_by=tunnel.closed_by, error_class=error_class,
            error="origin connection lost" if error_class else None))
        self.metrics.websocket_closed(tunnel.close_code, tunnel.to_origin, tunnel.to_client)
        if error_class:
            self.metrics.upstream_error(error_class)


def _upstream(ex: Exchange) -> str | None:
    """The origin that served the exchange (with several, the one chosen; none when the
    edge answered before choosing)."""
    if ex.origin is not None:
        return ex.origin.url
    route = ex.route
    return route.origin.url if route is not None and len(route.origins) == 1 else None


def _url(ex: Exchange) -> str:
    """The URL as the client asked for it, with the scheme it really used."""
    return f"{ex.scheme.decode()}://{ex.host.decode('latin-1')}{ex.target.decode('latin-1')}"
