"""Limits that involve time: slowloris, slow body, idle keep-alive, a client that
never reads. The edge runs with 2-second client timeouts; each test allows a fixed
slack on top and is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest

from tests.hostile import figures
from tests.support import Edge, RecordingOrigin, edge_process, wait_until
from tests.support.wire import exchange, fd_count, rss_bytes

TIMEOUT = 2.0  # request_header, client_body and client_idle of this edge
SLACK = 3.0  # scheduling slack on a loaded 2-core machine
MIB = 1024 * 1024

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def origin() -> Iterator[RecordingOrigin]:
    server = RecordingOrigin(record=False).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def edge(origin: RecordingOrigin) -> Iterator[Edge]:
    settings = {"timeouts": {"request_header": TIMEOUT, "client_body": TIMEOUT,
                             "client_idle": TIMEOUT}}
    with edge_process(f"http://127.0.0.1:{origin.port}", settings=settings) as e:
        yield e
        assert e.alive()
        assert e.secret not in e.all_output()


async def _trickle(port: int, head: bytes, trickle: bytes, interval: float,
                   limit: float) -> tuple[float, bytes]:
    """Send `head`, then `trickle` one byte per `interval`, reading concurrently.
    Returns (seconds until the edge answered or closed, what it sent)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    t0 = time.monotonic()
    got = bytearray()

    async def feed() -> None:
        writer.write(head)
        for byte in trickle:
            await asyncio.sleep(interval)
            writer.write(bytes([byte]))
            await writer.drain()

    feeder = asyncio.create_task(feed())
    try:
        async with asyncio.timeout(limit):
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                got += data
    except (TimeoutError, ConnectionError):
        pass
    finally:
        feeder.cancel()
        writer.transport.abort()
    return time.monotonic() - t0, bytes(got)


def _ended(got: bytes, took: float, limit: float) -> bool:
    return took < limit and (got == b"" or got.startswith((b"HTTP/1.1 408", b"HTTP/1.1 400")))


def test_slowloris_headers_one_byte_a_second(edge: Edge) -> None:
    """20 connections send their headers one byte a second: each is cut (408 or
    close) by the request-header deadline, and a normal client is served meanwhile."""
    head = b"GET / HTTP/1.1\r\nHost: app.example.com\r\n"
    trickle = b"X-Slow: " + b"a" * 40
    limit = TIMEOUT + SLACK

    async def run() -> tuple[list[tuple[float, bytes]], list[int]]:
        slow = [asyncio.create_task(_trickle(edge.port, head, trickle, 1.0, limit + 5))
                for _ in range(20)]
        await asyncio.sleep(0.5)
        normal = await asyncio.to_thread(
            exchange, edge.port, [b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"], timeout=5.0)
        return await asyncio.gather(*slow), normal.statuses

    results, normal_statuses = asyncio.run(run())
    assert normal_statuses == [200], "a normal request was not served during the slowloris"
    late = [(round(t, 1), g[:40]) for t, g in results if not _ended(g, t, limit)]
    figures.add("slow.slowloris_connections", len(results))
    assert not late, f"slowloris connections not cut within {limit}s: {late}"


def test_slow_body_one_byte_a_second(edge: Edge) -> None:
    """A body trickled one byte a second (each byte within the per-read timeout) must
    still be cut: a request body has a deadline, or one client holds a connection
    and an origin connection for as long as it likes (slow POST)."""
    head = (b"POST / HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 1000\r\n\r\n")
    limit = 2 * TIMEOUT + SLACK
    took, got = asyncio.run(_trickle(edge.port, head, b"b" * 30, 1.0, limit + 10))
    figures.add("slow.slow_body_connections")
    assert _ended(got, took, limit), (
        f"slow body not cut within {limit}s (took {took:.1f}s, got {got[:60]!r})")


def test_idle_keepalive_is_closed(edge: Edge) -> None:
    """After a complete exchange, an idle keep-alive connection is closed after
    client_idle; 50 idle connections do not stop a new client."""
    socks = []
    try:
        for _ in range(50):
            s = socket.create_connection(("127.0.0.1", edge.port), timeout=5)
            s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            socks.append(s)
        assert exchange(edge.port, [b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"]).statuses == [200]
        t0 = time.monotonic()
        closed = 0
        for s in socks:
            s.settimeout(max(0.1, TIMEOUT + SLACK - (time.monotonic() - t0)))
            data = b""
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        closed += 1
                        break
                    data += chunk
            except TimeoutError:
                pass
            assert data.startswith(b"HTTP/1.1 200"), data[:80]
        figures.add("slow.idle_connections", len(socks))
        assert closed == len(socks), f"only {closed}/{len(socks)} idle connections were closed"
    finally:
        for s in socks:
            s.close()


def test_client_that_never_reads(edge: Edge, origin: RecordingOrigin) -> None:
    """A client asks for 200 MB and never reads: the edge's memory stays bounded
    (flow control stops the origin), and when the client goes the upstream
    connection and descriptors are released."""
    base_rss = rss_bytes(edge.pid)
    base_fds = fd_count(edge.pid)
    sent_before = origin.stats.sent
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.connect(("127.0.0.1", edge.port))
    s.sendall(b"GET /bytes/200000000 HTTP/1.1\r\nHost: a\r\n\r\n")
    peak = base_rss
    deadline = time.monotonic() + 4.0
    while time.monotonic() < deadline:
        peak = max(peak, rss_bytes(edge.pid))
        time.sleep(0.1)
    sent = origin.stats.sent - sent_before
    s.close()
    growth = peak - base_rss
    figures.put("slow.never_reader_edge_rss_growth_mib", round(growth / MIB, 1))
    figures.put("slow.never_reader_origin_sent_mib", round(sent / MIB, 1))
    assert growth < 16 * MIB, f"edge RSS grew {growth / MIB:.1f} MiB for one stalled client"
    assert sent < 100 * 1000 * 1000, f"origin was not slowed down: sent {sent} bytes"
    assert wait_until(lambda: fd_count(edge.pid) <= base_fds, 5.0), (
        f"descriptors not released: {fd_count(edge.pid)} > {base_fds}")


def test_silent_connections_are_closed(edge: Edge) -> None:
    """Connections that never send a byte are closed after client_idle."""
    socks = [socket.create_connection(("127.0.0.1", edge.port), timeout=5) for _ in range(50)]
    try:
        t0 = time.monotonic()
        closed = 0
        for s in socks:
            s.settimeout(max(0.1, TIMEOUT + SLACK - (time.monotonic() - t0)))
            try:
                data = s.recv(65536)
            except ConnectionResetError:
                data = b""  # a reset is a close too
            except TimeoutError:
                continue
            closed += data == b"" or data.startswith(b"HTTP/1.1 408")
        figures.add("slow.silent_connections", len(socks))
        assert closed == len(socks), f"only {closed}/{len(socks)} silent connections closed"
    finally:
        for s in socks:
            s.close()
