"""The edge's templated log line is the shared event schema, byte for byte.

`EdgeServer._line` builds its JSON with one f-string (a dict and the encoder cost
more than the rest of a request's line); this pins it to `build_event` + `dumps`,
the one schema the guard and `wsgate logs` use, for any client-supplied text.
"""

from __future__ import annotations

import json
import logging

from hypothesis import given
from hypothesis import strategies as st

from wsgate.config import load_config
from wsgate.edge.server import EdgeServer, _Exchange
from wsgate.logs.events import HttpRequest, build_event, dumps

CONFIG = load_config(None, {"origin": "http://127.0.0.1:8501"}, {"WSGATE_SECRET": "s" * 24})
SERVER = EdgeServer(CONFIG, logging.getLogger("test-log-line"))
ROUTE = CONFIG.routes[0]

# Header bytes as the edge holds them: anything but CR/LF/NUL, read as latin-1.
header_bytes = st.binary(max_size=40).map(
    lambda b: bytes(c for c in b if c not in b"\r\n\x00"))


@given(
    method=st.sampled_from([b"GET", b"POST", b"-"]),
    target=header_bytes.map(lambda b: b"/" + b),
    host=header_bytes,
    user_agent=header_bytes,
    message=st.text(max_size=30),
    error=st.one_of(st.none(), st.text(max_size=30)),
    status=st.integers(100, 599),
    websocket=st.booleans(),
    with_route=st.booleans(),
    req_id=st.sampled_from([b"", b"abc-123", b"0" * 32]),
    sizes=st.tuples(st.integers(0, 2**40), st.integers(0, 2**40)),
)
def test_line_equals_the_shared_schema(
        method: bytes, target: bytes, host: bytes, user_agent: bytes, message: str,
        error: str | None, status: int, websocket: bool, with_route: bool, req_id: bytes,
        sizes: tuple[int, int]) -> None:
    ex = _Exchange(0.0, "203.0.113.7")
    ex.method, ex.target, ex.host, ex.user_agent = method, target, host, user_agent
    ex.websocket, ex.req_id = websocket, req_id
    ex.route = ROUTE if with_route else None
    from_client, to_client = sizes
    tail = f',"bytesFromClient":{from_client},"bytesToClient":{to_client}'
    if error is not None:
        tail += ',"error":' + json.dumps(error, ensure_ascii=False)

    line = SERVER._line(ex, message, "WARNING", status=status, latency_s=0.0123456,
                        from_client=from_client, to_client=to_client, tail=tail)

    expected = build_event(
        source="edge", message=message, severity="WARNING",
        http=HttpRequest(
            method=method.decode("latin-1"),
            url=f"https://{host.decode('latin-1')}{target.decode('latin-1')}",
            status=status, latency_s=0.0123456, remote_ip="203.0.113.7",
            user_agent=user_agent.decode("latin-1"),
            request_size=from_client, response_size=to_client),
        requestId=req_id.decode("ascii") or None,
        route=ROUTE.pattern if with_route else None,
        upstream=ROUTE.origin.url if with_route else None,
        isWebSocket=websocket, bytesFromClient=from_client, bytesToClient=to_client,
        error=error)
    expected["timestamp"] = json.loads(line)["timestamp"]
    assert line == dumps(expected)
