"""HTTP through a real `wsgate edge` process to a recording origin on loopback."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator

import pytest

from tests.edge.conftest import status_of
from tests.support import SECRET, Edge, RecordingOrigin, edge_process, free_port


def get(edge: Edge, path: str, headers: dict[str, str] | None = None,
        method: str = "GET", body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", edge.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def echo(edge: Edge, headers: dict[str, str] | None = None) -> dict[str, list[str]]:
    status, _, body = get(edge, "/echo", headers)
    assert status == 200
    seen: dict[str, list[str]] = {}
    for name, value in json.loads(body)["headers"]:
        seen.setdefault(name, []).append(value)
    return seen


def assert_no_secret(edge: Edge, *blobs: bytes) -> None:
    assert SECRET.encode() not in edge.log_file.read_bytes()
    for blob in blobs:
        assert SECRET.encode() not in blob


def test_request_policy_reaches_origin(http_edge: Edge, origins: RecordingOrigin) -> None:
    seen = echo(http_edge, {"X-CF-Secret": "forged", "x-cf-secret": "again",
                            "X-Forwarded-For": "6.6.6.6", "X-Real-IP": "6.6.6.6",
                            "Forwarded": "for=6.6.6.6", "CF-Connecting-IP": "6.6.6.6",
                            "X-Request-Id": "client-id-1"})
    assert seen["x-cf-secret"] == [SECRET]
    assert seen["x-forwarded-for"] == ["127.0.0.1"]
    assert seen["x-real-ip"] == ["127.0.0.1"]
    # auto: the scheme this plain-http edge serves, and a client's copy never passes
    assert seen["x-forwarded-proto"] == ["http"]
    assert seen["x-forwarded-host"] == [f"127.0.0.1:{http_edge.port}"]
    assert seen["host"] == [f"127.0.0.1:{origins.port}"]
    assert seen["x-request-id"] == ["client-id-1"]
    assert "forwarded" not in seen and "cf-connecting-ip" not in seen


def test_connection_header_trick_cannot_remove_the_secret(http_edge: Edge) -> None:
    seen = echo(http_edge, {"Connection": "X-CF-Secret, X-Forwarded-For, X-Real-IP"})
    assert seen["x-cf-secret"] == [SECRET]
    assert seen["x-forwarded-for"] == ["127.0.0.1"]


def test_keepalive_pipelining_and_response_policy(http_edge: Edge) -> None:
    req = (b"GET /static/app.js HTTP/1.1\r\nHost: a\r\n\r\n"
           b"GET /status/200 HTTP/1.1\r\nHost: a\r\n\r\n"
           b"GET /status/204 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    out = http_edge.raw(req)
    assert out.count(b"HTTP/1.1 200") == 2 and out.count(b"HTTP/1.1 204") == 1
    first = out.split(b"\r\n\r\n", 1)[0].lower()
    assert b"cache-control: public, max-age=86400" in first
    assert b"x-worker-proxy: active" in first
    assert b"x-cloud-trace-context" not in first
    assert_no_secret(http_edge, out)


def test_bodies_streamed_both_ways(http_edge: Edge) -> None:
    status, _, body = get(http_edge, "/echo", method="POST", body=b"x" * 3_000_000)
    assert status == 200 and json.loads(body)["body_len"] == 3_000_000
    chunked = (b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
               b"Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    out = http_edge.raw(chunked)
    assert status_of(out) == 200 and b'"body_len": 11' in out
    status, headers, body = get(http_edge, "/chunked/1000000")
    assert status == 200 and len(body) == 1_000_000 and headers["transfer-encoding"] == "chunked"
    status, headers, body = get(http_edge, "/bytes/2000000")
    assert status == 200 and len(body) == 2_000_000 and headers["content-length"] == "2000000"


def test_origin_status_relayed(http_edge: Edge) -> None:
    for code in (201, 302, 403, 404, 500, 503):
        status, headers, _ = get(http_edge, f"/status/{code}")
        assert status == code and headers["x-worker-proxy"] == "Active"


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n"
     b"\r\n0\r\n\r\n", 400),
    (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
     400),
    (b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150))
     + b"\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (b"GET http://evil/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", 405),
    (b"TRACE / HTTP/1.1\r\nHost: a\r\n\r\n", 405),
    (b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", 400),
    (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 999999999999\r\n\r\n", 413),
], ids=["cl-and-te", "two-cl", "xchunked", "big-header", "many-headers", "two-hosts",
        "absolute-form", "connect", "trace", "te-on-http10", "no-host", "garbage",
        "ws-without-key", "huge-body"])
def test_bad_requests_never_reach_origin(http_edge: Edge, origins: RecordingOrigin,
                                         request_bytes: bytes, status: int) -> None:
    mark = origins.mark()
    out = http_edge.raw(request_bytes)
    assert status_of(out) == status, out[:200]
    assert origins.since(mark).requests == []
    assert_no_secret(http_edge, out)


def test_h2c_upgrade_is_dropped_and_served_as_http(http_edge: Edge,
                                                   origins: RecordingOrigin) -> None:
    mark = origins.mark()
    out = http_edge.raw(b"GET /echo HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n"
                        b"Connection: Upgrade, HTTP2-Settings\r\n"
                        b"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"
                        b"Connection: close\r\n\r\n")
    assert status_of(out) == 200
    seen = origins.since(mark).requests[0]
    assert seen.header("upgrade") is None and seen.header("http2-settings") is None


def test_origin_down_gives_502_and_error_line() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    edge = edge_process(dead).start()
    try:
        status, headers, body = get(edge, "/x")
        assert status == 502
        assert body.startswith(b"Edge Proxy Error: ")
        assert headers["x-worker-proxy"] == "Active"
        event = edge.wait_event(lambda e: e["httpRequest"]["status"] == 502)
        assert event["severity"] == "ERROR" and event["message"] == "Edge Proxy Error"
        assert event["errorClass"] == "connect-refused" and event["httpRequest"]["status"] == 502
        assert event["isWebSocket"] is False
        assert_no_secret(edge, body)
    finally:
        edge.stop()


@pytest.fixture(scope="module")
def slow_edge(origins: RecordingOrigin) -> Iterator[Edge]:
    with edge_process(origins.url, env={"WSGATE_EDGE_TIMEOUTS_UPSTREAM_RESPONSE": "0.5",
                                        "WSGATE_EDGE_TIMEOUTS_REQUEST_HEADER": "1",
                                        "WSGATE_EDGE_TIMEOUTS_CLIENT_IDLE": "1",
                                        "WSGATE_EDGE_TIMEOUTS_CLIENT_BODY": "1"}) as edge:
        yield edge


def test_slow_origin_gives_504(slow_edge: Edge) -> None:
    status, _, body = get(slow_edge, "/slow/3")
    assert status == 504 and body.startswith(b"Edge Proxy Error: ")
    event = slow_edge.wait_event(lambda e: e["httpRequest"]["status"] == 504)
    assert event["errorClass"] == "upstream-timeout" and event["severity"] == "ERROR"


def test_slowloris_headers_get_408(slow_edge: Edge, origins: RecordingOrigin) -> None:
    mark = origins.mark()
    with socket.create_connection(("127.0.0.1", slow_edge.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n")  # never finishes the headers
        data = sock.recv(4096)
    assert status_of(data) == 408
    assert origins.since(mark).requests == []


def test_log_event_schema(http_edge: Edge) -> None:
    get(http_edge, "/status/201?q=1", {"User-Agent": "pytest-agent", "X-Request-Id": "rid-42"})
    e = http_edge.wait_event(lambda e: e.get("requestId") == "rid-42")
    assert len([x for x in http_edge.events() if x.get("requestId") == "rid-42"]) == 1
    h = e["httpRequest"]
    assert e["source"] == "edge" and e["severity"] == "INFO"
    assert h["requestMethod"] == "GET" and h["status"] == 201
    assert h["requestUrl"] == f"http://127.0.0.1:{http_edge.port}/status/201?q=1"
    assert h["userAgent"] == "pytest-agent"
    assert h["remoteIp"] == "127.0.0.1" and h["latency"].endswith("s")
    assert e["route"] == "*/*" and e["isWebSocket"] is False and e["upstream"]
    assert_no_secret(http_edge)


def test_forwarded_proto_follows_a_trusted_proxy_or_the_configuration(
        origins: RecordingOrigin) -> None:
    """auto behind a trusted proxy (client_ip_header set): the proxy's single valid
    X-Forwarded-Proto, in the header and in the log's requestUrl; a configured value
    wins over anything the client sends."""
    with edge_process(origins.url, extra=["--client-ip-header", "CF-Connecting-IP"]) as edge:
        assert echo(edge, {"X-Forwarded-Proto": "https"})["x-forwarded-proto"] == ["https"]
        assert echo(edge, {"X-Forwarded-Proto": "gopher"})["x-forwarded-proto"] == ["http"]
        get(edge, "/status/200", {"X-Forwarded-Proto": "https", "X-Request-Id": "proto-1"})
        event = edge.wait_event(lambda e: e.get("requestId") == "proto-1")
        assert event["httpRequest"]["requestUrl"].startswith("https://")
    with edge_process(origins.url, extra=["--forwarded-proto", "https"]) as edge:
        assert echo(edge, {"X-Forwarded-Proto": "http"})["x-forwarded-proto"] == ["https"]


def test_origin_sees_no_request_when_unrouted(origins: RecordingOrigin) -> None:
    with edge_process(None, routes=[("app.example.com/*", origins.url)]) as edge:
        mark = origins.mark()
        out = edge.raw(b"GET /x HTTP/1.1\r\nHost: other.example.com\r\n\r\n")
        assert status_of(out) == 404 and b"no route for other.example.com/x" in out
        out = edge.raw(b"GET /echo HTTP/1.1\r\nHost: app.example.com\r\n"
                       b"Connection: close\r\n\r\n")
        assert status_of(out) == 200
        assert [s.target for s in origins.since(mark).requests] == [b"/echo"]


def test_stale_pooled_connection_is_retried_once(http_edge: Edge, origins: RecordingOrigin) -> None:
    assert get(http_edge, "/drop-next")[0] == 200  # that upstream connection goes to the pool
    mark = origins.mark()
    status, _, body = get(http_edge, "/status/200")
    assert status == 200
    assert [s.target for s in origins.since(mark).requests] == [b"/status/200", b"/status/200"]
    # A POST is never replayed: the client gets the 502.
    assert get(http_edge, "/drop-next")[0] == 200
    status, _, body = get(http_edge, "/echo", method="POST", body=b"data")
    assert status == 502 and body.startswith(b"Edge Proxy Error: ")


def test_fake_101_to_plain_request_is_502(http_edge: Edge) -> None:
    status, _, body = get(http_edge, "/_evil/fake-101")
    assert status == 502 and body.startswith(b"Edge Proxy Error: ")


def test_expect_100_continue(http_edge: Edge, origins: RecordingOrigin) -> None:
    mark = origins.mark()
    with socket.create_connection(("127.0.0.1", http_edge.port), timeout=5) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                     b"Expect: 100-continue\r\nConnection: close\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 100 ")
        sock.sendall(b"hello")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert status_of(data) == 200 and b'"body_len": 5' in data
    assert origins.since(mark).requests[0].header("expect") is None


def test_client_that_never_reads_is_dropped(slow_edge: Edge) -> None:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(5)
        sock.connect(("127.0.0.1", slow_edge.port))
        sock.sendall(b"GET /bytes/50000000 HTTP/1.1\r\nHost: a\r\n\r\n")
        event = slow_edge.wait_event(lambda e: e.get("errorClass") == "client-gone",
                                     timeout=10)
    assert event["httpRequest"]["status"] == 200
    assert event["bytesToClient"] < 50_000_000


def test_secret_echoed_by_origin_is_stripped(http_edge: Edge) -> None:
    status, headers, _ = get(http_edge, "/leak-secret")
    assert status == 200 and "x-cf-secret" not in headers


def test_body_trickle_is_cut(slow_edge: Edge, origins: RecordingOrigin) -> None:
    with socket.create_connection(("127.0.0.1", slow_edge.port), timeout=10) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n")
        started = time.monotonic()
        data = b""
        for _ in range(20):  # one byte every 0.3 s: each read is within client_body
            try:
                sock.sendall(b"x")
            except OSError:
                break
            sock.settimeout(0.3)
            try:
                data += sock.recv(4096)
            except TimeoutError:
                continue
            if data:
                break
        elapsed = time.monotonic() - started
    assert status_of(data) == 408 and elapsed < 4


def test_head_and_304_keep_the_connection_usable(http_edge: Edge) -> None:
    out = http_edge.raw(b"HEAD /bytes/100 HTTP/1.1\r\nHost: a\r\n\r\n"
                        b"GET /status/304 HTTP/1.1\r\nHost: a\r\n\r\n"
                        b"GET /bytes/5 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    heads = out.split(b"HTTP/1.1 ")[1:]
    assert [h[:3] for h in heads] == [b"200", b"304", b"200"]
    assert b"content-length: 100" in heads[0].lower() and heads[0].endswith(b"\r\n\r\n")
    assert heads[2].endswith(b"\r\n\r\nbbbbb")


def test_empty_and_chunked_bodies_keep_the_connection_usable(http_edge: Edge) -> None:
    # Content-Length: 0 has nothing to wait for; a chunked answer is re-framed.
    out = http_edge.raw(b"GET /bytes/0 HTTP/1.1\r\nHost: a\r\n\r\n"
                        b"GET /chunked/40000 HTTP/1.1\r\nHost: a\r\n\r\n"
                        b"GET /bytes/3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    heads = out.split(b"HTTP/1.1 ")[1:]
    assert [h[:3] for h in heads] == [b"200", b"200", b"200"]
    assert b"content-length: 0\r\n" in heads[0].lower() and heads[0].endswith(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in heads[1].lower()
    assert heads[1].count(b"c") >= 40000 and heads[1].endswith(b"\r\n0\r\n\r\n")
    assert heads[2].endswith(b"\r\n\r\nbbb")
