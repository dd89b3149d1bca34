"""A FastAPI app with OriginGuard, started under uvicorn by tests/guard/test_asgi.py.

Settings come from the environment the test sets: GUARD_TEST_SECRETS (comma
separated), GUARD_TEST_LOG (JSON events file), GUARD_TEST_BURST / GUARD_TEST_WINDOW
(flood summarising), GUARD_TEST_PUBLIC_URL.
"""

from __future__ import annotations

import os

from fastapi import FastAPI, Request, WebSocket

from wsgate.guard.asgi import OriginGuard
from wsgate.logs.events import configure_event_logging

inner = FastAPI()


@inner.get("/hello")
async def hello(request: Request) -> dict[str, object]:
    client = request.client
    return {"hello": "world", "scheme": request.url.scheme,
            "client": client.host if client else None,
            "headers": [[k, v] for k, v in request.headers.items()]}


@inner.get("/boom")
async def boom() -> None:
    raise RuntimeError("failure inside the app; the secret is not here")


@inner.websocket("/ws")
async def ws(websocket: WebSocket) -> None:
    await websocket.accept()
    client = websocket.client
    await websocket.send_json({"scheme": websocket.url.scheme,
                               "client": client.host if client else None,
                               "headers": [[k, v] for k, v in websocket.headers.items()]})
    await websocket.close()


app = OriginGuard(
    inner,  # type: ignore[arg-type]
    secrets=os.environ["GUARD_TEST_SECRETS"].split(","),
    public_url=os.environ.get("GUARD_TEST_PUBLIC_URL") or None,
    open_paths=("/open",),
    logger=configure_event_logging("origin", os.environ["GUARD_TEST_LOG"]),
    flood_limit=int(os.environ.get("GUARD_TEST_BURST", "10")),
    flood_window_s=float(os.environ.get("GUARD_TEST_WINDOW", "60")),
)
