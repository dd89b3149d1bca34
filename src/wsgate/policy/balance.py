"""Several origins behind one route: the affinity cookie, each origin's health, the choice.

Pure: no sockets, no clock (time is passed in), no randomness. `wsgate.edge.balancer`
wraps it with the I/O (health checks, tunnels, metrics).

Streamlit keeps a session's state in the process that serves its WebSocket, and a
reconnect resumes the session only on that process. So a browser must reach the same
origin for its page, its stream and every reconnect. The edge says which one in a
cookie, `<origin id>.<tag>`: the id names the origin (derived from its URL, so the
same on every edge with the same configuration and unchanged when origins are added
or reordered); the tag is an HMAC-SHA256 over the route and the id, with a key
derived from the edge's secret, so a client can neither choose nor forge an origin,
and every edge with the same secret routes the cookie alike. A missing, unknown,
stale or forged cookie is never an error: the request is a new session.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

from wsgate.config import Health, Origin, Route

AFFINITY_INFO: Final = b"wsgate affinity v1"
_TAG_BYTES: Final = 16  # 128 bits: forging by guessing is out of reach


def derive_key(secret: str) -> bytes:
    """The cookie key: a key of its own, so a cookie tag never reveals anything usable
    against the secret header. Every edge process with the same secret derives the
    same key. (Without a secret, as with `insecure_no_secret`, the key is public and
    a client could choose its origin.)"""
    return hmac.new(secret.encode(), AFFINITY_INFO, hashlib.sha256).digest()


def origin_id(origin: Origin) -> str:
    """A short stable name of an origin for the cookie (not secret: the tag protects it)."""
    return hashlib.sha256(origin.url.encode()).hexdigest()[:12]


def cookie_value(key: bytes, route: Route, origin: Origin) -> bytes:
    oid = origin_id(origin)
    mac = hmac.new(key, f"{route.pattern}\0{oid}".encode(), hashlib.sha256).digest()
    tag = base64.urlsafe_b64encode(mac[:_TAG_BYTES]).rstrip(b"=")
    return oid.encode() + b"." + tag


def cookie_path(route: Route) -> str:
    """The route's path up to its last '/': a browser sends the cookie to the whole
    route, and two routes on one host keep a cookie each."""
    if not route.prefix:
        return "/"
    return route.path[: route.path.rfind("/") + 1] or "/"


def set_cookie(name: str, value: bytes, path: str, *, secure: bool) -> bytes:
    """A session cookie (no expiry: it lasts as long as the browser session)."""
    header = f"{name}=".encode() + value + f"; Path={path}; HttpOnly; SameSite=Lax".encode()
    return header + b"; Secure" if secure else header


def cookie_values(cookie_header: bytes, name: bytes) -> Iterator[bytes]:
    """Every value of cookie `name` in a `Cookie` header (several when two paths set one)."""
    for part in cookie_header.split(b";"):
        key, sep, value = part.partition(b"=")
        if sep and key.strip() == name:
            yield value.strip().strip(b'"')


class HealthState(enum.Enum):
    UP = "up"
    DOWN = "down"


@dataclass(slots=True)
class OriginHealth:
    """Consecutive failures take an origin out; consecutive passed active checks bring
    it back. Passive signals (connects) only count failures and clear them."""

    state: HealthState = HealthState.UP
    failures: int = 0
    passes: int = 0
    changed_at: float = 0.0
    ejections: int = 0

    def observe(self, ok: bool, now: float, thresholds: Health, *, active: bool) -> bool:
        """Record one signal; True when the state changed."""
        if self.state is HealthState.UP:
            if ok:
                self.failures = 0
                return False
            self.failures += 1
            if self.failures < thresholds.unhealthy_threshold:
                return False
            self.state, self.passes, self.changed_at = HealthState.DOWN, 0, now
            self.ejections += 1
            return True
        if not ok:
            self.passes = 0
            return False
        if not active:
            return False  # a connect that raced the ejection proves little
        self.passes += 1
        if self.passes < thresholds.healthy_threshold:
            return False
        self.state, self.failures, self.changed_at = HealthState.UP, 0, now
        return True


@dataclass(slots=True)
class OriginState:
    origin: Origin
    health: OriginHealth = field(default_factory=OriginHealth)
    draining: bool = False
    drain_deadline: float | None = None
    open_websockets: int = 0
    retries: int = 0  # requests retried on another origin after this one failed to connect

    @property
    def up(self) -> bool:
        return self.health.state is HealthState.UP


@dataclass(frozen=True, slots=True)
class Choice:
    origin: Origin
    set_cookie: bytes | None = None  # a whole Set-Cookie value for the response, if any


@dataclass(slots=True)
class _RouteTable:
    """What a route needs per request, computed once: the cookies of its origins."""

    origins: tuple[Origin, ...]
    weights: tuple[int, ...]
    by_id: dict[bytes, tuple[Origin, bytes]]  # id → (origin, the expected cookie value)
    set_cookies: dict[Origin, bytes]
    current: list[int]  # smooth weighted round-robin state, parallel to origins


class Balance:
    """The choice of an origin for each request of a route with several origins."""

    def __init__(self, routes: Iterable[Route], *, key: bytes, cookie_name: str,
                 secure: bool, thresholds: Health, draining: Iterable[str] = ()) -> None:
        self.thresholds = thresholds
        self.cookie_name = cookie_name.encode()
        self.states: dict[Origin, OriginState] = {}
        self.tables: dict[Route, _RouteTable] = {}
        for route in routes:
            for origin in route.origins:
                self.states.setdefault(origin, OriginState(origin))
            if len(route.origins) < 2:
                continue
            values = {o: cookie_value(key, route, o) for o in route.origins}
            self.tables[route] = _RouteTable(
                route.origins, route.weights,
                {v.partition(b".")[0]: (o, v) for o, v in values.items()},
                {o: set_cookie(cookie_name, v, cookie_path(route), secure=secure)
                 for o, v in values.items()},
                [0] * len(route.origins))
        urls = set(draining)
        for state in self.states.values():
            state.draining = state.origin.url in urls
        # Origins of routes with several origins: the only ones with health (a lone
        # origin is always tried, and its real error reported).
        self.balanced_origins = list(dict.fromkeys(
            o for t in self.tables.values() for o in t.origins))
        self._balanced = frozenset(self.balanced_origins)

    def find(self, url: str) -> OriginState | None:
        """A balanced origin by its normalised URL (`Origin.url`)."""
        return next((self.states[o] for o in self.balanced_origins if o.url == url), None)

    def affine(self, route: Route, cookie_header: bytes | None) -> Origin | None:
        """The origin a valid cookie of this route names, else None."""
        table = self.tables.get(route)
        if table is None or not cookie_header:
            return None
        for value in cookie_values(cookie_header, self.cookie_name):
            entry = table.by_id.get(value.partition(b".")[0])
            if entry is not None and hmac.compare_digest(value, entry[1]):
                return entry[0]
        return None

    def choose(self, route: Route, cookie_header: bytes | None,
               exclude: Origin | None = None,
               full: Collection[Origin] = ()) -> Choice | None:
        """The cookie's origin while it is up; else a fresh choice with a new cookie.
        A draining origin keeps its sessions but takes no new ones; nor does a `full`
        one (at its session limit) while another has room. None: no origin of the
        route is up (excluding `exclude`)."""
        table = self.tables.get(route)
        if table is None:
            return Choice(route.origin)  # one origin: nothing to choose, no cookie
        kept = self.affine(route, cookie_header)
        if kept is not None and kept != exclude and self.states[kept].up:
            # Its session lives there: moving it would lose it, so a full origin
            # refuses it (admission, 503) rather than send it elsewhere.
            return Choice(kept)
        origin = self.fresh(table, exclude, full)
        return None if origin is None else Choice(origin, table.set_cookies[origin])

    def fresh(self, table: _RouteTable, exclude: Origin | None,
              full: Collection[Origin] = ()) -> Origin | None:
        up = [i for i, o in enumerate(table.origins)
              if o != exclude and self.states[o].up]
        # When every live origin drains or is full they still take sessions: better
        # than none (admission then refuses what is over its limit).
        candidates = ([i for i in up if table.origins[i] not in full] or up)
        candidates = [i for i in candidates
                      if not self.states[table.origins[i]].draining] or candidates
        if not candidates:
            return None
        loads = [(self.states[table.origins[i]].open_websockets, table.weights[i])
                 for i in candidates]
        fewest = least_loaded(loads)
        return table.origins[next_in_turn(table.current, table.weights,
                                          [candidates[j] for j in fewest])]

    def observe(self, origin: Origin, ok: bool, now: float, *, active: bool) -> bool:
        """One health signal; True when the origin went up or down."""
        if origin not in self._balanced:
            return False
        state = self.states[origin]
        return state.health.observe(ok, now, self.thresholds, active=active)

    def drain(self, origin: Origin, now: float, within: float | None) -> None:
        state = self.states[origin]
        state.draining = True
        state.drain_deadline = None if within is None else now + within

    def undrain(self, origin: Origin) -> None:
        state = self.states[origin]
        state.draining, state.drain_deadline = False, None

    def drains_due(self, now: float) -> list[Origin]:
        """Draining origins whose deadline has passed (each reported once)."""
        due = []
        for state in self.states.values():
            if state.drain_deadline is not None and state.drain_deadline <= now:
                state.drain_deadline = None
                due.append(state.origin)
        return due


def least_loaded(loads: Sequence[tuple[int, int]]) -> list[int]:
    """Indexes of the (open, weight) pairs with the fewest open per unit of weight."""
    best: list[int] = []
    best_open, best_weight = 0, 1
    for i, (opened, weight) in enumerate(loads):
        # open/weight compared without division.
        if not best or opened * best_weight < best_open * weight:
            best, best_open, best_weight = [i], opened, weight
        elif opened * best_weight == best_open * weight:
            best.append(i)
    return best


def next_in_turn(current: list[int], weights: Sequence[int], tied: Sequence[int]) -> int:
    """Smooth weighted round-robin (nginx's) among the `tied` indexes: each gains its
    weight, the highest is chosen and pays back the sum. Equal weights: plain turns."""
    total = 0
    chosen = tied[0]
    for i in tied:
        current[i] += weights[i]
        total += weights[i]
        if current[i] > current[chosen]:
            chosen = i
    current[chosen] -= total
    return chosen
