"""The edge's HTTP exchange, sans I/O: every rule of one proxied request as a pure
function or a small state object. Bytes and parsed heads in; decisions, errors and
bytes out. Nothing here owns a socket or reads a clock (times are passed in), so
each rule is unit-tested on its own and the driver in `edge/client.py` only moves
bytes between transports and calls these in the order of design.md's phases:

1. `find_head` + `http1.parse_request_head`: parse and bound the request head;
2-3. `check_request`: refuse what must not pass, match a route, build the
   upstream head (`RequestPlan`);
4. `classify_connect_error` / `ProxyError.retryable` + `may_retry`: the origin leg;
6. `plan_response`: the client's framing, keep-alive and headers (`ResponsePlan`),
   and `decoder_for` (length, chunked, until close, one interface) for both bodies;
7. `Exchange.finish`: the one logging exit of every exchange.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from http import HTTPStatus
from typing import Final

from wsgate.config import EdgeConfig, Origin, Route
from wsgate.edge.http1 import (
    BadMessage,
    BodyDecoder,
    Framing,
    Headers,
    RequestHead,
    ResponseHead,
    decoder_for,
    header_block,
    request_line,
)
from wsgate.logs.events import Severity
from wsgate.policy import headers as hp
from wsgate.policy.routes import match_route
from wsgate.policy.websocket import classify_upgrade

__all__ = ["BodyDecoder", "decoder_for"]

MAX_RESPONSE_HEAD: Final = 65536  # bigger response heads are an origin fault (502)
SAFE_METHODS: Final = frozenset({b"GET", b"HEAD", b"OPTIONS"})
_REASONS: Final = {400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed",
                   408: b"Request Timeout", 413: b"Content Too Large",
                   429: b"Too Many Requests",
                   431: b"Request Header Fields Too Large", 502: b"Bad Gateway",
                   503: b"Service Unavailable", 504: b"Gateway Timeout",
                   505: b"HTTP Version Not Supported"}


class ProxyError(Exception):
    """Why an exchange failed: the status the edge answers (when nothing of the
    origin's answer was sent yet), a stable class for logs and metrics, a message
    that never quotes client bytes, and whether the request may be sent again
    (nothing of it reached an origin that processed it)."""

    def __init__(self, status: int, error_class: str, message: str, *,
                 retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.error_class = error_class
        self.message = message
        self.retryable = retryable


def bad_message_error(exc: BadMessage) -> ProxyError:
    """A refused request head (the parser's message never quotes the client's bytes)."""
    status = exc.status
    error_class = {431: "headers-too-large", 505: "http-version"}.get(status, "bad-request")
    return ProxyError(status, error_class, str(exc))


# Failures on the origin leg, each built in one place.
def upstream_closed() -> ProxyError:
    # Nothing came back: on a reused keep-alive connection this is the race where
    # the origin closed it just before our request arrived, so nothing was processed.
    return ProxyError(502, "upstream-closed",
                      "the origin closed the connection without answering", retryable=True)


def bad_response(message: str = "invalid HTTP response from the origin") -> ProxyError:
    return ProxyError(502, "bad-response", message)


def upstream_timeout(message: str) -> ProxyError:
    return ProxyError(504, "upstream-timeout", message)


def client_timeout(message: str) -> ProxyError:
    return ProxyError(408, "request-timeout", message)


def classify_connect_error(exc: BaseException) -> ProxyError:
    """A failed connect: nothing was sent, so every one is retryable."""
    status, error_class, message = 502, "connect-error", f"cannot connect to the origin: {exc}"
    if isinstance(exc, TimeoutError):
        status, error_class, message = 504, "connect-timeout", "timed out connecting to the origin"
    elif isinstance(exc, ConnectionRefusedError):
        error_class, message = "connect-refused", "connection refused by the origin"
    elif isinstance(exc, socket.gaierror):
        error_class, message = "dns-error", "origin host name not found"
    elif isinstance(exc, ssl.SSLCertVerificationError):
        error_class = "tls-verify"
        message = f"origin TLS certificate rejected: {exc.verify_message}"
    elif isinstance(exc, ssl.SSLError):
        error_class, message = "tls-error", f"TLS handshake with the origin failed: {exc.reason}"
    elif isinstance(exc, OSError):
        message = f"cannot connect to the origin: {exc.strerror or exc}"
    return ProxyError(status, error_class, message, retryable=True)


def may_retry(err: ProxyError, *, method: bytes, body_sent: int, answered: bool,
              reused: bool, retried: bool) -> bool:
    """Pingora's retry hook: send the request once more on a fresh connection only when
    the failure says nothing was processed, nothing of the answer went out, the
    request is safe and had no body, and it was not retried already. A closed
    connection counts only when it came from the pool (the keep-alive race)."""
    if retried or answered or body_sent or method not in SAFE_METHODS or not err.retryable:
        return False
    return reused or err.error_class != "upstream-closed"


# Phase 1: finding a head in the bytes received so far.
def find_head(buf: bytes, limit: int) -> int:
    """Index of the CRLFCRLF ending the request head in `buf`, or -1 when more bytes
    are needed. Raises BadMessage (431, 400) as soon as the bytes cannot become a
    valid head, so a client is answered without waiting for its timeout."""
    end = buf.find(b"\r\n\r\n")
    if end >= 0:
        if end > limit:
            raise BadMessage("request headers too large", 431)
        return end
    if len(buf) > limit:
        raise BadMessage("request headers too large", 431)
    if buf.count(b"\n") != buf.count(b"\r\n") or buf.startswith(b"\r\n"):
        raise BadMessage("malformed request: bare LF or empty line")
    return -1


def find_response_head(buf: bytes) -> int:
    end = buf.find(b"\r\n\r\n")
    if end < 0 and len(buf) > MAX_RESPONSE_HEAD:
        raise bad_response("the origin's response head is too large")
    return end


@dataclass(frozen=True, slots=True)
class EdgeRules:
    """Everything `check_request` and `plan_response` read, computed once at startup."""

    routes: tuple[Route, ...]
    request: hp.RequestPolicy
    response: hp.ResponsePolicy
    origin_hosts: dict[object, bytes]  # Origin -> its Host header
    max_header_count: int
    max_header_bytes: int
    max_body_bytes: int

    @classmethod
    def from_config(cls, config: EdgeConfig) -> EdgeRules:
        lim = config.limits
        return cls(
            routes=config.routes,
            request=hp.RequestPolicy.from_config(config),
            response=hp.ResponsePolicy.from_config(config),
            origin_hosts={o: o.host_header.encode() for r in config.routes for o in r.origins},
            max_header_count=lim.max_header_count, max_header_bytes=lim.max_header_bytes,
            max_body_bytes=lim.max_body_bytes)


@dataclass(slots=True)
class RequestPlan:
    route: Route
    websocket: bool
    key: bytes  # the client's Sec-WebSocket-Key ("" for plain HTTP)
    line: bytes  # the upstream request line
    fields: bytes  # the upstream header lines after Host, and the head's empty line
    framing: Framing  # the request body's: "none", "length" or "chunked"
    origin: Origin  # where it goes: the route's first origin until the balancer chooses
    # The affinity cookie to set on the answer (several origins, a fresh choice). On the
    # plan, not the exchange: it is not needed once the answer's head is written.
    set_cookie: bytes | None = None


def upstream_head(plan: RequestPlan, rules: EdgeRules) -> list[bytes]:
    """The upstream head, in pieces for one write. The Host line is the one part that
    depends on the origin, so choosing another origin (the balancer, a retry) only sets
    `plan.origin`."""
    return [plan.line, b"host: ", rules.origin_hosts[plan.origin], b"\r\n", plan.fields]


class Exchange:
    """One request as the log sees it. `finish` is its only way out: the driver calls
    it on every path, and a second call is a bug the assertion shows at once."""

    __slots__ = ("admitted", "client_ip", "error", "error_class", "finished", "from_client", "host",
                 "method", "origin", "req_id", "route", "scheme", "status", "t0",
                 "target", "to_client", "user_agent", "websocket")

    def __init__(self, t0: float, client_ip: str) -> None:
        self.t0 = t0
        self.client_ip = client_ip
        self.method = b"-"
        self.target = b"/"
        self.host = b""
        self.scheme = b"http"  # the client's, as told to the origin
        self.user_agent = b""
        self.route: Route | None = None
        self.origin: Origin | None = None  # the origin that served it (several: the choice)
        # An upgrade admitted by admission control: the origin whose place it holds.
        self.admitted: Origin | None = None
        self.req_id = b""
        self.status = 0
        self.from_client = 0
        self.to_client = 0
        self.websocket = False
        self.error_class: str | None = None
        self.error: str | None = None
        self.finished = False

    def fail(self, err: ProxyError) -> None:
        self.error_class, self.error = err.error_class, err.message
        self.status = self.status or err.status

    def finish(self) -> None:
        """Called by the logging exit only."""
        assert not self.finished, "an exchange was logged twice"
        self.finished = True

    def outcome(self) -> tuple[Severity, str]:
        """The log event's severity and message."""
        if self.error_class and self.status >= 500:
            return "ERROR", "Edge Proxy Error"
        if self.error_class:
            return "WARNING", "Request refused"
        return ("WARNING" if self.status >= 500 else "INFO"), "request"


# Phases 1-3: from a parsed head to the upstream request, or a refusal.
def _bound_request(req: RequestHead, rules: EdgeRules) -> None:
    headers = req.headers
    if len(headers) > rules.max_header_count:
        raise ProxyError(431, "headers-too-large", "too many request headers")
    # The head's size needs no check here: `find_head` refused any head longer than
    # max_header_bytes, and parsing only drops bytes (punctuation, whitespace).
    if req.method in (b"CONNECT", b"TRACE"):
        # TRACE would make the origin echo the request, secret included.
        raise ProxyError(405, "bad-request",
                         f"{req.method.decode('ascii', 'replace')} is not supported")
    if not req.target.startswith(b"/"):
        raise ProxyError(400, "bad-request", "the request target must be a path")
    if sum(1 for n, _ in headers if n == b"host") > 1:
        raise ProxyError(400, "bad-request", "more than one Host header")
    if req.framing == "chunked":
        if any(n == b"content-length" for n, _ in headers):
            raise ProxyError(400, "bad-request",
                             "both Content-Length and Transfer-Encoding were sent")
        if req.http_version < b"1.1":
            # RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means faulty framing.
            raise ProxyError(400, "bad-request", "Transfer-Encoding in an HTTP/1.0 request")


def describe(req: RequestHead, ex: Exchange, rules: EdgeRules, peer_ip: str) -> None:
    """What the log needs of the request, set before any check can refuse it."""
    headers = req.headers
    ex.method, ex.target = req.method, req.target
    ex.host = next((v for n, v in headers if n == b"host"), b"")
    ex.user_agent = next((v for n, v in headers if n == b"user-agent"), b"")
    ex.client_ip = hp.client_ip(headers, rules.request.trusted_ip_header, peer_ip)
    ex.req_id = hp.request_id(headers)
    ex.scheme = hp.forwarded_proto(rules.request, headers)


def check_request(req: RequestHead, ex: Exchange, rules: EdgeRules) -> RequestPlan:
    """Phases 1-3 for a parsed request (`describe` already ran): refuse with a
    ProxyError, or return the plan for the origin leg."""
    _bound_request(req, rules)
    host = ex.host.decode("latin-1")
    path = req.target.partition(b"?")[0].decode("latin-1")
    route = match_route(rules.routes, host, path)
    if route is None:
        raise ProxyError(404, "no-route", f"no route for {host}{path}")
    kind, problem = classify_upgrade(req.method, req.http_version, req.headers)
    if problem:
        raise ProxyError(400, "bad-handshake", f"invalid WebSocket handshake: {problem}")
    websocket = kind == "websocket"
    if req.framing == "length" and req.length > rules.max_body_bytes:
        raise ProxyError(413, "body-too-large", "request body too large")
    up_headers = hp.upstream_headers(
        rules.request, req.headers, origin_host=rules.origin_hosts[route.origin],
        client_host=ex.host, client_addr=ex.client_ip, req_id=ex.req_id, websocket=websocket,
        proto=ex.scheme)
    if req.framing == "chunked":
        up_headers.append((b"transfer-encoding", b"chunked"))
    elif req.framing == "length":
        up_headers.append(next(h for h in req.headers if h[0] == b"content-length"))
    key = (next((v for n, v in req.headers if n == b"sec-websocket-key"), b"")
           if websocket else b"")
    host_header, *fields = up_headers  # Host comes first; upstream_head writes it
    assert host_header[0] == b"host"
    return RequestPlan(route, websocket, key, request_line(req.method, req.target),
                       header_block(fields), req.framing, route.origin)


# Phase 6: the response as the client gets it.
@dataclass(slots=True)
class ResponsePlan:
    head: bytes
    framing: Framing  # the origin's body framing ("none": nothing to read)
    reframe: bool  # re-encode the body as chunked for the client
    keep_client: bool  # the client connection may carry another request
    keep_upstream: bool  # the origin connection may go back to the pool


def reason_phrase(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def response_head(status: int, reason: bytes, headers: Headers) -> bytes:
    parts = [b"HTTP/1.1 %d %b\r\n" % (status, reason)]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def plan_response(resp: ResponseHead, req: RequestHead, ex: Exchange, rules: EdgeRules, *,
                  upgrade_refused: bool, draining: bool,
                  set_cookie: bytes | None = None) -> ResponsePlan:
    """Headers, framing and keep-alive of a non-101 answer. The client's framing
    follows h11's rules: an unknown length becomes chunked for an HTTP/1.1 client
    and ends with the connection for an HTTP/1.0 one."""
    out = hp.response_headers(rules.response, resp.headers,
                              path=req.target.partition(b"?")[0], status=resp.status)
    if not any(n == b"x-request-id" for n, _ in out):
        out.append((b"x-request-id", ex.req_id))
    # The affinity cookie is one browser's: never on an answer shared caches may keep.
    if set_cookie is not None and not any(
            n == b"cache-control" and b"public" in v.lower() for n, v in out):
        out.append((b"set-cookie", set_cookie))
    # A refused upgrade never becomes a tunnel and the connection is not reused:
    # bytes the client sent after its upgrade request are not HTTP.
    keep = not draining and not upgrade_refused and req.keep_alive
    framing = resp.framing
    if framing == "length" and resp.length == 0:
        framing = "none"
    reframe = resp.framing in ("chunked", "close") and req.method != b"HEAD"
    if resp.framing in ("chunked", "close"):
        out = [(n, v) for n, v in out if n != b"content-length"]
        if req.http_version >= b"1.1":
            out.append((b"transfer-encoding", b"chunked"))
        else:
            reframe, keep = False, False
    if not keep:
        out.append((b"connection", b"close"))
    head = response_head(resp.status, resp.reason or reason_phrase(resp.status), out)
    return ResponsePlan(head, framing, reframe, keep,
                        resp.keep_alive and not upgrade_refused)


def error_response(err: ProxyError, ex: Exchange, rules: EdgeRules,
                   extra: Headers | None = None) -> bytes:
    """An edge-made answer to a failed exchange; always `Connection: close`. 5xx bodies
    read `Edge Proxy Error: <reason>`, as the original worker's did."""
    text = f"Edge Proxy Error: {err.message}" if err.status >= 500 else err.message
    body = text.encode("utf-8", "replace") + b"\n"
    lines = [b"HTTP/1.1 %d %s" % (err.status, _REASONS.get(err.status, b"Error")),
             b"content-type: text/plain; charset=utf-8",
             b"content-length: %d" % len(body), b"connection: close"]
    if ex.req_id:
        lines.append(b"x-request-id: " + ex.req_id)
    marker = rules.response.marker
    if marker is not None:
        lines.append(marker[0] + b": " + marker[1])
    for name, value in extra or ():
        lines.append(name + b": " + value)
    head = b"\r\n".join(lines) + b"\r\n\r\n"
    return head if ex.method == b"HEAD" else head + body
