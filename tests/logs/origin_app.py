"""A small real origin for the logs/metrics tests: HTTP answers and a WebSocket echo.

Run as `python -m uvicorn tests.logs.origin_app:app --port PORT` (uvicorn, loopback).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello from the origin\n")


async def status(request: Request) -> Response:
    code = int(request.path_params["code"])
    return PlainTextResponse(f"status {code}\n", status_code=code)


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            text = await websocket.receive_text()
            if text.startswith("close "):
                # "close 4001": the origin ends the session with that code.
                await websocket.close(int(text.split()[1]))
                return
            await websocket.send_text(text)
    except WebSocketDisconnect:
        return


app = Starlette(routes=[
    Route("/hello", hello),
    Route("/status/{code:int}", status),
    WebSocketRoute("/ws", echo),
])
