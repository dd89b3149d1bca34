"""End to end: client → wsgate edge (injects the secret) → wsgate run → Streamlit."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest

from tests.guard.fixtures import SECRETS, GuardedStreamlit, http_get, start_guarded_streamlit
from tests.support import LOOPBACK, ServerProcess, free_port, wsgate_command
from wsgate.doctor.streamlit_session import SessionResult, run_session

pytestmark = [pytest.mark.streamlit, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[GuardedStreamlit, str]]:
    with start_guarded_streamlit() as origin:
        port = free_port()
        edge = ServerProcess(
            wsgate_command("edge", "--origin", f"http://{LOOPBACK}:{origin.port}",
                           "--listen", f"{LOOPBACK}:{port}",
                           "--client-ip-header", "CF-Connecting-IP"),
            port, {"WSGATE_SECRET": SECRETS[1]})  # the edge holds the "old" secret
        edge.start(60)
        try:
            yield origin, f"http://{LOOPBACK}:{port}"
        finally:
            edge.stop()


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
    assert echo["scheme"] == "https"  # the edge's default X-Forwarded-Proto
    assert echo["forwarded"]["for"] and echo["requestId"]
    assert not any(secret in body for secret in SECRETS)
