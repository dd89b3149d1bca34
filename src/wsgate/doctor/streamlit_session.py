"""A minimal Streamlit protocol client: open a session the way a browser does.

What the browser does (Streamlit 1.67, read from the server source and the proto
modules that ship inside the `streamlit` package):

1. open `…/_stcore/stream` with subprotocols `["streamlit", <xsrf token or a
   placeholder>, <previous session id>?]`; the server selects the first entry
   (`streamlit`) and reads the others as tokens;
2. send one binary `BackMsg{rerun_script: ClientState{query_string, page_script_hash,
   page_name, context_info}}`;
3. receive binary `ForwardMsg`s (`new_session`, `delta`s, ...) until
   `ForwardMsg.script_finished`, which marks the end of the run.

`run_session` does exactly that with `websockets` and reports what happened as a
`SessionResult`; it never raises for network or protocol trouble, so the doctor
and tests can print the result. The text of rendered markdown/text/code/json/alert
elements is collected in `texts` so tests can read what the script printed.

Requires the `streamlit` extra (for the protobuf modules).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from google.protobuf.message import DecodeError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    WebSocketException,
)
from websockets.typing import Origin, Subprotocol

from wsgate.i18n import _

SUBPROTOCOL: Final = "streamlit"
# The frontend sends this in the token slot when it has no XSRF token.
PLACEHOLDER_TOKEN: Final = "PLACEHOLDER_AUTH_TOKEN"  # noqa: S105 - public placeholder
# Element kinds whose text we collect, and the field holding the text.
_TEXT_FIELDS: Final[dict[str, str]] = {
    "markdown": "body",
    "text": "body",
    "code": "code_text",
    "json": "body",
    "alert": "body",
    "heading": "body",
}
_BODY_LIMIT: Final = 500
# Matches Streamlit's default server.maxMessageSize (200 MB) so big apps still load.
_MAX_MESSAGE: Final = 200 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SessionResult:
    """What one browser-like session saw. `ok` means: upgraded (101) and the
    script ran to its end (`script_finished`, not a compile error). An exception
    inside the script still counts as ok (the transport works); see `exceptions`."""

    ok: bool
    status: int | None
    subprotocol: str | None
    script_finished: bool
    messages: int
    close_code: int | None
    error: str | None
    elapsed_s: float
    finish_status: str | None = None
    session_id: str | None = None
    texts: tuple[str, ...] = ()
    exceptions: tuple[str, ...] = ()
    response_headers: tuple[tuple[str, str], ...] = ()
    refusal_body: str = ""
    message_types: tuple[str, ...] = field(default=())


@dataclass
class _Progress:
    status: int | None = None
    subprotocol: str | None = None
    finished: bool = False
    finish_status: str | None = None
    messages: int = 0
    close_code: int | None = None
    session_id: str | None = None
    texts: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    response_headers: tuple[tuple[str, str], ...] = ()
    refusal_body: str = ""


def rerun_message(query_string: str = "", page_name: str = "", url: str | None = None) -> bytes:
    """The serialized `BackMsg.rerun_script` a browser sends after connecting."""
    from streamlit.proto.BackMsg_pb2 import BackMsg

    msg = BackMsg()
    state = msg.rerun_script
    state.query_string = query_string
    state.page_script_hash = ""
    state.page_name = page_name
    state.context_info.timezone = "UTC"
    state.context_info.timezone_offset = 0
    state.context_info.locale = "en-US"
    if url is not None:
        state.context_info.url = url
    state.context_info.is_embedded = False
    return bytes(msg.SerializeToString())


def _record(progress: _Progress, data: bytes) -> None:
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    msg = ForwardMsg()
    msg.ParseFromString(data)
    progress.messages += 1
    kind = msg.WhichOneof("type")
    if kind is None:
        return
    progress.types.append(kind)
    if kind == "new_session":
        progress.session_id = msg.new_session.initialize.session_id or None
    elif kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
        element = msg.delta.new_element
        element_kind = element.WhichOneof("type")
        if element_kind in _TEXT_FIELDS:
            progress.texts.append(str(getattr(getattr(element, element_kind),
                                              _TEXT_FIELDS[element_kind])))
        elif element_kind == "exception":
            progress.exceptions.append(f"{element.exception.type}: {element.exception.message}")
    elif kind == "script_finished":
        status = ForwardMsg.ScriptFinishedStatus.Name(msg.script_finished)
        if status != "FINISHED_EARLY_FOR_RERUN":
            progress.finished = True
            progress.finish_status = status


async def _converse(ws_url: str, progress: _Progress, headers: Mapping[str, str] | None,
                    origin: str | None, ssl_context: ssl.SSLContext | None,
                    query_string: str, page_name: str, page_url: str | None,
                    connect_to: tuple[str, int] | None, resume: str | None = None) -> None:
    kwargs: dict[str, Any] = {}
    offered = [Subprotocol(SUBPROTOCOL), Subprotocol(PLACEHOLDER_TOKEN)]
    if resume:
        offered.append(Subprotocol(resume))  # the frontend's reconnect: previous session id
    if ssl_context is not None:
        kwargs["ssl"] = ssl_context
    if connect_to is not None:
        # Dial there; Host and SNI still come from `ws_url` (websockets derives them).
        kwargs["host"], kwargs["port"] = connect_to
    async with connect(
        ws_url,
        subprotocols=offered,
        additional_headers=dict(headers or {}),
        origin=Origin(origin) if origin is not None else None,
        open_timeout=None,  # the caller's overall timeout bounds the handshake
        max_size=_MAX_MESSAGE,
        compression=None,  # as a browser against Streamlit's default (no deflate)
        user_agent_header="wsgate-streamlit-session",
        # Same path as the doctor's raw probes: straight to the URL, never through
        # an HTTP(S)_PROXY from the environment (that would test another path).
        proxy=None,
        **kwargs,
    ) as ws:
        progress.status = ws.response.status_code if ws.response is not None else 101
        progress.subprotocol = ws.subprotocol
        if ws.response is not None:
            progress.response_headers = tuple(
                (k.lower(), v) for k, v in ws.response.headers.raw_items())
        await _run_script(ws, progress, rerun_message(query_string, page_name, page_url))


async def _run_script(ws: ClientConnection, progress: _Progress, rerun: bytes) -> None:
    """Ask for one run of the script and read until it finished (or the socket ends)."""
    await ws.send(rerun)
    try:
        async for data in ws:
            if isinstance(data, str):
                continue  # Streamlit only speaks binary; ignore stray text
            _record(progress, data)
            if progress.finished:
                break
    finally:
        progress.close_code = ws.close_code


async def run_session(ws_url: str, *, headers: Mapping[str, str] | None = None,
                      origin: str | None = None, timeout: float = 15.0,  # noqa: ASYNC109
                      ssl_context: ssl.SSLContext | None = None, query_string: str = "",
                      page_name: str = "", page_url: str | None = None,
                      connect_to: tuple[str, int] | None = None,
                      resume: str | None = None) -> SessionResult:
    """Open a Streamlit session at `ws_url` (…/_stcore/stream) and run the script once.

    `headers` are sent on the upgrade (e.g. the secret when testing an origin
    directly); `origin` sets the Origin header as a browser would; `connect_to`
    (address, port) dials there instead of the URL's host; `resume` offers a
    previous session id as the frontend does when it reconnects (the same server
    process resumes that session, any other starts a new one). Never raises for
    connection or protocol problems: they are reported in `error`.
    """
    progress = _Progress()
    started = time.monotonic()
    error: str | None = None
    try:
        await asyncio.wait_for(
            _converse(ws_url, progress, headers, origin, ssl_context, query_string,
                      page_name, page_url, connect_to, resume),
            timeout)
    except (TimeoutError, WebSocketException, DecodeError, OSError, ValueError) as exc:
        error = _failure(exc, progress, timeout)
    if error is None and not progress.finished:
        error = _closed_early(progress.close_code)
    if error is None and progress.finish_status == "FINISHED_WITH_COMPILE_ERROR":
        error = _("script has a compile error")
    return _result(progress, error, time.monotonic() - started)


def _failure(exc: Exception, progress: _Progress, timeout: float) -> str:
    """One line for why the session ended early; records what the refusal showed."""
    if isinstance(exc, InvalidStatus):
        progress.status = exc.response.status_code
        progress.response_headers = tuple(
            (k.lower(), v) for k, v in exc.response.headers.raw_items())
        progress.refusal_body = exc.response.body.decode("utf-8", "replace")[:_BODY_LIMIT] \
            if exc.response.body else ""
        return _("upgrade refused with HTTP {status}").format(status=exc.response.status_code)
    if isinstance(exc, TimeoutError):
        waited = (_("no script_finished within {seconds:g}s") if progress.status
                  else _("no upgrade answer within {seconds:g}s"))
        return waited.format(seconds=timeout)
    if isinstance(exc, ConnectionClosed):
        progress.close_code = exc.rcvd.code if exc.rcvd is not None else None
        return _closed_early(progress.close_code)
    if isinstance(exc, InvalidHandshake):
        return _("invalid WebSocket handshake: {error}").format(error=exc)
    if isinstance(exc, DecodeError):
        return _("not a Streamlit ForwardMsg (is this a Streamlit stream?): {error}").format(
            error=exc)
    return f"{type(exc).__name__}: {exc}"  # e.g. InvalidURI, OSError


def _closed_early(close_code: int | None) -> str:
    return _("connection closed before script_finished (close code {code})").format(
        code=close_code)


def _result(progress: _Progress, error: str | None, elapsed_s: float) -> SessionResult:
    return SessionResult(
        ok=error is None,
        status=progress.status,
        subprotocol=progress.subprotocol,
        script_finished=progress.finished,
        messages=progress.messages,
        close_code=progress.close_code,
        error=error,
        elapsed_s=elapsed_s,
        finish_status=progress.finish_status,
        session_id=progress.session_id,
        texts=tuple(progress.texts),
        exceptions=tuple(progress.exceptions),
        response_headers=progress.response_headers,
        refusal_body=progress.refusal_body,
        message_types=tuple(progress.types),
    )


def stream_url(base_url: str) -> str:
    """`http(s)://host[:port][/base]` → `ws(s)://host[:port][/base]/_stcore/stream`."""
    if base_url.startswith("https://"):
        rest, scheme = base_url[len("https://"):], "wss://"
    elif base_url.startswith("http://"):
        rest, scheme = base_url[len("http://"):], "ws://"
    elif base_url.startswith(("ws://", "wss://")):
        scheme, _, rest = base_url.partition("://")
        scheme += "://"
    else:
        raise ValueError(f"not an http(s) or ws(s) URL: {base_url!r}")
    return scheme + rest.rstrip("/") + "/_stcore/stream"
