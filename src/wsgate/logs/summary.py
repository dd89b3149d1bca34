"""--summary: counts, close codes, latency percentiles, top errors, refusals by reason.

Pure: events in, plain data out; rendering is in render.py. Memory follows the
latencies kept for the percentiles (8 bytes per request) and the distinct errors.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from wsgate.logs.model import NO_TIME, SEVERITIES, Event, time_key
from wsgate.logs.query import Query, is_error

MAX_LABEL = 200  # characters of an error label


def _percentile(sorted_values: array[float], fraction: float) -> float:
    # Nearest-rank: an observed value, no interpolation (what people expect in a report).
    index = max(0, math.ceil(fraction * len(sorted_values)) - 1)
    return sorted_values[index]


def _weight(event: Event) -> int:
    """How many requests an event stands for: a flood summary counts its refusals."""
    count = event.get("refusedCount")
    return count if isinstance(count, int) and count > 0 else 1


def _error_label(event: Event) -> str:
    """`source: text` an error is counted under. A refusal is labelled by its reason,
    and a flood summary like its refusals (its own text names a count and address)."""
    status = event.get("status")
    severity = SEVERITIES.get(event.get("severity", "DEFAULT"), 0)
    # A generic INFO message ("request") says less than the status does.
    text = None if "refusedCount" in event else event.get("error")
    text = text or (event.get("message") if severity >= SEVERITIES["WARNING"] else None) or (
        f"HTTP {status}" if status is not None else event.get("message", "?"))
    reason = event.get("reason")
    if isinstance(reason, str):
        text = f"{text} (reason={reason})"
    return f"{event.get('source', '?')}: {str(text)[:MAX_LABEL]}"


def refusal_reason(event: Event) -> str | None:
    """Why a request was refused on purpose: the guard's reason, or the edge's error
    class on a 4xx it answered itself (bad request, admission limit); None otherwise."""
    reason = event.get("reason")
    if isinstance(reason, str):
        return reason
    status, error_class = event.get("status"), event.get("errorClass")
    if isinstance(error_class, str) and isinstance(status, int) and 400 <= status < 500:
        return error_class
    return None


@dataclass
class Refusals:
    """Refusals of one source and reason: how many, and the first event (never hidden
    by a flood summary, whatever the counts of other reasons)."""

    count: int = 0
    first: Event | None = None
    _first_key: str = NO_TIME

    def add(self, event: Event) -> None:
        self.count += _weight(event)
        ts = event.get("timestamp")
        key = time_key(ts) if isinstance(ts, str) else NO_TIME
        if self.first is None or key < self._first_key:
            self.first, self._first_key = event, key


@dataclass
class Summary:
    events: int = 0
    by_source: Counter[str] = field(default_factory=Counter)
    by_status_class: Counter[str] = field(default_factory=Counter)
    websocket_by_close_code: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    refusals: dict[tuple[str, str], Refusals] = field(default_factory=dict)
    latencies_ms: dict[str, array[float]] = field(default_factory=dict)  # by source
    first: str | None = None
    last: str | None = None
    _first_key: str = NO_TIME
    _last_key: str = ""

    def add(self, event: Event) -> None:
        self.events += 1
        self.by_source[f"{event.get('source', '?')}/{event.get('format', '?')}"] += 1
        status = event.get("status")
        self.by_status_class[f"{status // 100}xx" if isinstance(status, int)
                             and 100 <= status <= 599 else "none"] += 1
        if event.get("isWebSocket") is True and ("closeCode" in event
                                                 or "wsDurationMs" in event):
            code = event.get("closeCode")
            self.websocket_by_close_code[str(code) if code is not None else "none"] += 1
        self._add_latency(event, status)
        if is_error(event) or (isinstance(status, int) and status >= 400):
            self.errors[_error_label(event)] += _weight(event)
        reason = refusal_reason(event)
        if reason is not None:
            key = (str(event.get("source", "?")), reason)
            self.refusals.setdefault(key, Refusals()).add(event)
        self._add_time(event.get("timestamp"))

    def _add_latency(self, event: Event, status: object) -> None:
        latency = event.get("latencyMs")
        # A WebSocket session's latency is its length: it would swamp request latency.
        # (A refused upgrade is an ordinary request and counts.)
        if (isinstance(latency, int | float) and status != 101
                and "wsDurationMs" not in event):
            source = str(event.get("source", "?"))
            self.latencies_ms.setdefault(source, array("d")).append(float(latency))

    def _add_time(self, ts: object) -> None:
        if isinstance(ts, str):
            key = time_key(ts)
            if key < self._first_key:
                self._first_key, self.first = key, ts
            if key > self._last_key:
                self._last_key, self.last = key, ts

    def percentiles(self) -> dict[str, dict[str, float]]:
        """Per source (edge latency is what clients see; the origin's is its own part)."""
        out = {}
        for source, values in sorted(self.latencies_ms.items()):
            ordered = array("d", sorted(values))
            out[source] = {"count": float(len(ordered)),
                           "p50": _percentile(ordered, 0.50), "p90": _percentile(ordered, 0.90),
                           "p99": _percentile(ordered, 0.99), "max": ordered[-1]}
        return out

    def as_json(self, top: int = 5) -> dict[str, Any]:
        return {
            "events": self.events,
            "first": self.first,
            "last": self.last,
            "bySource": dict(self.by_source.most_common()),
            "byStatusClass": dict(sorted(self.by_status_class.items())),
            "websocketSessionsByCloseCode": dict(sorted(self.websocket_by_close_code.items())),
            "latencyMs": {source: {k: (int(v) if k == "count" else round(v, 3))
                                   for k, v in values.items()}
                          for source, values in self.percentiles().items()},
            "topErrors": [{"message": m, "count": c} for m, c in self.errors.most_common(top)],
            "refusals": [{"source": source, "reason": reason, "count": r.count,
                          "first": r.first}
                         for (source, reason), r in sorted(self.refusals.items())],
        }


def summarise(events: Iterable[Event], query: Query) -> Summary:
    summary = Summary()
    for event in events:
        if query.matches(event):
            summary.add(event)
    return summary
