"""A real `websockets` server misconfigured in one way (the mode argument).

  no-subprotocol  answers the upgrade without selecting the offered subprotocol
  close-at-once   selects `streamlit`, then closes at once with 1011
  silent          selects `streamlit` and never says anything (the app never renders)

Plain HTTP requests get 200 (`ok` / `{}`), like a healthy app's health checks.
"""

from __future__ import annotations

import asyncio
import sys
from http import HTTPStatus

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response


def plain_http(connection: ServerConnection, request: Request) -> Response | None:
    # nginx sends `Connection: upgrade` on every request; only Upgrade tells them apart.
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return None
    body = b"{}" if request.path.endswith("host-config") else b"ok"
    kind = "application/json" if body == b"{}" else "text/plain"
    return Response(HTTPStatus.OK, "OK", Headers({"Content-Type": kind,
                                                   "Content-Length": str(len(body))}), body)


async def handler(connection: ServerConnection) -> None:
    if MODE == "close-at-once":
        await connection.close(1011, "app crashed")
        return
    await connection.wait_closed()


async def main(port: int) -> None:
    subprotocols = None if MODE == "no-subprotocol" else ["streamlit"]
    async with serve(handler, "127.0.0.1", port, process_request=plain_http,
                     subprotocols=subprotocols, ping_interval=None) as server:  # type: ignore[arg-type]
        await server.serve_forever()


if __name__ == "__main__":
    MODE = sys.argv[1]
    asyncio.run(main(int(sys.argv[2])))
