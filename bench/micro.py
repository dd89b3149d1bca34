"""Cost of the functions on the edge's request path, in µs per call, one at a time.

    python bench/micro.py            (or: python -m bench.micro)

When the profile says "the log line is 10 % of an HTTP request", this says what
each step costs, so a change can be judged before it is made. The steps are the
ones a proxied GET goes through: parse the client's head, choose the request id,
build the origin's headers and head, parse the origin's answer, decode a chunked
body, build the client's headers, count it in the metrics, write the log line.
Runs on CPU 1 when there is one (like the proxy); times are this process's CPU
time, so other load on the machine inflates them less than wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram

from wsgate.config import load_config
from wsgate.edge import http1
from wsgate.logs import events
from wsgate.policy import headers

Step = tuple[str, Callable[[], object], int]  # name, one call, calls to time

ASSET = 30 * 1024
CLIENT_HEAD = (b"GET /static/app.js?v=3 HTTP/1.1\r\nHost: app.example.com\r\n"
               b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0\r\n"
               b"Accept: */*\r\nAccept-Encoding: gzip, deflate, br\r\n"
               b"Accept-Language: en-US,en;q=0.9\r\nReferer: https://app.example.com/\r\n"
               b"Cookie: session=0123456789abcdef\r\nConnection: keep-alive\r\n"
               b"Sec-Fetch-Mode: no-cors")
ORIGIN_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: application/javascript\r\n"
               b"Content-Length: %d\r\nCache-Control: no-cache\r\n"
               b"X-Cloud-Trace-Context: 105445aa7843bc8bf206b12000100000/1;o=1\r\n"
               b"Date: Tue, 01 Dec 2026 05:00:00 GMT\r\nServer: TornadoServer/6.4" % ASSET)
CHUNKED_BODY = b"".join(http1.chunk(b"c" * 4096) for _ in range(8)) + http1.LAST_CHUNK


def steps() -> list[Step]:
    """Each step once per proxied request, fed what the step before produces."""
    config = load_config(cli={"origin": "http://127.0.0.1:8501"},
                         environ={"WSGATE_SECRET": "bench-secret"})
    request_policy = headers.RequestPolicy.from_config(config)
    response_policy = headers.ResponsePolicy.from_config(config)
    request = http1.parse_request_head(CLIENT_HEAD)
    response = http1.parse_response_head(ORIGIN_HEAD, b"GET")
    req_id = headers.request_id(request.headers)
    path = request.target.partition(b"?")[0]  # the cache rule looks at the path only

    def upstream() -> http1.Headers:
        return headers.upstream_headers(
            request_policy, request.headers, origin_host=b"127.0.0.1:8501",
            client_host=b"app.example.com", client_addr="203.0.113.7", req_id=req_id,
            websocket=False, proto=b"https")

    def decode_chunked() -> list[bytes]:
        out: list[bytes] = []
        http1.decoder_for("chunked").feed(CHUNKED_BODY, out)
        return out

    def log_line() -> str:
        return events.edge_line(
            "request", "INFO", "GET", "https://app.example.com/static/app.js?v=3", 200,
            0.0012, "203.0.113.7", "Mozilla/5.0", req_id.decode(), "*/*",
            "http://127.0.0.1:8501", False, 0, ASSET)

    registry = CollectorRegistry()
    requests = Counter("r", "r", ["route", "status_class"], registry=registry).labels("*/*", "2xx")
    seconds = Histogram("h", "h", ["route"], registry=registry).labels("*/*")
    return [
        ("client head: http1.parse_request_head (10 headers)",
         lambda: http1.parse_request_head(CLIENT_HEAD), 20000),
        ("request id: headers.request_id (none sent: a new one)",
         lambda: headers.request_id(request.headers), 50000),
        ("origin headers: headers.upstream_headers", upstream, 20000),
        ("origin head: http1.request_head",
         lambda: http1.request_head(request.method, request.target, upstream()), 20000),
        ("origin answer: http1.parse_response_head (6 headers)",
         lambda: http1.parse_response_head(ORIGIN_HEAD, b"GET"), 20000),
        ("chunked body: decoder_for('chunked').feed, 8 x 4 KiB", decode_chunked, 10000),
        ("client headers: headers.response_headers",
         lambda: headers.response_headers(response_policy, response.headers,
                                          path=path, status=200), 20000),
        ("metrics: cached Counter child .inc()", requests.inc, 50000),
        ("metrics: cached Histogram child .observe()", lambda: seconds.observe(0.0012), 50000),
        ("log line: events.edge_line", log_line, 20000),
    ]


def per_call(fn: Callable[[], object], n: int) -> float:
    fn()
    t0 = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - t0) / n * 1e6


async def loop_costs(n: int) -> list[tuple[str, float]]:
    """What the driver around the steps pays per wait: a timer, a wake-up."""
    loop = asyncio.get_running_loop()
    t0 = time.process_time()
    for _ in range(n):
        loop.call_later(30, int).cancel()
    timer = (time.process_time() - t0) / n * 1e6
    t0 = time.process_time()
    for _ in range(n):
        fut = loop.create_future()
        loop.call_soon(fut.set_result, None)
        await fut
    wake = (time.process_time() - t0) / n * 1e6
    return [("loop: call_later + cancel (a timer per wait)", timer),
            ("loop: create_future + call_soon + await (one wake-up)", wake)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply every call count (e.g. 0.01 for a smoke run)")
    args = parser.parse_args(argv)
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {1})
    rows = [(name, per_call(fn, max(1, int(n * args.scale)))) for name, fn, n in steps()]
    path_total = sum(us for _, us in rows)
    try:
        import uvloop
    except ImportError:
        rows += asyncio.run(loop_costs(max(1, int(5000 * args.scale))))
    else:
        rows += uvloop.run(loop_costs(max(1, int(5000 * args.scale))))
    width = max(len(name) for name, _ in rows)
    for name, us in rows:
        print(f"{name.ljust(width)}  {us:8.2f} µs")
    print(f"{'sum of the request-path steps'.ljust(width)}  {path_total:8.2f} µs")


if __name__ == "__main__":
    main()
