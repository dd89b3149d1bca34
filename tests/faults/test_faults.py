"""Faults with real processes on loopback: the origin dies, restarts, the edge is
told to stop. Each test is bounded in count and time and checks the edge's file
descriptors (and its open-WebSocket gauge) return to where they started.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time

import pytest

from tests.hostile import figures
from tests.support import RecordingOrigin, ServerProcess, edge_process, origin_and_edge, wait_until
from tests.support.wire import (
    OP_CLOSE,
    OP_TEXT,
    WsClient,
    exchange,
    fd_count,
    thread_count,
)

pytestmark = pytest.mark.slow


def kill(process: ServerProcess) -> None:
    assert process.process is not None
    process.process.kill()
    process.process.wait(10)


async def echo_once(client: WsClient, payload: bytes) -> None:
    await client.send(OP_TEXT, payload)
    frame = await client.recv_frame(timeout=10)
    assert frame is not None and frame.payload == payload, frame


def test_origin_killed_with_websockets_open() -> None:
    """Origin SIGKILLed under 50 open WebSockets: every client gets close 1011
    within a second; the origin comes back and new WebSockets work; the edge's
    descriptors, threads and open-WebSocket gauge return to their baseline."""
    n = 50
    with origin_and_edge() as (origin, edge, _):
        base_fds, base_threads = fd_count(edge.pid), thread_count(edge.pid)

        async def run() -> list[tuple[int | None, float]]:
            clients = [await WsClient.connect(edge.port, "/ws") for _ in range(n)]
            await asyncio.gather(*(echo_once(c, b"before %d" % i) for i, c in enumerate(clients)))
            t0 = time.monotonic()
            await asyncio.to_thread(kill, origin)

            async def closed(c: WsClient) -> tuple[int | None, float]:
                frame = await c.recv_frame(timeout=5)
                took = time.monotonic() - t0
                code = frame.close_code if frame is not None and frame.opcode == OP_CLOSE else None
                c.abort()
                return code, took

            return await asyncio.gather(*(closed(c) for c in clients))

        results = asyncio.run(run())
        codes = {code for code, _ in results}
        slowest = max(took for _, took in results)
        figures.put("faults.origin_kill_websockets", n)
        figures.put("faults.origin_kill_slowest_1011_s", round(slowest, 3))
        assert codes == {1011}, f"close codes after the origin died: {codes}"
        assert slowest < 1.0, f"slowest 1011 arrived after {slowest:.2f}s"

        origin.start()

        async def again() -> None:
            client = await WsClient.connect(edge.port, "/ws")
            await echo_once(client, b"after restart")
            reply = await client.close()
            assert reply is not None and reply.close_code == 1000

        asyncio.run(again())
        assert wait_until(lambda: edge.metric("wsgate_edge_websockets_open") == 0, 5)
        assert wait_until(lambda: fd_count(edge.pid) <= base_fds, 5), (
            f"edge descriptors {fd_count(edge.pid)} > baseline {base_fds}")
        assert thread_count(edge.pid) <= base_threads
        assert edge.alive()


async def _http(port: int, target: bytes, timeout: float) -> int | str:
    """One request on its own connection: the status, or what went wrong."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n"
                             b"Connection: close\r\n\r\n")
                data = await reader.read()
            finally:
                writer.close()
    except TimeoutError:
        return "hang"
    except OSError as exc:
        return f"connect error {exc.__class__.__name__}"
    head = data.split(b"\r\n", 1)[0].split(b" ")
    if len(head) < 2 or not head[1].isdigit():
        return f"no status line: {data[:60]!r}"
    return int(head[1])


def test_origin_restart_during_http_burst() -> None:
    """20 workers send requests (some slow, so they are in flight) while the origin is
    killed and restarted: every request gets 200 or 502, none hangs, and every request
    sent after the origin listens again gets 200."""
    with origin_and_edge({"timeouts": {"connect": 2.0}}) as (origin, edge, _):
        base_fds = fd_count(edge.pid)
        # (time the request was sent, outcome)
        outcomes: list[tuple[float, int | str]] = []
        restarted_at: list[float] = []
        per_worker_cap = 20_000  # far above what 30 s allows; the clock ends the loop

        def done() -> bool:
            # Keep going until 1.5 s after the origin is back (and never past 30 s).
            now = time.monotonic()
            return now > hard_stop or (bool(restarted_at) and now > restarted_at[0] + 1.5)

        async def worker(i: int) -> None:
            n = 0
            while not done() and n < per_worker_cap:
                target = b"/slow/0.3" if (i + n) % 4 == 0 else b"/fast"
                sent = time.monotonic()
                outcomes.append((sent, await _http(edge.port, target, 10.0)))
                n += 1
            assert n < per_worker_cap, "the count bound ended the loop before the clock"

        async def run() -> None:
            workers = [asyncio.create_task(worker(i)) for i in range(20)]
            await asyncio.sleep(1.0)
            await asyncio.to_thread(kill, origin)
            await asyncio.sleep(0.8)
            await asyncio.to_thread(origin.start)  # returns once the origin listens
            restarted_at.append(time.monotonic())
            await asyncio.gather(*workers)

        hard_stop = time.monotonic() + 30
        asyncio.run(run())
        results = [o for _, o in outcomes]
        bad = [o for o in results if o not in (200, 502)]
        after = [o for sent, o in outcomes if sent > restarted_at[0]]
        figures.put("faults.burst_requests", len(outcomes))
        figures.put("faults.burst_502", results.count(502))
        assert not bad, f"{len(bad)} requests got neither 200 nor 502: {bad[:10]}"
        assert results.count(502) > 0, "the origin outage was not observed"
        assert time.monotonic() < hard_stop, "the burst hit its 30 s bound"
        assert len(after) >= 20, f"only {len(after)} requests were sent after the restart"
        assert after.count(200) == len(after), (
            f"requests sent after the restart failed: {[o for o in after if o != 200][:10]}")
        assert wait_until(lambda: fd_count(edge.pid) <= base_fds + 32, 5), (
            "descriptors beyond baseline plus the upstream keep-alive pool")
        assert edge.alive()


def test_edge_sigterm_under_load() -> None:
    """SIGTERM with 30 WebSockets open and 10 slow HTTP requests in flight: every
    HTTP request completes, every WebSocket gets 1001, new connections are refused
    and the process exits 0 within the drain timeout."""
    drain = 4.0
    with origin_and_edge({"timeouts": {"drain": drain}}) as (_, edge, _):
        async def run() -> tuple[list[int | str], list[int | None], float, bool]:
            clients = [await WsClient.connect(edge.port, "/ws") for _ in range(30)]
            await asyncio.gather(*(echo_once(c, b"x") for c in clients))
            in_flight = [asyncio.create_task(_http(edge.port, b"/slow/1.5", 10.0))
                         for _ in range(10)]
            await asyncio.sleep(0.3)  # the requests are at the origin now
            t0 = time.monotonic()
            edge.signal(signal.SIGTERM)

            async def close_code(c: WsClient) -> int | None:
                for _ in range(10):
                    frame = await c.recv_frame(timeout=drain + 2)
                    if frame is None:
                        return None
                    if frame.opcode == OP_CLOSE:
                        with contextlib.suppress(ConnectionError):
                            await c.send(OP_CLOSE, frame.payload)
                        c.abort()
                        return frame.close_code
                return None

            codes = await asyncio.gather(*(close_code(c) for c in clients))
            await asyncio.sleep(0.2)
            refused = False
            try:
                _, w = await asyncio.open_connection("127.0.0.1", edge.port)
                w.close()
            except ConnectionRefusedError:
                refused = True
            statuses = await asyncio.gather(*in_flight)
            assert edge.process is not None
            await asyncio.to_thread(edge.process.wait, drain + 5)
            return statuses, codes, time.monotonic() - t0, refused

        statuses, codes, took, refused = asyncio.run(run())
        assert edge.process is not None
        figures.put("faults.sigterm_exit_s", round(took, 2))
        assert statuses == [200] * 10, f"in-flight HTTP cut by the shutdown: {statuses}"
        assert set(codes) == {1001}, f"WebSocket close codes on shutdown: {codes}"
        assert refused, "the edge still accepted connections after SIGTERM"
        assert edge.process.returncode == 0, edge.process.returncode
        assert took < drain + 1.5, f"exit took {took:.1f}s, drain timeout is {drain}s"
        assert edge.secret not in edge.all_output()


def test_origin_closing_idle_keepalive_connections() -> None:
    """The origin closes idle keep-alive connections after 0.3 s (as uvicorn does after
    5 s) and requests arrive just around that moment: a pooled upstream connection the
    origin has closed must never turn a client's request into a 502."""
    origin = RecordingOrigin(idle_timeout=0.3, record=False).start()
    try:
        with edge_process(f"http://127.0.0.1:{origin.port}") as edge:
            statuses: list[int | str] = []
            for i in range(30):
                time.sleep(0.28 + (i % 7) * 0.005)
                statuses += exchange(edge.port, [b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"],
                                     timeout=5).statuses or ["no answer"]
            assert statuses == [200] * 30, statuses
    finally:
        origin.stop()
