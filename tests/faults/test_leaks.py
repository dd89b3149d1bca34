"""Clients that vanish at every phase of a request or WebSocket: nothing is left
behind in the edge (descriptors, threads, open-WebSocket gauge, origin connections).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Awaitable, Callable

import pytest

from tests.faults.test_faults import metric, origin_and_edge
from tests.hostile import figures
from tests.hostile.wire import (
    fd_count,
    rss_bytes,
    thread_count,
    upgrade_request,
    wait_until,
)
from tests.load.test_load import origin_stats

pytestmark = pytest.mark.slow

MIB = 1024 * 1024
ROUNDS = 40  # per scenario


async def _open(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Vanish with a TCP reset (SO_LINGER 0), the rudest way to go."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def connect_and_go(port: int) -> None:
    _, w = await _open(port)
    _reset(w)


async def half_a_head(port: int) -> None:
    _, w = await _open(port)
    w.write(b"GET / HTTP/1.1\r\nHost: a\r\nX-Half: ")
    await asyncio.sleep(0.02)
    _reset(w)


async def upgrade_then_go(port: int) -> None:
    _, w = await _open(port)
    w.write(upgrade_request("/ws"))
    await w.drain()
    _reset(w)  # before the origin's 101 can arrive


async def websocket_reset(port: int) -> None:
    r, w = await _open(port)
    w.write(upgrade_request("/ws"))
    await r.readuntil(b"\r\n\r\n")
    _reset(w)  # open tunnel, no close frame


async def flood_then_go(port: int) -> None:
    r, w = await _open(port)
    w.write(upgrade_request("/ws/flood?n=50000000"))
    await r.readexactly(100_000)
    _reset(w)


async def big_body_then_go(port: int) -> None:
    r, w = await _open(port)
    w.write(b"GET /big?n=50000000 HTTP/1.1\r\nHost: a\r\n\r\n")
    await r.readexactly(100_000)
    _reset(w)


async def slow_answer_then_go(port: int) -> None:
    _, w = await _open(port)
    w.write(b"GET /slow?ms=400 HTTP/1.1\r\nHost: a\r\n\r\n")
    await asyncio.sleep(0.05)
    _reset(w)


async def body_half_sent(port: int) -> None:
    _, w = await _open(port)
    w.write(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n" + b"p" * 1000)
    await asyncio.sleep(0.02)
    _reset(w)


SCENARIOS: dict[str, Callable[[int], Awaitable[None]]] = {
    "connect and go": connect_and_go, "half a request head": half_a_head,
    "upgrade, gone before the 101": upgrade_then_go, "tunnel reset": websocket_reset,
    "tunnel reset during an origin flood": flood_then_go,
    "gone during a 50 MB body": big_body_then_go,
    "gone while the origin thinks": slow_answer_then_go,
    "gone halfway through the request body": body_half_sent,
}


def test_vanishing_clients_leave_nothing_behind() -> None:
    with origin_and_edge({"timeouts": {"upstream_idle": 1.0}}) as (_, edge, origin_port):
        base_fds, base_threads = fd_count(edge.pid), thread_count(edge.pid)
        base_rss = rss_bytes(edge.pid)

        async def run() -> None:
            for scenario in SCENARIOS.values():
                for _ in range(ROUNDS // 4):
                    await asyncio.gather(*(scenario(edge.port) for _ in range(4)))

        asyncio.run(run())
        total = ROUNDS * len(SCENARIOS)
        figures.put("faults.vanishing_clients", total)
        assert edge.alive()
        assert wait_until(lambda: metric(edge, "wsgate_edge_websockets_open") == 0, 10)
        # Upstream keep-alive connections expire after upstream_idle (1 s here).
        assert wait_until(lambda: fd_count(edge.pid) <= base_fds, 10), (
            f"edge descriptors {fd_count(edge.pid)} after {total} vanished clients, "
            f"baseline {base_fds}")
        assert wait_until(lambda: origin_stats(origin_port)["open"] <= 1, 10), (
            "origin connections left open by the edge")
        assert thread_count(edge.pid) <= base_threads
        growth = rss_bytes(edge.pid) - base_rss
        figures.put("faults.vanishing_clients_rss_growth_mib", round(growth / MIB, 1))
        assert growth < 16 * MIB, f"edge RSS grew {growth / MIB:.1f} MiB"
