"""--join: edge and origin events of one request, grouped by request id.

Pure: events in, groups out; rendering is in render.py. Needs all matching request
ids at once (memory follows the result, see `join`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from wsgate.logs.model import NO_TIME, Event, event_time_key
from wsgate.logs.query import Query


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
