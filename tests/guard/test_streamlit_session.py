"""The protocol client's error reporting, against real non-Streamlit peers."""

from __future__ import annotations

import asyncio
import socket

from websockets.asyncio.server import ServerConnection, serve

from tests.support import LOOPBACK
from wsgate.doctor.streamlit_session import rerun_message, run_session, stream_url


def test_connection_refused_is_reported() -> None:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens
        s.bind((LOOPBACK, 0))
        port = s.getsockname()[1]
    result = asyncio.run(run_session(f"ws://{LOOPBACK}:{port}/_stcore/stream", timeout=5))
    assert (result.ok, result.status) == (False, None)
    assert result.error is not None and "refused" in result.error.lower()


def test_a_peer_that_is_not_streamlit() -> None:
    received: list[bytes] = []

    async def handler(ws: ServerConnection) -> None:
        message = await ws.recv()
        assert isinstance(message, bytes)
        received.append(message)
        await ws.send(b"\xff\xff\xff\xff not a protobuf")
        await ws.wait_closed()

    async def main() -> None:
        async with serve(handler, LOOPBACK, 0, subprotocols=["streamlit"]) as server:
            port = server.sockets[0].getsockname()[1]
            result = await run_session(f"ws://{LOOPBACK}:{port}/_stcore/stream", timeout=5)
        assert (result.ok, result.status, result.subprotocol) == (False, 101, "streamlit")
        assert result.error is not None and "not a Streamlit ForwardMsg" in result.error

    asyncio.run(main())
    assert received == [rerun_message()]  # the browser's first message, verbatim


def closing_peer(code: int) -> tuple[bool, bool, int | None, str | None]:
    async def handler(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.close(code)

    async def main() -> tuple[bool, bool, int | None, str | None]:
        async with serve(handler, LOOPBACK, 0, subprotocols=["streamlit"]) as server:
            port = server.sockets[0].getsockname()[1]
            result = await run_session(f"ws://{LOOPBACK}:{port}/_stcore/stream", timeout=5)
        return result.ok, result.script_finished, result.close_code, result.error

    return asyncio.run(main())


def test_closed_before_script_finished() -> None:
    for code in (1000, 1011):
        assert closing_peer(code) == (
            False, False, code, f"connection closed before script_finished (close code {code})")


def test_stream_url() -> None:
    assert stream_url("https://app.example.com/") == "wss://app.example.com/_stcore/stream"
    assert stream_url("http://127.0.0.1:8501/app") == "ws://127.0.0.1:8501/app/_stcore/stream"
