"""The normalised event of `wsgate logs`: its fields, severities and time keys.

Every input format (see `formats.py`) becomes one flat dict whose keys are listed in
`EVENT_FIELDS` (a stable interface, documented in docs/logs.md). wsgate's own fields
keep the names and meanings of the log schema (`events.SCHEMA`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

from wsgate.logs.events import FIELDS, rounded

Event = dict[str, Any]
LinePredicate = Callable[[bytes], bool]
EventPredicate = Callable[[Event], bool]

# The normalised event, one JSON object per line in `--format json`. Absent = unknown.
EVENT_FIELDS: Final[dict[str, str]] = {
    "timestamp": "RFC 3339 UTC time of the event, e.g. 2026-11-26T00:47:55.123456Z",
    "format": "wsgate | cloud-logging | wrangler: the input format it was read from",
    "severity": "DEFAULT DEBUG INFO NOTICE WARNING ERROR CRITICAL ALERT EMERGENCY",
    "message": "the event's one-line message",
    "method": "HTTP method",
    "url": "request URL as logged (absolute or a path)",
    "host": "host part of the URL, when the URL has one",
    "path": "path and query of the URL",
    "status": "HTTP status (101 for a WebSocket upgrade that succeeded)",
    "latencyMs": "time to answer, milliseconds (float, rounded to 3 decimals)",
    "remoteIp": "client address as the logging component saw it",
    "userAgent": "User-Agent of the request",
    "trace": "Cloud Trace id (logging.googleapis.com/trace or LogEntry.trace)",
    # wsgate's own fields, as the edge and the guard write them ...
    **FIELDS,
    # ... where `source` also names the side of a foreign event.
    "source": "edge | origin: which side of the deployment wrote it",
    "outcome": "wrangler only: ok | exception | exceededCpu | exceededMemory | canceled | ...",
    "scriptName": "wrangler only: the Worker's name",
    "logs": "wrangler only: console messages of the invocation, one string each",
    "exceptions": "wrangler only: uncaught exceptions, 'Name: message' each",
    "headers": "wrangler only: the request headers, lowercase names",
}

# Fields of the quick part of an event (see `formats.Format`): computed before the rest,
# with the same values the full event has, so filters on them can drop a line before the
# rest of the work. Filters on other fields (URL, address, headers, text) wait for the
# full event.
QUICK_FIELDS: Final = frozenset({
    "timestamp", "source", "format", "severity", "message", "method", "status",
    "isWebSocket", "requestId", "errorClass", "outcome",
})

SEVERITIES: Final[dict[str, int]] = {
    "DEFAULT": 0, "DEBUG": 100, "INFO": 200, "NOTICE": 300, "WARNING": 400,
    "ERROR": 500, "CRITICAL": 600, "ALERT": 700, "EMERGENCY": 800,
}
_SEVERITY_ALIASES: Final[dict[str, str]] = {"WARN": "WARNING", "ERR": "ERROR", "FATAL": "CRITICAL"}

# ASCII digits only: every normalised timestamp then has this one shape, which `time_key`
# turns into a string that sorts like the time (no date parsing per event).
_UTC_STAMP: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?Z", re.ASCII)

# Sorts after every time key: events without a time come last where order matters.
NO_TIME: Final = "~"


def normalise_severity(value: object) -> str | None:
    if type(value) is str and value in SEVERITIES:  # the common case, already canonical
        return value
    if not isinstance(value, str):
        return None
    upper = value.strip().upper()
    upper = _SEVERITY_ALIASES.get(upper, upper)
    return upper if upper in SEVERITIES else None


def milliseconds(seconds: float) -> float:
    """A duration in milliseconds as events carry it: 6.022, not 6.021999999999999."""
    return rounded(seconds * 1000.0)


# ---------------------------------------------------------------- time

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


def utc_stamp(value: object) -> str | None:
    """A normalised timestamp: RFC 3339 as given when it is already UTC ("...Z"), else
    converted to UTC; None when it is no time."""
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


def event_time_key(event: Event) -> str:
    """`time_key` of an event, NO_TIME when it has no time."""
    ts = event.get("timestamp")
    return time_key(ts) if isinstance(ts, str) else NO_TIME


def epoch_key(epoch: float) -> str:
    """`time_key` of a moment given as epoch seconds (microsecond precision)."""
    return time_key(format_epoch(epoch))
