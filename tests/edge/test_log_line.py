"""The edge's logging exit writes the shared event schema, byte for byte.

`EdgeServer.log_exchange` is the one exit of every exchange; it writes the line
`logs.events.edge_line` templates (a dict and the encoder cost more than the rest of
a request's line). This pins what the exit writes to `build_event` + `dumps`, the
one schema the guard and `wsgate logs` use, for any client-supplied text, and shows
that a second exit for the same exchange is refused.
"""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsgate.config import load_config
from wsgate.edge.exchange import Exchange
from wsgate.edge.server import EdgeServer
from wsgate.logs.events import HttpRequest, build_event, dumps

CONFIG = load_config(None, {"origin": "http://127.0.0.1:8501"}, {"WSGATE_SECRET": "s" * 24})
ROUTE = CONFIG.routes[0]

# Header bytes as the edge holds them: anything but CR/LF/NUL, read as latin-1.
header_bytes = st.binary(max_size=40).map(
    lambda b: bytes(c for c in b if c not in b"\r\n\x00"))


def recording_server() -> tuple[EdgeServer, list[str]]:
    server = EdgeServer(CONFIG, logging.getLogger("test-log-line"))
    lines: list[str] = []
    server.write_line = lines.append
    return server, lines


@given(
    method=st.sampled_from([b"GET", b"POST", b"-"]),
    target=header_bytes.map(lambda b: b"/" + b),
    host=header_bytes,
    user_agent=header_bytes,
    scheme=st.sampled_from([b"http", b"https"]),
    error=st.one_of(st.none(), st.text(max_size=30)),
    status=st.integers(100, 599),
    websocket=st.booleans(),
    with_route=st.booleans(),
    req_id=st.sampled_from([b"", b"abc-123", b"0" * 32]),
    sizes=st.tuples(st.integers(0, 2**40), st.integers(0, 2**40)),
)
def test_line_equals_the_shared_schema(
        method: bytes, target: bytes, host: bytes, user_agent: bytes, scheme: bytes,
        error: str | None, status: int, websocket: bool, with_route: bool, req_id: bytes,
        sizes: tuple[int, int]) -> None:
    server, lines = recording_server()
    ex = Exchange(0.0, "203.0.113.7")
    ex.method, ex.target, ex.host, ex.user_agent = method, target, host, user_agent
    ex.websocket, ex.req_id, ex.scheme, ex.status = websocket, req_id, scheme, status
    ex.route = ROUTE if with_route else None
    ex.from_client, ex.to_client = sizes
    if error is not None:
        ex.error_class, ex.error = "bad-request", error

    server.log_exchange(ex)

    [line] = lines
    severity, message = ex.outcome()
    event = json.loads(line)
    expected = build_event(
        source="edge", message=message, severity=severity,
        http=HttpRequest(
            method=method.decode("latin-1"),
            url=f"{scheme.decode()}://{host.decode('latin-1')}{target.decode('latin-1')}",
            status=status, latency_s=float(event["httpRequest"]["latency"][:-1]),
            remote_ip="203.0.113.7", user_agent=user_agent.decode("latin-1"),
            request_size=ex.from_client, response_size=ex.to_client),
        requestId=req_id.decode("ascii") or None,
        route=ROUTE.pattern if with_route else None,
        upstream=ROUTE.origin.url if with_route else None,
        isWebSocket=websocket, bytesFromClient=ex.from_client, bytesToClient=ex.to_client,
        errorClass=ex.error_class, error=error)
    expected["timestamp"] = event["timestamp"]
    assert line == dumps(expected)


def test_an_exchange_leaves_through_the_exit_once() -> None:
    server, lines = recording_server()
    ex = Exchange(0.0, "127.0.0.1")
    ex.status = 200
    server.log_exchange(ex)
    with pytest.raises(AssertionError, match="logged twice"):
        server.log_exchange(ex)
    assert len(lines) == 1
