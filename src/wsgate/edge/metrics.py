"""Prometheus metrics of the edge, on their own registry.

The edge calls these few methods at the end of each request or session (never
per chunk), so metrics cost one dict lookup and an increment per event.
The admin listener that serves them lives in `wsgate.edge.admin`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status <= 599 else "other"


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

    def request_done(self, route: str, status: int, seconds: float,
                     bytes_from_client: int, bytes_to_client: int) -> None:
        self.requests.labels(route, status_class(status)).inc()
        self.request_latency.labels(route).observe(seconds)
        self.bytes_relayed.labels("to_origin").inc(bytes_from_client)
        self.bytes_relayed.labels("to_client").inc(bytes_to_client)

    def upstream_error(self, error_class: str) -> None:
        self.upstream_errors.labels(error_class).inc()

    def websocket_opened(self, route: str, handshake_seconds: float) -> None:
        self.requests.labels(route, "1xx").inc()
        self.handshake_latency.observe(handshake_seconds)
        self.websockets_open.inc()

    def websocket_closed(self, close_code: int | None,
                         bytes_from_client: int, bytes_to_client: int) -> None:
        self.websockets_open.dec()
        self.websocket_sessions.labels(str(close_code) if close_code else "none").inc()
        self.bytes_relayed.labels("to_origin").inc(bytes_from_client)
        self.bytes_relayed.labels("to_client").inc(bytes_to_client)
