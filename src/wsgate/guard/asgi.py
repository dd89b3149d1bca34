"""OriginGuard: a pure ASGI middleware that lets only the edge in.

Put it outermost (before anything that reads headers or trusts forwarding
headers) around any ASGI app. Per `http` / `websocket` scope:

1. open paths (exact match, e.g. `/_stcore/health`) pass without the secret;
2. otherwise exactly one secret header matching one configured secret passes;
   anything else is refused: HTTP 403 plain text, or for a WebSocket a refusal
   *before accept* (the client sees HTTP 403 on the upgrade, never 101), and one
   log event (summarised per client address under a flood);
3. the secret header is removed from the scope the app sees;
4. only for requests that passed the secret check, X-Forwarded-Proto → scheme and
   X-Real-IP / X-Forwarded-For → client. This replaces uvicorn's peer-IP based
   FORWARDED_ALLOW_IPS trust: behind Cloud Run the peer is Google's front end,
   whatever sent the request; the secret is the proof the edge sent it;
5. each request or WebSocket session that passed is logged once it ends (the
   access log, `access.py`), with the edge's X-Request-Id.

A request whose secret header holds another value came through an edge configured
with a different secret: its 403 page says so (`policy.refusal_text`), in the language
the request's Accept-Language prefers (ja or en), else in the process's (`--lang`,
`LANG`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from typing import Any, Final

from wsgate.guard import policy
from wsgate.guard.access import AccessRecord
from wsgate.i18n import current_language
from wsgate.logs.events import LOGGER_NAME, HttpRequest, build_event, emit

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_SECRET_HEADER: Final = "X-CF-Secret"  # noqa: S105 - a header name
DEFAULT_OPEN_PATHS: Final = ("/_stcore/health",)
DEFAULT_ECHO_PATH: Final = "/_wsgate/echo"
REFUSED_MESSAGE: Final = "Direct access refused"
# How often (at most) a request sweeps the flood windows for due summaries.
_SWEEP_INTERVAL_S: Final = 1.0


class OriginGuard:
    """Refuse every request that does not carry the edge's secret.

    `secrets`: accepted values (several during a rotation). Empty only with
    `insecure_no_secret=True`, which lets everything in and trusts no forwarded
    header. `open_paths` and `echo_path` are given without `base_url_path`
    (Streamlit's `server.baseUrlPath`), which is prefixed here.
    """

    def __init__(
        self,
        app: ASGIApp,
        secrets: Sequence[str] = (),
        secret_header: str = DEFAULT_SECRET_HEADER,
        open_paths: Iterable[str] = DEFAULT_OPEN_PATHS,
        public_url: str | None = None,
        *,
        base_url_path: str = "",
        echo_path: str | None = DEFAULT_ECHO_PATH,
        trust_forwarded: bool = True,
        insecure_no_secret: bool = False,
        logger: logging.Logger | None = None,
        flood_limit: int = 10,
        flood_window_s: float = 60.0,
        access_log: bool = True,
    ) -> None:
        cleaned = [s for s in secrets if s]
        if not cleaned and not insecure_no_secret:
            raise ValueError("OriginGuard needs at least one secret "
                             "(or insecure_no_secret=True for local development)")
        for secret in cleaned:
            if not all(0x21 <= ord(c) <= 0x7E for c in secret):
                # Reported without the value: it must never reach a log.
                raise ValueError("a secret must be printable ASCII without spaces")
        self.app = app
        self._secrets = tuple(s.encode("ascii") for s in cleaned)
        self._header = secret_header.strip().lower().encode("latin-1")
        if not self._header:
            raise ValueError("secret header name is empty")
        self._open = policy.prefixed_paths(open_paths, base_url_path)
        self._echo = (policy.prefixed_paths([echo_path], base_url_path) | {echo_path}
                      if echo_path else frozenset())
        self._public_url = public_url
        self._trust_forwarded = trust_forwarded and not insecure_no_secret
        self._insecure = insecure_no_secret
        self._logger = logger or logging.getLogger(LOGGER_NAME)
        self._limiter = policy.RefusalLimiter(flood_limit, flood_window_s)
        self._last_sweep = 0.0
        self._access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.app(scope, receive, self._lifespan_send(send))
            return
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        self._sweep()
        headers: list[policy.Header] = list(scope.get("headers") or [])
        path = str(scope.get("path", ""))
        open_path = path in self._open
        if self._insecure or open_path:
            decision = policy.PASS
        else:
            decision = policy.check_secret(headers, self._header, self._secrets)
        if not decision.passed:
            await self._refuse(scope, send, headers, decision.reason or "missing")
            return
        authenticated = not self._insecure and not open_path
        scope = dict(scope)
        scope["headers"] = policy.without_header(headers, self._header)
        if authenticated and self._trust_forwarded:
            self._apply_forwarded(scope, headers)
        if not self._access_log:
            await self._pass(scope, receive, send, headers, authenticated)
            return
        record = AccessRecord(scope, request_id=policy.request_id(headers),
                              user_agent=policy.header_text(headers, b"user-agent"))
        try:
            await self._pass(scope, record.receive(receive), record.send(send), headers,
                             authenticated)
        except BaseException as exc:
            record.failed(exc)
            raise
        finally:
            emit(self._logger, record.event())

    async def _pass(self, scope: Scope, receive: Receive, send: Send,
                    headers: Sequence[policy.Header], authenticated: bool) -> None:
        if authenticated and scope["type"] == "http" and scope.get("path") in self._echo:
            await self._echo_response(scope, send, headers)
            return
        await self.app(scope, receive, send)

    @staticmethod
    def _apply_forwarded(scope: Scope, headers: Sequence[policy.Header]) -> None:
        scope["scheme"] = policy.forwarded_scheme(headers, scope["type"],
                                                  str(scope.get("scheme", "http")))
        client = policy.forwarded_client(headers)
        if client is not None:
            scope["client"] = (client, 0)

    # -- refusal ------------------------------------------------------------

    async def _refuse(self, scope: Scope, send: Send, headers: Sequence[policy.Header],
                      reason: str) -> None:
        is_websocket = scope["type"] == "websocket"
        # The page's reader is the browser's user: their Accept-Language, else ours.
        language = (policy.page_language(policy.header_text(headers, b"accept-language"))
                    or current_language())
        body = policy.refusal_text(self._public_url, reason, language).encode("utf-8")
        response_headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"content-language", language.encode()),
            (b"vary", b"Accept-Language"),
            (b"cache-control", b"no-store"),
            (b"x-content-type-options", b"nosniff"),
        ]
        # Log first: once the 403 is on the wire the client may already be reading
        # the log, and a failed send must not lose the event.
        self._log_refusal(scope, headers, reason, is_websocket, len(body))
        if not is_websocket:
            await send({"type": "http.response.start", "status": 403,
                        "headers": response_headers})
            await send({"type": "http.response.body", "body": body})
        else:
            # Close before accept: the server answers the upgrade with HTTP 403.
            # (Not ASGI's denial-response extension: uvicorn's websockets-sansio
            # logs an error line for each such response, which a flood would
            # turn into one log line per refusal.)
            await send({"type": "websocket.close", "code": 1008})

    def _log_refusal(self, scope: Scope, headers: Sequence[policy.Header], reason: str,
                     is_websocket: bool, response_size: int) -> None:
        now = time.monotonic()
        address = _peer(scope)
        path = str(scope.get("path", ""))
        log_it, due = self._limiter.note(address, now, reason, path, is_websocket)
        for summary in due:
            self._emit_summary(summary)
        if not log_it:
            return
        user_agent = policy.header_text(headers, b"user-agent")
        http = HttpRequest(method=str(scope.get("method", "GET")), url=path, status=403,
                           latency_s=0.0, remote_ip=address, user_agent=user_agent[:256],
                           response_size=response_size,
                           protocol=f"HTTP/{scope.get('http_version', '1.1')}")
        emit(self._logger, build_event(
            source="origin", message=REFUSED_MESSAGE, severity="WARNING", http=http,
            reason=reason, isWebSocket=is_websocket, requestId=policy.request_id(headers)))

    def _emit_summary(self, summary: policy.Summary) -> None:
        http = HttpRequest(method="GET", url=summary.path, status=403, latency_s=0.0,
                           remote_ip=summary.address)
        emit(self._logger, build_event(
            source="origin", message=REFUSED_MESSAGE, severity="WARNING", http=http,
            reason=summary.reason, isWebSocket=summary.is_websocket,
            refusedCount=summary.count,
            error=f"{summary.count} more refusals from {summary.address} "
                  f"within {self._limiter.window_s:g}s (summarised)"))

    def _sweep(self) -> None:
        now = time.monotonic()
        if now - self._last_sweep < _SWEEP_INTERVAL_S:
            return
        self._last_sweep = now
        for summary in self._limiter.due(now):
            self._emit_summary(summary)

    def flush_refusals(self) -> None:
        """Emit pending flood summaries now (done at shutdown)."""
        for summary in self._limiter.flush():
            self._emit_summary(summary)

    def _lifespan_send(self, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message.get("type") == "lifespan.shutdown.complete":
                self.flush_refusals()
            await send(message)
        return wrapped

    # -- echo ---------------------------------------------------------------

    async def _echo_response(self, scope: Scope, send: Send,
                             original: Sequence[policy.Header]) -> None:
        seen = scope["headers"]
        forwarded = policy.read_forwarded(seen)
        client = scope.get("client")
        payload = {
            "scheme": scope.get("scheme"),
            "client": client[0] if client else None,
            "host": next((v.decode("latin-1") for k, v in seen if k == b"host"), None),
            "path": scope.get("path"),
            "requestId": policy.request_id(original),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in seen],
            "forwarded": {"proto": forwarded.proto, "host": forwarded.host,
                          "for": forwarded.for_, "realIp": forwarded.real_ip},
        }
        body = json.dumps(payload).encode("utf-8")
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]})
        await send({"type": "http.response.body", "body": body})


def _peer(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"
