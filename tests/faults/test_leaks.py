"""Clients that vanish at every phase of a request or WebSocket: nothing is left
behind in the edge (descriptors, threads, open-WebSocket gauge, origin connections).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from collections.abc import Awaitable, Callable

import pytest

from tests.hostile import figures
from tests.support import origin_and_edge, origin_stats, wait_until
from tests.support.wire import (
    fd_count,
    rss_bytes,
    thread_count,
    upgrade_request,
)

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
    w.write(b"GET /bytes/50000000 HTTP/1.1\r\nHost: a\r\n\r\n")
    await r.readexactly(100_000)
    _reset(w)


async def slow_answer_then_go(port: int) -> None:
    _, w = await _open(port)
    w.write(b"GET /slow/0.4 HTTP/1.1\r\nHost: a\r\n\r\n")
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
        assert wait_until(lambda: edge.metric("wsgate_edge_websockets_open") == 0, 10)
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


def test_client_gone_mid_response_stops_the_origin() -> None:
    """20 clients ask for 50 MB each, read 100 KB and vanish: the edge must abort the
    upstream responses, not keep pulling 50 MB per request from the origin into a dead
    socket, and must not log them as delivered."""
    n, body = 20, 50_000_000
    with origin_and_edge() as (_, edge, origin_port):
        sent_before = origin_stats(origin_port)["sent"]

        async def run() -> None:
            await asyncio.gather(*(big_body_then_go(edge.port) for _ in range(n)))

        asyncio.run(run())
        # Let any still-running upstream transfers either finish (the bug) or be gone.
        wait_until(lambda: origin_stats(origin_port)["open"] <= 1, 15)
        sent = origin_stats(origin_port)["sent"] - sent_before
        figures.put("faults.client_gone_mid_body_origin_sent_mib_per_request",
                    round(sent / n / MIB, 1))
        claimed = [e for e in map(json.loads, edge.events_text().splitlines())
                   if e.get("httpRequest", {}).get("requestUrl", "").endswith("/bytes/50000000")
                   and int(e.get("bytesToClient", 0)) >= body]
        assert sent < n * body / 2, (
            f"the origin sent {sent / n / MIB:.0f} MiB per request to clients that had "
            "gone after 100 KB: the edge kept relaying into dead connections")
        assert not claimed, (f"{len(claimed)} requests logged as fully delivered "
                             f"(status {claimed[0].get('httpRequest', {}).get('status')}) "
                             "although the client vanished after 100 KB")


def test_client_gone_while_origin_thinks_releases_upstream() -> None:
    """20 clients send a request the origin takes 5 s to answer and vanish after
    0.2 s: the edge must notice and let go of the upstream connections at once, not
    hold them (and the origin's work) until the answer or upstream_response (60 s)."""
    with origin_and_edge() as (_, edge, _):
        base_fds = fd_count(edge.pid)

        async def one() -> None:
            _, w = await _open(edge.port)
            w.write(b"GET /slow/5 HTTP/1.1\r\nHost: a\r\n\r\n")
            await asyncio.sleep(0.2)
            _reset(w)

        async def run() -> None:
            await asyncio.gather(*(one() for _ in range(20)))

        asyncio.run(run())
        released = wait_until(lambda: fd_count(edge.pid) <= base_fds, 2.0)
        figures.put("faults.client_gone_while_waiting_fds_held_after_2s",
                    max(0, fd_count(edge.pid) - base_fds))
        assert released, (f"{fd_count(edge.pid) - base_fds} descriptors still held 2 s "
                          "after 20 clients vanished; the origin answers only after 5 s")
