"""Faults through both targets: an origin that is down or too slow, and request
smuggling attempts. Where workerd's own HTTP parser answers before the Worker runs,
the expected statuses differ per target (the reasons are in docs/worker.md); the
property both must keep is the same: no request reaches the origin that the client
did not get its own answer for, and each one carries the policy's headers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.support import LOOPBACK, SECRET, Edge, RecordingOrigin, free_port
from tests.support.wire import HandshakeRefused, WsClient, exchange
from tests.worker.targets import KINDS, target_process

pytestmark = pytest.mark.slow

HOST = b"Host: app.example.com\r\n"
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: app.example.com\r\n\r\n"
KEY = b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"

# name: (request bytes, statuses from `wsgate edge`, statuses from the Worker in workerd)
SMUGGLING: dict[str, tuple[bytes, list[int], list[int]]] = {
    "content-length and transfer-encoding": (
        b"POST /echo HTTP/1.1\r\n" + HOST + b"Content-Length: 6\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED, [400], [200]),
    "two content-lengths": (
        b"POST /echo HTTP/1.1\r\n" + HOST + b"Content-Length: 0\r\nContent-Length: 49\r\n\r\n"
        + SMUGGLED, [400], [400]),
    "unknown transfer-encoding": (
        b"POST /echo HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"
        + SMUGGLED, [400], [400]),
    "space before the colon": (
        b"POST /echo HTTP/1.1\r\n" + HOST + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n"
        + SMUGGLED, [400], [400]),
    "chunked twice": (
        b"POST /echo HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked, chunked\r\n\r\n"
        b"0\r\n\r\n" + SMUGGLED, [400], [200, 200]),
    "obsolete line folding": (
        b"POST /echo HTTP/1.1\r\n" + HOST + b"X-A: a\r\n b\r\nContent-Length: 0\r\n\r\n"
        + SMUGGLED, [400], [400]),
    "bare LF line ends": (
        b"POST /echo HTTP/1.1\n" + HOST.replace(b"\r\n", b"\n") + b"Content-Length: 0\n\n"
        + SMUGGLED, [400], [200, 200]),
    "negative content-length": (
        b"POST /echo HTTP/1.1\r\n" + HOST + b"Content-Length: -1\r\n\r\n" + SMUGGLED,
        [400], [400]),
    "signed content-length": (
        b"POST /echo HTTP/1.1\r\n" + HOST + b"Content-Length: +0\r\n\r\n" + SMUGGLED,
        [400], [400]),
    "transfer-encoding in HTTP/1.0": (
        b"POST /echo HTTP/1.0\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        + SMUGGLED, [400], [400]),
    "upgrade with a body": (
        b"GET /ws HTTP/1.1\r\n" + HOST + b"Upgrade: websocket\r\nConnection: Upgrade\r\n" + KEY
        + b"Content-Length: 49\r\n\r\n" + SMUGGLED, [400], [400]),
    "two Host headers": (b"GET /echo HTTP/1.1\r\n" + HOST + HOST + b"\r\n", [400], [500]),
}


@pytest.fixture(scope="module")
def origin() -> Iterator[RecordingOrigin]:
    with RecordingOrigin() as recording:
        yield recording


@pytest.fixture(scope="module", params=KINDS)
def target(request: pytest.FixtureRequest, origin: RecordingOrigin) -> Iterator[Edge]:
    settings = {"timeouts": {"upstream_response": 1.0}, "limits": {"max_body_bytes": 65536}}
    with target_process(request.param, [("*/*", origin.url)], settings=settings) as running:
        yield running


def kind_of(target: Edge) -> str:
    return "worker" if "worker" in target.args else "edge"


@pytest.mark.parametrize("case", list(SMUGGLING))
def test_smuggling_attempts(target: Edge, origin: RecordingOrigin, case: str) -> None:
    request, edge_statuses, worker_statuses = SMUGGLING[case]
    mark = origin.mark()
    ex = exchange(target.port, [request], expect=2, timeout=5)
    expected = worker_statuses if kind_of(target) == "worker" else edge_statuses
    assert ex.statuses == expected, (ex.raw[:400], ex.malformed)
    seen = origin.since(mark).requests
    # Every request the origin saw was answered to the client on its own, and each
    # went through the policy: the edge's secret, once, and one request id.
    assert len(seen) <= len([s for s in ex.statuses if s < 400])
    for req in seen:
        assert req.values("x-cf-secret") == [SECRET.encode()]
        assert len(req.values("x-request-id")) == 1


def test_a_slow_origin_gets_504(target: Edge) -> None:
    ex = exchange(target.port, [b"GET /slow/3 HTTP/1.1\r\n" + HOST + b"\r\n"], timeout=10)
    assert ex.statuses == [504]
    assert ex.responses[0].body.startswith(b"Edge Proxy Error: ")
    event = target.wait_event(lambda e: e["httpRequest"]["status"] == 504, timeout=10)
    assert event["errorClass"] == "upstream-timeout"


@pytest.fixture(scope="module", params=KINDS)
def dead_origin_target(request: pytest.FixtureRequest) -> Iterator[Edge]:
    dead = f"http://{LOOPBACK}:{free_port()}"  # nothing listens there
    with target_process(request.param, [("*/*", dead)]) as running:
        yield running


def test_origin_down_gives_502_edge_proxy_error(dead_origin_target: Edge) -> None:
    ex = exchange(dead_origin_target.port, [b"GET /page HTTP/1.1\r\n" + HOST + b"\r\n"],
                  timeout=10)
    assert ex.statuses == [502]
    body = ex.responses[0].body
    assert body.startswith(b"Edge Proxy Error: ") and body.endswith(b"\n")
    assert SECRET.encode() not in ex.raw
    event = dead_origin_target.wait_event(lambda e: e["httpRequest"]["status"] == 502)
    assert (event["severity"], event["message"]) == ("ERROR", "Edge Proxy Error")
    assert event["errorClass"]


def test_origin_down_refuses_the_upgrade_with_502(dead_origin_target: Edge) -> None:
    async def session() -> None:
        with pytest.raises(HandshakeRefused) as refused:
            await WsClient.connect(dead_origin_target.port, "/_stcore/stream", host=LOOPBACK)
        assert refused.value.response.status == 502

    asyncio.run(asyncio.wait_for(session(), 30))
    event = dead_origin_target.wait_event(lambda e: e.get("isWebSocket") is True)
    assert event["httpRequest"]["status"] == 502


def test_dot_segments(target: Edge, origin: RecordingOrigin) -> None:
    # The Worker sees request.url as the runtime parsed it (WHATWG URL): dot segments,
    # also percent-encoded ones, are resolved before route matching and forwarding.
    # The edge matches and forwards the target as sent (docs/worker.md, differences).
    mark = origin.mark()
    ex = exchange(target.port, [b"GET /a/%2e%2e/echo HTTP/1.1\r\n" + HOST + b"\r\n"], timeout=5)
    assert ex.statuses == [200]
    expected = b"/echo" if kind_of(target) == "worker" else b"/a/%2e%2e/echo"
    assert [r.target for r in origin.since(mark).requests] == [expected]


def test_a_body_over_max_body_bytes_is_refused_before_the_origin(
        target: Edge, origin: RecordingOrigin) -> None:
    mark = origin.mark()
    body = b"x" * 65537
    ex = exchange(target.port, [b"POST /echo HTTP/1.1\r\n" + HOST + b"Content-Length: 65537"
                                b"\r\n\r\n" + body], timeout=10)
    assert ex.statuses == [413]
    assert origin.since(mark).requests == []
