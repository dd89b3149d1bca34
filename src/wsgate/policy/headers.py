"""Header policy for both directions, client IP selection, request ids, cache rule.

Headers are `(name, value)` byte pairs with lowercase names, as the edge's HTTP/1.1
parser yields them.
Order of the request rules matters and is fixed here: first everything the client
must not control is removed (hop-by-hop headers, every header the client named in
`Connection`, its copies of the secret and of the forwarding headers), only then
the edge adds its own. So no `Connection:` trick can remove what the edge adds, and
no client copy can survive next to it.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from wsgate.config import EdgeConfig

Headers = list[tuple[bytes, bytes]]

# RFC 9110 §7.6.1 plus the legacy ones every proxy drops.
HOP_BY_HOP: Final = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
    b"transfer-encoding", b"upgrade", b"proxy-authenticate", b"proxy-authorization",
})
# Client-IP headers set by CDNs; a client could forge any of them.
KNOWN_CLIENT_IP_HEADERS: Final = frozenset({
    b"cf-connecting-ip", b"true-client-ip", b"x-client-ip", b"fastly-client-ip",
    b"x-cluster-client-ip", b"cf-connecting-ipv6",
})
# Headers the edge always sets itself (or frames itself); client copies never pass.
_EDGE_OWNED: Final = frozenset({
    b"host", b"forwarded", b"x-real-ip", b"x-request-id", b"content-length", b"expect",
})
REQUEST_ID_RE: Final = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")
# Every client header under this prefix is dropped: the edge sets its own.
FORWARDED_PREFIX: Final = b"x-forwarded-"


@dataclass(frozen=True, slots=True)
class RequestPolicy:
    """The request-side settings, pre-encoded once at startup."""

    secret_header: bytes  # lowercase
    secret: bytes  # b"" = do not add one
    forwarded_proto: bytes  # b"" = auto (see `forwarded_proto`)
    served_scheme: bytes  # what the edge itself serves: b"http" or b"https"
    public_host: bytes  # b"" = the client's Host
    trusted_ip_header: bytes  # lowercase, b"" = trust only the TCP peer
    drop: frozenset[bytes]  # exact names removed from every client request

    @classmethod
    def from_config(cls, config: EdgeConfig) -> RequestPolicy:
        secret_header = config.secret_header.lower().encode()
        trusted = config.client_ip_header.lower().encode()
        # The trusted client-IP header passes through; the edge-owned ones never do.
        drop = (HOP_BY_HOP | KNOWN_CLIENT_IP_HEADERS | {secret_header}) - {trusted} | _EDGE_OWNED
        fixed = b"" if config.forwarded_proto == "auto" else config.forwarded_proto.encode()
        return cls(secret_header, config.secret.encode(), fixed,
                   b"https" if config.tls_cert else b"http",
                   config.public_host.encode(), trusted, frozenset(drop))


@dataclass(frozen=True, slots=True)
class ResponsePolicy:
    marker: tuple[bytes, bytes] | None
    drop: frozenset[bytes]  # lowercase names removed from responses (besides hop-by-hop)
    cache_extensions: tuple[bytes, ...]  # lowercase, e.g. b".js"
    cache_value: bytes

    @classmethod
    def from_config(cls, config: EdgeConfig) -> ResponsePolicy:
        marker = config.marker
        # The secret header never goes back to a client, even if an origin echoes it.
        stripped = {h.lower().encode() for h in config.strip_response_headers}
        stripped.add(config.secret_header.lower().encode())
        return cls(
            (marker[0].lower().encode(), marker[1].encode()) if marker else None,
            frozenset(stripped),
            tuple(e.lower().encode() for e in config.cache.extensions),
            config.cache.value.encode(),
        )


def comma_tokens(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    """The lowercase, non-empty tokens of every `name` header's comma-separated list
    (h11's get_comma_header): the one place such a list is split."""
    return [t.strip().lower() for n, v in headers if n == name
            for t in v.split(b",") if t.strip()]


def connection_tokens(headers: Iterable[tuple[bytes, bytes]]) -> set[bytes]:
    """Lowercase names listed in every `Connection` header."""
    return set(comma_tokens(headers, b"connection"))


def valid_request_id(value: bytes) -> bool:
    return REQUEST_ID_RE.match(value) is not None


# A request id is a correlation id, not a secret: a random per-process prefix plus
# a counter is unique across processes and restarts (64 random bits) and costs no
# `getrandom` system call per request. It reveals how many requests this process
# has seen, which is no more than its logs do.
_ID_PREFIX: Final = os.urandom(8).hex().encode()
_id_counter = itertools.count(1)


def new_request_id() -> bytes:
    return b"%s%016x" % (_ID_PREFIX, next(_id_counter))


def request_id(headers: Sequence[tuple[bytes, bytes]]) -> bytes:
    """Keep exactly one well-formed client `X-Request-Id`; otherwise make a new one."""
    found = [v for n, v in headers if n == b"x-request-id"]
    if len(found) == 1 and valid_request_id(found[0]):
        return found[0]
    return new_request_id()


def client_ip(headers: Sequence[tuple[bytes, bytes]], trusted_header: bytes, peer_ip: str) -> str:
    """The client address: the trusted header's single valid IP, else the TCP peer."""
    if trusted_header:
        found = [v for n, v in headers if n == trusted_header]
        # A CDN never sends a scoped IPv6 address (fe80::1%eth0); the zone would be
        # free text of any length in logs and admission keys.
        if len(found) == 1 and b"%" not in found[0]:
            try:
                return str(ipaddress.ip_address(found[0].strip().decode("ascii")))
            except (ValueError, UnicodeDecodeError):
                pass
    return peer_ip


def forwarded_proto(policy: RequestPolicy, headers: Sequence[tuple[bytes, bytes]]) -> bytes:
    """The scheme the client really used. Configured: that value. Auto: behind a trusted
    proxy (`client_ip_header` set, e.g. a TLS-terminating CDN) its single valid
    X-Forwarded-Proto; otherwise the scheme the edge itself serves. So a local plain
    http edge says http, and an edge behind Cloudflare says what the browser used."""
    if policy.forwarded_proto:
        return policy.forwarded_proto
    if policy.trusted_ip_header:
        found = [v for n, v in headers if n == b"x-forwarded-proto"]
        if len(found) == 1 and found[0].lower() in (b"http", b"https"):
            return found[0].lower()
    return policy.served_scheme


def upstream_headers(policy: RequestPolicy, headers: Sequence[tuple[bytes, bytes]], *,
                     origin_host: bytes, client_host: bytes, client_addr: str,
                     req_id: bytes, websocket: bool, proto: bytes) -> Headers:
    """The header list sent to the origin (framing headers are added by the caller)."""
    named = connection_tokens(headers)
    drop = policy.drop
    out: Headers = [(b"host", origin_host)]
    for name, value in headers:
        if name in drop or name.startswith(FORWARDED_PREFIX):
            continue
        if name in named and not (websocket and name.startswith(b"sec-websocket-")):
            continue
        out.append((name, value))
    if websocket:
        out.append((b"upgrade", b"websocket"))
        out.append((b"connection", b"Upgrade"))
    forwarded_host = policy.public_host or client_host
    if forwarded_host:
        out.append((b"x-forwarded-host", forwarded_host))
    out.append((b"x-forwarded-proto", proto))
    ip = client_addr.encode()
    out.append((b"x-forwarded-for", ip))
    out.append((b"x-real-ip", ip))
    if policy.secret:
        out.append((policy.secret_header, policy.secret))
    out.append((b"x-request-id", req_id))
    return out


def cache_applies(policy: ResponsePolicy, path: bytes, status: int) -> bool:
    """Static-asset rule of the original worker, limited to successful answers so an
    error page is never cached for a day."""
    if not policy.cache_value or not (200 <= status < 300 or status == 304):
        return False
    return path.lower().endswith(policy.cache_extensions)


def response_headers(policy: ResponsePolicy, headers: Sequence[tuple[bytes, bytes]], *,
                     path: bytes, status: int) -> Headers:
    """Headers for a non-101 response to the client. Content-Length is kept (framing);
    the edge adds Transfer-Encoding/Connection as the client connection needs."""
    named = connection_tokens(headers) - {b"content-length"}
    cache = cache_applies(policy, path, status)
    out: Headers = []
    for name, value in headers:
        if name in HOP_BY_HOP or name in named or name in policy.drop:
            continue
        if cache and name == b"cache-control":
            continue
        if policy.marker is not None and name == policy.marker[0]:
            continue
        out.append((name, value))
    if cache:
        out.append((b"cache-control", policy.cache_value))
    if policy.marker is not None:
        out.append(policy.marker)
    return out
