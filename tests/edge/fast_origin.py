"""A fast plain-HTTP origin for load-shaped edge tests: every request head it receives
(GET, no body) is answered `200 ok` with a length, on keep-alive connections, in
the order received. No parser beyond finding the end of each head, so the edge, not the
origin, is what a test with 100,000 requests measures.

    python -m tests.edge.fast_origin --port P
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok"


class FastOrigin(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.tail = b""  # an unfinished head (at most one request's worth)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        data = self.tail + data
        heads = data.count(b"\r\n\r\n")
        self.tail = data[data.rfind(b"\r\n\r\n") + 4:] if heads else data
        if len(self.tail) > 65536 and self.transport is not None:
            self.transport.close()  # not a request head: this origin only takes bodiless GETs
            return
        if heads and self.transport is not None:
            self.transport.write(RESPONSE * heads)


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(FastOrigin, "127.0.0.1", port, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"fast origin listening on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    await stop.wait()
    server.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args().port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
