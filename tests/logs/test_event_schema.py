"""One log schema: `build_event`, the edge's templated `edge_line` and the reader agree.

`edge_line` builds its JSON with one f-string (a dict and the encoder cost more than
the rest of a request's line); this pins it to `build_event` + `dumps`, the one schema
the guard and `wsgate logs` use, byte for byte, for any client-supplied text.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsgate.logs.events import FIELDS, SCHEMA, HttpRequest, build_event, dumps, edge_line
from wsgate.logs.formats import normalise
from wsgate.logs.model import EVENT_FIELDS

# Header bytes as the edge holds them (anything but CR/LF/NUL), read as latin-1.
header_text = st.binary(max_size=40).map(
    lambda b: bytes(c for c in b if c not in b"\r\n\x00").decode("latin-1"))
maybe_text = st.one_of(st.none(), st.text(max_size=30))
maybe_int = st.one_of(st.none(), st.integers(0, 2**40))


@given(
    message=st.text(max_size=30),
    severity=st.sampled_from(["INFO", "WARNING", "ERROR"]),
    method=st.sampled_from(["GET", "POST", "-"]),
    url=header_text.map(lambda t: "https://h" + t),
    status=st.integers(100, 599),
    user_agent=header_text,
    request_id=st.sampled_from(["", "abc-123", "0" * 32]),
    route=st.one_of(st.none(), st.tuples(header_text, header_text)),
    is_websocket=st.booleans(),
    sizes=st.tuples(st.integers(0, 2**40), st.integers(0, 2**40)),
    ws_duration_ms=maybe_int,
    close_code=st.one_of(st.none(), st.integers(1000, 4999)),
    closed_by=st.one_of(st.none(), st.sampled_from(["client", "origin", "edge"])),
    error_class=maybe_text,
    error=maybe_text,
)
def test_edge_line_is_the_shared_schema_byte_for_byte(
        message: str, severity: str, method: str, url: str, status: int, user_agent: str,
        request_id: str, route: tuple[str, str] | None, is_websocket: bool,
        sizes: tuple[int, int], ws_duration_ms: int | None, close_code: int | None,
        closed_by: str | None, error_class: str | None, error: str | None) -> None:
    from_client, to_client = sizes
    pattern, upstream = route if route is not None else (None, None)
    line = edge_line(
        message=message, severity=severity, method=method, url=url,  # type: ignore[arg-type]
        status=status, latency_s=0.0123456, remote_ip="203.0.113.7", user_agent=user_agent,
        request_id=request_id, route=pattern, upstream=upstream, is_websocket=is_websocket,
        bytes_from_client=from_client, bytes_to_client=to_client,
        ws_duration_ms=ws_duration_ms, close_code=close_code, closed_by=closed_by,
        error_class=error_class, error=error)

    # Keywords in another order than SCHEMA's: build_event writes SCHEMA order anyway.
    expected = build_event(
        source="edge", message=message, severity=severity,  # type: ignore[arg-type]
        http=HttpRequest(method=method, url=url, status=status, latency_s=0.0123456,
                         remote_ip="203.0.113.7", user_agent=user_agent,
                         request_size=from_client, response_size=to_client),
        error=error, errorClass=error_class, closedBy=closed_by, closeCode=close_code,
        bytesToClient=to_client, bytesFromClient=from_client, wsDurationMs=ws_duration_ms,
        isWebSocket=is_websocket, upstream=upstream, route=pattern,
        requestId=request_id or None)
    expected["timestamp"] = json.loads(line)["timestamp"]
    assert line == dumps(expected)


def test_build_event_holds_to_the_schema() -> None:
    with pytest.raises(ValueError, match="requestID"):
        build_event(source="edge", message="m", requestID="x")
    with pytest.raises(TypeError, match="refusedCount"):
        build_event(source="origin", message="m", refusedCount=True)  # bool is no count
    event = build_event(source="origin", message="m", reason="missing", isWebSocket=True,
                        requestId="r1", wsDurationMs=6.021999999999999)
    assert list(event)[3:] == ["source", "requestId", "isWebSocket", "wsDurationMs",
                               "reason"]
    assert '"wsDurationMs":6.022,' in dumps(event)


def test_the_reader_reads_every_schema_field_back() -> None:
    """A wsgate line carrying every field comes out of `wsgate logs` with all of them,
    and the normalised event documents each (EVENT_FIELDS derives from the schema)."""
    values = {str: "text", bool: True, int: 7}
    fields = {name: values[field.types[0]] for name, field in SCHEMA.items()
              if name != "source"}
    line = dumps(build_event(source="edge", message="m", **fields))
    event = normalise(json.loads(line))
    assert event is not None
    for name, value in fields.items():
        assert event[name] == value
    assert FIELDS.keys() <= EVENT_FIELDS.keys()


def test_floats_are_read_rounded_whoever_wrote_them() -> None:
    line = {"severity": "INFO", "message": "m", "wsDurationMs": 6.021999999999999,
            "httpRequest": {"latency": "0.006022s", "status": 200}}
    event = normalise(line)
    assert event is not None
    assert event["latencyMs"] == 6.022  # 0.006022 * 1000 is 6.021999999999999
    assert event["wsDurationMs"] == 6.022
