"""--join and --summary: the two views that need all events at once (not constant memory).

Pure: events in, plain data out; rendering is in render.py.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from wsgate.logs.model import NO_TIME, SEVERITIES, Event, event_time_key, time_key
from wsgate.logs.query import Query, is_error


@dataclass
class Group:
    """Edge and origin events of one request id (or one lone event without an id)."""

    request_id: str | None
    events: list[Event] = field(default_factory=list)
    first_time: str = NO_TIME  # time_key of its earliest event
    order: int = 0

    @property
    def edge(self) -> list[Event]:
        return [e for e in self.events if e.get("source") == "edge"]

    @property
    def origin(self) -> list[Event]:
        return [e for e in self.events if e.get("source") != "edge"]

    def lead(self) -> Event:
        """The event that speaks for the group: the edge's answer if there is one."""
        edge = self.edge
        return edge[0] if edge else self.events[0]

    def as_json(self) -> dict[str, Any]:
        lead = self.lead()
        out: dict[str, Any] = {"requestId": self.request_id}
        for key in ("timestamp", "method", "path", "status", "isWebSocket", "closeCode"):
            if key in lead:
                out[key] = lead[key]
        out["edge"] = self.edge
        out["origin"] = self.origin
        return out


def join(events: Iterable[Event], query: Query,
         again: Callable[[set[str]], Iterable[Event]] | None = None) -> list[Group]:
    """Groups by requestId; a group is kept when any of its events matches the query,
    so `--status 403 --join` shows the edge's 403 with the origin's refusal beside it.
    Groups come out in time order of their first event (input order for ties).

    With `again` (the same events read a second time, e.g. files read twice; it is
    given the wanted request ids and may leave out events without them) the first pass
    keeps only the matching request ids and the second only their events, so memory
    follows the result instead of the input.
    """
    if again is None:
        return _finish(_group(events, query, None))
    wanted: set[str] = set()
    lone: list[Group] = []
    for index, event in enumerate(events):
        if query.matches(event):
            rid = event.get("requestId")
            if isinstance(rid, str) and rid:
                wanted.add(rid)
            else:
                lone.append(_single(event, index))
    return _finish([*_group(again(wanted), None, wanted), *lone])


def _single(event: Event, order: int) -> Group:
    return Group(None, [event], first_time=event_time_key(event), order=order)


def _group(events: Iterable[Event], query: Query | None,
           wanted: set[str] | None) -> list[Group]:
    """One pass: with `query`, groups with a matching event; with `wanted`, those ids."""
    groups: dict[str, Group] = {}
    lone: list[Group] = []
    matched: set[int] = set()
    for index, event in enumerate(events):
        rid = event.get("requestId")
        if isinstance(rid, str) and rid:
            if wanted is not None and rid not in wanted:
                continue
            group = groups.get(rid)
            if group is None:
                group = groups[rid] = Group(rid, order=index)
            group.events.append(event)
            key = event_time_key(event)
            if key < group.first_time:
                group.first_time = key
        elif query is not None:
            group = _single(event, index)
            lone.append(group)
        else:
            continue
        if query is None or query.matches(event):
            matched.add(id(group))
    return [g for g in (*groups.values(), *lone) if id(g) in matched]


def _finish(kept: list[Group]) -> list[Group]:
    for group in kept:
        group.events.sort(key=event_time_key)
    kept.sort(key=lambda g: (g.first_time, g.order))
    return kept


def _percentile(sorted_values: array[float], fraction: float) -> float:
    # Nearest-rank: an observed value, no interpolation (what people expect in a report).
    index = max(0, math.ceil(fraction * len(sorted_values)) - 1)
    return sorted_values[index]


@dataclass
class Summary:
    events: int = 0
    by_source: Counter[str] = field(default_factory=Counter)
    by_status_class: Counter[str] = field(default_factory=Counter)
    websocket_by_close_code: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
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
        latency = event.get("latencyMs")
        # A WebSocket session's latency is its length: it would swamp request latency.
        # (A refused upgrade is an ordinary request and counts.)
        if (isinstance(latency, int | float) and status != 101
                and "wsDurationMs" not in event):
            source = str(event.get("source", "?"))
            self.latencies_ms.setdefault(source, array("d")).append(float(latency))
        if is_error(event) or (isinstance(status, int) and status >= 400):
            severity = SEVERITIES.get(event.get("severity", "DEFAULT"), 0)
            # A generic INFO message ("request") says less than the status does.
            text = event.get("error") or (
                event.get("message") if severity >= SEVERITIES["WARNING"] else None
            ) or (f"HTTP {status}" if status is not None else event.get("message", "?"))
            self.errors[f"{event.get('source', '?')}: {str(text)[:200]}"] += 1
        ts = event.get("timestamp")
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
        }


def summarise(events: Iterable[Event], query: Query) -> Summary:
    summary = Summary()
    for event in events:
        if query.matches(event):
            summary.add(event)
    return summary
