"""Several origins end to end, through the real `wsgate edge` CLI: affinity cookie,
turns, retry on another origin, health, 1012, draining, per-origin metrics.

Recording origins (in-process threads) here; real `wsgate run` replicas behind two
edges in tests/edge/test_replicas.py.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import (
    LOOPBACK,
    SECRET,
    Edge,
    RecordingOrigin,
    edge_process,
    free_port,
    started,
    wait_until,
)
from tests.support.wire import OP_CLOSE, WsClient
from wsgate.config import parse_route
from wsgate.policy.balance import cookie_value, derive_key, origin_id

COOKIE = "wsgate_affinity"


def config_file(urls: list[str], **health: float) -> Path:
    """An edge TOML with one catch-all route over `urls` and fast health checks."""
    settings = {"interval": 0.2, "timeout": 0.2, "unhealthy_threshold": 1,
                "healthy_threshold": 1, **health}
    lines = ["[[routes]]", 'pattern = "*/*"',
             "origins = [" + ", ".join(json.dumps(u) for u in urls) + "]", "[health]"]
    lines += [f"{key} = {value!r}" for key, value in settings.items()]
    path = Path(tempfile.mkdtemp(prefix="wsgate-origins-")) / "edge.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def edge_for(urls: list[str], **health: float) -> Edge:
    return edge_process(None, extra=("--config", str(config_file(urls, **health))))


def get(edge: Edge, path: str = "/echo", cookie: str | None = None, method: str = "GET",
        body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(LOOPBACK, edge.port, timeout=10)
    try:
        headers = {"Host": "app.example.com"}
        if cookie:
            headers["Cookie"] = cookie
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def served_by(body: bytes) -> int:
    """The port of the recording origin that answered /echo (the Host it was sent)."""
    headers = dict(json.loads(body)["headers"])
    return int(headers["host"].rsplit(":", 1)[1])


def cookie_of(headers: dict[str, str]) -> str:
    value = headers["set-cookie"]
    assert value.startswith(COOKIE + "=")
    return value.split(";", 1)[0]


def admin(edge: Edge, path: str, method: str = "GET") -> tuple[int, object]:
    request = urllib.request.Request(f"http://{LOOPBACK}:{edge.admin_port}{path}",
                                     method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def origin_states(edge: Edge) -> dict[str, dict[str, object]]:
    status, listing = admin(edge, "/origins")
    assert status == 200 and isinstance(listing, list)
    return {entry["origin"]: entry for entry in listing}


def metrics_text(edge: Edge) -> str:
    url = f"http://{LOOPBACK}:{edge.admin_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


@pytest.fixture(scope="module")
def three() -> Iterator[list[RecordingOrigin]]:
    origins = [RecordingOrigin().start() for _ in range(3)]
    yield origins
    for origin in origins:
        origin.stop()


@pytest.fixture(scope="module")
def two_edges(three: list[RecordingOrigin]) -> Iterator[tuple[Edge, Edge]]:
    urls = [o.url for o in three]
    with started(edge_for(urls)) as first, started(edge_for(urls)) as second:
        yield first, second


def test_new_sessions_take_turns_and_the_cookie_keeps_them(
        three: list[RecordingOrigin], two_edges: tuple[Edge, Edge]) -> None:
    first, second = two_edges
    ports = {o.port for o in three}
    sessions = []
    for i in range(6):
        status, headers, body = get(first if i % 2 else second)
        assert status == 200
        sessions.append((cookie_of(headers), served_by(body)))
    # Each edge takes the three origins in turn, so six new sessions reach all three.
    assert {port for _, port in sessions} == ports
    for cookie, port in sessions:
        for edge in (first, second, first):  # either edge routes the cookie alike
            status, headers, body = get(edge, cookie=f"theme=dark; {cookie}")
            assert status == 200 and served_by(body) == port
            assert "set-cookie" not in headers  # nothing new to say
    event = first.wait_event(lambda e: e.get("httpRequest", {}).get("requestUrl", "")
                             .endswith("/echo") and "upstream" in e)
    assert event["upstream"] in {o.url for o in three}


def test_forged_and_foreign_cookies_are_new_sessions(
        three: list[RecordingOrigin], two_edges: tuple[Edge, Edge]) -> None:
    first, _ = two_edges
    route = parse_route("*/*", [o.url for o in three], "routes[0]")
    target = route.origins[0]
    forged = f"{COOKIE}={origin_id(target)}.AAAAAAAAAAAAAAAAAAAAAA"
    foreign = f"{COOKIE}={cookie_value(derive_key('another secret'), route, target).decode()}"
    genuine = f"{COOKIE}={cookie_value(derive_key(SECRET), route, target).decode()}"
    for cookie in (forged, foreign, f"{COOKIE}=", f"{COOKIE}=..;;", "other=1"):
        status, headers, _ = get(first, cookie=cookie)
        assert status == 200
        assert cookie_of(headers) != cookie  # a fresh choice, with its own cookie
    status, headers, body = get(first, cookie=genuine)
    assert status == 200 and "set-cookie" not in headers and served_by(body) == target.port


def test_websocket_upgrade_follows_the_cookie(
        three: list[RecordingOrigin], two_edges: tuple[Edge, Edge]) -> None:
    first, second = two_edges
    _, headers, body = get(first)
    cookie, port = cookie_of(headers), served_by(body)
    chosen = next(o for o in three if o.port == port)

    async def scenario() -> None:
        for edge in (first, second):
            mark = chosen.mark()
            ws = await WsClient.connect(edge.port, "/ws", extra=f"Cookie: {cookie}\r\n".encode())
            assert chosen.since(mark).sent_101 == 1
            reply = await ws.close()
            assert reply is not None and reply.opcode == OP_CLOSE

    asyncio.run(scenario())


def test_a_get_whose_connect_fails_is_retried_on_another_origin_a_post_is_not(
        three: list[RecordingOrigin]) -> None:
    dead = f"http://{LOOPBACK}:{free_port()}"
    live = three[0]
    # Slow checks and a high threshold: the dead origin stays "up" for the test, so
    # every request that names it really tries to connect there.
    with started(edge_for([dead, live.url], interval=30.0, timeout=1.0,
                          unhealthy_threshold=10)) as edge:
        route = parse_route("*/*", [dead, live.url], "routes[0]")
        to_dead = f"{COOKIE}={cookie_value(derive_key(SECRET), route, route.origins[0]).decode()}"
        status, _, body = get(edge, "/echo", to_dead, method="POST", body=b"payload")
        assert status == 502 and body.startswith(b"Edge Proxy Error: connection refused")
        status, headers, body = get(edge, "/echo", to_dead)
        assert status == 200 and served_by(body) == live.port
        retried_cookie = cookie_of(headers)  # the session now lives on the live origin
        assert retried_cookie.split("=", 1)[1].startswith(origin_id(route.origins[1]))
        event = edge.wait_event(lambda e: e.get("httpRequest", {}).get("status") == 200)
        assert event["upstream"] == live.url
        assert origin_states(edge)[route.origins[0].url]["retries"] == 1
        assert f'wsgate_edge_origin_retries_total{{origin="{route.origins[0].url}"}} 1.0' \
            in metrics_text(edge)


def test_no_healthy_origin_is_a_502() -> None:
    urls = [f"http://{LOOPBACK}:{free_port()}" for _ in range(2)]
    with started(edge_for(urls)) as edge:
        assert wait_until(lambda: all(s["state"] == "down"
                                      for s in origin_states(edge).values()), timeout=10)
        status, _, body = get(edge)
        assert (status, body) == (502, b"Edge Proxy Error: no healthy origin\n")
        event = edge.wait_event(lambda e: e.get("errorClass") == "no-healthy-origin")
        assert event["httpRequest"]["status"] == 502 and "upstream" not in event
        text = metrics_text(edge)
        for url in urls:
            assert f'wsgate_edge_origin_up{{origin="{url}"}} 0.0' in text
            assert f'wsgate_edge_origin_ejections_total{{origin="{url}"}} 1.0' in text


def test_drain_from_the_admin_listener(
        three: list[RecordingOrigin], two_edges: tuple[Edge, Edge]) -> None:
    edge, _ = two_edges
    drained = three[1]
    _, headers, body = get(edge)
    while served_by(body) != drained.port:  # a session on the origin about to drain
        _, headers, body = get(edge)
    kept = cookie_of(headers)
    status, state = admin(edge, f"/origins/drain?origin={drained.url}", "POST")
    assert status == 200 and isinstance(state, dict) and state["draining"] is True
    try:
        new = {served_by(get(edge)[2]) for _ in range(6)}
        assert drained.port not in new and len(new) == 2
        status, headers, body = get(edge, cookie=kept)  # its sessions run on
        assert served_by(body) == drained.port and "set-cookie" not in headers
        assert f'wsgate_edge_origin_draining{{origin="{drained.url}"}} 1.0' in metrics_text(edge)
    finally:
        status, state = admin(edge, f"/origins/undrain?origin={drained.url}", "POST")
    assert status == 200 and isinstance(state, dict) and state["draining"] is False
    assert drained.port in {served_by(get(edge)[2]) for _ in range(3)}
    assert admin(edge, "/origins/drain?origin=http://127.0.0.1:1", "POST")[0] == 404
    assert admin(edge, f"/origins/drain?origin={drained.url}")[0] == 405
    assert admin(edge, f"/origins/drain?origin={drained.url}&within=soon", "POST")[0] == 400


def test_an_origin_that_goes_down_gets_its_websockets_closed_with_1012() -> None:
    with RecordingOrigin() as failing, RecordingOrigin() as healthy, \
            started(edge_for([failing.url, healthy.url], interval=0.2)) as edge:
        route = parse_route("*/*", [failing.url, healthy.url], "routes[0]")
        to_failing = cookie_value(derive_key(SECRET), route, route.origins[0]).decode()

        async def scenario() -> None:
            ws = await WsClient.connect(edge.port, "/ws",
                                        extra=f"Cookie: {COOKIE}={to_failing}\r\n".encode())
            assert failing.stats.ws_open == 1
            # The origin stops accepting: its health checks fail, the open tunnel is fine.
            assert failing.loop is not None
            failing.loop.call_soon_threadsafe(failing.servers[0].close)
            frame = await ws.recv_frame(timeout=10)
            assert frame is not None and frame.opcode == OP_CLOSE and frame.close_code == 1012
            await ws.close()

        asyncio.run(scenario())
        assert origin_states(edge)[failing.url]["state"] == "down"
        assert {served_by(get(edge)[2]) for _ in range(4)} == {healthy.port}
        event = edge.wait_event(lambda e: e.get("closeCode") == 1012)
        assert event["upstream"] == failing.url and event["isWebSocket"] is True
