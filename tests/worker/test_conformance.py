"""One conformance suite, two targets: `wsgate edge` and the built Worker in workerd.

Both read the same TOML file and forward to the same recording origin, which keeps
every request it receives, so each case asserts what reached the origin as well as
what the client got. Where the two targets differ on purpose, the case says so and
docs/worker.md gives the reason.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.support import LOOPBACK, SECRET, Edge, RecordingOrigin
from tests.support.origin import SeenRequest
from tests.support.wire import (
    OP_BINARY,
    OP_TEXT,
    HandshakeRefused,
    Response,
    WsClient,
    exchange,
)
from tests.worker.targets import KINDS, target_process
from wsgate.config import load_config
from wsgate.logs.events import FIELDS, TRACE_KEY, HttpRequest, build_event, dumps
from wsgate.policy.routes import match_route

pytestmark = pytest.mark.slow

CLIENT_IP = "203.0.113.7"
FORGED_IP = "198.51.100.66"
FORGED_SECRET = "forged-secret-from-a-client"
SETTINGS = {"client_ip_header": "CF-Connecting-IP", "forwarded_proto": "https"}
EVENT_KEYS = {"timestamp", "severity", "message", "source", "httpRequest", TRACE_KEY, *FIELDS}


@pytest.fixture(scope="module")
def origin() -> Iterator[RecordingOrigin]:
    with RecordingOrigin() as recording:
        yield recording


@pytest.fixture(scope="module", params=KINDS)
def target(request: pytest.FixtureRequest, origin: RecordingOrigin) -> Iterator[Edge]:
    # One route table for both: a path route to a `websockets` server, an exact host,
    # a wildcard subdomain, and no catch-all (so a foreign host gets 404).
    routes = [("*/lib/*", origin.ws_url), ("*/_bad/*", origin.url),
              ("app.example.com/*", origin.url), ("*.example.net/*", origin.url)]
    with target_process(request.param, routes, settings=SETTINGS) as running:
        yield running


def get(target: Edge, path: str, headers: str = "", host: str = "app.example.com",
        method: str = "GET") -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nCF-Connecting-IP: {CLIENT_IP}\r\n"
            f"{headers}Connection: close\r\n\r\n").encode()


def one(target: Edge, origin: RecordingOrigin, request: bytes
        ) -> tuple[Response, list[SeenRequest]]:
    """Send one request; (the client's response, the requests the origin saw)."""
    mark = origin.mark()
    ex = exchange(target.port, [request], timeout=10)
    assert ex.responses, (ex.raw[:300], ex.malformed, target.output()[-2000:])
    return ex.responses[0], origin.since(mark).requests


# -- forwarding headers and the secret ----------------------------------------------------

def test_forwarding_headers(target: Edge, origin: RecordingOrigin) -> None:
    resp, seen = one(target, origin, get(target, "/echo?q=1&x=%20y", "User-Agent: conf\r\n"))
    assert resp.status == 200
    assert len(seen) == 1
    req = seen[0]
    assert req.target == b"/echo?q=1&x=%20y"
    assert req.values("host") == [f"{LOOPBACK}:{origin.port}".encode()]
    assert req.values("x-forwarded-host") == [b"app.example.com"]
    assert req.values("x-forwarded-proto") == [b"https"]
    assert req.values("x-forwarded-for") == [CLIENT_IP.encode()]
    assert req.values("x-real-ip") == [CLIENT_IP.encode()]
    assert req.values("x-cf-secret") == [SECRET.encode()]
    assert req.values("user-agent") == [b"conf"]
    assert req.values("x-request-id") == [resp.header("x-request-id")]
    assert resp.header("x-worker-proxy") == b"Active"


def test_a_request_body_reaches_the_origin(target: Edge, origin: RecordingOrigin) -> None:
    body = bytes(range(256)) * 4096  # 1 MiB
    head = (f"POST /echo HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: {len(body)}"
            "\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n")
    resp, seen = one(target, origin, head.encode() + body)
    assert resp.status == 200
    assert json.loads(resp.body)["body_len"] == len(body)
    assert seen[0].body == body


def test_a_clients_request_id_is_kept_and_a_bad_one_replaced(
        target: Edge, origin: RecordingOrigin) -> None:
    resp, seen = one(target, origin, get(target, "/echo", "X-Request-Id: abc-123.x\r\n"))
    assert seen[0].values("x-request-id") == [b"abc-123.x"]
    assert resp.header("x-request-id") == b"abc-123.x"
    resp, seen = one(target, origin, get(target, "/echo", "X-Request-Id: bad id!\r\n"))
    replaced = seen[0].values("x-request-id")
    assert len(replaced) == 1 and replaced[0] != b"bad id!"
    assert resp.header("x-request-id") == replaced[0]


def test_spoofed_identity_and_secret_headers_never_reach_the_origin(
        target: Edge, origin: RecordingOrigin) -> None:
    forged = (f"X-Forwarded-For: {FORGED_IP}\r\nX-Real-IP: {FORGED_IP}\r\n"
              f"Forwarded: for={FORGED_IP}\r\nTrue-Client-IP: {FORGED_IP}\r\n"
              f"X-Client-IP: {FORGED_IP}\r\nX-Forwarded-Host: evil.example\r\n"
              f"X-Forwarded-Proto: http\r\nX-CF-Secret: {FORGED_SECRET}\r\n"
              f"x-cf-secret: {FORGED_SECRET}\r\n")
    resp, seen = one(target, origin, get(target, "/echo", forged))
    assert resp.status == 200
    raw = b"\r\n".join(k + b": " + v for k, v in seen[0].headers)
    assert FORGED_IP.encode() not in raw
    assert FORGED_SECRET.encode() not in raw
    assert b"evil.example" not in raw
    assert seen[0].values("x-cf-secret") == [SECRET.encode()]
    assert seen[0].values("x-forwarded-proto") == [b"https"]
    assert seen[0].values("forwarded") == []


def test_connection_tricks_cannot_remove_the_edges_headers(
        target: Edge, origin: RecordingOrigin) -> None:
    request = (f"GET /echo HTTP/1.1\r\nHost: app.example.com\r\nCF-Connecting-IP: {CLIENT_IP}"
               "\r\nConnection: close, X-CF-Secret, X-Real-IP, X-Request-Id\r\n\r\n").encode()
    resp, seen = one(target, origin, request)
    assert resp.status == 200
    assert seen[0].values("x-cf-secret") == [SECRET.encode()]
    assert seen[0].values("x-real-ip") == [CLIENT_IP.encode()]
    assert len(seen[0].values("x-request-id")) == 1


def test_a_header_named_in_connection_is_dropped(target: Edge, origin: RecordingOrigin) -> None:
    request = (b"GET /echo HTTP/1.1\r\nHost: app.example.com\r\nX-Hop: secret-ish\r\n"
               b"X-Kept: yes\r\nConnection: X-Hop\r\n\r\n")
    resp, seen = one(target, origin, request)
    assert resp.status == 200
    assert seen[0].values("x-hop") == []
    assert seen[0].values("x-kept") == [b"yes"]


def test_the_secret_never_reaches_a_client_or_a_log_line(
        target: Edge, origin: RecordingOrigin) -> None:
    resp, _ = one(target, origin, get(target, "/leak-secret"))
    assert resp.status == 200
    assert resp.header("x-cf-secret") is None
    assert SECRET.encode() not in resp.raw_head + resp.body
    assert SECRET not in target.events_text()


# -- response rules --------------------------------------------------------------------------

def test_static_assets_get_the_cache_rule_and_internal_headers_are_stripped(
        target: Edge, origin: RecordingOrigin) -> None:
    resp, _ = one(target, origin, get(target, "/static/app.js"))
    assert resp.status == 200
    assert resp.header_all("cache-control") == [b"public, max-age=86400"]
    assert resp.header("x-cloud-trace-context") is None
    assert resp.header("x-worker-proxy") == b"Active"
    assert resp.body == b"console.log('static');\n"


def test_no_cache_rule_for_errors_and_other_paths(target: Edge, origin: RecordingOrigin) -> None:
    resp, _ = one(target, origin, get(target, "/status/404"))
    assert resp.status == 404
    assert resp.header("cache-control") is None
    assert resp.header("x-worker-proxy") == b"Active"
    resp, _ = one(target, origin, get(target, "/echo"))
    assert resp.header("cache-control") is None


def test_trace_is_refused_before_the_origin(target: Edge, origin: RecordingOrigin) -> None:
    resp, seen = one(target, origin, get(target, "/echo", method="TRACE"))
    assert resp.status == 405
    assert seen == []
    assert SECRET.encode() not in resp.body


ROUTE_HOSTS = ("app.example.com", "APP.Example.com", "app.example.com:8080", "a.example.net",
               "b.a.example.net", "example.net", "xexample.net", "[::1]:80")
ROUTE_PATHS = ("/", "/lib", "/lib/", "/lib/x", "/LIB/x", "/_bad", "/_bad/1")


def test_routes_match_as_the_python_route_table_says(target: Edge) -> None:
    config_path = target.args[target.args.index("--config") + 1]
    config = load_config(config_path, None, {"WSGATE_SECRET": SECRET})
    for i, (host, path) in enumerate(itertools.product(ROUTE_HOSTS, ROUTE_PATHS)):
        rid = f"route-case-{i}"
        request = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nX-Request-Id: {rid}\r\n"
                   "Connection: close\r\n\r\n").encode()
        exchange(target.port, [request], timeout=10)
        expected = match_route(config.routes, host, path)
        event = target.wait_event(lambda e, rid=rid: e.get("requestId") == rid, timeout=10)
        assert event.get("route") == (expected.pattern if expected else None), (host, path)
        if expected is None:
            assert event["httpRequest"]["status"] == 404


def test_one_route_table(target: Edge, origin: RecordingOrigin) -> None:
    resp, seen = one(target, origin, get(target, "/echo", host="a.example.net"))
    assert resp.status == 200 and len(seen) == 1
    for host in ("example.net", "other.example.org"):
        resp, seen = one(target, origin, get(target, "/echo", host=host))
        assert resp.status == 404, host
        assert seen == []


# -- WebSocket ----------------------------------------------------------------------------

def test_websocket_echo_text_binary_and_subprotocol(target: Edge) -> None:
    big = bytes(range(256)) * (4 * 1024 * 1024 // 256)

    async def session() -> None:
        async with connect(f"ws://{LOOPBACK}:{target.port}/lib/echo", subprotocols=["chat"],
                           max_size=None, open_timeout=20) as ws:
            assert ws.subprotocol == "chat"
            await ws.send("hello through the edge")
            assert await ws.recv() == "hello through the edge"
            await ws.send(big)
            assert await ws.recv() == big

    asyncio.run(asyncio.wait_for(session(), 60))


def test_the_origins_101_reaches_the_client_with_a_valid_accept(
        target: Edge, origin: RecordingOrigin) -> None:
    async def session() -> None:
        client = await WsClient.connect(target.port, "/ws", host=LOOPBACK)
        # WsClient checked Sec-WebSocket-Accept against its own key.
        await client.send(OP_TEXT, b"raw frame")
        frame = await client.recv_frame()
        assert frame is not None and (frame.opcode, frame.payload) == (OP_TEXT, b"raw frame")
        await client.send(OP_BINARY, b"\x00\xff" * 1000)
        frame = await client.recv_frame()
        assert frame is not None and frame.payload == b"\x00\xff" * 1000
        await client.close()

    mark = origin.mark()
    asyncio.run(asyncio.wait_for(session(), 30))
    upgrades = origin.since(mark).requests
    assert len(upgrades) == 1
    assert upgrades[0].values("x-cf-secret") == [SECRET.encode()]
    assert upgrades[0].values("upgrade") == [b"websocket"]


def test_an_origin_refusing_the_upgrade_is_relayed_without_a_101(
        target: Edge, origin: RecordingOrigin) -> None:
    async def session() -> None:
        with pytest.raises(HandshakeRefused) as refused:
            await WsClient.connect(target.port, "/_bad/403", host=LOOPBACK)
        assert refused.value.response.status == 403

    mark = origin.mark()
    asyncio.run(asyncio.wait_for(session(), 30))
    assert origin.since(mark).sent_101 == 0


def test_library_client_sees_the_403(target: Edge) -> None:
    async def session() -> None:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"ws://{LOOPBACK}:{target.port}/_bad/403", open_timeout=20):
                pass
        assert refused.value.response.status_code == 403
        assert refused.value.response.body == b"refused by origin"

    asyncio.run(asyncio.wait_for(session(), 30))


def test_a_broken_handshake_is_refused_before_the_origin(
        target: Edge, origin: RecordingOrigin) -> None:
    request = (b"GET /ws HTTP/1.1\r\nHost: app.example.com\r\nUpgrade: websocket\r\n"
               b"Connection: Upgrade\r\nSec-WebSocket-Key: short\r\n"
               b"Sec-WebSocket-Version: 13\r\n\r\n")
    resp, seen = one(target, origin, request)
    assert resp.status == 400
    assert seen == []


# -- logs ----------------------------------------------------------------------------------

def test_one_event_per_request_in_the_shared_schema(
        target: Edge, origin: RecordingOrigin) -> None:
    resp, _ = one(target, origin, get(target, "/echo", "X-Request-Id: conformance-log-1\r\n"))
    event = target.wait_event(lambda e: e.get("requestId") == "conformance-log-1", timeout=10)
    assert set(event) <= EVENT_KEYS, set(event) - EVENT_KEYS
    assert event["source"] == "edge"
    assert event["route"] == "app.example.com/*"
    assert event["upstream"] == f"http://{LOOPBACK}:{origin.port}"
    assert event["isWebSocket"] is False
    http = event["httpRequest"]
    assert (http["requestMethod"], http["status"]) == ("GET", 200)
    assert http["requestUrl"] == "https://app.example.com/echo"
    assert http["remoteIp"] == CLIENT_IP
    assert resp.header("x-request-id") == b"conformance-log-1"
    # Every line the target wrote so far (requests, refusals, WebSockets, errors) is
    # exactly what the shared schema's `build_event` + `dumps` write for its values.
    lines = target.events_text().splitlines()
    assert len(lines) > 10
    for line in lines:
        assert rebuilt(line) == line


def rebuilt(line: str) -> str:
    event = json.loads(line)
    http = event["httpRequest"]
    again = build_event(
        source=event["source"], message=event["message"], severity=event["severity"],
        http=HttpRequest(http["requestMethod"], http["requestUrl"], http["status"],
                         float(http["latency"].removesuffix("s")), http["remoteIp"],
                         http["userAgent"], int(http["requestSize"]),
                         int(http["responseSize"]), http["protocol"]),
        **{k: v for k, v in event.items() if k in FIELDS and k != "source"})
    again["timestamp"] = event["timestamp"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", event["timestamp"])
    return dumps(again)
