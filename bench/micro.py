"""Cost of the edge's building blocks, in µs per call, one at a time.

    python bench/micro.py

When the profile says "logging is 16 % of an HTTP request", this says what a
log event costs and what the cheaper alternative would cost, so a change can
be judged before it is made. Runs on CPU 1 when there is one (like the proxy);
times are this process's CPU time, so other load on the machine inflates them
less than wall time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import h11
from prometheus_client import CollectorRegistry, Counter, Histogram

from wsgate.logs.events import HttpRequest, build_event, configure_event_logging, emit

ASSET = 30 * 1024


def per_call(fn: Callable[[], object], n: int) -> float:
    fn()
    t0 = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - t0) / n * 1e6


def h11_client_leg() -> None:
    """Edge ⇄ client: parse a GET, send a 30 KB response in two chunks."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"GET /static/x.js HTTP/1.1\r\nHost: example.com\r\n"
                      b"User-Agent: wrk\r\nAccept: */*\r\n\r\n")
    conn.next_event()
    conn.next_event()
    conn.send(h11.Response(status_code=200, headers=[
        (b"content-type", b"application/javascript"), (b"content-length", b"%d" % ASSET),
        (b"x-worker-proxy", b"Active"), (b"cache-control", b"public, max-age=86400"),
        (b"x-request-id", b"0123456789abcdef0123456789abcdef")]))
    conn.send(h11.Data(data=b"x" * (ASSET // 2)))
    conn.send(h11.Data(data=b"x" * (ASSET // 2)))
    conn.send(h11.EndOfMessage())


RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/javascript\r\n"
            b"Content-Length: %d\r\n\r\n" % ASSET) + b"x" * ASSET


def h11_origin_leg() -> None:
    """Edge ⇄ origin: send the GET with 9 headers, parse the response (two reads)."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method=b"GET", target=b"/static/x.js", headers=[
        (b"host", b"127.0.0.1:8501"), (b"user-agent", b"wrk"), (b"accept", b"*/*"),
        (b"x-forwarded-for", b"127.0.0.1"), (b"x-forwarded-host", b"example.com"),
        (b"x-forwarded-proto", b"https"), (b"x-real-ip", b"127.0.0.1"),
        (b"x-cf-secret", b"s3cret"), (b"x-request-id", b"0123456789abcdef")]))
    conn.send(h11.EndOfMessage())
    half = len(RESPONSE) // 2
    conn.receive_data(RESPONSE[:half])
    while conn.next_event() is not h11.NEED_DATA:
        pass
    conn.receive_data(RESPONSE[half:])
    while not isinstance(conn.next_event(), h11.EndOfMessage):
        pass


def raw_head_split() -> None:
    """The cheap alternative for a fixed-length body: find the head, read Content-Length."""
    end = RESPONSE.find(b"\r\n\r\n")
    head = RESPONSE[:end].lower()
    i = head.find(b"\r\ncontent-length:")
    int(head[i + 17:head.find(b"\r\n", i + 2)])


def main() -> None:
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {1})
    tmp = Path(tempfile.mkdtemp(prefix="wsgate-micro-"))
    rows: list[tuple[str, float]] = []

    logger = configure_event_logging("edge", str(tmp / "events.jsonl"))
    http = HttpRequest(method="GET", url="https://example.com/static/x.js", status=200,
                       latency_s=0.0012, remote_ip="127.0.0.1", user_agent="wrk",
                       request_size=0, response_size=30910)

    def log_event() -> None:
        emit(logger, build_event(source="edge", message="request", severity="INFO", http=http,
                                 requestId="0123456789abcdef", route="*/*",
                                 upstream="http://127.0.0.1:8501", isWebSocket=False,
                                 bytesFromClient=0, bytesToClient=30910))
    rows.append(("log event: build_event + emit (logging.FileHandler, flush each)",
                 per_call(log_event, 5000)))
    buffered = open(tmp / "buffered.jsonl", "w", buffering=1 << 16)  # noqa: SIM115
    event = build_event(source="edge", message="request", severity="INFO", http=http,
                        requestId="0123456789abcdef", route="*/*")
    rows.append(("log event: build_event only", per_call(
        lambda: build_event(source="edge", message="request", severity="INFO", http=http,
                            requestId="0123456789abcdef", route="*/*"), 5000)))
    rows.append(("log line: json.dumps + buffered write, no flush",
                 per_call(lambda: buffered.write(json.dumps(event) + "\n"), 5000)))
    buffered.close()
    logging.getLogger("wsgate").handlers.clear()

    reg = CollectorRegistry()
    requests = Counter("r", "r", ["route", "status_class"], registry=reg)
    hist = Histogram("h", "h", ["route"], registry=reg)
    child = requests.labels("*/*", "2xx")
    rows.append(("prometheus: Counter.labels(...).inc()",
                 per_call(lambda: requests.labels("*/*", "2xx").inc(), 20000)))
    rows.append(("prometheus: cached child .inc()", per_call(child.inc, 20000)))
    rows.append(("prometheus: Histogram.labels(...).observe()",
                 per_call(lambda: hist.labels("*/*").observe(0.001), 20000)))

    rows.append(("h11 client leg: parse GET + send 30 KB response",
                 per_call(h11_client_leg, 3000)))
    rows.append(("h11 origin leg: send GET + parse 30 KB response",
                 per_call(h11_origin_leg, 3000)))
    rows.append(("raw head split + Content-Length (alternative for the body)",
                 per_call(raw_head_split, 20000)))
    rows.append(("os.urandom(16).hex() (request id)",
                 per_call(lambda: os.urandom(16).hex(), 20000)))
    rows.append(("os.getpid() (a syscall: asyncio calls it per get_running_loop)",
                 per_call(os.getpid, 20000)))

    async def loop_costs() -> None:
        loop = asyncio.get_running_loop()

        async def with_timeout() -> None:
            async with asyncio.timeout(30):
                pass
        n = 5000
        t0 = time.process_time()
        for _ in range(n):
            await with_timeout()
        rows.append(("async with asyncio.timeout(30): (no wait)",
                     (time.process_time() - t0) / n * 1e6))
        t0 = time.process_time()
        for _ in range(n):
            fut = loop.create_future()
            loop.call_soon(fut.set_result, None)
            await fut
        rows.append(("create_future + call_soon + await (one wake-up)",
                     (time.process_time() - t0) / n * 1e6))
        t0 = time.process_time()
        for _ in range(n):
            loop.call_later(30, int).cancel()
        rows.append(("call_later + cancel (a timer per wait)",
                     (time.process_time() - t0) / n * 1e6))
        t0 = time.process_time()
        for _ in range(n):
            await asyncio.create_task(asyncio.sleep(0))
        rows.append(("create_task + run to completion", (time.process_time() - t0) / n * 1e6))

    try:
        import uvloop
    except ImportError:
        asyncio.run(loop_costs())
    else:
        uvloop.run(loop_costs())

    width = max(len(name) for name, _ in rows)
    for name, us in rows:
        print(f"{name.ljust(width)}  {us:8.2f} µs")


if __name__ == "__main__":
    main()
