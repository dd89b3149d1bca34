"""The one log event schema shared by the edge and the origin guard.

Every event is one JSON object per line in Google Cloud Logging's structured
format, so Cloud Run ingests it as it is: `severity`, `message`, `httpRequest`
and `timestamp` are read by Cloud Logging; every other top-level key lands in
`jsonPayload`. wsgate's own keys are flat camelCase (see FIELDS) so that
`wsgate logs` and `gcloud logging read 'jsonPayload.requestId="..."'` agree.

Events never carry header values wholesale: callers pass the few fields below,
which is how the secret is kept out of every log line.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import IO, TYPE_CHECKING, Any, Final, Literal

if TYPE_CHECKING:
    import asyncio

Severity = Literal["DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL"]
Source = Literal["edge", "origin"]


@dataclass(frozen=True, slots=True)
class Field:
    """One of wsgate's own top-level fields: the exact JSON types its value may have
    (exact: bool is an int subclass, and a count must not accept true) and its meaning."""

    types: tuple[type, ...]
    doc: str


# THE schema of wsgate's own fields, in the order they are written. `build_event`, the
# edge's `edge_line`, the `wsgate logs` reader (logs.formats) and docs/logs.md follow it.
SCHEMA: Final[dict[str, Field]] = {
    "source": Field((str,), "edge | origin: which wsgate component wrote the event"),
    "requestId": Field((str,), "X-Request-Id shared by the edge and the origin for one request"),
    "route": Field((str,), "the edge route pattern that matched (edge only)"),
    "upstream": Field((str,), "the origin URL the edge forwarded to (edge only)"),
    "isWebSocket": Field((bool,), "true for an upgrade request / WebSocket session"),
    "wsDurationMs": Field((int, float), "how long the WebSocket tunnel stayed open"),
    "bytesFromClient": Field((int,), "bytes received from the client (body or tunnel)"),
    "bytesToClient": Field((int,), "bytes sent to the client (body or tunnel)"),
    "closeCode": Field((int,), "WebSocket close code seen or sent by the edge"),
    "closedBy": Field((str,), "client | origin | edge: who ended the WebSocket session"),
    "errorClass": Field((str,), "stable error id, e.g. connect-refused, upstream-timeout, "
                                "bad-request"),
    "error": Field((str,), "one-line human-readable error"),
    "reason": Field((str,), "origin guard refusal reason: missing | mismatch | repeated"),
    "refusedCount": Field((int,), "origin guard: refusals summarised into this event under "
                                  "a flood"),
}

# Documented for `wsgate logs --format json` users.
FIELDS: Final[dict[str, str]] = {name: field.doc for name, field in SCHEMA.items()}
# The fields a caller passes as keywords (`source` is a parameter of its own).
_OPTIONAL: Final = tuple(name for name in SCHEMA if name != "source")
_OPTIONAL_SET: Final = frozenset(_OPTIONAL)

TRACE_KEY: Final = "logging.googleapis.com/trace"
LOGGER_NAME: Final = "wsgate.events"

# Floats are written to the microsecond of a millisecond field: 6.022, not
# 6.021999999999999 (what 0.006022 * 1000 is in binary).
FLOAT_DIGITS: Final = 3


def rounded(value: float) -> float:
    return round(value, FLOAT_DIGITS)


@dataclass(slots=True, frozen=True)
class HttpRequest:
    """Cloud Logging's `HttpRequest` message, the subset wsgate fills in."""

    method: str
    url: str
    status: int
    latency_s: float
    remote_ip: str
    user_agent: str = ""
    request_size: int = 0
    response_size: int = 0
    protocol: str = "HTTP/1.1"

    def as_json(self) -> dict[str, Any]:
        return {
            "requestMethod": self.method,
            "requestUrl": self.url,
            "status": self.status,
            # Cloud Logging's Duration JSON form: seconds with an "s" suffix.
            "latency": f"{self.latency_s:.6f}s",
            "remoteIp": self.remote_ip,
            "userAgent": self.user_agent,
            # int64 fields are strings in the LogEntry JSON mapping.
            "requestSize": str(self.request_size),
            "responseSize": str(self.response_size),
            "protocol": self.protocol,
        }


_last_second: list[Any] = [-1, ""]  # strftime once per second, not once per event


def utc_timestamp(epoch: float | None = None) -> str:
    """RFC 3339 with microseconds, the form Cloud Logging prints."""
    now = time.time() if epoch is None else epoch
    seconds = int(now)
    micros = int((now - seconds) * 1_000_000)
    if _last_second[0] != seconds:
        _last_second[:] = [seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))]
    return f"{_last_second[1]}.{micros:06d}Z"


def build_event(
    *,
    source: Source,
    message: str,
    severity: Severity = "INFO",
    http: HttpRequest | None = None,
    trace: str | None = None,
    epoch: float | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """One event as a JSON-ready dict. `fields` are SCHEMA names with values of the
    SCHEMA types (else ValueError/TypeError: a programming error), written in SCHEMA
    order whatever the order of the call; None values are left out."""
    if not fields.keys() <= _OPTIONAL_SET:
        raise ValueError(f"unknown log event fields: {sorted(fields.keys() - _OPTIONAL_SET)}")
    event: dict[str, Any] = {
        "timestamp": utc_timestamp(epoch),
        "severity": severity,
        "message": message,
        "source": source,
    }
    if http is not None:
        event["httpRequest"] = http.as_json()
    if trace:
        event[TRACE_KEY] = trace
    for key in _OPTIONAL:
        value = fields.get(key)
        if value is None:
            continue
        if type(value) not in SCHEMA[key].types:
            raise TypeError(f"log event field {key}: {type(value).__name__} is not "
                            f"{' or '.join(t.__name__ for t in SCHEMA[key].types)}")
        event[key] = rounded(value) if type(value) is float else value
    return event


def edge_line(message: str, severity: Severity, method: str, url: str, status: int,
              latency_s: float, remote_ip: str, user_agent: str, request_id: str | None,
              route: str | None, upstream: str | None, is_websocket: bool,
              bytes_from_client: int, bytes_to_client: int,
              ws_duration_ms: int | None = None, close_code: int | None = None,
              closed_by: str | None = None, error_class: str | None = None,
              error: str | None = None) -> str:
    """The edge's line for one request or WebSocket session: exactly
    `dumps(build_event(source="edge", http=HttpRequest(...), requestId=..., ...))`
    (HttpRequest's sizes are the byte counts), built by one template because it runs
    once per request, where a dict and the encoder would cost more than the rest of
    the line. Strings go through the encoder's own quoting; None values (and a
    request id of "": none was given) are left out. Positional arguments are fine on
    the hot path: keywords cost ~1 µs of a ~3 µs line.
    tests/logs/test_event_schema.py pins the equality."""
    q = encode_basestring
    line = (f'{{"timestamp":"{utc_timestamp()}","severity":"{severity}",'
            f'"message":{q(message)},"source":"edge","httpRequest":{{'
            f'"requestMethod":{q(method)},"requestUrl":{q(url)},"status":{status},'
            f'"latency":"{latency_s:.6f}s","remoteIp":{q(remote_ip)},'
            f'"userAgent":{q(user_agent)},"requestSize":"{bytes_from_client}",'
            f'"responseSize":"{bytes_to_client}","protocol":"HTTP/1.1"}}')
    if request_id:
        line += f',"requestId":{q(request_id)}'
    if route is not None:
        line += f',"route":{q(route)}'
    if upstream is not None:
        line += f',"upstream":{q(upstream)}'
    line += ',"isWebSocket":true' if is_websocket else ',"isWebSocket":false'
    if ws_duration_ms is not None:
        line += f',"wsDurationMs":{ws_duration_ms}'
    line += f',"bytesFromClient":{bytes_from_client},"bytesToClient":{bytes_to_client}'
    if close_code is not None:
        line += f',"closeCode":{close_code}'
    if closed_by is not None:
        line += f',"closedBy":{q(closed_by)}'
    if error_class is not None:
        line += f',"errorClass":{q(error_class)}'
    if error is not None:
        line += f',"error":{q(error)}'
    return line + "}"


# One encoder for every line: json.dumps with non-default options builds a new
# JSONEncoder per call (~2 µs of a ~10 µs line).
_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def dumps(event: dict[str, Any]) -> str:
    return _ENCODER.encode(event)


class JsonLineFormatter(logging.Formatter):
    """Formats records carrying `extra={"event": {...}}` as that event's JSON line.

    Records without an event (library warnings, say) become a minimal event so the
    stream stays one JSON object per line.
    """

    def __init__(self, source: Source) -> None:
        super().__init__()
        self.source: Source = source

    def format(self, record: logging.LogRecord) -> str:
        event = getattr(record, "event", None)
        if isinstance(event, dict):
            return dumps(event)
        severity: Severity = "INFO"
        if record.levelno >= logging.ERROR:
            severity = "ERROR"
        elif record.levelno >= logging.WARNING:
            severity = "WARNING"
        message = record.getMessage()
        if record.exc_info:
            # One line even for a traceback: the last line names the exception.
            message = f"{message}: {self.formatException(record.exc_info).splitlines()[-1]}"
        return dumps(build_event(source=self.source, message=message, severity=severity,
                                 epoch=record.created))


def configure_event_logging(
    source: Source, destination: str | None = None, level: int = logging.INFO
) -> logging.Logger:
    """Send wsgate events as JSON lines to stdout (default), stderr, or a file path.

    Returns the events logger; emit with `emit(logger, event)`.
    """
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers.clear()
    handler: logging.Handler
    if destination in (None, "-", "stdout"):
        handler = logging.StreamHandler(sys.stdout)
    elif destination == "stderr":
        handler = logging.StreamHandler(sys.stderr)
    else:
        handler = logging.FileHandler(destination, encoding="utf-8")
    handler.setFormatter(JsonLineFormatter(source))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return logger


_LEVELS: Final[dict[str, int]] = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "NOTICE": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
}


def emit(logger: logging.Logger, event: dict[str, Any]) -> None:
    level = _LEVELS.get(str(event.get("severity")), logging.INFO)
    if logger.isEnabledFor(level):
        logger.log(level, event["message"], extra={"event": event})


class EventWriter:
    """A cheap direct writer for a hot path (the edge writes one event per request).

    `logging` costs ~35 µs per event (LogRecord, handler lock, a flush per line);
    this is `json.dumps` + an append to a list. Lines are written in one call per
    batch, flushed `interval` seconds after the first line of the batch (or at once
    when no event loop runs) and by `flush()`/`close()`, which the owner calls at
    shutdown, so no line is lost on a graceful exit. Whole lines only: a batch is
    one `write` of complete lines, so a line never interleaves with other writers
    of the same file.
    """

    def __init__(self, stream: IO[str], *, close_stream: bool = False,
                 interval: float = 0.05) -> None:
        self.stream = stream
        self.interval = interval
        self._close_stream = close_stream
        self._lines: list[str] = []
        self._timer: asyncio.TimerHandle | None = None

    def write(self, event: dict[str, Any]) -> None:
        self.write_line(dumps(event))

    def write_line(self, line: str) -> None:
        self._lines.append(line)
        if self._timer is None:
            # Imported here, once per batch: `wsgate logs` reads this module's schema
            # and must not pay for importing asyncio at start.
            from asyncio import get_running_loop

            try:
                loop = get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._timer = loop.call_later(self.interval, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._lines:
            lines, self._lines = self._lines, []
            lines.append("")
            try:
                self.stream.write("\n".join(lines))
                self.stream.flush()
            except (OSError, ValueError):
                pass  # a closed stdout or a full disk must not take the proxy down

    def close(self) -> None:
        self.flush()
        if self._close_stream:
            self.stream.close()


class _WriterHandler(logging.Handler):
    """Routes the rare `logging` records (unexpected errors) into an EventWriter, so
    the two never write the same file through separate buffers."""

    def __init__(self, writer: EventWriter) -> None:
        super().__init__()
        self.writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.writer.write_line(self.format(record))
        except Exception:  # logging's own convention: never raise from a handler
            self.handleError(record)


def open_event_writer(source: Source, destination: str | None = None
                      ) -> tuple[EventWriter, logging.Logger]:
    """An EventWriter for stdout (default), stderr, or a file path (appended), plus
    the events logger wired to it (for the rare records that go through `logging`)."""
    stream: IO[str]
    if destination in (None, "-", "stdout"):
        writer = EventWriter(sys.stdout)
    elif destination == "stderr":
        writer = EventWriter(sys.stderr)
    else:
        stream = open(destination, "a", encoding="utf-8", buffering=1 << 16)  # noqa: SIM115
        writer = EventWriter(stream, close_stream=True)
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers.clear()
    handler = _WriterHandler(writer)
    handler.setFormatter(JsonLineFormatter(source))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return writer, logger
