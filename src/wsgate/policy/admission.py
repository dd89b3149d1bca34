"""Admission control, the pure decisions (issue 17): no I/O, no clock (time is passed in).

Four limits, each off while its setting is 0 (`wsgate.config.AdmissionLimits`):

- `max_connections`: client connections the edge holds at once;
- `max_requests_per_second_per_client` with `burst`: a token bucket per client address;
  every request takes a token, an upgrade too (a reconnect loop is a request loop);
- `max_websockets_per_client`: WebSockets one client address holds at once;
- `max_websockets_per_origin`: sessions one origin is given at once.

The client is the edge's trusted client address, never a value the client chose.

Memory stays bounded whatever clients do. A WebSocket counter exists only while it is
above zero, so those tables hold at most one key per open WebSocket (and open WebSockets
are bounded by `max_connections` and the descriptor limit). Token buckets live in an LRU
table of at most `max_tracked_clients` keys, and a key is dropped once its bucket is full
again, because a full bucket and no entry mean the same thing. So only buckets, never a
WebSocket count, are evicted, and the least recently seen clients go first.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from wsgate.config import AdmissionLimits

# Retry-After for the concurrency limits: a place frees when someone else's session ends,
# which nobody can predict; a few seconds keeps retries from hammering.
CONCURRENCY_RETRY_AFTER_S: Final = 5
# The longest textual IP address (IPv6 with an embedded IPv4 part). A longer key can only
# be a scoped IPv6 literal ("fe80::1%<anything>"), whose scope would make the key as big
# as a header.
_MAX_KEY_LENGTH: Final = 45
# Every refusal text starts with this, then the limit's setting name: the one format
# the edge writes and `wsgate doctor` reads (`limit_in_text`).
REFUSAL_PREFIX: Final = "admission control: "
_REFUSAL_TEXT: Final = re.compile(re.escape(REFUSAL_PREFIX) + r"([a-z_]+)")
LIMIT_NAMES: Final = ("max_connections", "max_requests_per_second_per_client",
                      "max_websockets_per_client", "max_websockets_per_origin")
# 429: this client is over its share; 503: the edge or the origin is full.
LIMIT_STATUS: Final = {"max_connections": 503, "max_requests_per_second_per_client": 429,
                       "max_websockets_per_client": 429, "max_websockets_per_origin": 503}


@dataclass(frozen=True, slots=True)
class Refusal:
    """An admission refusal: answered with `status` and a `Retry-After` header."""

    status: int  # 429 (this client is over its share) or 503 (the edge / origin is full)
    limit: str  # the setting that fired, one of LIMIT_NAMES
    retry_after: int  # seconds, at least 1
    message: str  # one line, starts with REFUSAL_PREFIX + limit


def limit_in_text(text: str) -> str | None:
    """The limit named by an edge refusal's body or error text, or None."""
    found = _REFUSAL_TEXT.search(text)
    if found is None or found.group(1) not in LIMIT_NAMES:
        return None
    return found.group(1)


def client_key(client_ip: str) -> str:
    """The table key for a client address: bounded in length whatever the address."""
    if len(client_ip) <= _MAX_KEY_LENGTH:
        return client_ip
    return client_ip.partition("%")[0][:_MAX_KEY_LENGTH]


class TokenBuckets:
    """One token bucket per key, `rate` tokens a second up to `capacity`, kept as GCRA
    state: one float per key, the time its bucket is full again. A request is admitted
    when, after taking its token, the bucket would be full again within
    `capacity / rate` seconds, i.e. at least one token was left."""

    def __init__(self, rate: float, capacity: int, max_keys: int) -> None:
        if rate <= 0 or capacity < 1 or max_keys < 1:
            raise ValueError("rate > 0, capacity >= 1 and max_keys >= 1 are required")
        self.interval = 1.0 / rate
        self.span = capacity * self.interval  # how long an empty bucket takes to refill
        self.max_keys = max_keys
        # Least recently used first: eviction and expiry both work from the front.
        self._full_at: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._full_at)

    def take(self, key: str, now: float) -> float:
        """Take a token: 0.0 when admitted, else the seconds until one is available."""
        table = self._full_at
        full_at = max(table.get(key, now), now) + self.interval
        # The tolerance absorbs float rounding in `k * interval`, so exactly `capacity`
        # requests at one instant all pass; it is far below any clock resolution.
        wait = full_at - now - self.span
        if wait > 1e-9:
            return wait
        table[key] = full_at
        table.move_to_end(key)
        self._expire(now)
        return 0.0

    def _expire(self, now: float) -> None:
        table = self._full_at
        # Front keys are the least recently seen; drop those whose bucket is full again.
        # This stops at the first one still refilling, so each call costs O(dropped).
        while table:
            key, full_at = next(iter(table.items()))
            if full_at > now and len(table) <= self.max_keys:
                return
            del table[key]


class Occupancy:
    """Places held per key, at most `limit` each; a key exists only while it holds one."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._held)

    def held(self, key: str) -> int:
        return self._held.get(key, 0)

    def take(self, key: str) -> bool:
        count = self._held.get(key, 0)
        if count >= self.limit:
            return False
        self._held[key] = count + 1
        return True

    def give_back(self, key: str) -> None:
        """Free one place; a key holding none is left alone (never below zero)."""
        count = self._held.get(key, 0)
        if count > 1:
            self._held[key] = count - 1
        elif count == 1:
            del self._held[key]


def refusal(limit: str, retry_after: int, detail: str) -> Refusal:
    """The refusal for `limit`; its message names the limit in the form
    `limit_in_text` reads."""
    return Refusal(LIMIT_STATUS[limit], limit, retry_after,
                   f"{REFUSAL_PREFIX}{limit} {detail}")


class AdmissionState:
    """Every admission decision of one edge process, from its limits alone."""

    def __init__(self, limits: AdmissionLimits) -> None:
        self.limits = limits
        rate = limits.max_requests_per_second_per_client
        self.buckets = (TokenBuckets(rate, limits.burst or rate, limits.max_tracked_clients)
                        if rate else None)
        self.client_websockets = Occupancy(limits.max_websockets_per_client)
        self.origin_websockets = Occupancy(limits.max_websockets_per_origin)
        # Constant answers: a refusal under a flood must cost no formatting.
        self.connection_refusal = refusal(
            "max_connections", CONCURRENCY_RETRY_AFTER_S,
            f"({limits.max_connections}) reached: the edge holds as many client "
            "connections as it may")
        self._client_full = refusal(
            "max_websockets_per_client", CONCURRENCY_RETRY_AFTER_S,
            f"({limits.max_websockets_per_client}) reached: this client holds as many "
            "WebSockets as it may")
        self._origin_full = refusal(
            "max_websockets_per_origin", CONCURRENCY_RETRY_AFTER_S,
            f"({limits.max_websockets_per_origin}) reached: the origin has no room for "
            "another session")

    @property
    def enabled(self) -> bool:
        lim = self.limits
        return bool(lim.max_connections or lim.max_requests_per_second_per_client
                    or lim.max_websockets_per_client or lim.max_websockets_per_origin)

    def connection_opened(self, open_now: int) -> Refusal | None:
        """A client connection arrived while `open_now` others are open (WebSocket
        tunnels included: each holds a client descriptor too)."""
        limit = self.limits.max_connections
        if limit and open_now >= limit:
            return self.connection_refusal
        return None

    def check_request(self, client_ip: str, now: float) -> Refusal | None:
        """A request that is not an upgrade: takes a token from the client's bucket."""
        if self.buckets is None:
            return None
        wait = self.buckets.take(client_key(client_ip), now)
        if not wait:
            return None
        lim = self.limits
        return refusal("max_requests_per_second_per_client", max(1, math.ceil(wait)),
                       f"({lim.max_requests_per_second_per_client}, burst "
                       f"{lim.burst or lim.max_requests_per_second_per_client}) exceeded "
                       "by this client")

    def open_websocket(self, client_ip: str, origin_url: str, now: float) -> Refusal | None:
        """An upgrade: a token, then a place for the client, then a place at the origin.
        On None both places are held until `close_websocket`; on a refusal, none."""
        refused = self.check_request(client_ip, now)
        if refused is not None:
            return refused
        lim = self.limits
        key = client_key(client_ip)
        if lim.max_websockets_per_client and not self.client_websockets.take(key):
            return self._client_full
        if lim.max_websockets_per_origin and not self.origin_websockets.take(origin_url):
            if lim.max_websockets_per_client:
                self.client_websockets.give_back(key)
            return self._origin_full
        return None

    def origin_has_room(self, origin_url: str) -> bool:
        """Whether a new session may still go to this origin (no limit: always)."""
        limit = self.limits.max_websockets_per_origin
        return not limit or self.origin_websockets.held(origin_url) < limit

    def close_websocket(self, client_ip: str, origin_url: str) -> None:
        """Once for each upgrade `open_websocket` admitted (session ended or upgrade failed)."""
        if self.limits.max_websockets_per_client:
            self.client_websockets.give_back(client_key(client_ip))
        if self.limits.max_websockets_per_origin:
            self.origin_websockets.give_back(origin_url)
