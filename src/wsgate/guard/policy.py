"""Pure decisions of the origin guard: no I/O, no clock, no ASGI.

Headers are ASGI-style `(lowercase-name bytes, value bytes)` pairs.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from wsgate.i18n import LANGUAGES, N_, translator

Header = tuple[bytes, bytes]
Reason = Literal["missing", "mismatch", "repeated"]
_REQUEST_ID: Final = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")
_SCHEMES: Final = frozenset({"http", "https", "ws", "wss"})


@dataclass(frozen=True, slots=True)
class Decision:
    passed: bool
    reason: Reason | None = None


PASS: Final = Decision(True)


def check_secret(headers: Iterable[Header], header_name: bytes,
                 secrets: Sequence[bytes]) -> Decision:
    """Exactly one `header_name` header whose value equals one of `secrets`.

    Every configured secret is compared (constant time per comparison, and no early
    exit) so the answer's timing does not reveal which secret, if any, matched.
    """
    values = [value for name, value in headers if name == header_name]
    if not values:
        return Decision(False, "missing")
    if len(values) > 1:
        return Decision(False, "repeated")
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(values[0], secret)
    return PASS if matched and secrets else Decision(False, "mismatch")


def prefixed_paths(paths: Iterable[str], base_url_path: str) -> frozenset[str]:
    """`/_stcore/health` under `server.baseUrlPath` "app" → `/app/_stcore/health`,
    built the way Streamlit's `make_url_path` joins them."""
    base = base_url_path.strip("/")
    out = set()
    for path in paths:
        tail = path.strip("/")
        out.add("/" + "/".join(part for part in (base, tail) if part))
    return frozenset(out)


def without_header(headers: Iterable[Header], header_name: bytes) -> list[Header]:
    return [(name, value) for name, value in headers if name != header_name]


def _last_value(headers: Sequence[Header], name: bytes) -> str | None:
    found = [value for key, value in headers if key == name]
    return found[-1].decode("latin-1").strip() if found else None


def _joined(headers: Sequence[Header], name: bytes) -> str | None:
    found = [value.decode("latin-1").strip() for key, value in headers if key == name]
    return ", ".join(found) if found else None


def _ip(text: str) -> str | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # "203.0.113.7:5000"
        text = text.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Forwarded:
    """The forwarded headers as the authenticated edge sent them (raw, for echo)."""

    proto: str | None = None
    host: str | None = None
    for_: str | None = None
    real_ip: str | None = None


def read_forwarded(headers: Sequence[Header]) -> Forwarded:
    return Forwarded(
        proto=_joined(headers, b"x-forwarded-proto"),
        host=_joined(headers, b"x-forwarded-host"),
        for_=_joined(headers, b"x-forwarded-for"),
        real_ip=_joined(headers, b"x-real-ip"),
    )


def forwarded_scheme(headers: Sequence[Header], scope_type: str, current: str) -> str:
    """X-Forwarded-Proto → scope scheme; http(s) becomes ws(s) for WebSocket scopes.
    Unknown values leave the scheme as it is."""
    value = _last_value(headers, b"x-forwarded-proto")
    if value is None:
        return current
    value = value.split(",")[-1].strip().lower()
    if value not in _SCHEMES:
        return current
    if scope_type == "websocket":
        return value.replace("http", "ws")
    return value.replace("ws", "http")


def forwarded_client(headers: Sequence[Header]) -> str | None:
    """The client address the authenticated edge reports, or None.

    X-Real-IP wins (an edge sets it from the one client-IP header it trusts, and
    proxies further along, such as Google's front end, leave it alone). Otherwise
    the first X-Forwarded-For entry: an edge that passed the secret check has,
    by contract, replaced any client-supplied X-Forwarded-For with its own view,
    and proxies after it only append.
    """
    real_ip = _last_value(headers, b"x-real-ip")
    if real_ip:
        address = _ip(real_ip)
        if address is not None:
            return address
    forwarded_for = _joined(headers, b"x-forwarded-for")
    if forwarded_for:
        return _ip(forwarded_for.split(",")[0])
    return None


def header_text(headers: Iterable[Header], name: bytes) -> str:
    """The first `name` header's value as text, "" when absent."""
    return next((value.decode("latin-1") for key, value in headers if key == name), "")


def request_id(headers: Iterable[Header]) -> str | None:
    """A well-formed X-Request-Id (short, no control characters), else None."""
    for name, value in headers:
        if name == b"x-request-id" and _REQUEST_ID.fullmatch(value):
            return value.decode("ascii")
    return None


REFUSED_MISMATCH: Final = N_(
    "Refused: this request carries the edge's secret header, but its value differs from the "
    "secret this origin expects. The edge and the origin are configured with different "
    "secrets: give both the same value.")
REFUSED_REPEATED: Final = N_(
    "Refused: the secret header appears more than once in this request (does a proxy on the "
    "way add its own copy?).")
REFUSED_OPEN_PUBLIC: Final = N_("Direct access refused. Open {url} instead.")
REFUSED_DIRECT: Final = N_(
    "Direct access refused: this server only answers requests from its edge proxy.")


def refusal_text(public_url: str | None, reason: str = "missing",
                 language: str | None = None) -> str:
    """The 403 page, in `language` (None: the process's). A request that carried the
    secret header came through an edge: it is told the two sides' secrets differ (never
    anything about either value)."""
    gettext = translator(language)
    if reason == "mismatch":
        return gettext(REFUSED_MISMATCH) + "\n"
    if reason == "repeated":
        return gettext(REFUSED_REPEATED) + "\n"
    if public_url:
        return gettext(REFUSED_OPEN_PUBLIC).format(url=public_url) + "\n"
    return gettext(REFUSED_DIRECT) + "\n"


def page_language(accept_language: str) -> str | None:
    """The language of LANGUAGES the request's Accept-Language prefers (RFC 9110 §12.5.4:
    highest q, then first listed; `q=0` excludes), None when it names none of them."""
    best: tuple[float, int, str] | None = None
    for position, item in enumerate(accept_language.split(",")):
        tag, _, params = item.strip().partition(";")
        language = tag.strip().split("-")[0].lower()
        quality = _quality(params)
        if language in LANGUAGES and quality > 0 and (
                best is None or (quality, -position) > (best[0], best[1])):
            best = (quality, -position, language)
    return best[2] if best else None


def _quality(params: str) -> float:
    name, _, value = params.strip().partition("=")
    if name.strip().lower() != "q":
        return 1.0
    try:
        return min(max(float(value), 0.0), 1.0)
    except ValueError:
        return 0.0


@dataclass(slots=True)
class _Suppressed:
    count: int = 0
    path: str = ""
    is_websocket: bool = False


@dataclass(slots=True)
class _Window:
    start: float
    logged: int = 0
    reasons: set[str] = field(default_factory=set)  # reasons logged one by one so far
    suppressed: dict[str, _Suppressed] = field(default_factory=dict)  # by reason


@dataclass(frozen=True, slots=True)
class Summary:
    address: str
    count: int
    reason: str
    path: str
    is_websocket: bool


class RefusalLimiter:
    """Per client address: the first `limit` refusals in a `window_s` window are
    logged one by one; the rest are counted and reported as one summary when the
    window ends (`due`). Bounded memory: at most `max_addresses` windows."""

    def __init__(self, limit: int = 10, window_s: float = 60.0,
                 max_addresses: int = 4096) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_addresses = max_addresses
        self._windows: dict[str, _Window] = {}

    def note(self, address: str, now: float, reason: str, path: str,
             is_websocket: bool) -> tuple[bool, list[Summary]]:
        """Record one refusal. Returns (log this one?, summaries now due)."""
        due = self.due(now)
        window = self._windows.get(address)
        if window is None:
            if len(self._windows) >= self.max_addresses:
                oldest = next(iter(self._windows))
                due.extend(self._close(oldest))
            window = self._windows[address] = _Window(start=now)
        # The first refusal of each reason is always logged, even past the limit: a
        # flood of one reason must not hide that another began.
        if window.logged < self.limit or reason not in window.reasons:
            window.logged += 1
            window.reasons.add(reason)
            return True, due
        held = window.suppressed.setdefault(reason, _Suppressed())
        held.count += 1
        held.path, held.is_websocket = path, is_websocket
        return False, due

    def due(self, now: float) -> list[Summary]:
        """Close every window older than `window_s`, returning its summary if any."""
        # Windows are inserted in start order and never moved, so the expired ones
        # are a prefix: a flood from many addresses costs O(expired), not O(all).
        expired: list[str] = []
        for address, window in self._windows.items():
            if now - window.start < self.window_s:
                break
            expired.append(address)
        out: list[Summary] = []
        for address in expired:
            out.extend(self._close(address))
        return out

    def flush(self) -> list[Summary]:
        out: list[Summary] = []
        for address in list(self._windows):
            out.extend(self._close(address))
        return out

    def _close(self, address: str) -> list[Summary]:
        """One summary per reason that had refusals counted instead of logged."""
        window = self._windows.pop(address)
        return [Summary(address, held.count, reason, held.path, held.is_websocket)
                for reason, held in window.suppressed.items()]
