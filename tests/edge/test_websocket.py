"""WebSockets through a real `wsgate edge` to a real `websockets` origin (and to the
recording origin's own port for misbehaving upgrade answers)."""

from __future__ import annotations

import contextlib
import json
import socket

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.edge.conftest import WS_ACCEPT, read_head, status_of, ws_upgrade_request
from tests.support import SECRET, Edge, RecordingOrigin
from tests.support.wire import recv_until_closed


def ws_url(edge: Edge, path: str = "/echo") -> str:
    return f"ws://127.0.0.1:{edge.port}{path}"


def test_text_binary_fragmented_and_big_messages(ws_edge: Edge) -> None:
    with connect(ws_url(ws_edge), max_size=None, compression=None) as ws:
        ws.send("héllo")
        assert ws.recv() == "héllo"
        ws.send(b"\x00\x01\xff")
        assert ws.recv() == b"\x00\x01\xff"
        ws.send(["frag", "men", "ted"])  # one message in three frames
        assert ws.recv() == "fragmented"
        big = bytes(range(256)) * (16 * 4096)  # 16 MiB
        ws.send(big)
        assert ws.recv(timeout=30) == big


def test_ping_pong_passes_through(ws_edge: Edge) -> None:
    with connect(ws_url(ws_edge)) as ws:
        assert ws.ping(b"are you there").wait(5)


def test_close_codes_both_ways(ws_edge: Edge) -> None:
    with connect(ws_url(ws_edge)) as ws:
        ws.send("please close 4001")
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (4001, "asked to")
    event = ws_edge.wait_event(lambda e: e.get("closeCode") == 4001)
    assert event["closedBy"] == "origin" and event["isWebSocket"] is True

    with connect(ws_url(ws_edge)) as ws:
        ws.send("x")
        ws.recv()
        ws.close(4321, "client says bye")
    assert ws.close_code == 4321  # the origin echoed the client's code
    event = ws_edge.wait_event(lambda e: e.get("closeCode") == 4321)
    assert event["closedBy"] == "client" and event["message"] == "websocket session"
    assert event["bytesFromClient"] > 0 and event["bytesToClient"] > 0
    assert event["wsDurationMs"] >= 0 and event["httpRequest"]["status"] == 101


def test_origin_close_code_from_path(ws_edge: Edge) -> None:
    with connect(ws_url(ws_edge, "/close/4404")) as ws, pytest.raises(ConnectionClosed) as info:
        ws.recv(timeout=5)
    assert info.value.rcvd is not None and info.value.rcvd.code == 4404


def test_subprotocol_and_deflate_negotiated_end_to_end(ws_edge: Edge,
                                                       origins: RecordingOrigin) -> None:
    with connect(ws_url(ws_edge), subprotocols=["superchat", "chat"],
                 additional_headers={"X-CF-Secret": "forged"}) as ws:
        assert ws.subprotocol == "superchat"
        assert ws.response is not None
        assert "permessage-deflate" in ws.response.headers["Sec-WebSocket-Extensions"]
        ws.send("headers")
        seen = dict((k.lower(), v) for k, v in json.loads(ws.recv()))
        assert ws.request is not None
    # The origin saw exactly the client's offer.
    assert seen["sec-websocket-protocol"] == "superchat, chat"
    assert seen["sec-websocket-extensions"] == ws.request.headers["Sec-WebSocket-Extensions"]
    assert seen["x-cf-secret"] == SECRET
    assert seen["x-forwarded-for"] == "127.0.0.1" and seen["x-forwarded-proto"] == "http"


def test_upgrade_refused_by_origin_is_relayed_without_tunnel(http_edge: Edge,
                                                             origins: RecordingOrigin) -> None:
    for path, status in (("/_bad/403", 403), ("/_bad/400", 400), ("/_bad/200", 200)):
        with socket.create_connection(("127.0.0.1", http_edge.port), timeout=5) as sock:
            sock.sendall(ws_upgrade_request(path))
            head, rest = read_head(sock)
            assert status_of(head) == status
            assert b"upgrade" not in head.lower().split(b"\r\n", 1)[1]
            # Not a tunnel: the edge closes after the answer.
            sock.sendall(b"\x81\x85\x00\x00\x00\x00hello")
            tail = recv_until_closed(sock, rest)
            assert b"hello" not in tail
    with pytest.raises(InvalidStatus) as info:
        connect(ws_url(http_edge, "/_bad/403"))
    assert info.value.response.status_code == 403


def test_wrong_accept_from_origin_gives_502(http_edge: Edge) -> None:
    out = http_edge.raw(ws_upgrade_request("/_bad/accept"))
    assert status_of(out) == 502 and b"Edge Proxy Error: " in out
    assert b"Switching Protocols" not in out
    event = http_edge.wait_event(lambda e: e.get("errorClass") == "bad-handshake"
                                 and e["httpRequest"]["status"] == 502)
    assert event["severity"] == "ERROR"


def test_origin_lost_gives_1011_at_a_frame_boundary(http_edge: Edge) -> None:
    with socket.create_connection(("127.0.0.1", http_edge.port), timeout=5) as sock:
        sock.sendall(ws_upgrade_request("/_bad/die"))
        head, rest = read_head(sock)
        assert status_of(head) == 101 and WS_ACCEPT.encode() in head
        data = recv_until_closed(sock, rest)
    assert data.startswith(b"\x81\x02hi")
    assert data[2 + 2:2 + 2 + 4] == b"\x88\x18\x03\xf3"  # close, 24-byte payload, 1011
    event = http_edge.wait_event(lambda e: e.get("errorClass") == "origin-lost")
    assert event["closeCode"] == 1011 and event["severity"] == "ERROR"
    assert event["closedBy"] == "origin"


def test_origin_lost_mid_frame_just_closes(http_edge: Edge) -> None:
    with socket.create_connection(("127.0.0.1", http_edge.port), timeout=5) as sock:
        sock.sendall(ws_upgrade_request("/_bad/die-mid"))
        head, rest = read_head(sock)
        assert status_of(head) == 101
        data = recv_until_closed(sock, rest)
    assert data == b"\x81\x0ahal"  # the partial frame, then no close frame (boundary lost)
    http_edge.wait_event(lambda e: e.get("errorClass") == "origin-lost-mid-frame")


def test_origin_killed_with_websockets_open(ws_edge: Edge, origins: RecordingOrigin) -> None:
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(connect(ws_url(ws_edge))) for _ in range(3)]
        for ws in clients:
            ws.send("x")
            assert ws.recv(timeout=5) == "x"
        origins.kill_websockets()
        for ws in clients:
            with pytest.raises(ConnectionClosed) as info:
                ws.recv(timeout=5)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1011


def test_secret_never_in_logs(ws_edge: Edge, http_edge: Edge) -> None:
    for edge in (ws_edge, http_edge):
        assert SECRET.encode() not in edge.log_file.read_bytes()
