"""A `wrangler tail --format json` invocation carrying the wsgate Worker's own event line.

The Worker makes its request id itself when the client sent none, so the envelope's
request headers cannot join it with the guard's lines: the id and the edge's fields
are read from the Worker's console line, which is the edge's event schema.
"""

from __future__ import annotations

import json

from wsgate.logs.events import HttpRequest, build_event, dumps
from wsgate.logs.formats import normalise


def envelope(console_message: object) -> dict[str, object]:
    return {
        "outcome": "ok", "scriptName": "wsgate-edge", "eventTimestamp": 1_764_567_000_000,
        "exceptions": [],
        "logs": [{"level": "log", "message": [console_message],
                  "timestamp": 1_764_567_000_001}],
        "event": {"request": {"url": "https://app.example.com/x", "method": "GET",
                              "headers": {"cf-connecting-ip": "203.0.113.9"}},
                  "response": {"status": 502}},
    }


def worker_line() -> str:
    return dumps(build_event(
        source="edge", message="Edge Proxy Error", severity="ERROR",
        http=HttpRequest(method="GET", url="https://app.example.com/x", status=502,
                         latency_s=0.01, remote_ip="203.0.113.9"),
        requestId="edge-made-7", route="*/*", upstream="https://origin.example",
        isWebSocket=False, errorClass="connect-refused", error="connection refused"))


def test_the_worker_line_gives_the_request_id_and_fields() -> None:
    event = normalise(envelope(worker_line()))
    assert event is not None
    assert event["requestId"] == "edge-made-7"
    assert event["errorClass"] == "connect-refused"
    assert event["upstream"] == "https://origin.example" and event["route"] == "*/*"
    assert event["status"] == 502 and event["format"] == "wrangler"


def test_a_line_logged_as_an_object_reads_too() -> None:
    event = normalise(envelope(json.loads(worker_line())))
    assert event is not None and event["requestId"] == "edge-made-7"


def test_other_console_lines_add_nothing() -> None:
    event = normalise(envelope("hello from the worker"))
    assert event is not None and "requestId" not in event and "errorClass" not in event
