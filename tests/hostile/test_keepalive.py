"""The edge's own keepalive pings stay correct around fragmented messages and
interleaved control frames.

Frames through the tunnel are the origin's business; the edge may only add ping
frames toward the client, and only at a frame boundary. The origin here pauses
longer than the ping interval in the middle of a 64 KiB frame and in the middle of
a fragmented message: a ping injected at the wrong place corrupts the stream, which
the strict client parser catches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.hostile import figures
from tests.support import Edge, RecordingOrigin, edge_process
from tests.support.origin import SLOWFRAME_PAYLOAD
from tests.support.wire import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    WsClient,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def origin() -> Iterator[RecordingOrigin]:
    server = RecordingOrigin(record=False).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def edge(origin: RecordingOrigin) -> Iterator[Edge]:
    settings = {"timeouts": {"websocket_ping_interval": 1.0}}
    with edge_process(f"http://127.0.0.1:{origin.port}", settings=settings) as e:
        yield e
        assert e.alive()


EDGE_PING = "edge ping"


def test_pings_only_at_frame_boundaries(edge: Edge) -> None:
    """The origin pauses (longer than two ping intervals) inside a 64 KiB frame and
    between two fragments of a message: the edge must stay silent in the first pause
    and ping in the second, where a control frame may interleave (RFC 6455 5.4)."""
    async def run() -> list[object]:
        client = await WsClient.connect(edge.port, "/ws/slowframe")
        seen: list[object] = []
        async with asyncio.timeout(30):
            while True:
                frame = await client.recv_frame(timeout=10)
                assert frame is not None, "tunnel closed early"
                assert frame.rsv == 0, "reserved bits set: the stream was corrupted"
                if frame.opcode == OP_PING and frame.payload != b"origin-ping":
                    if seen[-1:] != [EDGE_PING]:
                        seen.append(EDGE_PING)
                    await client.send(OP_PONG, frame.payload)
                    continue
                seen.append((frame.opcode, frame.fin, frame.payload))
                if frame.opcode == OP_TEXT and frame.payload == b"done":
                    break
        await client.close()
        return seen

    seen = asyncio.run(run())
    figures.put("keepalive.sequence_checked", True)
    assert seen[0] == (OP_BINARY, True, SLOWFRAME_PAYLOAD), "the 64 KiB frame was altered"
    assert seen[1:] == [
        (OP_TEXT, False, b"frag-1 "), EDGE_PING, (OP_CONT, False, b"frag-2 "),
        (OP_PING, True, b"origin-ping"), (OP_CONT, True, b"frag-3"),
        (OP_TEXT, True, b"done")], seen[1:]


def test_client_fragments_and_control_frames_pass(edge: Edge) -> None:
    """Client → origin: a fragmented message with a ping between its fragments is
    relayed unchanged (the origin echoes each frame; the ping gets its pong)."""
    async def run() -> list[tuple[int, bool, bytes]]:
        client = await WsClient.connect(edge.port, "/ws")
        await client.send(OP_TEXT, b"part-1 ", fin=False)
        await client.send(OP_PING, b"client-ping")
        await client.send(OP_CONT, b"part-2", fin=True)
        await client.send(OP_BINARY, b"\x00" * 70000)
        got: list[tuple[int, bool, bytes]] = []
        for _ in range(20):  # 4 echoed frames plus any keepalive pings in between
            if len(got) == 4:
                break
            frame = await client.recv_frame(timeout=10)
            assert frame is not None
            if frame.opcode == OP_PING:  # an edge keepalive may come at any boundary
                continue
            got.append((frame.opcode, frame.fin, frame.payload))
        reply = await client.close(1000)
        assert reply is not None and reply.opcode == OP_CLOSE and reply.close_code == 1000
        return got

    got = asyncio.run(run())
    assert got == [(OP_TEXT, False, b"part-1 "), (OP_PONG, True, b"client-ping"),
                   (OP_CONT, True, b"part-2"), (OP_BINARY, True, b"\x00" * 70000)]
