"""Several origins end to end, through the real `wsgate edge` CLI: affinity cookie,
turns, retry on another origin, health, 1012, draining, per-origin metrics.

First on recording origins (in-process threads), then on three real `wsgate run`
replicas behind two edges with the same configuration (Streamlit sessions resumed,
spread, and moved when a replica is killed).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import signal
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from tests.guard.fixtures import GuardedStreamlit, start_guarded_streamlit
from tests.support import (
    LOOPBACK,
    SECRET,
    Edge,
    RecordingOrigin,
    edge_process,
    free_port,
    started,
    wait_for_port,
    wait_until,
)
from tests.support.wire import OP_CLOSE, WsClient
from wsgate.config import parse_origin, parse_route
from wsgate.policy.balance import cookie_value, derive_key, origin_id

if TYPE_CHECKING:
    from wsgate.doctor.streamlit_session import SessionResult

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


@contextlib.contextmanager
def serving(edge: Edge) -> Iterator[Edge]:
    """`edge` started, its admin listener too (it opens just after the public one)."""
    with started(edge) as running:
        wait_for_port(running.admin_port)
        yield running


def get(edge: Edge, path: str = "/echo", cookie: str | None = None, method: str = "GET",
        body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(LOOPBACK, edge.port, timeout=10)
    try:
        headers = {"Host": "app.example.com"}
        if cookie:
            headers["Cookie"] = cookie
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        # The edge's own Set-Cookie only (Streamlit sets _streamlit_xsrf besides).
        headers = {k.lower(): v for k, v in resp.getheaders() if k.lower() != "set-cookie"}
        ours = [v for k, v in resp.getheaders()
                if k.lower() == "set-cookie" and v.startswith(COOKIE + "=")]
        assert len(ours) <= 1, ours
        if ours:
            headers["set-cookie"] = ours[0]
        return resp.status, headers, resp.read()
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


def state_of(edge: Edge, url: str) -> str | None:
    """An origin's state as the edge sees it; None while its admin listener is not up
    yet (it starts just after the public one, which is what `started` waits for)."""
    try:
        return str(origin_states(edge)[url]["state"])
    except OSError:
        return None


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
    with serving(edge_for(urls)) as first, serving(edge_for(urls)) as second:
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


def test_no_affinity_cookie_on_publicly_cacheable_answers(two_edges: tuple[Edge, Edge]) -> None:
    status, headers, _ = get(two_edges[0], "/static/app.js")  # the edge's cache rule
    assert status == 200 and headers["cache-control"].startswith("public")
    assert "set-cookie" not in headers  # a shared cache must never hand it to others


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
            try:
                # Recorded before the origin answers, so no race with the relayed 101.
                seen = chosen.since(mark).requests
                assert [r.target for r in seen if r.header("upgrade")] == [b"/ws"]
            finally:
                reply = await ws.close()  # the shared edges count open WebSockets
            assert reply is not None and reply.opcode == OP_CLOSE

    asyncio.run(scenario())


def test_a_get_whose_connect_fails_is_retried_on_another_origin_a_post_is_not(
        three: list[RecordingOrigin]) -> None:
    dead = f"http://{LOOPBACK}:{free_port()}"
    live = three[0]
    # Slow checks and a high threshold: the dead origin stays "up" for the test, so
    # every request that names it really tries to connect there.
    with serving(edge_for([dead, live.url], interval=30.0, timeout=1.0,
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
    with serving(edge_for(urls)) as edge:
        assert wait_until(lambda: all(state_of(edge, u) == "down" for u in urls), timeout=10)
        status, _, body = get(edge)
        assert (status, body) == (502, b"Edge Proxy Error: no healthy origin\n")
        event = edge.wait_event(lambda e: e.get("errorClass") == "no-healthy-origin")
        assert event["httpRequest"]["status"] == 502 and "upstream" not in event
        for url in urls:
            down = edge.wait_event(lambda e, u=url: e.get("upstream") == u
                                   and e["message"] == "origin down")
            assert (down["severity"], down["errorClass"]) == ("WARNING", "origin-unhealthy")
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
            serving(edge_for([failing.url, healthy.url], interval=0.2)) as edge:
        route = parse_route("*/*", [failing.url, healthy.url], "routes[0]")
        to_failing = cookie_value(derive_key(SECRET), route, route.origins[0]).decode()

        async def scenario() -> None:
            ws = await WsClient.connect(edge.port, "/ws",
                                        extra=f"Cookie: {COOKIE}={to_failing}\r\n".encode())
            for _ in range(100):  # counted just after the origin's 101 went out
                if failing.stats.ws_open == 1:
                    break
                await asyncio.sleep(0.02)
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


# --- three `wsgate run` replicas (real Streamlit) behind two edges ---------------------

HEALTH_INTERVAL = 1.0


@dataclass
class Held:
    """A Streamlit session kept open after its script ran, as a browser tab keeps it."""

    ws: ClientConnection
    session_id: str
    cookie: str
    opened_at: float


@pytest.fixture(scope="module")
def replicas() -> Iterator[list[GuardedStreamlit]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(start_guarded_streamlit(secrets=(SECRET,)))
               for _ in range(3)]


@pytest.fixture(scope="module")
def replica_edges(replicas: list[GuardedStreamlit]) -> Iterator[tuple[Edge, Edge]]:
    urls = [r.base_url for r in replicas]
    # Two failures in a row take a replica out: one slow answer on a busy machine
    # must not move sessions.
    health = {"interval": HEALTH_INTERVAL, "timeout": HEALTH_INTERVAL,
              "unhealthy_threshold": 2}
    with serving(edge_for(urls, **health)) as first, serving(edge_for(urls, **health)) as second:
        yield first, second


def replica_of(cookie: str, replicas: list[GuardedStreamlit]) -> int:
    """Which replica an affinity cookie names (its origin id)."""
    oid = cookie.split("=", 1)[1].split(".", 1)[0]
    return [origin_id(parse_origin(r.base_url, "origin")) for r in replicas].index(oid)


def browse(edge: Edge, cookie: str | None = None) -> str:
    """What the frontend does before each (re)connect: fetch /_stcore/health with the
    browser's cookie; returns the cookie the browser then holds."""
    status, headers, body = get(edge, "/_stcore/health", cookie)
    assert (status, body) == (200, b"ok"), (status, body)
    return cookie_of(headers) if "set-cookie" in headers else str(cookie)


def others(edges: tuple[Edge, Edge], count: int) -> None:
    """Other clients' requests (no cookie) between one browser's reconnects."""
    for i in range(count):
        assert get(edges[i % 2], "/_stcore/health")[0] == 200


def ws_url(edge: Edge) -> str:
    return f"ws://{LOOPBACK}:{edge.port}/_stcore/stream"


def session(edge: Edge, cookie: str, resume: str | None = None) -> SessionResult:
    from wsgate.doctor.streamlit_session import run_session

    return asyncio.run(run_session(ws_url(edge), headers={"Cookie": cookie}, resume=resume))


async def hold(edge: Edge, cookie: str, resume: str | None = None) -> Held:
    """Open a session as the frontend does, run the script once, keep the socket open."""
    ws, opened_at = await open_stream(edge, cookie, resume)
    return Held(ws, await run_script(ws), cookie, opened_at)


async def reconnect(edge: Edge, held: Held) -> tuple[ClientConnection, str, float]:
    """The frontend's reconnect: health (with the old cookie), then the stream offering
    the previous session id. Returns the socket, the cookie now held, when it opened."""
    cookie = await asyncio.to_thread(browse, edge, held.cookie)
    ws, opened_at = await open_stream(edge, cookie, held.session_id)
    return ws, cookie, opened_at


async def open_stream(edge: Edge, cookie: str, resume: str | None
                      ) -> tuple[ClientConnection, float]:
    from wsgate.doctor.streamlit_session import PLACEHOLDER_TOKEN, SUBPROTOCOL

    offered = [Subprotocol(SUBPROTOCOL), Subprotocol(PLACEHOLDER_TOKEN)]
    if resume:
        offered.append(Subprotocol(resume))
    ws = await connect(ws_url(edge), subprotocols=offered, additional_headers={"Cookie": cookie},
                       open_timeout=10, ping_interval=None, proxy=None, compression=None)
    return ws, time.monotonic()


async def run_script(ws: ClientConnection) -> str:
    """Run the script once on an open stream; the session id the server gave."""
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    from wsgate.doctor.streamlit_session import rerun_message

    await ws.send(rerun_message())
    session_id = ""
    async with asyncio.timeout(30):
        async for data in ws:
            msg = ForwardMsg()
            msg.ParseFromString(data)
            kind = msg.WhichOneof("type")
            if kind == "new_session":
                session_id = msg.new_session.initialize.session_id
            elif kind == "script_finished":
                break
    assert session_id
    return session_id


@pytest.mark.streamlit
@pytest.mark.slow
def test_a_session_resumes_on_its_replica_through_either_edge(
        replicas: list[GuardedStreamlit], replica_edges: tuple[Edge, Edge]) -> None:
    first, second = replica_edges
    cookie = browse(first)
    opened = session(first, cookie)
    assert opened.ok and opened.session_id, opened.error
    for attempt, edge in enumerate((second, first, second, first), start=1):
        others(replica_edges, attempt)
        assert browse(edge, cookie) == cookie, origin_states(edge)  # still its replica
        again = session(edge, cookie, resume=opened.session_id)
        assert again.ok, again.error
        assert again.session_id == opened.session_id, f"session lost at reconnect {attempt}"
    home = replicas[replica_of(cookie, replicas)].base_url
    for edge in replica_edges:
        ended = [e for e in edge.events() if e.get("isWebSocket") and "closedBy" in e]
        assert ended and {e["upstream"] for e in ended} == {home}


@pytest.mark.streamlit
@pytest.mark.slow
def test_new_sessions_spread_over_the_replicas_and_a_forged_cookie_still_works(
        replicas: list[GuardedStreamlit], replica_edges: tuple[Edge, Edge]) -> None:
    homes = []
    for i in range(12):
        edge = replica_edges[i % 2]
        cookie = browse(edge)
        result = session(edge, cookie)
        assert result.ok, result.error
        homes.append(replica_of(cookie, replicas))
    assert set(homes) == {0, 1, 2}, homes
    target = parse_origin(replicas[0].base_url, "origin")
    forged = f"{COOKIE}={origin_id(target)}.forged-tag-forged-tag-xx"
    result = session(replica_edges[0], forged)
    assert result.ok and result.script_finished, result.error
    assert browse(replica_edges[0], forged) != forged  # the page gets a genuine cookie


@pytest.mark.streamlit
@pytest.mark.slow
def test_the_doctor_sees_affinity_through_the_edge(replica_edges: tuple[Edge, Edge]) -> None:
    from tests.doctor.helpers import explain, run_doctor

    _, report = run_doctor(replica_edges[0].url + "/")
    checks = {c["id"]: c for c in report["checks"]}
    assert checks["affinity"]["status"] == "pass", explain(report)
    assert "affinity-missing" not in [d["id"] for d in report["diagnoses"]]


async def lose_a_replica(replicas: list[GuardedStreamlit], edges: tuple[Edge, Edge]
                         ) -> tuple[int, list[Held]]:
    """20 open sessions; SIGKILL the replica of the first; its sessions get a close code
    and reconnect to live replicas. Returns the victim and the sessions still open."""
    held = [await hold(edge, browse(edge)) for edge in edges * 10]
    victim = replica_of(held[0].cookie, replicas)
    doomed = [h for h in held if replica_of(h.cookie, replicas) == victim]
    spared = [h for h in held if h not in doomed]
    process = replicas[victim].server.process
    assert process is not None and spared
    os.killpg(process.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    for h in doomed:
        await asyncio.wait_for(h.ws.wait_closed(), HEALTH_INTERVAL + 1)
        assert h.ws.close_code in (1011, 1012), h.ws.close_code
    reopened = await asyncio.gather(*(reconnect(edge, h) for h, edge in zip(
        doomed, edges * len(doomed), strict=False)))
    back = []
    for ws, cookie, opened_at in reopened:
        assert replica_of(cookie, replicas) != victim
        assert opened_at - killed_at <= HEALTH_INTERVAL + 1
        back.append(Held(ws, await run_script(ws), cookie, opened_at))  # a new session
    for h in spared:  # the other sessions never noticed
        await asyncio.wait_for(h.ws.ping(), 5)
    return victim, spared + back


@pytest.mark.streamlit
@pytest.mark.slow
def test_a_killed_replica_loses_its_sessions_to_live_ones_and_comes_back(
        replicas: list[GuardedStreamlit], replica_edges: tuple[Edge, Edge]) -> None:
    """Last in the module: it kills one replica (and starts it again)."""

    async def scenario() -> None:
        victim, still_open = await lose_a_replica(replicas, replica_edges)
        url = replicas[victim].base_url
        for edge in replica_edges:
            assert wait_until(lambda e=edge: state_of(e, url) == "down", 10)
        # Down, it takes no new session, though it has the fewest WebSockets (none).
        assert victim not in [replica_of(browse(edge), replicas) for edge in replica_edges * 3]
        with start_guarded_streamlit(secrets=(SECRET,), port=replicas[victim].port):
            for edge in replica_edges:
                assert wait_until(lambda e=edge: state_of(e, url) == "up", 10)
            # Back, it has the fewest WebSockets: the next new sessions go there.
            for edge in replica_edges:
                fresh = await hold(edge, browse(edge))
                assert replica_of(fresh.cookie, replicas) == victim
                still_open.append(fresh)
            for h in still_open:
                await h.ws.close()

    asyncio.run(scenario())
