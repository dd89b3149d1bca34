"""The edge's admin listener, scraped over HTTP after real traffic through a real edge."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets
from websockets.asyncio.client import connect

from tests.logs.edge_support import admin_get, http_get, origin_process, scrape, value
from tests.support import LOOPBACK, ServerProcess, edge_process, free_port, started, wait_until
from tests.support import Edge as EdgeProcess
from wsgate.edge.metrics import close_code_label

REQUESTS = "wsgate_edge_requests_total"
BYTES = "wsgate_edge_bytes_relayed_total"


@pytest.fixture(scope="module")
def origin() -> Iterator[ServerProcess]:
    with started(origin_process()) as server:
        yield server


@pytest.fixture(scope="module")
def edge(origin: ServerProcess, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[EdgeProcess]:
    log = tmp_path_factory.mktemp("metrics") / "edge.log"
    with started(edge_process(f"http://{LOOPBACK}:{origin.port}", log)) as server:
        yield server


def admin(server: EdgeProcess) -> int:
    return server.admin_port


def test_http_requests_by_route_and_status_class(edge: EdgeProcess) -> None:
    before = scrape(admin(edge))
    received = 0
    for path, expected in [("/hello", 200)] * 3 + [("/status/404", 404)] * 2 + [
            ("/status/503", 503)]:
        status, _, size = http_get(edge.port, path)
        assert status == expected
        received += size
    after = scrape(admin(edge))

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    route = "*/*"  # the catch-all route of --origin
    assert delta(REQUESTS, route=route, status_class="2xx") == 3
    assert delta(REQUESTS, route=route, status_class="4xx") == 2
    assert delta(REQUESTS, route=route, status_class="5xx") == 1
    assert delta("wsgate_edge_request_seconds_count", route=route) == 6
    assert delta("wsgate_edge_request_seconds_bucket", route=route, le="+Inf") == 6
    assert delta(BYTES, direction="to_client") == received
    # A 503 the origin chose to send is not an upstream error.
    assert not any(name == "wsgate_edge_upstream_errors_total" and v
                   for (name, _), v in after.items())


async def _websocket_sessions(port: int, admin_port: int) -> float:
    """Two sessions: the client closes one (1000), the origin the other (4001).
    Returns the open-WebSocket gauge seen while both were open."""
    url = f"ws://{LOOPBACK}:{port}/ws"
    async with connect(url) as first, connect(url) as second:
        await first.send("ping")
        assert await first.recv() == "ping"
        open_now = value(scrape(admin_port), "wsgate_edge_websockets_open")
        await second.send("close 4001")
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await second.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001
    return open_now


def test_websockets_open_then_closed_by_code_and_bytes(edge: EdgeProcess) -> None:
    port = admin(edge)
    before = scrape(port)
    open_while = asyncio.run(_websocket_sessions(edge.port, port))
    assert open_while == 2
    assert wait_until(lambda: value(scrape(port), "wsgate_edge_websockets_open") == 0)
    after = scrape(port)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("wsgate_edge_websocket_sessions_total", close_code="1000") == 1
    # Application codes are folded into ranges so clients cannot grow the label set.
    assert close_code_label(4001) == "4xxx"
    assert delta("wsgate_edge_websocket_sessions_total", close_code="4xxx") == 1
    assert delta(REQUESTS, route="*/*", status_class="1xx") == 2
    assert delta("wsgate_edge_websocket_handshake_seconds_count") == 2
    # "ping" (masked, 6+4 bytes) + "close 4001" + close frames went to the origin.
    assert delta(BYTES, direction="to_origin") >= 10 + 16
    assert delta(BYTES, direction="to_client") >= 6


def test_histograms_have_buckets(edge: EdgeProcess) -> None:
    http_get(edge.port, "/hello")
    samples = scrape(admin(edge))
    for family in ("wsgate_edge_request_seconds", "wsgate_edge_websocket_handshake_seconds"):
        buckets = [labels for (name, labels) in samples if name == f"{family}_bucket"]
        assert len(buckets) >= 10, family
        assert any(dict(labels).get("le") == "+Inf" for labels in buckets)


def test_upstream_error_after_origin_down(tmp_path: Path) -> None:
    dead = free_port()  # nothing listens here: the origin is down
    with started(edge_process(f"http://{LOOPBACK}:{dead}", tmp_path / "edge.log")) as edge:
        status, body, _ = http_get(edge.port, "/hello")
        assert status == 502
        assert body.startswith(b"Edge Proxy Error: ")
        samples = scrape(admin(edge))
        assert value(samples, "wsgate_edge_upstream_errors_total",
                     error_class="connect-refused") == 1
        assert value(samples, REQUESTS, route="*/*", status_class="5xx") == 1


def test_healthz_and_readyz(edge: EdgeProcess) -> None:
    assert admin_get(admin(edge), "/healthz") == (200, "ok\n")
    assert admin_get(admin(edge), "/readyz")[0] == 200
    assert admin_get(admin(edge), "/nope")[0] == 404


def test_readyz_fails_while_draining(origin: ServerProcess, tmp_path: Path) -> None:
    """SIGTERM with a WebSocket open: the edge drains, /readyz says 503, /healthz 200."""
    server = edge_process(f"http://{LOOPBACK}:{origin.port}", tmp_path / "edge.log",
                          extra=("--drain-timeout", "20"))
    with started(server) as edge:
        port = admin(edge)
        seen: dict[str, object] = {}

        async def hold_open() -> None:
            async with connect(f"ws://{LOOPBACK}:{edge.port}/ws") as ws:
                await ws.send("hold")
                assert await ws.recv() == "hold"
                edge.signal(signal.SIGTERM)
                seen["draining"] = wait_until(lambda: admin_get(port, "/readyz")[0] == 503)
                seen["healthz"] = admin_get(port, "/healthz")[0]

        # The drain may end the session (close 1001) before we leave it.
        with contextlib.suppress(websockets.ConnectionClosed):
            asyncio.run(hold_open())
        assert seen["draining"] is True
        assert seen["healthz"] == 200
        assert edge.process is not None and edge.process.wait(30) == 0
