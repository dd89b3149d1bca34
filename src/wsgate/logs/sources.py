"""Readers for the three log formats `wsgate logs` understands, and their normalisation.

Input is bytes, line by line, formats mixed freely:
- wsgate's own JSON lines (edge and origin guard, see `events.py`);
- Google Cloud Logging `LogEntry` objects: `gcloud logging read --format json` prints
  one pretty-printed JSON array over many lines, other exports put one entry per line;
- `wrangler tail --format json` events, which wrangler pretty-prints over many lines
  (`JSON.stringify(event, null, 2)`), or one per line when piped through `jq -c`.

Every document becomes one flat "normalised event" dict whose keys are listed in
`EVENT_FIELDS` (a stable interface, documented in docs/logs.md). Nothing here raises on
bad input: a line that is not JSON, a value that is not an object, missing fields or
wrong types are counted in `ReadStats` and skipped, or the field is left out.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

import orjson

Event = dict[str, Any]

# The normalised event, one JSON object per line in `--format json`. Absent = unknown.
EVENT_FIELDS: Final[dict[str, str]] = {
    "timestamp": "RFC 3339 UTC time of the event, e.g. 2026-11-26T00:47:55.123456Z",
    "source": "edge | origin: which side of the deployment wrote it",
    "format": "wsgate | cloud-logging | wrangler: the input format it was read from",
    "severity": "DEFAULT DEBUG INFO NOTICE WARNING ERROR CRITICAL ALERT EMERGENCY",
    "message": "the event's one-line message",
    "method": "HTTP method",
    "url": "request URL as logged (absolute or a path)",
    "host": "host part of the URL, when the URL has one",
    "path": "path and query of the URL",
    "status": "HTTP status (101 for a WebSocket upgrade that succeeded)",
    "latencyMs": "time to answer, milliseconds (float)",
    "remoteIp": "client address as the logging component saw it",
    "userAgent": "User-Agent of the request",
    "requestId": "X-Request-Id shared by edge and origin events of one request",
    "trace": "Cloud Trace id (logging.googleapis.com/trace or LogEntry.trace)",
    "isWebSocket": "true for an upgrade request or WebSocket session",
    "wsDurationMs": "how long the WebSocket stayed open, milliseconds",
    "closeCode": "WebSocket close code",
    "closedBy": "client | origin | edge: who ended the WebSocket session",
    "bytesFromClient": "bytes received from the client",
    "bytesToClient": "bytes sent to the client",
    "errorClass": "stable error id, e.g. connect-refused",
    "error": "one-line error text",
    "reason": "origin guard refusal reason: missing | mismatch | repeated",
    "refusedCount": "refusals summarised into this event",
    "route": "edge route pattern that matched",
    "upstream": "origin URL the edge forwarded to",
    "outcome": "wrangler only: ok | exception | exceededCpu | exceededMemory | canceled | ...",
    "scriptName": "wrangler only: the Worker's name",
    "logs": "wrangler only: console messages of the invocation, one string each",
    "exceptions": "wrangler only: uncaught exceptions, 'Name: message' each",
    "headers": "wrangler only: the request headers, lowercase names",
}

# wsgate FIELDS copied through as they are, with the exact types each may have (exact:
# bool is an int subclass, and a count or close code must not accept true/false).
_PASSTHROUGH: Final[dict[str, tuple[type, ...]]] = {
    "requestId": (str,), "route": (str,), "upstream": (str,), "isWebSocket": (bool,),
    "wsDurationMs": (int, float), "bytesFromClient": (int,), "bytesToClient": (int,),
    "closeCode": (int,), "closedBy": (str,), "errorClass": (str,), "error": (str,),
    "reason": (str,), "refusedCount": (int,),
}
# The few of them a filter looks at are copied first, into the "quick" part of an event.
_QUICK_PASSTHROUGH: Final = {k: _PASSTHROUGH[k] for k in ("isWebSocket", "requestId",
                                                           "errorClass")}
_REST_PASSTHROUGH: Final = {k: t for k, t in _PASSTHROUGH.items() if k not in _QUICK_PASSTHROUGH}

# Fields of the quick part of an event (see `Format`): computed before the rest, with the
# same values the full event has, so filters on them can drop a line before the rest of
# the work. Filters on other fields (URL, address, headers, text) wait for the full event.
QUICK_FIELDS: Final = frozenset({
    "timestamp", "source", "format", "severity", "message", "method", "status",
    "isWebSocket", "requestId", "errorClass", "outcome",
})

SEVERITIES: Final[dict[str, int]] = {
    "DEFAULT": 0, "DEBUG": 100, "INFO": 200, "NOTICE": 300, "WARNING": 400,
    "ERROR": 500, "CRITICAL": 600, "ALERT": 700, "EMERGENCY": 800,
}
_SEVERITY_ALIASES: Final[dict[str, str]] = {"WARN": "WARNING", "ERR": "ERROR", "FATAL": "CRITICAL"}
_WRANGLER_LEVELS: Final[dict[str, str]] = {
    "debug": "DEBUG", "log": "INFO", "info": "INFO", "warn": "WARNING", "error": "ERROR",
}
_TRACE_KEY: Final = "logging.googleapis.com/trace"

# ASCII digits only: every normalised timestamp then has this one shape, which `time_key`
# turns into a string that sorts like the time (no date parsing per event).
_UTC_STAMP: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?Z", re.ASCII)

# A multi-line document larger than this is given up (its lines counted as bad), so a
# stray "{" cannot make the reader hold a whole file in memory.
MAX_DOCUMENT_CHARS: Final = 8 * 1024 * 1024


@dataclass
class ReadStats:
    """What the readers skipped; reported once at the end of a run."""

    documents: int = 0
    not_json: int = 0  # lines that are not (part of) a JSON document
    not_event: int = 0  # JSON values that are not a log event of a known shape

    @property
    def skipped(self) -> int:
        return self.not_json + self.not_event

    def describe(self) -> str | None:
        if not self.skipped:
            return None
        parts = []
        if self.not_json:
            parts.append(f"{self.not_json} not JSON")
        if self.not_event:
            parts.append(f"{self.not_event} not a log event")
        return f"skipped {self.skipped} unparseable input(s): " + ", ".join(parts)


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
        return float(value) * 1000.0
    if isinstance(value, str) and value.endswith("s"):
        try:
            seconds = float(value[:-1])
        except ValueError:
            return None
        if seconds == seconds and 0 <= seconds < 1e9:  # not NaN, not absurd
            return seconds * 1000.0
    return None


def normalise_severity(value: object) -> str | None:
    if type(value) is str and value in SEVERITIES:  # the common case, already canonical
        return value
    if not isinstance(value, str):
        return None
    upper = value.strip().upper()
    upper = _SEVERITY_ALIASES.get(upper, upper)
    return upper if upper in SEVERITIES else None


def parse_iso(text: str) -> float | None:
    """Epoch seconds of an RFC 3339 / ISO 8601 time; naive times are UTC."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.timestamp()
    except (OverflowError, OSError, ValueError):
        return None


def event_epoch(event: Event) -> float | None:
    """Epoch seconds of a normalised event's timestamp (None when it has none)."""
    ts = event.get("timestamp")
    return parse_iso(ts) if isinstance(ts, str) else None


def format_epoch(epoch: float) -> str:
    seconds = int(epoch // 1)
    micros = round((epoch - seconds) * 1_000_000)
    if micros >= 1_000_000:
        seconds, micros = seconds + 1, micros - 1_000_000
    t = time.gmtime(seconds)
    # Explicit widths (strftime's %Y does not pad years before 1000 on every platform).
    return (f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}"
            f":{t.tm_sec:02d}.{micros:06d}Z")


def _timestamp(value: object) -> str | None:
    """RFC 3339 as given when it is already UTC ("...Z"), else converted to UTC."""
    if not isinstance(value, str) or len(value) < 19 or len(value) > 40:
        return None
    if _UTC_STAMP.fullmatch(value):
        return value
    epoch = parse_iso(value)
    if epoch is None:
        return None
    text = format_epoch(epoch)
    return text if _UTC_STAMP.fullmatch(text) else None  # a year past 9999 has no place


def time_key(timestamp: str) -> str:
    """A string that sorts like the time, for a normalised timestamp
    (`YYYY-MM-DDTHH:MM:SS[.fraction]Z`): the fraction padded to nanoseconds. Comparing
    these is exact and much cheaper than parsing a date per event."""
    if timestamp[19:20] == ".":
        return timestamp[:20] + timestamp[20:-1].ljust(9, "0")
    return timestamp[:19] + ".000000000"


def epoch_key(epoch: float) -> str:
    """`time_key` of a moment given as epoch seconds (microsecond precision)."""
    return time_key(format_epoch(epoch))


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
            event[key] = value


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
    ts = _timestamp(doc.get("timestamp"))
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
    trace = _str(doc, _TRACE_KEY)
    if trace:
        event["trace"] = trace
    _copy_fields(event, doc, _REST_PASSTHROUGH)
    return event


def from_wsgate(doc: dict[str, Any]) -> Event:
    return _wsgate_rest(_wsgate_quick(doc), doc)


def _cloud_quick(doc: dict[str, Any]) -> Event:
    """A LogEntry as `gcloud logging read --format json` prints it."""
    event: Event = {}
    ts = _timestamp(doc.get("timestamp")) or _timestamp(doc.get("receiveTimestamp"))
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
    trace = _str(doc, "trace") or _str(payload, _TRACE_KEY)
    if trace:
        event["trace"] = trace
    _copy_fields(event, payload, _REST_PASSTHROUGH)
    return event


def from_cloud_logging(doc: dict[str, Any]) -> Event:
    return _cloud_rest(_cloud_quick(doc), doc)


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


def from_wrangler(doc: dict[str, Any]) -> Event:
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

    severity = "INFO"
    logs: list[str] = []
    for entry in doc.get("logs") or []:
        if not isinstance(entry, dict):
            continue
        level = _WRANGLER_LEVELS.get(str(entry.get("level")), "INFO")
        if SEVERITIES[level] > SEVERITIES[severity]:
            severity = level
        text = _console_text(entry.get("message"))
        if text:
            logs.append(text)
    exceptions: list[str] = []
    for entry in doc.get("exceptions") or []:
        if isinstance(entry, dict):
            name = entry.get("name")
            exceptions.append(f"{name if isinstance(name, str) else 'Error'}: "
                              f"{_console_text(entry.get('message'))}")
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
        method = _str(request, "method")
        if method:
            event["method"] = method.upper()
        url = _str(request, "url")
        if url:
            _apply_url(event, url)
        raw_headers = _dict(request.get("headers")) or {}
        headers = {str(k).lower(): v for k, v in raw_headers.items() if isinstance(v, str)}
        if headers:
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
    response = _dict(source_event.get("response"))
    if response:
        status = _int(response.get("status"))
        if status is not None:
            event["status"] = status
    # The message a person looks for first: the worker's own "Edge Proxy Error" log line
    # when there is one, else the first exception, else the first console line.
    message = next((line for line in logs if "error" in line.lower()), None)
    message = message or (exceptions[0] if exceptions else None) or (logs[0] if logs else None)
    if message:
        event["message"] = message
    elif outcome and outcome != "ok":
        event["message"] = f"outcome {outcome}"
    return _finish(event)


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
WRANGLER: Final = Format(from_wrangler, _nothing_more)  # rare in bulk: all in one step


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


# ---------------------------------------------------------------- documents from lines

_DECODER: Final = json.JSONDecoder()
_VALUE_STARTS: Final = frozenset('{["-0123456789tfn')


class DocumentReader:
    """Turns lines into JSON values: one per line on the fast path, or documents spread
    over many lines (pretty-printed objects, arrays of LogEntry) decoded incrementally,
    one array element at a time so a large `gcloud` export never sits in memory whole.
    """

    def __init__(self, stats: ReadStats) -> None:
        self.stats = stats
        self._buffer = ""
        self._lines = 0  # lines in the buffer, counted as bad if it never decodes
        self._in_array = False

    def feed(self, raw: bytes) -> Iterator[object]:
        line = raw.decode("utf-8", "replace")
        if not self._buffer and not self._in_array:
            text = line.strip()
            if not text:
                return
            first = text[0]
            if first == "{" and text[-1] == "}":
                try:
                    value = json.loads(text)
                except (ValueError, RecursionError):
                    pass  # maybe the first line of a pretty-printed object
                else:
                    self.stats.documents += 1
                    yield value
                    return
            if first == "[":
                self._in_array = True
                self._buffer = text[1:]
                self._lines = 1
                yield from self._drain()
                return
            if first != "{":
                self.stats.not_json += 1
                return
            self._buffer = line
            self._lines = 1
            return
        # Pretty printers indent everything inside a document, so an unindented line
        # starts a new one: what is buffered was cut short (a crash mid-write, say).
        # Resynchronise here instead of swallowing the rest of the input.
        if (line[:1] not in (" ", "\t", "}", "]") and line.strip()
                and self._buffer.strip(" \t\r\n,")):
            self._give_up()
            yield from self.feed(raw)
            return
        self._buffer += line
        self._lines += 1
        tail = line.rstrip()
        if tail.endswith(("}", "]", "},", "],")):
            yield from self._drain()
        if len(self._buffer) > MAX_DOCUMENT_CHARS:
            self._give_up()

    def _drain(self) -> Iterator[object]:
        while True:
            buf = self._buffer.lstrip()
            if self._in_array:
                buf = buf.lstrip(", \t\r\n")
                if buf.startswith("]"):
                    self._in_array = False
                    buf = buf[1:].lstrip()
                    if not buf:
                        self._buffer, self._lines = "", 0
                        return
            if not buf:
                self._buffer = ""
                if not self._in_array:
                    self._lines = 0
                return
            if not self._in_array and buf[0] not in "{[":
                self._buffer = buf
                self._give_up()
                return
            if not self._in_array and buf[0] == "[":
                self._in_array = True
                self._buffer = buf[1:]
                continue
            if buf[0] not in _VALUE_STARTS:
                self._buffer = buf
                self._give_up()
                return
            try:
                value, end = _DECODER.raw_decode(buf)
            except RecursionError:
                self._buffer = buf
                self._give_up()  # nested too deep to be a log event
                return
            except ValueError:
                self._buffer = buf  # incomplete: wait for more lines
                return
            self._buffer = buf[end:]
            self._lines = 1 if self._buffer.strip() else 0
            self.stats.documents += 1
            yield value

    def idle(self) -> bool:
        """True between documents (no multi-line document under way)."""
        return not self._buffer and not self._in_array

    def _give_up(self) -> None:
        self.stats.not_json += max(self._lines, 1)
        self._buffer, self._lines, self._in_array = "", 0, False

    def finish(self) -> None:
        """End of input: whatever is still buffered never became a document."""
        if self._buffer.strip() or self._in_array:
            self._give_up()
        self._buffer, self._lines, self._in_array = "", 0, False


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


def read_events(lines: Iterable[bytes], stats: ReadStats,
                prefilter: LinePredicate | None = None,
                quick_check: EventPredicate | None = None) -> Iterator[Event]:
    """Normalised events from raw lines of one input.

    Two optional shortcuts, both only necessary conditions for an event to be wanted
    (the caller still applies its full filter to what comes out):
    - `prefilter` sees a raw single-line document (e.g. "the --search text occurs in
      it"); lines failing it are skipped without JSON decoding;
    - `quick_check` sees an event holding only its QUICK_FIELDS; events failing it are
      dropped before the rest of the normalisation.
    Multi-line documents skip the prefilter (it would see one line of them).
    """
    reader = DocumentReader(stats)
    loads = orjson.loads

    def finish(value: object) -> Event | None:
        fmt = detect(value)
        if fmt is None:
            stats.not_event += 1
            return None
        assert isinstance(value, dict)  # detect() said so
        event = fmt.quick(value)
        if quick_check is not None and not quick_check(event):
            return None
        return fmt.rest(event, value)

    for raw in lines:
        if reader.idle():
            # Fast path, one whole object per line (what wsgate and most exports write):
            # no generator, and with a prefilter a line that cannot match is not decoded
            # at all (so not checked for being valid JSON either).
            stripped = raw.strip()
            if stripped[:1] == b"{" and stripped[-1:] == b"}":
                if prefilter is not None and not prefilter(stripped):
                    continue
                try:
                    value = loads(stripped)
                except orjson.JSONDecodeError:
                    # orjson is stricter than the standard library (invalid UTF-8, NaN,
                    # integers beyond 64 bits, lone surrogates, deep nesting): the
                    # lenient reader below decides what such a line is.
                    pass
                else:
                    stats.documents += 1
                    event = finish(value)
                    if event is not None:
                        yield event
                    continue
        for value in reader.feed(raw):
            event = finish(value)
            if event is not None:
                yield event
    reader.finish()
