"""The origin's access log: one event per request and per WebSocket session.

Written in the one event schema (`wsgate.logs.events.build_event`) with the
edge's X-Request-Id, so `wsgate logs --join` pairs the origin's line with the
edge's for normal traffic too, not only for refusals. An `AccessRecord` watches
the ASGI messages of one call as they pass (status, body and message sizes, the
WebSocket close) and becomes one event at the end; it never sees header values
beyond the request id and the user agent, so the secret cannot reach the log.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from wsgate.logs.events import HttpRequest, Severity, build_event

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# A WebSocket closed before accept reaches the client as this HTTP status (uvicorn).
CLOSED_BEFORE_ACCEPT_STATUS = 403


def _payload_size(message: Message) -> int:
    data = message.get("bytes")
    if data is not None:
        return len(data)
    text = message.get("text")
    return len(text.encode("utf-8")) if text is not None else 0


class AccessRecord:
    """What one request or WebSocket session did, observed through its messages."""

    def __init__(self, scope: MutableMapping[str, Any], *, request_id: str | None,
                 user_agent: str) -> None:
        self.websocket = scope["type"] == "websocket"
        self.method = "GET" if self.websocket else str(scope.get("method", "GET"))
        self.path = str(scope.get("path", ""))
        client = scope.get("client")
        self.remote_ip = str(client[0]) if client else "unknown"
        self.protocol = f"HTTP/{scope.get('http_version', '1.1')}"
        self.request_id = request_id
        self.user_agent = user_agent[:256]
        self.started = time.monotonic()
        self.accepted_at: float | None = None
        self.status: int | None = None
        self.from_client = 0
        self.to_client = 0
        self.close_code: int | None = None
        self.closed_by: str | None = None
        self.error: str | None = None

    def receive(self, receive: Receive) -> Receive:
        async def observed() -> Message:
            message = await receive()
            kind = message.get("type")
            if kind == "http.request":
                self.from_client += len(message.get("body") or b"")
            elif kind == "websocket.receive":
                self.from_client += _payload_size(message)
            elif kind == "websocket.disconnect" and self.closed_by is None:
                self.closed_by = "client"
                self.close_code = int(message.get("code", 1005))
            return message
        return observed

    def send(self, send: Send) -> Send:
        async def observed(message: Message) -> None:
            self._note_sent(message)
            await send(message)
        return observed

    def _note_sent(self, message: Message) -> None:
        kind = message.get("type")
        if kind in ("http.response.start", "websocket.http.response.start"):
            self.status = int(message["status"])
        elif kind == "http.response.body":
            self.to_client += len(message.get("body") or b"")
        elif kind == "websocket.accept":
            self.status = 101
            self.accepted_at = time.monotonic()
        elif kind == "websocket.send":
            self.to_client += _payload_size(message)
        elif kind == "websocket.close":
            if self.status is None:
                self.status = CLOSED_BEFORE_ACCEPT_STATUS
            elif self.closed_by is None:
                self.closed_by = "origin"
                self.close_code = int(message.get("code") or 1000)

    def failed(self, exc: BaseException) -> None:
        """The app raised: name the class only (a message may quote request data).
        A cancellation is the server stopping the task (shutdown), not an app error."""
        if isinstance(exc, asyncio.CancelledError):
            return
        self.error = f"{type(exc).__name__} raised by the app"
        if self.status is None:
            self.status = 500

    def event(self) -> dict[str, Any]:
        now = time.monotonic()
        status = self.status if self.status is not None else 500
        session = self.websocket and self.accepted_at is not None
        severity: Severity = "ERROR" if status >= 500 or self.error else "INFO"
        http = HttpRequest(method=self.method, url=self.path, status=status,
                           latency_s=now - self.started, remote_ip=self.remote_ip,
                           user_agent=self.user_agent, request_size=self.from_client,
                           response_size=self.to_client, protocol=self.protocol)
        ws_ms = round((now - self.accepted_at) * 1000) if self.accepted_at is not None else None
        return build_event(
            source="origin", message="websocket session" if session else "request",
            severity=severity, http=http, requestId=self.request_id,
            isWebSocket=self.websocket, wsDurationMs=ws_ms,
            bytesFromClient=self.from_client, bytesToClient=self.to_client,
            closeCode=self.close_code if session else None,
            closedBy=self.closed_by if session else None,
            errorClass="app-error" if self.error else None, error=self.error)
