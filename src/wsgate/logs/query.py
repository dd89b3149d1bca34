"""Filters over normalised events: pure functions, no I/O.

The options mirror `wrangler tail` and `gcloud logging read` habits. Each option narrows
the result (AND); a repeated option widens its own condition (OR): `--status 4xx
--status 5xx --method GET` means "(4xx or 5xx) and GET".
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from wsgate.i18n import _
from wsgate.logs.formats import raw_status_pattern
from wsgate.logs.model import (
    SEVERITIES,
    Event,
    EventPredicate,
    LinePredicate,
    epoch_key,
    normalise_severity,
    parse_iso,
    time_key,
)


class QueryError(ValueError):
    """A filter value that cannot be understood; the message is one line for the user."""


# ---------------------------------------------------------------- status

@dataclass(frozen=True, slots=True)
class StatusFilter:
    """ok | error | canceled | Nxx | NNN."""

    kind: str  # "ok", "error", "canceled", "class", "exact"
    value: int = 0

    def pattern(self) -> str:
        """The statuses of an "exact" or "class" filter as a regex of three digits."""
        return str(self.value) if self.kind == "exact" else f"{self.value}[0-9][0-9]"

    def matches(self, event: Event) -> bool:
        status = event.get("status")
        if self.kind == "exact":
            return status == self.value
        if self.kind == "class":
            return isinstance(status, int) and status // 100 == self.value
        if self.kind == "canceled":
            return event.get("outcome") == "canceled"
        error = is_error(event)
        if self.kind == "error":
            return error
        # ok: nothing went wrong and the answer was not a client error either.
        return (not error and event.get("outcome") != "canceled"
                and not (isinstance(status, int) and status >= 400))


def is_error(event: Event) -> bool:
    """An event counts as an error when the server side failed: status 5xx, severity
    ERROR or above, an error class without a client-error status (the edge also gives
    classes to requests it refuses with 4xx: those are the client's), or a Worker
    outcome other than ok."""
    status = event.get("status")
    if isinstance(status, int) and status >= 500:
        return True
    if SEVERITIES.get(event.get("severity", "DEFAULT"), 0) >= SEVERITIES["ERROR"]:
        return True
    if "errorClass" in event and not isinstance(status, int):
        return True
    outcome = event.get("outcome")
    return outcome is not None and outcome not in ("ok", "canceled")


_STATUS_CLASS: Final = re.compile(r"^([1-5])xx$")


def parse_status(text: str) -> StatusFilter:
    value = text.strip().lower()
    if value in ("ok", "error", "canceled"):
        return StatusFilter(value)
    match = _STATUS_CLASS.match(value)
    if match:
        return StatusFilter("class", int(match.group(1)))
    if value.isdigit() and len(value) == 3 and 100 <= int(value) <= 599:
        return StatusFilter("exact", int(value))
    raise QueryError(_("--status {value!r}: expected ok, error, canceled, 1xx..5xx or a "
                       "status code such as 403").format(value=text))


# ---------------------------------------------------------------- time

_RELATIVE: Final = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str, now: float) -> float:
    """`30m`, `1h`, `2d` (that long before `now`) or an ISO time (naive = UTC)."""
    value = text.strip()
    match = _RELATIVE.match(value.lower())
    if match:
        return now - float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    epoch = parse_iso(value)
    if epoch is None:
        raise QueryError(_("{value!r}: expected a duration such as 30m, 1h, 2d or an ISO time "
                           "such as 2026-11-26T10:00:00Z").format(value=text))
    return epoch


# ---------------------------------------------------------------- the rest

def parse_severity(text: str) -> int:
    name = normalise_severity(text)
    if name is None:
        raise QueryError(_("--severity {value!r}: expected one of {levels}").format(
            value=text, levels=", ".join(SEVERITIES)))
    return SEVERITIES[name]


def parse_header(text: str) -> tuple[str, str | None]:
    name, sep, value = text.partition(":")
    name = name.strip().lower()
    if not name or not re.fullmatch(r"[!#$%&'*+.^_`|~0-9a-z-]+", name):
        raise QueryError(_("--header {value!r}: expected NAME or NAME:VALUE").format(value=text))
    return name, (value.strip().lower() if sep else None)


IpMatcher = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_ip(text: str) -> IpMatcher:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise QueryError(_("--ip {value!r}: expected an IP address or a network such as "
                           "10.0.0.0/8").format(value=text)) from None


def _ip_in(value: object, networks: Sequence[IpMatcher]) -> bool:
    if not isinstance(value, str):
        return False
    text = value.strip()
    if text.startswith("[") and "]" in text:
        text = text[1:text.index("]")]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        mapped: ipaddress.IPv4Address | ipaddress.IPv6Address = address.ipv4_mapped
        return any(address in n or mapped in n for n in networks)
    return any(address in n for n in networks)


def search_text(event: Event) -> str:
    """What --search looks in: message, error, URL, request id, Worker logs/exceptions."""
    parts = [str(event.get(key, "")) for key in ("message", "error", "url", "requestId")]
    for key in ("logs", "exceptions"):
        value = event.get(key)
        if isinstance(value, list):
            parts.extend(str(item) for item in value)
    return "\n".join(parts)


@dataclass(frozen=True)
class Query:
    statuses: tuple[StatusFilter, ...] = ()
    since: float | None = None
    until: float | None = None
    websocket: bool = False
    methods: frozenset[str] = frozenset()
    ips: tuple[IpMatcher, ...] = ()
    headers: tuple[tuple[str, str | None], ...] = ()
    search: str | None = None  # lowercased
    request_ids: frozenset[str] = frozenset()
    min_severity: int | None = None
    _checks: tuple[Callable[[Event], bool], ...] = field(default=(), repr=False, compare=False)
    _quick: tuple[Callable[[Event], bool], ...] = field(default=(), repr=False, compare=False)
    _since_key: str = field(default="", repr=False, compare=False)
    _until_key: str = field(default="", repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.since is not None:
            object.__setattr__(self, "_since_key", epoch_key(self.since))
        if self.until is not None:
            object.__setattr__(self, "_until_key", epoch_key(self.until))
        # The checks that apply, cheapest first, decided once instead of per event.
        # Up to the time window they read only model.QUICK_FIELDS (see quick_check).
        checks: list[Callable[[Event], bool]] = []
        if self.request_ids:
            checks.append(lambda e: e.get("requestId") in self.request_ids)
        if self.websocket:
            checks.append(lambda e: e.get("isWebSocket") is True)
        if self.methods:
            checks.append(lambda e: e.get("method") in self.methods)
        if self.statuses:
            checks.append(lambda e: any(s.matches(e) for s in self.statuses))
        if self.min_severity is not None:
            level = self.min_severity
            checks.append(lambda e: SEVERITIES.get(e.get("severity", "DEFAULT"), 0) >= level)
        if self.since is not None or self.until is not None:
            checks.append(self._in_time)
        object.__setattr__(self, "_quick", tuple(checks))
        if self.ips:
            checks.append(lambda e: _ip_in(e.get("remoteIp"), self.ips))
        if self.headers:
            checks.append(self._has_headers)
        if self.search is not None:
            needle = self.search
            checks.append(lambda e: needle in search_text(e).lower())
        object.__setattr__(self, "_checks", tuple(checks))

    def matches(self, event: Event) -> bool:
        return all(check(event) for check in self._checks)

    def quick_check(self) -> EventPredicate | None:
        """The filters that read only QUICK_FIELDS, for `read_events` to drop a line
        before the rest of its normalisation; None when there are none."""
        quick = self._quick
        if not quick:
            return None
        if len(quick) == 1:
            return quick[0]
        return lambda event: all(check(event) for check in quick)

    @property
    def empty(self) -> bool:
        return not self._checks

    def _in_time(self, event: Event) -> bool:
        ts = event.get("timestamp")
        if ts is None:
            return False  # a time window asks for events known to be inside it
        # String order of time keys is time order: no date parsing per event.
        key = time_key(ts)
        if self._since_key and key < self._since_key:
            return False
        return not self._until_key or key <= self._until_key

    def _has_headers(self, event: Event) -> bool:
        headers = event.get("headers")
        if not isinstance(headers, dict):
            # Formats without request headers still know these two.
            headers = {}
            if "userAgent" in event:
                headers["user-agent"] = event["userAgent"]
            if "requestId" in event:
                headers["x-request-id"] = event["requestId"]
        for name, value in self.headers:
            actual = headers.get(name)
            if not isinstance(actual, str):
                return False
            if value is not None and value not in actual.lower():
                return False
        return True

    def prefilter(self) -> LinePredicate | None:
        """A cheap necessary condition on a raw single-line JSON document, or None: a
        line failing it cannot match, so it is not decoded at all."""
        checks: list[LinePredicate] = []
        # Text needles only when every JSON encoder writes them verbatim (printable
        # ASCII without the characters some encoders escape: quote, backslash, slash,
        # < > & ').
        if self.search is not None and _verbatim(self.search):
            needle = self.search.encode()
            checks.append(lambda line: needle in line.lower())
        if self.request_ids and all(_verbatim(rid) for rid in self.request_ids):
            ids = [rid.encode() for rid in self.request_ids]
            checks.append(lambda line: any(rid in line for rid in ids))
        if self.statuses and all(s.kind in ("class", "exact") for s in self.statuses):
            pattern = raw_status_pattern(s.pattern() for s in self.statuses)
            checks.append(lambda line: b"\\" in line or pattern.search(line) is not None)
        if self.websocket:
            checks.append(_may_be_websocket)
        if not checks:
            return None
        if len(checks) == 1:
            return checks[0]
        return lambda line: all(check(line) for check in checks)


_STATUS_101: Final = raw_status_pattern(["101"])


def _may_be_websocket(line: bytes) -> bool:
    """isWebSocket can only be true from a literal `true`, status 101, or a wrangler
    event's `Upgrade: websocket` request header."""
    if b"true" in line or b"\\" in line or _STATUS_101.search(line):
        return True
    # Only wrangler events (an "outcome" key) carry headers. A non-ASCII letter can
    # lower-case to an ASCII one (the Kelvin sign to "k"): such lines are kept.
    return b'"outcome"' in line and (not line.isascii() or b"websocket" in line.lower())


def _verbatim(text: str) -> bool:
    return bool(text) and text.isascii() and text.isprintable() and not any(
        c in text for c in "\"\\/<>&'")


def build_query(*, status: Sequence[str] = (), since: str | None = None,
                until: str | None = None, websocket: bool = False,
                method: Sequence[str] = (), ip: Sequence[str] = (),
                header: Sequence[str] = (), search: str | None = None,
                request_id: Sequence[str] = (), severity: str | None = None,
                now: float | None = None) -> Query:
    """A Query from command-line values; raises QueryError with a one-line message."""
    clock = time.time() if now is None else now
    since_epoch = parse_time(since, clock) if since else None
    until_epoch = parse_time(until, clock) if until else None
    if since_epoch is not None and until_epoch is not None and since_epoch > until_epoch:
        raise QueryError(_("--since is later than --until"))
    for m in method:
        if not m.strip().isalpha():
            raise QueryError(_("--method {value!r}: expected an HTTP method such as GET").format(
                value=m))
    if search is not None and not search:
        raise QueryError(_("--search needs a non-empty text"))
    return Query(
        statuses=tuple(parse_status(s) for s in status),
        since=since_epoch,
        until=until_epoch,
        websocket=websocket,
        methods=frozenset(m.strip().upper() for m in method),
        ips=tuple(parse_ip(i) for i in ip),
        headers=tuple(parse_header(h) for h in header),
        search=search.lower() if search is not None else None,
        request_ids=frozenset(r.strip() for r in request_id if r.strip()),
        min_severity=parse_severity(severity) if severity else None,
    )
