"""The I/O around `wsgate.policy.balance`: active health checks, passive signals from
the edge's connects, the tunnels of each origin, draining, and per-origin metrics.

The edge driver calls `choose` before connecting upstream, `connect_failed` /
`connect_ok` after, and `websocket_opened` / `websocket_closed` around each tunnel.
When an origin goes down (or a drain deadline passes) its tunnels are closed with
1012 (Service Restart): Streamlit's frontend reconnects at once, and the reconnect
lands on a live origin.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Collection, Iterator
from typing import Any, Protocol
from urllib.parse import parse_qs

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from wsgate.config import ConfigError, EdgeConfig, Origin, Route, parse_origin
from wsgate.edge.metrics import EdgeMetrics
from wsgate.logs.events import LOGGER_NAME, build_event, emit
from wsgate.policy.balance import Balance, Choice, HealthState, OriginState, derive_key

CLOSE_SERVICE_RESTART = 1012


class Closable(Protocol):
    def shutdown(self, code: int = 1001) -> None: ...


def health_request(origin: Origin, path: str, secret_header: str, secret: str) -> bytes:
    """The active check: a plain GET with the secret, as the edge forwards any request
    (an origin that guards its health path still answers it)."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {origin.host_header}",
             "User-Agent: wsgate-edge-health", "Connection: close"]
    if secret:
        lines.append(f"{secret_header}: {secret}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def passed(status_line: bytes) -> bool:
    """A 2xx status line passes; anything else (or nothing) fails."""
    parts = status_line.split(b" ", 2)
    return len(parts) >= 2 and parts[0].startswith(b"HTTP/1.") and \
        len(parts[1]) == 3 and parts[1].startswith(b"2") and parts[1].isdigit()


class Balancer:
    def __init__(self, config: EdgeConfig, metrics: EdgeMetrics,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.config = config
        self.metrics = metrics
        self.loop = loop  # None until start() when built outside the event loop
        self.logger = logging.getLogger(LOGGER_NAME)
        self.balance = Balance(
            config.routes, key=derive_key(config.secret), cookie_name=config.affinity_cookie,
            # Secure only when every client surely uses TLS; the cookie is a routing
            # hint, authenticated but not secret, so plain http may carry it.
            secure=config.forwarded_proto == "https" or bool(config.tls_cert),
            thresholds=config.health,
            draining=config.draining_origins)
        # Only balanced origins' tunnels are tracked (to close them with 1012 when their
        # origin goes down): a lone origin's WebSockets cost no entry here.
        self.tunnels: dict[Origin, set[Closable]] = {
            o: set() for o in self.balance.balanced_origins}
        self.checks: list[asyncio.Task[None]] = []
        self._collector: _OriginCollector | None = None
        self._tls: ssl.SSLContext | None = None

    # --- the driver's hooks ---

    def choose(self, route: Route, cookie_header: bytes | None,
               exclude: Origin | None = None,
               full: Collection[Origin] = ()) -> Choice | None:
        if exclude is not None and exclude in self.balance.states:
            self.balance.states[exclude].retries += 1
        return self.balance.choose(route, cookie_header, exclude, full)

    def connect_failed(self, origin: Origin) -> None:
        self._signal(origin, False, active=False)

    def connect_ok(self, origin: Origin) -> None:
        self._signal(origin, True, active=False)

    def websocket_opened(self, origin: Origin, tunnel: Closable) -> None:
        tunnels = self.tunnels.get(origin)
        if tunnels is None:
            return
        state = self.balance.states[origin]
        state.open_websockets += 1
        tunnels.add(tunnel)
        if not state.up:  # it went down while this upgrade was in flight
            tunnel.shutdown(CLOSE_SERVICE_RESTART)

    def websocket_closed(self, origin: Origin, tunnel: Closable) -> None:
        tunnels = self.tunnels.get(origin)
        if tunnels is not None and tunnel in tunnels:
            tunnels.discard(tunnel)
            self.balance.states[origin].open_websockets -= 1

    # --- lifecycle ---

    async def start(self) -> None:
        """Health checks of every origin of a route with several origins; per-origin
        metrics on the edge's registry."""
        loop = self.loop = self.loop or asyncio.get_running_loop()
        for origin in self.balance.balanced_origins:
            self.checks.append(loop.create_task(self._watch(origin)))
        if self.balance.balanced_origins and self._collector is None:
            self._collector = _OriginCollector(self)
            self.metrics.registry.register(self._collector)

    def stop(self) -> None:
        for task in self.checks:
            task.cancel()
        self.checks.clear()
        if self._collector is not None:
            self.metrics.registry.unregister(self._collector)
            self._collector = None

    # --- draining (configuration and the admin listener) ---

    def drain(self, url: str, within: float | None = None) -> OriginState | None:
        """No new sessions for origin `url`; its WebSockets run on, or are closed with
        1012 after `within` seconds. None: no such origin."""
        state = self._find(url)
        if state is None:
            return None
        self.balance.drain(state.origin, time.monotonic(), within)
        if within is not None:
            (self.loop or asyncio.get_running_loop()).call_later(within, self._drains_due)
        return state

    def undrain(self, url: str) -> OriginState | None:
        state = self._find(url)
        if state is not None:
            self.balance.undrain(state.origin)
        return state

    def _find(self, url: str) -> OriginState | None:
        try:
            return self.balance.find(parse_origin(url, "origin").url)
        except ConfigError:
            return None

    def describe(self) -> list[dict[str, Any]]:
        """Each balanced origin's state, for the admin listener."""
        states = [self.balance.states[o] for o in self.balance.balanced_origins]
        return [{"origin": s.origin.url, "state": s.health.state.value,
                 "draining": s.draining, "openWebSockets": s.open_websockets,
                 "ejections": s.health.ejections, "retries": s.retries} for s in states]

    # --- internals ---

    def _drains_due(self) -> None:
        for origin in self.balance.drains_due(time.monotonic()):
            self._close_tunnels(origin)

    def _close_tunnels(self, origin: Origin) -> None:
        for tunnel in list(self.tunnels.get(origin, ())):
            tunnel.shutdown(CLOSE_SERVICE_RESTART)

    def _signal(self, origin: Origin, ok: bool, *, active: bool) -> None:
        if not self.balance.observe(origin, ok, time.monotonic(), active=active):
            return
        state = self.balance.states[origin]
        went_down = state.health.state is HealthState.DOWN
        emit(self.logger, build_event(
            source="edge", severity="WARNING" if went_down else "NOTICE",
            message=f"origin {'down' if went_down else 'up'}", upstream=origin.url,
            errorClass="origin-unhealthy" if went_down else None))
        if went_down:
            self._close_tunnels(origin)

    async def _watch(self, origin: Origin) -> None:
        health = self.config.health
        while True:
            ok = await self.check(origin)
            self._signal(origin, ok, active=True)
            await asyncio.sleep(health.interval)

    async def check(self, origin: Origin) -> bool:
        """One active check: True when the origin answers the health path with 2xx
        within the timeout."""
        health, config = self.config.health, self.config
        tls = self._tls_context() if origin.tls else None
        writer = None
        try:
            async with asyncio.timeout(health.timeout):
                reader, writer = await asyncio.open_connection(
                    origin.host, origin.port, ssl=tls,
                    server_hostname=origin.host if tls is not None else None)
                writer.write(health_request(origin, health.path, config.secret_header,
                                            config.secret))
                status_line = await reader.readline()
        except (OSError, TimeoutError, ValueError):  # ssl.SSLError is an OSError
            return False
        finally:
            if writer is not None:
                writer.close()
        return passed(status_line)

    def admin(self, method: bytes, target: bytes) -> tuple[int, bytes]:
        """The admin listener's `/origins` endpoints: (status, JSON body).

        GET /origins: every balanced origin's state. POST /origins/drain?origin=URL
        [&within=SECONDS] and POST /origins/undrain?origin=URL change one."""
        path, _, query = target.decode("latin-1").partition("?")
        if path == "/origins":
            return 200, _json(self.describe())
        action = {"/origins/drain": self.drain, "/origins/undrain": self.undrain}.get(path)
        if action is None:
            return 404, _json({"error": "try /origins, /origins/drain or /origins/undrain"})
        if method != b"POST":
            return 405, _json({"error": f"{path} needs POST"})
        args = {k: v[-1] for k, v in parse_qs(query).items()}
        within: float | None = None
        if path == "/origins/drain" and "within" in args:
            try:
                within = float(args["within"])
            except ValueError:
                within = -1.0
            if not 0 <= within < float("inf"):
                return 400, _json({"error": "within: expected seconds >= 0"})
        url = args.get("origin", "")
        state = self.drain(url, within) if action == self.drain else self.undrain(url)
        if state is None:
            return 404, _json({"error": f"origin: {url!r} is not an origin of a route "
                                        "with several origins (use its URL as configured)"})
        return 200, _json(next(d for d in self.describe() if d["origin"] == state.origin.url))

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context(cafile=self.config.origin_ca_file or None)
        return self._tls


def _json(value: Any) -> bytes:
    return json.dumps(value).encode() + b"\n"


class _OriginCollector:
    """Per-origin metrics read from the balancer's state at scrape time (one source of
    truth; nothing to keep in step on the request path)."""

    def __init__(self, balancer: Balancer) -> None:
        self.balancer = balancer

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("wsgate_edge_origin_up", "1 while the origin is healthy",
                               labels=["origin"])
        draining = GaugeMetricFamily("wsgate_edge_origin_draining",
                                     "1 while the origin takes no new sessions",
                                     labels=["origin"])
        sockets = GaugeMetricFamily("wsgate_edge_origin_websockets_open",
                                    "WebSocket tunnels open to the origin", labels=["origin"])
        ejections = CounterMetricFamily("wsgate_edge_origin_ejections",
                                        "Times the origin was taken out as unhealthy",
                                        labels=["origin"])
        retries = CounterMetricFamily("wsgate_edge_origin_retries",
                                      "Requests retried on another origin after a failed "
                                      "connect to this one", labels=["origin"])
        for entry in self.balancer.describe():
            label = [entry["origin"]]
            up.add_metric(label, 1.0 if entry["state"] == "up" else 0.0)
            draining.add_metric(label, 1.0 if entry["draining"] else 0.0)
            sockets.add_metric(label, float(entry["openWebSockets"]))
            ejections.add_metric(label, float(entry["ejections"]))
            retries.add_metric(label, float(entry["retries"]))
        yield from (up, draining, sockets, ejections, retries)
