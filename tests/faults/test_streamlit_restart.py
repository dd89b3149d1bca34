"""A guarded Streamlit restarted behind the edge: a browser-like client notices the
stream closing, polls health through the edge (as the frontend does) and opens a new
session without manual action."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import pytest

from tests.guard.fixtures import SECRETS, http_get, start_guarded_streamlit
from tests.hostile import figures
from tests.support import ServerProcess, edge_process, free_port
from tests.support.wire import OP_CLOSE, WsClient
from wsgate.doctor.streamlit_session import SessionResult, run_session

pytestmark = [pytest.mark.streamlit, pytest.mark.slow]

RECONNECT_LIMIT = 90.0  # Streamlit may need 10+ s to start on a loaded machine


def reconnect(edge_port: int) -> tuple[SessionResult, int]:
    """What the frontend does after losing its stream: poll /_stcore/health with
    backoff until it answers 200, then open a new session. Returns (session, polls)."""
    deadline = time.monotonic() + RECONNECT_LIMIT
    polls = 0
    delay = 0.2
    while time.monotonic() < deadline and polls < 300:
        polls += 1
        with contextlib.suppress(OSError):
            if http_get(f"http://127.0.0.1:{edge_port}/_stcore/health", timeout=5)[0] == 200:
                break
        time.sleep(delay)
        delay = min(delay * 1.5, 2.0)
    result = asyncio.run(run_session(f"ws://127.0.0.1:{edge_port}/_stcore/stream", timeout=30))
    return result, polls


def hard_kill(server: ServerProcess) -> None:
    assert server.process is not None
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait(10)


# SIGTERM: Streamlit closes its sessions itself (uvicorn sends 1012 "service restart"),
# the edge relays that. SIGKILL: nobody says goodbye; the edge must send 1011.
@pytest.mark.parametrize(("how", "codes"), [("sigterm", {1001, 1011, 1012}),
                                            ("sigkill", {1011})])
def test_streamlit_restart_reconnects(how: str, codes: set[int]) -> None:
    port = free_port()
    secret = SECRETS[0]
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(start_guarded_streamlit(port=port))
        edge = stack.enter_context(edge_process(f"http://127.0.0.1:{port}", secret=secret))
        before = asyncio.run(run_session(f"ws://127.0.0.1:{edge.port}/_stcore/stream",
                                         timeout=30))
        assert before.ok, before

        async def hold_then_lose() -> int | None:
            client = await WsClient.connect(
                edge.port, "/_stcore/stream",
                extra=b"Sec-WebSocket-Protocol: streamlit, PLACEHOLDER_AUTH_TOKEN\r\n")
            stop = first.server.stop if how == "sigterm" else partial(hard_kill, first.server)
            await asyncio.to_thread(stop)
            for _ in range(1000):  # Streamlit may still send a few messages first
                frame = await client.recv_frame(timeout=15)
                if frame is None:
                    return None
                if frame.opcode == OP_CLOSE:
                    client.abort()
                    return frame.close_code
            return None

        code = asyncio.run(hold_then_lose())
        assert code in codes, f"held stream ended with close code {code}, want {codes}"
        # The client starts reconnecting while the origin is still down.
        pool = stack.enter_context(ThreadPoolExecutor(1))
        pending = pool.submit(reconnect, edge.port)
        second = stack.enter_context(start_guarded_streamlit(port=port))
        assert second.port == port
        after, polls = pending.result(RECONNECT_LIMIT + 40)
        figures.put(f"faults.streamlit_{how}_close_code", code)
        figures.put(f"faults.streamlit_{how}_health_polls", polls)
        assert after.ok, after
        assert after.session_id and after.session_id != before.session_id, (
            before.session_id, after.session_id)
        assert edge.alive()
        assert edge.secret not in edge.all_output()
