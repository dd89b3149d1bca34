"""Admission control end to end (issue 17): a real `wsgate edge` process, started through
the CLI with an `[admission]` table, in front of real origins on loopback.

Two clients are two source addresses on the loopback network (127.0.0.1 and
127.0.0.2), so the edge's trusted client address (the TCP peer) tells them apart.
Nothing here asserts a duration: the bucket test checks its upper bound against the
time that really passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from tests.guard.fixtures import SECRETS, GuardedStreamlit, start_guarded_streamlit
from tests.hostile import figures
from tests.support import (
    LOOPBACK,
    REPO,
    Edge,
    RecordingOrigin,
    ServerProcess,
    edge_process,
    free_port,
    started,
    wait_until,
)
from tests.support.wire import (
    OP_TEXT,
    HandshakeRefused,
    Incomplete,
    Response,
    WsClient,
    new_ws_key,
    parse_all,
    parse_response,
    rss_bytes,
    upgrade_request,
    ws_accept,
)
from wsgate.doctor.streamlit_session import run_session

OTHER_CLIENT = "127.0.0.2"


# -- clients ----------------------------------------------------------------------------

async def open_ws(port: int, source: str = LOOPBACK, path: str = "/ws") -> WsClient:
    """An upgrade through the edge from `source`; HandshakeRefused for any answer but 101."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(LOOPBACK, port, local_addr=(source, 0)), 10)
    try:
        key = new_ws_key()
        writer.write(upgrade_request(path, key=key))
        buf = b""
        async with asyncio.timeout(10):
            while True:
                try:
                    resp, used = parse_response(buf)
                    break
                except Incomplete:
                    data = await reader.read(65536)
                    if not data:
                        raise ConnectionError(f"closed after {buf[:200]!r}") from None
                    buf += data
        if resp.status != 101:
            raise HandshakeRefused(resp)
        assert resp.header("sec-websocket-accept") == ws_accept(key).encode()
        return WsClient(reader, writer, resp, buf[used:])
    except BaseException:
        writer.close()
        raise


async def refused(port: int, source: str = LOOPBACK) -> Response:
    with pytest.raises(HandshakeRefused) as caught:
        client = await open_ws(port, source)
        await client.close()
    return caught.value.response


async def echoes(client: WsClient, text: str) -> bool:
    await client.send(OP_TEXT, text.encode())
    frame = await client.recv_frame()
    return frame is not None and frame.opcode == OP_TEXT and frame.payload == text.encode()


def refusal_metric(edge: Edge, limit: str) -> float:
    url = f"http://{LOOPBACK}:{edge.admin_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    found = re.search(
        rf'^wsgate_edge_admission_refusals_total{{limit="{limit}"}} ([0-9.e+]+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def admission_events(edge: Edge, limit: str) -> list[dict[str, Any]]:
    return [e for e in edge.events() if e.get("errorClass") == f"admission-{limit}"]


def assert_refusal(resp: Response, status: int, limit: str, retry_after: int | None = None
                   ) -> None:
    assert resp.status == status, resp.raw_head
    value = resp.header("retry-after")
    assert value is not None and int(value) >= 1
    if retry_after is not None:
        assert int(value) == retry_after
    assert f"admission control: {limit}".encode() in resp.body
    assert resp.header("upgrade") is None and resp.header("sec-websocket-accept") is None


def get(path: str = "/", host: str = "app.example.com", extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode()


def pipelined(port: int, requests: bytes, count: int, source: str = LOOPBACK,
              timeout: float = 20.0) -> tuple[list[Response], bytes]:
    """Send `requests` at once on one connection from `source`; read `count` answers
    (or until the edge closes)."""
    with socket.create_connection((LOOPBACK, port), timeout=timeout,
                                  source_address=(source, 0)) as sock:
        with contextlib.suppress(OSError):  # the edge may close after a refusal
            sock.sendall(requests)
        buf = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            responses, bad = parse_all(buf, False)
            assert not bad, bad
            if len(responses) >= count:
                break
            try:
                data = sock.recv(1 << 20)
            except (ConnectionResetError, TimeoutError):
                break
            if not data:
                break
            buf += data
    return parse_all(buf, True)[0], buf


# -- fixtures ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def origin() -> Iterator[RecordingOrigin]:
    with RecordingOrigin(record=False) as running_origin:
        yield running_origin


@contextlib.contextmanager
def admission_edge(origin_url: str, **admission: Any) -> Iterator[Edge]:
    settings: dict[str, Any] = {"admission": admission}
    with edge_process(origin_url, settings=settings) as edge:
        yield edge


# -- WebSockets per client --------------------------------------------------------------

def test_websockets_past_the_client_limit_get_429_others_and_the_first_sessions_unharmed(
        origin: RecordingOrigin) -> None:
    with admission_edge(origin.url, max_websockets_per_client=3) as edge:
        asyncio.run(_websockets_per_client(edge, origin))
        assert refusal_metric(edge, "max_websockets_per_client") == 2
        # Events are written in batches: wait for the two, then check nothing more came.
        assert wait_until(lambda: len(admission_events(edge, "max_websockets_per_client")) >= 2)
        edge.stop()
        events = admission_events(edge, "max_websockets_per_client")
        assert len(events) == 2
        assert {e["httpRequest"]["status"] for e in events} == {429}
        assert {e["httpRequest"]["remoteIp"] for e in events} == {LOOPBACK}


async def _websockets_per_client(edge: Edge, origin: RecordingOrigin) -> None:
    mark = origin.mark()
    first = [await open_ws(edge.port) for _ in range(3)]
    for _ in range(2):
        assert_refusal(await refused(edge.port), 429, "max_websockets_per_client", 5)
    # The refused upgrades never reached the origin.
    assert origin.since(mark).sent_101 == 3
    # The client's admitted sessions work on; another client has its own places.
    assert all([await echoes(client, f"first-{i}") for i, client in enumerate(first)])
    other = [await open_ws(edge.port, OTHER_CLIENT) for _ in range(3)]
    assert all([await echoes(client, "other") for client in other])
    # Closing a session frees its place (the edge sees the close a moment later).
    await first.pop().close()
    again = None
    for _ in range(50):
        try:
            again = await open_ws(edge.port)
            break
        except HandshakeRefused:
            await asyncio.sleep(0.1)
    assert again is not None, "a closed session's place was never freed"
    assert await echoes(again, "again")
    assert all([await echoes(client, "still") for client in [*first, *other]])
    for client in [*first, *other, again]:
        await client.close()


# -- the token bucket -------------------------------------------------------------------

def test_a_burst_past_the_bucket_gets_429_with_retry_after_then_requests_pass(
        origin: RecordingOrigin) -> None:
    rate, burst = 2, 10
    with admission_edge(origin.url, max_requests_per_second_per_client=rate,
                        burst=burst) as edge:
        reached_before = origin.stats.requests
        started_at = time.monotonic()
        responses, _ = pipelined(edge.port, get() * 40, 40)
        elapsed = time.monotonic() - started_at
        statuses = [r.status for r in responses]
        assert 429 in statuses, statuses
        admitted = statuses.index(429)
        assert statuses[:admitted] == [200] * admitted
        # A full bucket to start with, plus what refilled while the burst was sent.
        assert burst <= admitted <= burst + rate * elapsed
        refusal = responses[admitted]
        assert_refusal(refusal, 429, "max_requests_per_second_per_client")
        # Nothing refused reached the origin (the refusal also ended the connection).
        assert origin.stats.requests - reached_before == admitted
        # Another client is not limited by this one's bucket.
        other, _ = pipelined(edge.port, get() * 3, 3, source=OTHER_CLIENT)
        assert [r.status for r in other] == [200, 200, 200]
        # After waiting as told, the client passes again.
        time.sleep(int(refusal.header("retry-after") or b"0"))
        after, _ = pipelined(edge.port, get(), 1)
        assert [r.status for r in after] == [200]
        assert refusal_metric(edge, "max_requests_per_second_per_client") >= 1


# -- WebSockets per origin --------------------------------------------------------------

def test_the_origin_is_never_given_more_sessions_than_its_limit(
        origin: RecordingOrigin) -> None:
    with admission_edge(origin.url, max_websockets_per_origin=2) as edge:
        asyncio.run(_websockets_per_origin(edge, origin))
        assert refusal_metric(edge, "max_websockets_per_origin") == 3


async def _websockets_per_origin(edge: Edge, origin: RecordingOrigin) -> None:
    mark = origin.mark()
    held = [await open_ws(edge.port), await open_ws(edge.port, OTHER_CLIENT)]
    for source in (LOOPBACK, OTHER_CLIENT, "127.0.0.3"):
        assert_refusal(await refused(edge.port, source), 503, "max_websockets_per_origin", 5)
    assert origin.since(mark).sent_101 == 2
    assert origin.stats.ws_open == 2
    assert all([await echoes(client, "held") for client in held])
    await held.pop().close()
    assert wait_until(lambda: origin.stats.ws_open == 1)
    replacement = None
    for _ in range(50):
        try:
            replacement = await open_ws(edge.port, "127.0.0.3")
            break
        except HandshakeRefused as exc:
            assert exc.response.status == 503
            await asyncio.sleep(0.1)
    assert replacement is not None and await echoes(replacement, "in")
    assert origin.stats.ws_open == 2
    for client in [*held, replacement]:
        await client.close()


# -- max_connections --------------------------------------------------------------------

def test_connections_past_max_connections_get_503_and_are_closed(
        origin: RecordingOrigin) -> None:
    with admission_edge(origin.url, max_connections=3) as edge:
        held = []
        for _ in range(3):  # each connection answered once and kept open (keep-alive)
            sock = socket.create_connection((LOOPBACK, edge.port), timeout=10)
            sock.sendall(get())
            assert _read_statuses(sock, 1) == [b"200"]
            held.append(sock)
        responses, raw = pipelined(edge.port, get(), 1)
        assert len(responses) == 1, raw
        assert_refusal(responses[0], 503, "max_connections")
        assert responses[0].header("connection") == b"close"
        # The admitted connections still work; closing one frees its place.
        for sock in held:
            sock.sendall(get())
            assert _read_statuses(sock, 1) == [b"200"]
        held.pop().close()

        def one_more_passes() -> bool:
            answers, _ = pipelined(edge.port, get(), 1)
            return bool(answers) and answers[0].status == 200
        assert wait_until(one_more_passes, timeout=10)
        for sock in held:
            sock.close()
        assert refusal_metric(edge, "max_connections") >= 1


# -- flood summaries --------------------------------------------------------------------

def test_a_flood_of_refusals_is_logged_ten_times_then_summarised(
        origin: RecordingOrigin) -> None:
    with admission_edge(origin.url, max_websockets_per_client=1) as edge:
        async def flood() -> None:
            held = await open_ws(edge.port)
            for _ in range(30):
                assert (await refused(edge.port)).status == 429
            assert await echoes(held, "unharmed")
            await held.close()
        asyncio.run(flood())
        edge.stop()  # pending summaries are written at shutdown
    events = admission_events(edge, "max_websockets_per_client")
    alone = [e for e in events if "refusedCount" not in e]
    summaries = [e for e in events if "refusedCount" in e]
    assert len(alone) == 10
    assert [s["refusedCount"] for s in summaries] == [20]
    assert summaries[0]["httpRequest"]["remoteIp"] == LOOPBACK


# -- memory under a flood of distinct addresses -----------------------------------------

ADDRESSES = 100_000
PER_WRITE = 250  # pipelined requests per write
CONNECTIONS = 8
# The stated bound: a tracked client costs about 175 bytes, and the table never holds
# more than max_tracked_clients of them (already reached during the warm-up); 100,000
# more addresses may not grow the edge by more than this (kept forever, they would
# cost some 17 MB).
RSS_GROWTH_BOUND = 8 * 1024 * 1024


@pytest.mark.slow
def test_a_flood_of_100k_distinct_client_addresses_costs_bounded_memory() -> None:
    port = free_port()
    settings = {"client_ip_header": "X-Client-IP",
                # An address that sent one request is forgotten a second later (its bucket
                # is full again); the cap bounds how many the table holds within that second.
                "admission": {"max_requests_per_second_per_client": 1, "burst": 5,
                              "max_tracked_clients": 1000}}
    fast_origin = ServerProcess([sys.executable, "-m", "tests.edge.fast_origin", "--port",
                                 str(port)], port, cwd=str(REPO))
    with started(fast_origin), \
            edge_process(f"http://{LOOPBACK}:{port}", settings=settings) as edge:
        # Warm-up: pools, buffers, the table at its full size.
        assert _send_from_addresses(edge.port, range(200_000, 212_000)) == 12_000
        before = rss_bytes(edge.pid)
        answered = _send_from_addresses(edge.port, range(ADDRESSES))
        after = rss_bytes(edge.pid)
        figures.put("admission: edge RSS growth over 100k client addresses (MiB)",
                    round((after - before) / 2**20, 1))
        # Every address was a new client with a full bucket: all passed to the origin.
        assert answered == ADDRESSES
        assert after - before < RSS_GROWTH_BOUND, (before, after)
        # The limit still holds for a client: its burst passes, the next request not.
        responses, _ = pipelined(edge.port, get(extra="X-Client-IP: 10.200.0.1\r\n") * 6, 6)
        assert [r.status for r in responses] == [200] * 5 + [429]


def _send_from_addresses(port: int, numbers: range) -> int:
    """One request per address (`10.a.b.c` in X-Client-IP), pipelined on keep-alive
    connections; returns the number of 200 answers (bounded: each read has a deadline)."""
    batches = [numbers[i:i + PER_WRITE] for i in range(0, len(numbers), PER_WRITE)]
    socks = [socket.create_connection((LOOPBACK, port), timeout=30)
             for _ in range(CONNECTIONS)]
    ok = 0
    try:
        for start in range(0, len(batches), CONNECTIONS):
            group = list(zip(socks, batches[start:start + CONNECTIONS], strict=False))
            for sock, batch in group:
                sock.sendall(b"".join(
                    get(extra=f"X-Client-IP: 10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}\r\n")
                    for n in batch))
            for sock, batch in group:
                ok += _read_statuses(sock, len(batch)).count(b"200")
    finally:
        for sock in socks:
            sock.close()
    return ok


def _read_statuses(sock: socket.socket, count: int) -> list[bytes]:
    """The status codes of `count` responses (the origin answers "ok" with a length)."""
    buf = b""
    statuses: list[bytes] = []
    while len(statuses) < count:
        data = sock.recv(1 << 20)
        assert data, f"the edge closed after {len(statuses)} of {count} answers"
        buf += data
        while True:
            try:
                resp, used = parse_response(buf)
            except Incomplete:
                break
            statuses.append(str(resp.status).encode())
            buf = buf[used:]
    return statuses


# -- WebSockets per origin, in front of a real Streamlit --------------------------------

SESSION_COUNT_APP = REPO / "tests" / "edge" / "session_count_app.py"


@pytest.mark.slow
@pytest.mark.streamlit
def test_a_streamlit_origin_never_holds_more_sessions_than_its_limit() -> None:
    with start_guarded_streamlit(SESSION_COUNT_APP) as app, \
            edge_process(app.base_url, secret=SECRETS[0],
                         settings={"admission": {"max_websockets_per_origin": 2}}) as edge:
        asyncio.run(_streamlit_sessions(edge, app))
        assert refusal_metric(edge, "max_websockets_per_origin") == 2


async def _streamlit_sessions(edge: Edge, app: GuardedStreamlit) -> None:
    stream = f"ws://{LOOPBACK}:{edge.port}/_stcore/stream"
    held = [await _open_streamlit(stream) for _ in range(2)]
    for _ in range(2):
        with pytest.raises(InvalidStatus) as caught:
            await _open_streamlit(stream)
        assert caught.value.response.status_code == 503
        assert b"max_websockets_per_origin" in caught.value.response.body
    # What the origin itself holds, asked at the origin: the two admitted sessions.
    assert await _sessions_at_origin(app, until=2) == 2
    await held.pop().close()
    assert await _sessions_at_origin(app, until=1) == 1
    held.append(await _open_streamlit(stream))
    assert await _sessions_at_origin(app, until=2) == 2
    for ws in held:
        await ws.close()


async def _open_streamlit(url: str) -> ClientConnection:
    return await connect(url, subprotocols=[Subprotocol("streamlit"), Subprotocol("x")],
                         open_timeout=20, proxy=None, compression=None)


async def _sessions_at_origin(app: GuardedStreamlit, until: int) -> int:
    """How many sessions the origin holds besides this probe's own (a session made
    directly, with the secret), asked again (bounded) until it is `until`: the origin
    registers and lets go of a session a moment after its handshake or close."""
    others = -1
    for _ in range(20):
        result = await run_session(app.ws_url, headers=app.secret_headers, timeout=30)
        assert result.ok, result.error
        [line] = [t for t in result.texts if t.startswith("active_sessions=")]
        others = int(line.partition("=")[2]) - 1
        if others == until:
            break
        await asyncio.sleep(0.25)
    return others
