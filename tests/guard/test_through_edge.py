"""End to end: client → wsgate edge (injects the secret) → wsgate run → Streamlit."""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.guard.fixtures import SECRETS, GuardedStreamlit, http_get, start_guarded_streamlit
from tests.support import LOOPBACK, ServerProcess, free_port, wait_until, wsgate_command
from wsgate.doctor.streamlit_session import SessionResult, run_session

pytestmark = [pytest.mark.streamlit, pytest.mark.slow]


EDGE_LOG = Path(tempfile.gettempdir()) / f"wsgate-guard-edge-{free_port()}.jsonl"


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[GuardedStreamlit, str]]:
    with start_guarded_streamlit() as origin:
        port = free_port()
        edge = ServerProcess(
            wsgate_command("edge", "--origin", f"http://{LOOPBACK}:{origin.port}",
                           "--listen", f"{LOOPBACK}:{port}", "--log-file", str(EDGE_LOG),
                           "--client-ip-header", "CF-Connecting-IP"),
            port, {"WSGATE_SECRET": SECRETS[1]})  # the edge holds the "old" secret
        edge.start(60)
        try:
            yield origin, f"http://{LOOPBACK}:{port}"
        finally:
            edge.stop()
            EDGE_LOG.unlink(missing_ok=True)


def edge_events() -> list[dict[str, Any]]:
    lines = EDGE_LOG.read_text().splitlines() if EDGE_LOG.exists() else []
    return [json.loads(line) for line in lines if line.strip()]


def session(url: str, headers: dict[str, str] | None = None) -> SessionResult:
    return asyncio.run(run_session(url.replace("http://", "ws://") + "/_stcore/stream",
                                   headers=headers, timeout=30))


def texts_value(result: SessionResult, key: str) -> object:
    line = next(t for t in result.texts if t.startswith(key + "="))
    return json.loads(line[len(key) + 1:])


def test_app_renders_through_the_edge(stack: tuple[GuardedStreamlit, str]) -> None:
    origin, edge_url = stack
    status, page, _ = http_get(edge_url + "/")
    assert status == 200 and '<div id="root"' in page
    result = session(edge_url, {"CF-Connecting-IP": "203.0.113.77"})
    assert result.ok, result
    assert (result.status, result.subprotocol) == (101, "streamlit")
    assert "app rendered" in result.texts
    headers = texts_value(result, "headers")
    assert isinstance(headers, list)
    assert "x-cf-secret" not in {name for name, _ in headers}
    assert not any(secret in json.dumps(headers) for secret in SECRETS)
    # The edge reported the client through a trusted header; the guard believed it
    # because the secret came with it.
    assert texts_value(result, "ip_address") == "203.0.113.77"
    # Nothing that came through the edge was refused by the guard.
    assert [e for e in origin.events() if e.get("message") == "Direct access refused"] == []


def test_directly_refused(stack: tuple[GuardedStreamlit, str]) -> None:
    origin, _ = stack
    assert http_get(origin.url("/"))[0] == 403
    assert session(origin.base_url).status == 403


def test_echo_through_the_edge(stack: tuple[GuardedStreamlit, str]) -> None:
    _, edge_url = stack
    status, body, _ = http_get(edge_url + "/_wsgate/echo")
    assert status == 200, body
    echo = json.loads(body)
    assert echo["scheme"] == "http"  # the scheme this plain-http edge really served
    assert echo["forwarded"]["for"] and echo["requestId"]
    assert not any(secret in body for secret in SECRETS)


def test_origin_access_log_joins_the_edge_by_request_id(
        stack: tuple[GuardedStreamlit, str]) -> None:
    origin, edge_url = stack
    status, _, _ = http_get(edge_url + "/_stcore/host-config")
    assert status == 200
    assert session(edge_url).ok

    def pairs(message: str, path: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        at_origin = {e.get("requestId"): e for e in origin.events()
                     if e.get("message") == message}
        return [(e, at_origin[e["requestId"]]) for e in edge_events()
                if e.get("message") == message and e.get("requestId") in at_origin
                and e["httpRequest"]["requestUrl"].endswith(path)]

    # Both sides write their line when the exchange ends; the edge in batches.
    assert wait_until(lambda: pairs("request", "/_stcore/host-config"), timeout=10)
    assert wait_until(lambda: pairs("websocket session", "/_stcore/stream"), timeout=10)
    edge, at_origin = pairs("request", "/_stcore/host-config")[0]
    assert at_origin["source"] == "origin" and at_origin["httpRequest"]["status"] == 200
    assert at_origin["httpRequest"]["requestUrl"] == "/_stcore/host-config"
    edge, at_origin = pairs("websocket session", "/_stcore/stream")[0]
    assert edge["isWebSocket"] is True and edge["httpRequest"]["status"] == 101
    assert at_origin["isWebSocket"] is True and at_origin["httpRequest"]["status"] == 101
    assert at_origin["closedBy"] == "client" and at_origin["bytesToClient"] > 0
    text = origin.log_file.read_text()
    assert not any(secret in text for secret in SECRETS)
