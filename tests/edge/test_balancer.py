"""The balancer's I/O on real loopback sockets: active health checks, passive signals,
tunnels closed with 1012 when their origin goes down or its drain deadline passes,
per-origin metrics. (End to end through `wsgate edge`: tests/edge/test_origins.py.)"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from prometheus_client import generate_latest

from tests.support import LOOPBACK, free_port
from wsgate.config import EdgeConfig, Health, parse_route
from wsgate.edge.balancer import Balancer, health_request, passed
from wsgate.edge.metrics import EdgeMetrics
from wsgate.policy.balance import HealthState

SECRET = "balancer-test-secret-7d1e"
FAST = Health(interval=0.1, timeout=0.1, unhealthy_threshold=1, healthy_threshold=2)


class Tunnel:
    """Stands for an edge tunnel: records the close code the balancer asks for."""

    def __init__(self) -> None:
        self.codes: list[int] = []

    def shutdown(self, code: int = 1001) -> None:
        self.codes.append(code)


@contextlib.asynccontextmanager
async def http_origin(status: int = 200, port: int = 0,
                      heads: list[bytes] | None = None) -> AsyncIterator[int]:
    """A real loopback HTTP server answering every request with `status`."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            head = await reader.readuntil(b"\r\n\r\n")
            if heads is not None:
                heads.append(head)
            writer.write(b"HTTP/1.1 %d X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                         % status)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, LOOPBACK, port)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


def config(*ports: int, health: Health = FAST, draining: tuple[str, ...] = ()) -> EdgeConfig:
    route = parse_route("*/*", [f"http://{LOOPBACK}:{p}" for p in ports], "routes[0]")
    return EdgeConfig(routes=(route,), secret=SECRET, health=health, draining_origins=draining)


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait (bounded) for a condition the balancer reaches on its own timers."""
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached in time")


def state(balancer: Balancer, port: int) -> HealthState:
    found = balancer.balance.find(f"http://{LOOPBACK}:{port}")
    assert found is not None
    return found.health.state


def test_health_request_and_status_line() -> None:
    route = parse_route("*/*", ["http://127.0.0.1:81", "http://127.0.0.1:82"], "r")
    request = health_request(route.origin, "/_stcore/health", "X-CF-Secret", "s3")
    assert request == (b"GET /_stcore/health HTTP/1.1\r\nHost: 127.0.0.1:81\r\n"
                       b"User-Agent: wsgate-edge-health\r\nConnection: close\r\n"
                       b"X-CF-Secret: s3\r\n\r\n")
    assert passed(b"HTTP/1.1 200 OK\r\n") and passed(b"HTTP/1.0 204 \r\n")
    for line in (b"", b"HTTP/1.1 503 Busy\r\n", b"HTTP/1.1 2000 x", b"SSH-2.0", b"HTTP/1.1 30"):
        assert not passed(line)


def test_active_checks_take_origins_out_and_bring_them_back() -> None:
    async def scenario() -> None:
        dead = free_port()
        heads: list[bytes] = []
        async with http_origin(heads=heads) as live, http_origin(503) as failing:
            balancer = Balancer(config(live, dead, failing), EdgeMetrics(),
                                asyncio.get_running_loop())
            await balancer.start()
            try:
                await until(lambda: state(balancer, dead) is HealthState.DOWN
                            and state(balancer, failing) is HealthState.DOWN)
                assert state(balancer, live) is HealthState.UP
                assert heads and all(b"\r\nX-CF-Secret: " + SECRET.encode() in h
                                     and h.startswith(b"GET /_stcore/health ") for h in heads)
                route = balancer.config.routes[0]
                picks = {c.origin.port for c in (balancer.choose(route, None) for _ in range(4))
                         if c}
                assert picks == {live}
                async with http_origin(port=dead):  # the dead origin starts listening
                    await until(lambda: state(balancer, dead) is HealthState.UP)
                    assert balancer.describe()[1]["ejections"] == 1
            finally:
                balancer.stop()
            assert not balancer.checks

    asyncio.run(scenario())


def test_going_down_closes_the_origins_tunnels_with_1012() -> None:
    async def scenario() -> None:
        async with http_origin() as a, http_origin() as b:
            balancer = Balancer(config(a, b), EdgeMetrics(), asyncio.get_running_loop())
            origin_a, origin_b = balancer.config.routes[0].origins
            on_a, on_b, ended = Tunnel(), Tunnel(), Tunnel()
            balancer.websocket_opened(origin_a, on_a)
            balancer.websocket_opened(origin_a, ended)
            balancer.websocket_closed(origin_a, ended)
            balancer.websocket_opened(origin_b, on_b)
            assert balancer.balance.states[origin_a].open_websockets == 1
            balancer.connect_failed(origin_a)  # passive: one refused connect (threshold 1)
            assert state(balancer, a) is HealthState.DOWN
            assert (on_a.codes, on_b.codes, ended.codes) == ([1012], [], [])
            late = Tunnel()  # an upgrade that was in flight when it went down
            balancer.websocket_opened(origin_a, late)
            assert late.codes == [1012]
            balancer.connect_ok(origin_a)  # passive success never brings it back
            assert state(balancer, a) is HealthState.DOWN

    asyncio.run(scenario())


def test_retry_excludes_the_failed_origin_and_counts() -> None:
    async def scenario() -> None:
        balancer = Balancer(config(free_port(), free_port()), EdgeMetrics(),
                            asyncio.get_running_loop())
        route = balancer.config.routes[0]
        first = balancer.choose(route, None)
        assert first is not None
        retry = balancer.choose(route, None, exclude=first.origin)
        assert retry is not None and retry.origin != first.origin
        assert balancer.balance.states[first.origin].retries == 1

    asyncio.run(scenario())


def test_drain_deadline_closes_tunnels_with_1012_and_undrain_restores() -> None:
    async def scenario() -> None:
        balancer = Balancer(config(free_port(), free_port()), EdgeMetrics(),
                            asyncio.get_running_loop())
        route = balancer.config.routes[0]
        a, b = route.origins
        tunnel = Tunnel()
        balancer.websocket_opened(a, tunnel)
        assert balancer.drain("http://nowhere:1") is None
        assert balancer.drain(a.url, within=0.2) is not None
        assert {c.origin for c in (balancer.choose(route, None) for _ in range(3)) if c} == {b}
        await until(lambda: tunnel.codes == [1012])
        balancer.websocket_closed(a, tunnel)  # as the driver reports the tunnel's end
        balancer.undrain(a.url)
        assert {c.origin for c in (balancer.choose(route, None) for _ in range(4)) if c} \
            == {a, b}

    asyncio.run(scenario())


def test_per_origin_metrics_on_the_edge_registry() -> None:
    async def scenario() -> None:
        dead = free_port()
        metrics = EdgeMetrics()
        async with http_origin() as live:
            balancer = Balancer(config(live, dead, draining=(f"http://{LOOPBACK}:{live}",)),
                                metrics, asyncio.get_running_loop())
            await balancer.start()
            try:
                await until(lambda: state(balancer, dead) is HealthState.DOWN)
                text = generate_latest(metrics.registry).decode()
            finally:
                balancer.stop()
        for line in (f'wsgate_edge_origin_up{{origin="http://{LOOPBACK}:{live}"}} 1.0',
                     f'wsgate_edge_origin_up{{origin="http://{LOOPBACK}:{dead}"}} 0.0',
                     f'wsgate_edge_origin_draining{{origin="http://{LOOPBACK}:{live}"}} 1.0',
                     f'wsgate_edge_origin_ejections_total{{origin="http://{LOOPBACK}:{dead}"}} '
                     "1.0",
                     f'wsgate_edge_origin_websockets_open{{origin="http://{LOOPBACK}:{live}"}} '
                     "0.0"):
            assert line in text, line
        assert "wsgate_edge_origin_up" not in generate_latest(metrics.registry).decode()

    asyncio.run(scenario())
