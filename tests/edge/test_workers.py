"""`wsgate edge --workers N`: worker processes on one listening socket, under a
supervisor that restarts a worker that dies and drains them all on SIGTERM.

Real processes on loopback: the edge is started through the CLI, workers are found
as the supervisor's children in /proc, metrics are read from the admin listener.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.edge.worker_support import (
    Outcome,
    burst,
    child_pids,
    client_loop,
    get,
    metric,
    metrics_text,
    readyz,
)
from tests.support import Edge, RecordingOrigin, edge_process
from tests.support.process import started, wait_until
from wsgate.edge.supervisor import RestartBackoff, reload_problem
from wsgate.edge.worker_process import LineAtomicStream

WORKER_REQUESTS = "wsgate_edge_worker_requests_total"


def serving(edge: Edge, count: int = 2) -> bool:
    """`count` workers accept (false while the admin listener is not up yet)."""
    try:
        return metric(edge.admin_port, "wsgate_edge_workers", state="serving") == count
    except OSError:
        return False


@pytest.mark.slow
def test_two_workers_share_the_address_and_both_serve(origins: RecordingOrigin) -> None:
    with started(edge_process(origins.url, extra=["--workers", "2"])) as edge:
        assert wait_until(lambda: serving(edge), 30), edge.output()
        assert len(child_pids(edge.pid)) == 2
        assert readyz(edge.admin_port) == 200

        outcomes: list[Outcome] = []
        per_worker = {"0": 0.0, "1": 0.0}

        def counted() -> bool:
            """The workers' snapshots (sent each second) have caught up."""
            per_worker.update({w: metric(edge.admin_port, WORKER_REQUESTS, worker=w)
                               for w in per_worker})
            return sum(per_worker.values()) == len(outcomes)

        for _ in range(10):  # bounded: at most 640 requests
            outcomes += asyncio.run(burst(edge.port, 64))
            # Every request is counted once, by the worker that answered it.
            assert wait_until(counted, 10), (per_worker, len(outcomes), edge.all_output()[-3000:],
                                             metrics_text(edge.admin_port))
            if all(per_worker.values()):
                break
        assert [o for o in outcomes if not o.ok] == []
        assert all(per_worker.values()), f"one worker served everything: {per_worker}"
        assert metric(edge.admin_port, "wsgate_edge_requests_total", route="*/*",
                      status_class="2xx") == len(outcomes)

    # Both workers wrote the one log file: every line is whole.
    lines = edge.events_text().splitlines()
    requests = [json.loads(line) for line in lines if '"message":"request"' in line]
    assert len(requests) == len(outcomes)
    assert len({e["requestId"][:16] for e in requests}) == 2  # each worker its own prefix


def _dead(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return True
    return state == "Z"


@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_new_connections_never_fail(
        origins: RecordingOrigin) -> None:
    with started(edge_process(origins.url, extra=["--workers", "2"])) as edge:
        assert wait_until(lambda: serving(edge), 30), edge.output()
        first = child_pids(edge.pid)
        victim = min(first)

        async def scenario() -> tuple[list[Outcome], float]:
            outcomes: list[Outcome] = []
            stop = asyncio.Event()
            load = asyncio.create_task(client_loop(edge.port, outcomes, stop, 4000))
            while len(outcomes) < 40 and not load.done():
                await asyncio.sleep(0.02)
            os.kill(victim, signal.SIGKILL)
            for _ in range(500):  # from here on, it can accept nothing more
                if _dead(victim):
                    break
                await asyncio.sleep(0.01)
            dead_at = time.monotonic()

            def replaced() -> bool:
                now = child_pids(edge.pid)
                return len(now) == 2 and victim not in now and serving(edge)

            for _ in range(300):  # bounded: 30 s for the replacement to accept
                if await asyncio.to_thread(replaced):
                    break
                await asyncio.sleep(0.1)
            after = len(outcomes)
            while len(outcomes) < after + 40 and not load.done():
                await asyncio.sleep(0.02)
            stop.set()
            await load
            return outcomes, dead_at

        outcomes, dead_at = asyncio.run(scenario())
        later = [o for o in outcomes if o.started > dead_at]
        assert later, "no request was made after the kill"
        failed = [o for o in later if not o.ok]
        assert failed == [], (len(failed), len(later), edge.output()[-2000:],
                              [e for e in edge.events() if e.get("message") != "request"][-8:])
        # Only requests the killed worker had already accepted may have failed.
        assert len([o for o in outcomes if not o.ok]) <= 4
        now = child_pids(edge.pid)
        assert len(now) == 2 and victim not in now
        assert metric(edge.admin_port, "wsgate_edge_worker_restarts_total") == 1
        died = edge.wait_event(lambda e: e.get("errorClass") == "worker-died")
        assert "SIGKILL" in died["message"] and str(victim) in died["message"]


@pytest.mark.slow
def test_sigterm_drains_every_worker_like_a_single_edge(origins: RecordingOrigin) -> None:
    routes = [("*/slow/*", origins.url), ("*/*", origins.ws_url)]
    with started(edge_process(None, routes=routes, extra=["--workers", "2"])) as edge:
        assert wait_until(lambda: serving(edge), 30), edge.output()
        workers = child_pids(edge.pid)

        async def scenario() -> tuple[list[int | None], Outcome, int]:
            sockets = [await connect(f"ws://127.0.0.1:{edge.port}/echo") for _ in range(6)]
            for ws in sockets:
                await ws.send("before")
                assert await ws.recv() == "before"
            slow = asyncio.create_task(get(edge.port, "/slow/2"))
            while not any(r.target == b"/slow/2" for r in list(origins.request_log)):
                await asyncio.sleep(0.02)
            edge.signal(signal.SIGTERM)  # the supervisor only, as `docker stop` does
            ready_while_draining = 0
            for _ in range(100):
                ready_while_draining = await asyncio.to_thread(readyz, edge.admin_port)
                if ready_while_draining == 503:
                    break
                await asyncio.sleep(0.02)
            codes: list[int | None] = []
            for ws in sockets:
                try:
                    await asyncio.wait_for(ws.recv(), 10)
                except ConnectionClosed as exc:
                    codes.append(exc.rcvd.code if exc.rcvd else None)
            return codes, await slow, ready_while_draining

        codes, slow, ready_while_draining = asyncio.run(scenario())
        assert codes == [1001] * 6
        assert ready_while_draining == 503
        assert slow.ok and slow.body == b"slow ok\n"
        assert edge.process is not None and edge.process.wait(30) == 0
        assert all(_dead(pid) for pid in workers)


def test_restart_backoff_doubles_while_replacements_die_young() -> None:
    backoff = RestartBackoff(min_uptime=5.0, first=0.1, cap=1.0)
    assert backoff.next_delay(uptime=3600) == 0.0  # a worker that ran a while: at once
    assert [backoff.next_delay(uptime=0.5) for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert backoff.next_delay(uptime=6.0) == 0.0  # it stayed up: the crash loop is over
    assert backoff.next_delay(uptime=0.5) == 0.1


def test_reload_refuses_to_move_what_is_bound_once() -> None:
    from wsgate.config import load_config

    base = {"origin": "http://127.0.0.1:8501", "insecure_no_secret": True}
    running = load_config(None, {**base, "listen": "127.0.0.1:8080"}, {})
    assert reload_problem(running, load_config(None, {**base, "listen": "127.0.0.1:8080",
                                                      "marker_header": "X-New: 1"}, {})) is None
    moved = reload_problem(running, load_config(None, {**base, "listen": "127.0.0.1:9090"}, {}))
    assert moved is not None and moved.startswith("listen:")


def test_lines_written_by_concurrent_writers_to_one_pipe_stay_whole() -> None:
    """Batches bigger than PIPE_BUF from several writers: no line is ever cut."""
    read_fd, write_fd = os.pipe()
    line = "x" * 300
    writers = 4
    batches = 50

    def write(tag: int) -> None:
        stream = LineAtomicStream(os.dup(write_fd))
        for n in range(batches):
            stream.write("".join(f"{tag} {n} {i} {line}\n" for i in range(40)))
        stream.close()

    received = bytearray()

    def read() -> None:
        while chunk := os.read(read_fd, 1 << 16):
            received.extend(chunk)

    import threading

    reader = threading.Thread(target=read)
    reader.start()
    threads = [threading.Thread(target=write, args=(t,)) for t in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    os.close(write_fd)
    reader.join(30)
    os.close(read_fd)
    lines = received.decode().splitlines()
    assert len(lines) == writers * batches * 40
    assert all(text.endswith(line) and len(text.split()) == 4 for text in lines)


def _snapshot(requests: int, open_websockets: int) -> bytes:
    from prometheus_client import CollectorRegistry, generate_latest

    from wsgate.edge.metrics import EdgeMetrics

    metrics = EdgeMetrics(CollectorRegistry())
    for _ in range(requests):
        metrics.request_done("*/*", 200, 0.01, 0, 100)
    metrics.websockets_open.set(open_websockets)
    return generate_latest(metrics.registry)


def test_worker_metrics_sum_live_and_retired_workers() -> None:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from wsgate.edge.worker_metrics import WorkersCollector

    live = [("0", _snapshot(5, 2)), ("1", _snapshot(3, 1))]
    collector = WorkersCollector(lambda: live)
    collector.worker_exited("0", _snapshot(7, 4))  # a slot-0 worker replaced earlier
    registry = CollectorRegistry()
    registry.register(collector)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(generate_latest(registry).decode())
               for s in f.samples}
    # Counters and histograms: every worker that ran; gauges: live workers only.
    assert samples[("wsgate_edge_requests_total",
                    (("route", "*/*"), ("status_class", "2xx")))] == 15
    assert samples[("wsgate_edge_request_seconds_count", (("route", "*/*"),))] == 15
    assert samples[("wsgate_edge_bytes_relayed_total", (("direction", "to_client"),))] == 1500
    assert samples[("wsgate_edge_websockets_open", ())] == 3
    assert samples[("wsgate_edge_worker_requests_total", (("worker", "0"),))] == 12
    assert samples[("wsgate_edge_worker_requests_total", (("worker", "1"),))] == 3


@pytest.mark.slow
def test_a_slot_whose_replacements_cannot_start_keeps_retrying_and_recovers(
        origins: RecordingOrigin) -> None:
    with started(edge_process(origins.url, extra=["--workers", "2"])) as edge:
        assert wait_until(lambda: serving(edge), 30), edge.output()
        victim = min(child_pids(edge.pid))
        # Replacements will fail to open the log file (a directory now stands at its
        # path); the supervisor keeps writing to the moved file it has open.
        moved = edge.log_file.with_suffix(".moved")
        edge.log_file.rename(moved)
        edge.log_file.mkdir()
        os.kill(victim, signal.SIGKILL)

        def failed_starts() -> int:
            return sum("did not start: log_file: cannot open" in line
                       for line in moved.read_text().splitlines())

        assert wait_until(lambda: failed_starts() >= 2, 30), moved.read_text()[-2000:]
        # Meanwhile the other worker serves every request.
        answers = asyncio.run(burst(edge.port, 32))
        assert [o for o in answers if not o.ok] == []
        edge.log_file.rmdir()
        assert wait_until(lambda: serving(edge) and len(child_pids(edge.pid)) == 2, 60)
        assert metric(edge.admin_port, "wsgate_edge_worker_restarts_total") >= 3
