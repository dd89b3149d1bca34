"""Prometheus metrics of the edge, on their own registry.

The edge calls these few methods at the end of each request or session (never
per chunk), so metrics cost one dict lookup and an increment per event.
The admin listener that serves them lives in `wsgate.edge.admin`.

With several workers each worker keeps this registry in its own memory (nothing
shared on the hot path) and sends a snapshot to the supervisor, whose admin listener
serves the sum (`wsgate.edge.worker_metrics`).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status <= 599 else "other"


def close_code_label(code: int | None) -> str:
    """RFC 6455 codes as they are; application ranges folded, so a client choosing
    close codes cannot grow the label set without bound."""
    if not code:
        return "none"
    if 1000 <= code <= 1015:
        return str(code)
    if 3000 <= code <= 4999:
        return f"{code // 1000}xxx"
    return "other"


class EdgeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "wsgate_edge_requests", "HTTP requests answered, by route and status class",
            ["route", "status_class"], registry=r)
        self.upstream_errors = Counter(
            "wsgate_edge_upstream_errors", "Failures talking to the origin, by error class",
            ["error_class"], registry=r)
        self.websockets_open = Gauge(
            "wsgate_edge_websockets_open", "WebSocket tunnels open now", registry=r)
        self.websocket_sessions = Counter(
            "wsgate_edge_websocket_sessions", "Finished WebSocket sessions, by close code",
            ["close_code"], registry=r)
        self.bytes_relayed = Counter(
            "wsgate_edge_bytes_relayed", "Bytes relayed, by direction",
            ["direction"], registry=r)
        self.request_latency = Histogram(
            "wsgate_edge_request_seconds", "Time to answer an HTTP request (whole response)",
            ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.handshake_latency = Histogram(
            "wsgate_edge_websocket_handshake_seconds",
            "Time from the client's upgrade request to the relayed 101",
            buckets=LATENCY_BUCKETS, registry=r)
        self.admission_refusals = Counter(
            "wsgate_edge_admission_refusals",
            "Requests, upgrades and connections refused by admission control, by the "
            "[admission] limit that fired", ["limit"], registry=r)

        # labels() takes a lock and builds a key on every call; the edge calls these
        # per request, so the children are looked up once and kept.
        self._children: dict[tuple[str, ...], Any] = {}
        self._done: dict[tuple[str, int], tuple[Any, Any]] = {}  # (route, status) → children
        self._to_origin = self.bytes_relayed.labels("to_origin")
        self._to_client = self.bytes_relayed.labels("to_client")

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (metric._name, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def request_done(self, route: str, status: int, seconds: float,
                     bytes_from_client: int, bytes_to_client: int) -> None:
        pair = self._done.get((route, status))
        if pair is None:
            pair = self._done[(route, status)] = (
                self._child(self.requests, route, status_class(status)),
                self._child(self.request_latency, route))
        pair[0].inc()
        pair[1].observe(seconds)
        if bytes_from_client:  # most requests have no body: skip a locked no-op
            self._to_origin.inc(bytes_from_client)
        self._to_client.inc(bytes_to_client)

    def upstream_error(self, error_class: str) -> None:
        self.upstream_errors.labels(error_class).inc()

    def admission_refused(self, limit: str) -> None:
        self._child(self.admission_refusals, limit).inc()

    def websocket_opened(self, route: str, handshake_seconds: float) -> None:
        self._child(self.requests, route, "1xx").inc()
        self.handshake_latency.observe(handshake_seconds)
        self.websockets_open.inc()

    def websocket_closed(self, close_code: int | None,
                         bytes_from_client: int, bytes_to_client: int) -> None:
        self.websockets_open.dec()
        self._child(self.websocket_sessions, close_code_label(close_code)).inc()
        self._to_origin.inc(bytes_from_client)
        self._to_client.inc(bytes_to_client)


class SupervisorMetrics:
    """The supervisor's own metrics, next to the workers' sum on the admin listener."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.workers = Gauge(
            "wsgate_edge_workers", "Worker processes running, by state",
            ["state"], registry=registry)
        self.worker_restarts = Counter(
            "wsgate_edge_worker_restarts", "Workers restarted after they died",
            registry=registry)
        self.reloads = Counter(
            "wsgate_edge_reloads", "Reloads (SIGHUP), by result: ok, invalid (the "
            "configuration was refused), failed (the new workers did not start)",
            ["result"], registry=registry)
        self.generation = Gauge(
            "wsgate_edge_config_generation", "Configuration generation now serving "
            "(1 at start, +1 per successful reload)", registry=registry)
