"""The three log formats `wsgate logs` understands, each normalised to the event of
`model.py`:

- wsgate's own JSON lines (edge and origin guard, schema in `events.py`);
- Google Cloud Logging `LogEntry` objects (`gcloud logging read --format json`);
- `wrangler tail --format json` events (a Worker invocation each).

Pure functions of one decoded JSON value. Nothing here raises on bad input: missing
fields or wrong types leave the field out; a value of no known shape is not an event.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable
from typing import Any, Final, NamedTuple

from wsgate.logs.events import SCHEMA, TRACE_KEY, rounded
from wsgate.logs.model import (
    SEVERITIES,
    Event,
    format_epoch,
    milliseconds,
    normalise_severity,
    utc_stamp,
)

# wsgate's schema fields copied through as they are, with the exact types each may have.
_PASSTHROUGH: Final = {name: field.types for name, field in SCHEMA.items() if name != "source"}
# The few of them a filter looks at are copied first, into the quick part of an event.
_QUICK_PASSTHROUGH: Final = {k: _PASSTHROUGH[k] for k in ("isWebSocket", "requestId",
                                                           "errorClass")}
_REST_PASSTHROUGH: Final = {k: t for k, t in _PASSTHROUGH.items() if k not in _QUICK_PASSTHROUGH}

_WRANGLER_LEVELS: Final[dict[str, str]] = {
    "debug": "DEBUG", "log": "INFO", "info": "INFO", "warn": "WARNING", "error": "ERROR",
}

# ---------------------------------------------------------------- small typed getters

def _str(d: dict[str, Any], key: str) -> str | None:
    value = d.get(key)
    return value if isinstance(value, str) else None


def _int(value: object) -> int | None:
    """An int from a JSON number or a decimal string (LogEntry int64 fields are strings)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 19:
        return int(value)
    return None


def _dict(value: object) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def _duration_ms(value: object) -> float | None:
    """Cloud Logging's Duration JSON form "0.012s" (also a bare number of seconds)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return milliseconds(float(value))
    if isinstance(value, str) and value.endswith("s"):
        try:
            seconds = float(value[:-1])
        except ValueError:
            return None
        if seconds == seconds and 0 <= seconds < 1e9:  # not NaN, not absurd
            return milliseconds(seconds)
    return None


def _apply_url(event: Event, url: str) -> None:
    event["url"] = url
    if url.startswith("/"):
        event["path"] = url
        return
    # The same few URLs come back line after line: remember short ones.
    host, path = _split_url(url) if len(url) <= 512 else _split_url.__wrapped__(url)
    if host:
        event["host"] = host
    event["path"] = path


@functools.lru_cache(maxsize=4096)
def _split_url(url: str) -> tuple[str, str]:
    """(lower-case host or "", path and query) of an absolute URL; the path is the
    whole text when it is not one."""
    # Hand-split instead of urlsplit: this runs once per line of a million-line file.
    scheme, sep, rest = url.partition("://")
    if not sep or "/" in scheme:
        return "", url
    cut = len(rest)
    for mark in "/?#":
        at = rest.find(mark)
        if 0 <= at < cut:
            cut = at
    authority, path = rest[:cut], rest[cut:]
    host = authority.rpartition("@")[2]
    if host.startswith("["):
        host = host[1:host.find("]")] if "]" in host else host[1:]
    else:
        host = host.partition(":")[0]
    path = path.partition("#")[0]
    return host.lower(), (path if path.startswith("/") else "/" + path)


def _http_quick(event: Event, http: dict[str, Any]) -> None:
    """The quick part of Cloud Logging's HttpRequest (wsgate's events use the same shape)."""
    get = http.get
    method = get("requestMethod")
    if method and type(method) is str:
        event["method"] = method.upper()
    status = get("status")
    if type(status) is not int:
        status = _int(status)
    if status is not None:
        event["status"] = status


def _http_rest(event: Event, http: dict[str, Any]) -> None:
    get = http.get
    url = get("requestUrl")
    if url and type(url) is str:
        _apply_url(event, url)
    latency = _duration_ms(get("latency"))
    if latency is not None:
        event["latencyMs"] = latency
    remote = get("remoteIp")
    if remote and type(remote) is str:
        event["remoteIp"] = remote
    agent = get("userAgent")
    if agent and type(agent) is str:
        event["userAgent"] = agent


def _copy_fields(event: Event, payload: dict[str, Any],
                 fields: dict[str, tuple[type, ...]]) -> None:
    get = payload.get
    for key, types in fields.items():
        value = get(key)
        if value is not None and type(value) in types:
            # Rounded as wsgate writes floats now, whoever wrote this one.
            event[key] = rounded(value) if type(value) is float else value


def _finish(event: Event) -> Event:
    """Derived fields every format gets the same way."""
    if "isWebSocket" not in event:
        headers = event.get("headers")
        upgrade = headers.get("upgrade", "") if isinstance(headers, dict) else ""
        if event.get("status") == 101 or upgrade.lower() == "websocket":
            event["isWebSocket"] = True
    return event


# ---------------------------------------------------------------- the three formats

def _wsgate_quick(doc: dict[str, Any]) -> Event:
    """wsgate's own line: Cloud Logging structured JSON with flat wsgate fields."""
    event: Event = {}
    ts = utc_stamp(doc.get("timestamp"))
    if ts:
        event["timestamp"] = ts
    source = doc.get("source")
    event["source"] = source if source in ("edge", "origin") else "origin"
    event["format"] = "wsgate"
    event["severity"] = normalise_severity(doc.get("severity")) or "DEFAULT"
    message = doc.get("message")
    if isinstance(message, str):
        event["message"] = message
    http = _dict(doc.get("httpRequest"))
    if http:
        _http_quick(event, http)
    _copy_fields(event, doc, _QUICK_PASSTHROUGH)
    return _finish(event)


def _wsgate_rest(event: Event, doc: dict[str, Any]) -> Event:
    http = _dict(doc.get("httpRequest"))
    if http:
        _http_rest(event, http)
    trace = _str(doc, TRACE_KEY)
    if trace:
        event["trace"] = trace
    _copy_fields(event, doc, _REST_PASSTHROUGH)
    return event


def _cloud_quick(doc: dict[str, Any]) -> Event:
    """A LogEntry as `gcloud logging read --format json` prints it."""
    event: Event = {}
    ts = utc_stamp(doc.get("timestamp")) or utc_stamp(doc.get("receiveTimestamp"))
    if ts:
        event["timestamp"] = ts
    payload = _dict(doc.get("jsonPayload")) or {}
    source = payload.get("source")
    # Entries without wsgate's `source` come from the app platform (Cloud Run): the origin.
    event["source"] = source if source in ("edge", "origin") else "origin"
    event["format"] = "cloud-logging"
    event["severity"] = normalise_severity(doc.get("severity")) or "DEFAULT"
    message = _str(payload, "message") or _str(doc, "textPayload")
    if message is None:
        proto = _dict(doc.get("protoPayload"))
        message = _str(proto, "status") if proto else None
        if proto and message is None:
            status = _dict(proto.get("status"))
            message = _str(status, "message") if status else None
    if message is not None:
        event["message"] = message
    http = _dict(doc.get("httpRequest"))
    if http:
        _http_quick(event, http)
    _copy_fields(event, payload, _QUICK_PASSTHROUGH)
    return _finish(event)


def _cloud_rest(event: Event, doc: dict[str, Any]) -> Event:
    payload = _dict(doc.get("jsonPayload")) or {}
    http = _dict(doc.get("httpRequest"))
    if http:
        _http_rest(event, http)
    trace = _str(doc, "trace") or _str(payload, TRACE_KEY)
    if trace:
        event["trace"] = trace
    _copy_fields(event, payload, _REST_PASSTHROUGH)
    return event


def _console_text(parts: object) -> str:
    """One console.log call's arguments as one line, like wrangler's pretty mode."""
    if parts is None:
        return ""
    if not isinstance(parts, list):
        parts = [parts]
    texts = []
    for part in parts:
        if isinstance(part, str):
            texts.append(part)
        else:
            texts.append(json.dumps(part, ensure_ascii=False, separators=(",", ":")))
    return " ".join(texts).replace("\n", " ")


def _wrangler_event(doc: dict[str, Any]) -> Event:
    """A `wrangler tail --format json` TailEventMessage (a Worker invocation)."""
    event: Event = {}
    stamp = doc.get("eventTimestamp")
    if isinstance(stamp, int | float) and not isinstance(stamp, bool) and 0 < stamp < 1e14:
        event["timestamp"] = format_epoch(stamp / 1000.0)
    event["source"] = "edge"
    event["format"] = "wrangler"
    outcome = _str(doc, "outcome")
    if outcome:
        event["outcome"] = outcome
    script = _str(doc, "scriptName")
    if script:
        event["scriptName"] = script
    logs, severity = _wrangler_console(doc.get("logs"))
    exceptions = _wrangler_exceptions(doc.get("exceptions"))
    if exceptions or (outcome and outcome not in ("ok", "canceled")):
        severity = "ERROR"
    event["severity"] = severity
    if logs:
        event["logs"] = logs
    if exceptions:
        event["exceptions"] = exceptions
        event["error"] = exceptions[0]
    source_event = _dict(doc.get("event")) or {}
    request = _dict(source_event.get("request"))
    if request:
        _wrangler_request(event, request)
    response = _dict(source_event.get("response"))
    if response:
        status = _int(response.get("status"))
        if status is not None:
            event["status"] = status
    own = _wsgate_console_event(doc.get("logs"))
    if own is not None:
        # The Worker's own event line: its request id (which the edge may have made
        # itself) and fields join it with the guard's lines, as the Python edge's do.
        _copy_fields(event, own, _QUICK_PASSTHROUGH)
        _copy_fields(event, own, _REST_PASSTHROUGH)
    # The message a person looks for first: the worker's own "Edge Proxy Error" log line
    # when there is one, else the first exception, else the first console line.
    message = next((line for line in logs if "error" in line.lower()), None)
    message = message or (exceptions[0] if exceptions else None) or (logs[0] if logs else None)
    if message:
        event["message"] = message
    elif outcome and outcome != "ok":
        event["message"] = f"outcome {outcome}"
    return _finish(event)


def _wsgate_console_event(entries: object) -> dict[str, Any] | None:
    """The first console line that is a wsgate edge event (the Worker's log line)."""
    for entry in entries if isinstance(entries, list) else ():
        message = entry.get("message") if isinstance(entry, dict) else None
        for part in message if isinstance(message, list) else [message]:
            doc = part
            if isinstance(part, str) and part.startswith("{"):
                try:
                    doc = json.loads(part)
                except ValueError:
                    continue
            if isinstance(doc, dict) and doc.get("source") == "edge":
                return doc
    return None


def _wrangler_console(entries: object) -> tuple[list[str], str]:
    """The console lines of an invocation, and the severity of the loudest one."""
    severity = "INFO"
    lines: list[str] = []
    for entry in entries if isinstance(entries, list) else ():
        if not isinstance(entry, dict):
            continue
        level = _WRANGLER_LEVELS.get(str(entry.get("level")), "INFO")
        if SEVERITIES[level] > SEVERITIES[severity]:
            severity = level
        text = _console_text(entry.get("message"))
        if text:
            lines.append(text)
    return lines, severity


def _wrangler_exceptions(entries: object) -> list[str]:
    out: list[str] = []
    for entry in entries if isinstance(entries, list) else ():
        if isinstance(entry, dict):
            name = entry.get("name")
            out.append(f"{name if isinstance(name, str) else 'Error'}: "
                       f"{_console_text(entry.get('message'))}")
    return out


def _wrangler_request(event: Event, request: dict[str, Any]) -> None:
    method = _str(request, "method")
    if method:
        event["method"] = method.upper()
    url = _str(request, "url")
    if url:
        _apply_url(event, url)
    raw_headers = _dict(request.get("headers")) or {}
    headers = {str(k).lower(): v for k, v in raw_headers.items() if isinstance(v, str)}
    if not headers:
        return
    event["headers"] = headers
    ip = headers.get("cf-connecting-ip") or headers.get("x-real-ip")
    if ip:
        event["remoteIp"] = ip
    agent = headers.get("user-agent")
    if agent:
        event["userAgent"] = agent
    rid = headers.get("x-request-id")
    if rid:
        event["requestId"] = rid


_CLOUD_KEYS: Final = ("jsonPayload", "textPayload", "protoPayload", "insertId", "logName")
_WSGATE_KEYS: Final = ("severity", "message", "httpRequest")


class Format(NamedTuple):
    """How one input format is normalised, in two steps: `quick` builds the event's
    QUICK_FIELDS (cheap), `rest` adds the other fields to it. A filter on quick fields
    can drop a line between the two. Invariant (tested): the quick event's QUICK_FIELDS
    are exactly those of the finished event."""

    quick: Callable[[dict[str, Any]], Event]
    rest: Callable[[Event, dict[str, Any]], Event]


def _nothing_more(event: Event, doc: dict[str, Any]) -> Event:
    return event


WSGATE: Final = Format(_wsgate_quick, _wsgate_rest)
CLOUD_LOGGING: Final = Format(_cloud_quick, _cloud_rest)
WRANGLER: Final = Format(_wrangler_event, _nothing_more)  # rare in bulk: all in one step


def detect(doc: object) -> Format | None:
    """The format of one decoded JSON value, or None when it is no log event."""
    if not isinstance(doc, dict):
        return None
    if "outcome" in doc and ("eventTimestamp" in doc or "scriptName" in doc or "event" in doc):
        return WRANGLER
    for key in _CLOUD_KEYS:
        if key in doc:
            return CLOUD_LOGGING
    for key in _WSGATE_KEYS:
        if key in doc:
            return WSGATE
    return None


def normalise(doc: object) -> Event | None:
    """The normalised event of one decoded JSON value, or None when it is no log event."""
    fmt = detect(doc)
    if fmt is None:
        return None
    assert isinstance(doc, dict)  # detect() said so
    return fmt.rest(fmt.quick(doc), doc)


def raw_status_pattern(statuses: Iterable[str]) -> re.Pattern[bytes]:
    """A regex that finds, in one raw JSON line, a `"status"` key whose value may be read
    as one of `statuses` (three-digit regex fragments such as "403" or "5[0-9][0-9]"):
    that number, a string of those digits (leading zeros allowed, as `_int` reads them)
    or any number with a fraction or an exponent (403.0 is read as 403). Every status
    the normalisers read, in any format, is the value of a "status" key. Only for lines
    without a backslash: an escape can hide a key or a digit from a byte search."""
    codes = "|".join(statuses)
    return re.compile(
        rf'"status"[ \t\r\n]*:[ \t\r\n]*(?:"0*(?:{codes})"|(?:{codes})(?![0-9])'
        rf"|-?[0-9]+[.eE])".encode())


LinePredicate = Callable[[bytes], bool]
EventPredicate = Callable[[Event], bool]

