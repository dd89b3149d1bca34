"""A real Streamlit server behind a real `wsgate edge`: the page, health, host-config
and the `/_stcore/stream` session (rerun sent, script_finished seen).

Two origins: plain `streamlit run`, and Streamlit behind the origin guard
(`wsgate run`), which refuses anything without the secret the edge injects.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import SECRET, Edge, ServerProcess, edge_process, free_port, wsgate_command

pytestmark = [pytest.mark.streamlit, pytest.mark.slow]
APP = Path(__file__).with_name("streamlit_app.py")
ST_FLAGS = ("--server.headless", "true", "--server.address", "127.0.0.1",
            "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none")


def start_streamlit(guarded: bool) -> ServerProcess:
    port = free_port()
    if guarded:
        cmd = wsgate_command("run", str(APP), "--server.port", str(port), *ST_FLAGS)
    else:
        cmd = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.port", str(port),
               *ST_FLAGS]
    return ServerProcess(cmd, port, {"WSGATE_SECRET": SECRET}).start(timeout=90)


@pytest.fixture(scope="module", params=["plain", "guarded"])
def st_edge(request: pytest.FixtureRequest) -> Iterator[tuple[Edge, ServerProcess, str]]:
    streamlit = start_streamlit(request.param == "guarded")
    try:
        with edge_process(f"http://127.0.0.1:{streamlit.port}") as edge:
            yield edge, streamlit, request.param
    finally:
        streamlit.stop()


def get(port: int, path: str) -> tuple[int, bytes, dict[str, str]]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    c.request("GET", path)
    r = c.getresponse()
    return r.status, r.read(), {k.lower(): v for k, v in r.getheaders()}


def test_page_health_and_host_config(st_edge: tuple[Edge, ServerProcess, str]) -> None:
    edge, _, _ = st_edge
    status, body, headers = get(edge.port, "/")
    assert status == 200 and b"streamlit" in body.lower()
    assert headers["x-worker-proxy"] == "Active"
    status, body, _ = get(edge.port, "/_stcore/health")
    assert (status, body) == (200, b"ok")
    status, body, _ = get(edge.port, "/_stcore/host-config")
    assert status == 200 and "allowedOrigins" in json.loads(body)


def test_stream_session_runs_the_script(st_edge: tuple[Edge, ServerProcess, str]) -> None:
    from wsgate.doctor.streamlit_session import run_session

    edge, _, _ = st_edge
    result = asyncio.run(run_session(f"ws://127.0.0.1:{edge.port}/_stcore/stream",
                                     origin=f"http://127.0.0.1:{edge.port}", timeout=30))
    assert result.ok, result.error
    assert result.status == 101 and result.subprotocol == "streamlit"
    assert result.script_finished
    assert any("hello from behind the edge" in t for t in result.texts)
    event = edge.wait_event(lambda e: e.get("isWebSocket") is True
                            and e.get("message") == "websocket session", timeout=10)
    assert event["bytesToClient"] > 0
    assert SECRET.encode() not in edge.log_file.read_bytes()


def test_guarded_origin_refuses_direct_access(st_edge: tuple[Edge, ServerProcess, str]) -> None:
    from wsgate.doctor.streamlit_session import run_session

    _, streamlit, kind = st_edge
    status, _, _ = get(streamlit.port, "/")
    # Only the guarded origin checks the secret the edge injects.
    assert status == (403 if kind == "guarded" else 200)
    if kind == "plain":
        return
    direct = asyncio.run(run_session(f"ws://127.0.0.1:{streamlit.port}/_stcore/stream",
                                     timeout=15))
    assert direct.status == 403 and not direct.ok
