"""The hostile input corpus, as data.

Each Case is the raw bytes a client sends and what must come of it:
  * `statuses`: one set of acceptable outcomes per response the client waits for
    (an int status, or CLOSED = the edge closed without a (further) response);
  * `origin`: whether the origin may see a request ("none" / "may" / "must");
  * `forbidden`: byte strings that must never appear in anything the origin saw
    (the client's forged secret, a forged client IP);
  * `forbidden_targets`: request targets the origin must never receive as a request
    (a request smuggled inside another one's body; as body bytes it may pass);
  * `origin_absent`: header names the origin must never receive;
  * `close_after`: the edge must close the connection after the last response
    (RFC 9112 §6.1 after a request with both Content-Length and Transfer-Encoding);
  * `config`: "default" (TCP peer is the client IP) or "trusted" (CF-Connecting-IP).

Rules that hold for every case are checked by the harness (test_corpus.py): the edge
never crashes, never answers with the secret in any byte, never sends a 101 the origin
did not send, every request the origin sees carries the edge's secret exactly once and
the edge's own X-Forwarded-For, and the origin never sees malformed HTTP.

Sets with more than one status are used only where the RFCs leave the edge a choice
(e.g. obs-fold may be rejected or unfolded); the reason is in the case name.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

CLOSED = 0  # pseudo-status: the edge closed without a (further) response

FORGED_SECRET = b"forged-client-secret-5e1f"
FORGED_IP = b"6.6.6.6"
FORGED_IP2 = b"7.7.7.7"
FORGED_HOST = b"evil.example"
HOST = b"app.example.com"
SMUGGLED = b"/smuggled-7c2d"

OriginRule = Literal["none", "may", "must"]


@dataclass(frozen=True)
class Case:
    name: str
    family: str
    send: tuple[bytes, ...]
    statuses: tuple[frozenset[int], ...]
    origin: OriginRule
    forbidden: tuple[bytes, ...] = ()
    forbidden_targets: tuple[bytes, ...] = ()
    origin_absent: tuple[bytes, ...] = ()
    close_after: bool = False
    config: Literal["default", "trusted"] = "default"
    shutdown_write: bool = False
    gap: float = 0.0
    timeout: float = 6.0
    ws_echo: bytes = b""  # after a 101: this text frame must come back (sent by the case)
    origin_ip: bytes = b""  # the X-Forwarded-For / X-Real-IP the origin must see, if set
    max_origin_requests: int = -1  # -1 = no limit beyond the other rules


def _s(*codes: int) -> frozenset[int]:
    return frozenset(codes)


OK = _s(200)
BAD = _s(400)


def request(method: bytes = b"GET", target: bytes = b"/", version: bytes = b"HTTP/1.1",
            headers: Iterable[bytes] = (), body: bytes = b"", host: bytes | None = HOST) -> bytes:
    lines = [method + b" " + target + b" " + version]
    if host is not None:
        lines.append(b"Host: " + host)
    lines += list(headers)
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def upgrade_headers(key: bytes = b"dGhlIHNhbXBsZSBub25jZQ==", version: bytes = b"13",
                    connection: bytes = b"Upgrade") -> list[bytes]:
    return [b"Upgrade: websocket", b"Connection: " + connection,
            b"Sec-WebSocket-Key: " + key, b"Sec-WebSocket-Version: " + version]


def case(name: str, family: str, send: bytes | Sequence[bytes],
         statuses: frozenset[int] | Sequence[frozenset[int]], origin: OriginRule,
         **kw: object) -> Case:
    chunks = (send,) if isinstance(send, bytes) else tuple(send)
    expect = (statuses,) if isinstance(statuses, frozenset) else tuple(statuses)
    return Case(name, family, chunks, expect, origin, **kw)  # type: ignore[arg-type]


def masked_text(payload: bytes) -> bytes:
    """A client text frame with a fixed mask (the corpus is data: no randomness)."""
    key = b"\x11\x22\x33\x44"
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + key + masked


# ------------------------------------------------------------------ request smuggling

def smuggling() -> list[Case]:
    f = "smuggling"
    out: list[Case] = []
    tail = request(target=SMUGGLED)
    # CL + TE in both orders and with TE spellings h11 accepts as "chunked": the edge
    # may reject or go by TE alone, but must close afterwards (RFC 9112 §6.1), so the
    # request hidden behind the body never becomes a request.
    for te in (b"chunked", b"Chunked", b"chunked ", b"\tchunked", b"CHUNKED"):
        for order in ("cl-first", "te-first"):
            hs = [b"Content-Length: 6", b"Transfer-Encoding: " + te]
            if order == "te-first":
                hs.reverse()
            out.append(case(f"cl+te {order} te={te!r}", f,
                            request(b"POST", headers=hs, body=b"0\r\n\r\nG") + tail,
                            [_s(200, 400), _s(CLOSED)], "may", close_after=True,
                            forbidden_targets=(SMUGGLED,)))
    # TE.CL: the chunk holds a whole request; a CL-reader would see it as the next one.
    body = b"%x\r\n" % len(tail) + tail + b"\r\n0\r\n\r\n"
    out.append(case("te+cl chunk hides a request", f,
                    request(b"POST", headers=[b"Transfer-Encoding: chunked",
                                              b"Content-Length: 4"], body=body),
                    [_s(200, 400), _s(CLOSED)], "may", close_after=True,
                    forbidden_targets=(SMUGGLED,)))
    # Two Content-Lengths.
    out.append(case("two different content-lengths", f,
                    request(b"POST", headers=[b"Content-Length: 5", b"Content-Length: 6"],
                            body=b"abcdef") + tail, [BAD], "none", forbidden_targets=(SMUGGLED,)))
    out.append(case("content-length list differs", f,
                    request(b"POST", headers=[b"Content-Length: 5, 6"], body=b"abcdef") + tail,
                    [BAD], "none", forbidden_targets=(SMUGGLED,)))
    out.append(case("two equal content-lengths (RFC allows merge or reject)", f,
                    request(b"POST", headers=[b"Content-Length: 5", b"Content-Length: 5"],
                            body=b"abcde"), _s(200, 400), "may"))
    for bad_cl in (b"-1", b"+5", b"0x5", b"5 5", b"", b"5.0", b"1e3", b"five", b"5\x0b",
                   b"99999999999999999999999999"):
        out.append(case(f"bad content-length {bad_cl!r}", f,
                        request(b"POST", headers=[b"Content-Length: " + bad_cl], body=b"abcde"),
                        _s(400, 413), "none"))
    # Obfuscated Transfer-Encoding that is not exactly "chunked": never forwarded.
    for te in (b"xchunked", b"chunked, chunked", b"gzip, chunked", b"chunked, gzip",
               b"identity", b"chunked;q=1", b"chunk", b'"chunked"', b"chunked\x0b",
               b"chunked\x00", b"x-chunked", b"chunkedx"):
        out.append(case(f"obfuscated transfer-encoding {te!r}", f,
                        request(b"POST", headers=[b"Transfer-Encoding: " + te],
                                body=b"0\r\n\r\n"), _s(400, 501), "none"))
    out.append(case("two transfer-encoding headers", f,
                    request(b"POST", headers=[b"Transfer-Encoding: chunked",
                                              b"Transfer-Encoding: identity"],
                            body=b"0\r\n\r\n"), _s(400, 501), "none"))
    out.append(case("space before colon in transfer-encoding", f,
                    request(b"POST", headers=[b"Transfer-Encoding : chunked"],
                            body=b"0\r\n\r\n"), BAD, "none"))
    out.append(case("transfer-encoding on HTTP/1.0 (RFC 9112 6.1: faulty framing)", f,
                    request(b"POST", version=b"HTTP/1.0",
                            headers=[b"Transfer-Encoding: chunked"], body=b"0\r\n\r\n"),
                    BAD, "none"))
    out.append(case("transfer-encoding folded onto the next line", f,
                    request(b"POST", headers=[b"Transfer-Encoding:", b" chunked"],
                            body=b"0\r\n\r\n"), _s(200, 400), "may"))
    # Bad chunk framing inside a body the edge may already be streaming.
    for size_line in (b"zz", b"-5", b"0x5", b"fffffffffffffffffffff", b"5 5", b" 5",
                      b"5\x00", b";5", b""):
        out.append(case(f"bad chunk size {size_line!r}", f,
                        request(b"POST", headers=[b"Transfer-Encoding: chunked"],
                                body=size_line + b"\r\nabcde\r\n0\r\n\r\n"),
                        [BAD], "may", forbidden=(b"abcde",)))
    out.append(case("chunk data longer than its size", f,
                    request(b"POST", headers=[b"Transfer-Encoding: chunked"],
                            body=b"3\r\nabcdef\r\n0\r\n\r\n"), [BAD], "may"))
    out.append(case("chunk lines with bare LF, then EOF", f,
                    request(b"POST", headers=[b"Transfer-Encoding: chunked"],
                            body=b"5\nabcde\n0\n\n"), _s(400, CLOSED), "may",
                    shutdown_write=True, forbidden=(b"abcde",)))
    for ext in (b"5;name=value", b"5;name=\"quoted\"", b"5;a;b;c", b"5 ;x", b"5;\x01"):
        out.append(case(f"chunk extension {ext!r} (valid or rejected, never passed on raw)", f,
                        request(b"POST", headers=[b"Transfer-Encoding: chunked"],
                                body=ext + b"\r\nabcde\r\n0\r\n\r\n"), _s(200, 400), "may"))
    out.append(case("chunked trailers carry a forged secret and client IP", f,
                    request(b"POST", headers=[b"Transfer-Encoding: chunked"],
                            body=b"5\r\nabcde\r\n0\r\nX-CF-Secret: " + FORGED_SECRET
                            + b"\r\nX-Forwarded-For: " + FORGED_IP + b"\r\n\r\n"),
                    _s(200, 400), "may", forbidden=(FORGED_SECRET, FORGED_IP)))
    # Line endings and folding.
    out.append(case("bare LF line endings (RFC 9112 allows recognising them)", f,
                    b"GET / HTTP/1.1\nHost: app.example.com\nX-A: 1\n\n", _s(200, 400), "may"))
    out.append(case("mixed CRLF and LF", f,
                    b"GET / HTTP/1.1\r\nHost: app.example.com\nX-A: 1\r\n\r\n",
                    _s(200, 400), "may"))
    out.append(case("bare CR line endings", f,
                    b"GET / HTTP/1.1\rHost: app.example.com\rX-A: 1\r\r", _s(400, CLOSED), "none",
                    shutdown_write=True))
    out.append(case("obs-fold continuation line (reject or unfold)", f,
                    request(headers=[b"X-A: one", b" two"]), _s(200, 400), "may"))
    out.append(case("obs-fold with tab", f,
                    request(headers=[b"X-A: one", b"\ttwo"]), _s(200, 400), "may"))
    out.append(case("obs-fold hides a forged secret", f,
                    request(headers=[b"X-A: one", b" X-CF-Secret: " + FORGED_SECRET]),
                    _s(200, 400), "may"))
    out.append(case("first header line folded", f,
                    b"GET / HTTP/1.1\r\n X-A: b\r\nHost: app.example.com\r\n\r\n", BAD, "none"))
    # NUL / CR / LF and other illegal bytes in names and values.
    for label, line in (
        ("NUL in value", b"X-A: b\x00c"), ("CR in value", b"X-A: b\rc"),
        ("NUL in name", b"X-\x00A: b"), ("CR in name", b"X-\rA: b"),
        ("LF inside name", b"X-\nA: b"), ("space in name", b"X A: b"),
        ("empty name", b": b"), ("no colon", b"X-A b"),
        ("tab in name", b"X-\tA: b"), ("DEL in name", b"X-\x7fA: b"),
        ("non-ASCII in name", b"X-\xc3\xa9: b"), ("paren in name", b"X-(A): b"),
        ("CR before colon", b"X-A\r: b"), ("VT in value", b"X-A: b\x0bc"),
        ("secret name with NUL", b"X-CF-Secret\x00: x"),
    ):
        out.append(case(f"illegal header: {label}", f, request(headers=[line]), BAD, "none"))
    # RFC 9110 5.5: CTLs other than CR/LF/NUL are invalid, but a recipient MAY keep them.
    out.append(case("ESC in a header value (reject or keep)", f,
                    request(headers=[b"X-A: b\x1bc"]), _s(200, 400), "may"))
    # Request targets.
    out.append(case("absolute-form target (forward origin-form only)", f,
                    request(target=b"http://" + FORGED_HOST + b"/x"), _s(200, 400), "may"))
    out.append(case("absolute-form https with userinfo", f,
                    request(target=b"https://user:pw@" + FORGED_HOST + b"/x"),
                    _s(200, 400), "may", forbidden=(b"user:pw",)))
    out.append(case("authority-form on GET", f, request(target=b"evil.example:80"),
                    BAD, "none"))
    out.append(case("asterisk-form on GET", f, request(target=b"*"), _s(400, 200), "may"))
    out.append(case("target with a space-separated extra token", f,
                    b"GET / x HTTP/1.1\r\nHost: app.example.com\r\n\r\n", BAD, "none"))
    out.append(case("target with raw non-ASCII", f, request(target="/é".encode()), BAD, "none"))
    out.append(case("target with a fragment", f, request(target=b"/a#frag"),
                    _s(200, 400), "may"))
    out.append(case("empty target", f, b"GET  HTTP/1.1\r\nHost: app.example.com\r\n\r\n",
                    BAD, "none"))
    for target in (b"http://a/" + SMUGGLED[1:], b"//" + FORGED_HOST + b"/x"):
        out.append(case(f"odd target {target!r}", f, request(target=target),
                        _s(200, 400), "may"))
    for method, target in ((b"CONNECT", b"127.0.0.1:22"), (b"CONNECT", b"app.example.com:443"),
                           (b"CONNECT", b"[::1]:8080"), (b"CONNECT", b"/")):
        out.append(case(f"CONNECT {target!r} never becomes a tunnel", f,
                        request(method, target) + b"SSH-2.0-OpenSSH\r\n",
                        _s(400, 403, 405, 501), "none"))
    out.append(case("TRACE would reflect the injected secret", f,
                    request(b"TRACE"), _s(400, 403, 405, 501), "none"))
    out.append(case("TRACE with Max-Forwards: 0", f,
                    request(b"TRACE", headers=[b"Max-Forwards: 0"]),
                    _s(400, 403, 405, 501), "none"))
    out.append(case("HTTP/2 connection preface", f,
                    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", _s(400, 405, 501, 505), "none"))
    # Hosts and versions.
    out.append(case("HTTP/1.0 without Host", f, request(version=b"HTTP/1.0", host=None),
                    _s(200, 400), "may"))
    out.append(case("HTTP/1.0 with Host", f, request(version=b"HTTP/1.0"), OK, "must"))
    out.append(case("HTTP/1.1 without Host", f, request(host=None), BAD, "none"))
    out.append(case("two Host headers", f, request(headers=[b"Host: " + FORGED_HOST]),
                    BAD, "none"))
    out.append(case("two Host headers, other case", f,
                    request(headers=[b"host: " + FORGED_HOST]), BAD, "none"))
    out.append(case("empty Host", f, request(host=b""), _s(200, 400), "may"))
    out.append(case("Host with a space", f, request(host=b"a b"), _s(200, 400), "may"))
    out.append(case("Host with a path", f, request(host=b"a/b"), _s(200, 400), "may"))
    out.append(case("Host with a huge port", f, request(host=b"a:999999"), _s(200, 400), "may"))
    for version in (b"HTTP/1.2", b"HTTP/0.9", b"HTTP/2.0", b"HTTP/9.9"):
        out.append(case(f"request version {version!r}", f, request(version=version),
                        _s(200, 400, 505), "may"))
    for version in (b"http/1.1", b"HTTP/1.10", b"HTTP/1", b"HTTP/11", b"HTTPS/1.1", b""):
        out.append(case(f"malformed version {version!r}", f,
                        b"GET / " + version + b"\r\nHost: app.example.com\r\n\r\n",
                        BAD, "none", shutdown_write=True))
    out.append(case("HTTP/0.9 simple request", f, b"GET /\r\n\r\n", BAD, "none",
                    shutdown_write=True))
    out.append(case("leading empty lines before the request line", f,
                    b"\r\n\r\n" + request(), _s(200, 400), "may"))
    out.append(case("lowercase method is another method", f, request(b"get"),
                    _s(200, 400, 405, 501), "may"))
    out.append(case("tab-separated request line", f,
                    b"GET\t/\tHTTP/1.1\r\nHost: app.example.com\r\n\r\n", BAD, "none"))
    # Pipelining after a body that lies about its length.
    out.append(case("pipelined request after a short Content-Length", f,
                    request(b"POST", headers=[b"Content-Length: 3"], body=b"abc")
                    + request(target=b"/second"), [OK, OK], "must"))
    out.append(case("Content-Length shorter than the body: rest is garbage", f,
                    request(b"POST", headers=[b"Content-Length: 3"], body=b"abcdefgh\r\n\r\n"),
                    [OK, BAD], "must", close_after=True))
    out.append(case("Content-Length longer than the body hides a request, then EOF", f,
                    request(b"POST", headers=[b"Content-Length: 200"], body=tail),
                    _s(400, 408, CLOSED), "may", shutdown_write=True,
                    forbidden_targets=(SMUGGLED,)))
    out.append(case("chunked body that looks like a request, then a real one", f,
                    request(b"POST", headers=[b"Transfer-Encoding: chunked"],
                            body=b"%x\r\n" % len(tail) + tail + b"\r\n0\r\n\r\n")
                    + request(target=b"/second"), [OK, OK], "must"))
    out.append(case("pipelined second request forges the secret", f,
                    request() + request(target=b"/second",
                                        headers=[b"X-CF-Secret: " + FORGED_SECRET]),
                    [OK, OK], "must", forbidden=(FORGED_SECRET,)))
    out.append(case("pipelined second request forges X-Forwarded-For", f,
                    request() + request(target=b"/second",
                                        headers=[b"X-Forwarded-For: " + FORGED_IP]),
                    [OK, OK], "must", forbidden=(FORGED_IP,)))
    out.append(case("twenty pipelined requests in one packet", f,
                    b"".join(request(target=b"/p%d" % i) for i in range(20)),
                    [OK] * 20, "must"))
    out.append(case("Expect: 100-continue with a body", f,
                    request(b"POST", headers=[b"Content-Length: 5", b"Expect: 100-continue"],
                            body=b"abcde"), OK, "must"))
    out.append(case("GET with a body", f,
                    request(headers=[b"Content-Length: 5"], body=b"abcde"), OK, "must"))
    out.append(case("HEAD request", f, request(b"HEAD"), OK, "must"))
    return out


# ------------------------------------------------------------------ upgrade abuse

def upgrades() -> list[Case]:
    f = "upgrade"
    out: list[Case] = []
    h2c = [b"Upgrade: h2c", b"Connection: Upgrade, HTTP2-Settings",
           b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"]
    out.append(case("Upgrade: h2c is dropped, request served as HTTP/1.1", f,
                    request(headers=h2c), OK, "must",
                    origin_absent=(b"upgrade", b"http2-settings")))
    out.append(case("Upgrade: h2c on POST with a body", f,
                    request(b"POST", headers=[*h2c, b"Content-Length: 5"], body=b"abcde"),
                    OK, "must", origin_absent=(b"upgrade", b"http2-settings")))
    out.append(case("Upgrade: h2c without Connection: Upgrade", f,
                    request(headers=[b"Upgrade: h2c"]), OK, "must", origin_absent=(b"upgrade",)))
    for proto in (b"TLS/1.0", b"HTTP/2.0", b"foo", b"IRC/6.9"):
        out.append(case(f"Upgrade: {proto!r} is not passed on", f,
                        request(headers=[b"Upgrade: " + proto, b"Connection: Upgrade"]),
                        _s(200, 400), "may", origin_absent=(b"upgrade",)))
    broken = {
        "websocket without key": [b"Upgrade: websocket", b"Connection: Upgrade",
                                  b"Sec-WebSocket-Version: 13"],
        "websocket without version": [b"Upgrade: websocket", b"Connection: Upgrade",
                                      b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="],
        "websocket without key and version": [b"Upgrade: websocket", b"Connection: Upgrade"],
        "version 8": upgrade_headers(version=b"8"),
        "version 12": upgrade_headers(version=b"12"),
        "version 14": upgrade_headers(version=b"14"),
        "version list 13, 8": upgrade_headers(version=b"13, 8"),
        "version not a number": upgrade_headers(version=b"abc"),
        "key too short": upgrade_headers(key=b"c2hvcnQ="),
        "key not base64": upgrade_headers(key=b"!!!!!!!!!!!!!!!!!!!!!!!="),
        "key empty": upgrade_headers(key=b""),
        "key 17 bytes": upgrade_headers(key=b"MDEyMzQ1Njc4OWFiY2RlZmc="),
        "two keys": [*upgrade_headers(), b"Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA=="],
        "two versions": [*upgrade_headers(), b"Sec-WebSocket-Version: 8"],
    }
    for label, hs in broken.items():
        out.append(case(f"broken handshake: {label}", f, request(target=b"/ws", headers=hs),
                        _s(400, 426), "none"))
    for method in (b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS"):
        out.append(case(f"websocket upgrade on {method.decode()}", f,
                        request(method, b"/ws", headers=[*upgrade_headers(),
                                                         b"Content-Length: 0"]),
                        _s(400, 405), "none"))
    out.append(case("websocket upgrade with a chunked body", f,
                    request(target=b"/ws", headers=[*upgrade_headers(),
                                                    b"Transfer-Encoding: chunked"],
                            body=b"0\r\n\r\n"), _s(400,), "none"))
    out.append(case("websocket upgrade on HTTP/1.0", f,
                    request(target=b"/ws", version=b"HTTP/1.0", headers=upgrade_headers()),
                    _s(400, 200), "may", origin_absent=(b"upgrade",)))
    out.append(case("Upgrade: websocket without Connection: Upgrade", f,
                    request(target=b"/ws", headers=upgrade_headers(connection=b"keep-alive")),
                    _s(400, 200), "may", origin_absent=(b"upgrade",)))
    out.append(case("two Upgrade headers: websocket and h2c", f,
                    request(target=b"/ws", headers=[*upgrade_headers(), b"Upgrade: h2c"]),
                    _s(400, 101), "may"))
    out.append(case("Upgrade: websocket, h2c", f,
                    request(target=b"/ws", headers=[b"Upgrade: websocket, h2c",
                                                    *upgrade_headers()[1:]]),
                    _s(400, 101), "may"))
    # Valid variants: the genuine 101 passes, with the origin's Accept.
    out.append(case("Upgrade: WebSocket (token is case-insensitive)", f,
                    request(target=b"/ws", headers=[b"Upgrade: WebSocket",
                                                    *upgrade_headers()[1:]]),
                    _s(101), "must", ws_echo=b"hi"))
    out.append(case("Connection: keep-alive, Upgrade", f,
                    request(target=b"/ws",
                            headers=upgrade_headers(connection=b"keep-alive, Upgrade")),
                    _s(101), "must", ws_echo=b"hi"))
    out.append(case("data sent before the 101 is delivered after it", f,
                    request(target=b"/ws", headers=upgrade_headers()) + masked_text(b"early"),
                    _s(101), "must", ws_echo=b"early"))
    out.append(case("websocket upgrade forging the secret and client IP", f,
                    request(target=b"/ws", headers=[*upgrade_headers(),
                                                    b"X-CF-Secret: " + FORGED_SECRET,
                                                    b"X-Forwarded-For: " + FORGED_IP]),
                    _s(101), "must", forbidden=(FORGED_SECRET, FORGED_IP), ws_echo=b"hi"))
    out.append(case("websocket upgrade naming the secret in Connection", f,
                    request(target=b"/ws",
                            headers=upgrade_headers(connection=b"Upgrade, X-CF-Secret")),
                    _s(101), "must", ws_echo=b"hi"))
    # The origin misbehaves: never a 101 it did not give, never a tunnel after a refusal.
    out.append(case("origin answers 101 with a wrong Sec-WebSocket-Accept", f,
                    request(target=b"/_bad/accept", headers=upgrade_headers()),
                    _s(502), "must", max_origin_requests=1))
    out.append(case("origin answers 101 without Upgrade/Connection", f,
                    request(target=b"/_bad/noupgrade", headers=upgrade_headers()),
                    _s(502, 101), "must", max_origin_requests=1))
    for status in (200, 400, 403, 404, 426, 500):
        out.append(case(f"origin answers {status} to an upgrade: no tunnel opens", f,
                        [request(target=b"/_bad/%d" % status, headers=upgrade_headers()),
                         request(target=SMUGGLED)],
                        [_s(status), _s(200, CLOSED)], "must", gap=0.3))
    out.append(case("origin refuses, frames sent before the refusal are not tunnelled", f,
                    request(target=b"/_bad/403", headers=upgrade_headers())
                    + masked_text(b"frame-data"),
                    [_s(403), _s(400, CLOSED)], "must", max_origin_requests=1))
    return out


# ------------------------------------------------------------------ secret and identity

SECRET_CASINGS = (b"X-CF-Secret", b"x-cf-secret", b"X-CF-SECRET", b"x-Cf-SeCrEt",
                  b"X-Cf-Secret", b"X-CF-secret")


def secrets_and_identity() -> list[Case]:
    f = "secret"
    out: list[Case] = []
    for name in SECRET_CASINGS:
        forms = {
            "single": [name + b": " + FORGED_SECRET],
            "repeated": [name + b": " + FORGED_SECRET, name + b": " + FORGED_SECRET],
            "padded": [name + b":  \t" + FORGED_SECRET + b" \t"],
            "empty": [name + b":"],
            "listed in Connection": [b"Connection: " + name, name + b": " + FORGED_SECRET],
            "comma list": [name + b": " + FORGED_SECRET + b", " + FORGED_SECRET],
        }
        for label, hs in forms.items():
            out.append(case(f"client secret {name.decode()} {label}", f, request(headers=hs),
                            OK, "must", forbidden=(FORGED_SECRET,)))
    for conn in (b"X-CF-Secret", b"close, X-CF-Secret", b"keep-alive, x-cf-secret, X-Forwarded-For",
                 b"X-Request-Id, X-Real-IP, Host"):
        out.append(case(f"Connection: {conn.decode()} cannot remove what the edge adds", f,
                        request(headers=[b"Connection: " + conn]), OK, "must"))
    out.append(case("secret forged on a POST with a body", f,
                    request(b"POST", headers=[b"X-CF-Secret: " + FORGED_SECRET,
                                              b"Content-Length: 5"], body=b"abcde"),
                    OK, "must", forbidden=(FORGED_SECRET,)))
    out.append(case("secret header with a suffix is another header", f,
                    request(headers=[b"X-CF-Secret-2: harmless"]), OK, "must"))

    g = "identity"
    spoof = {
        b"X-Forwarded-For": FORGED_IP, b"X-Forwarded-Host": FORGED_HOST,
        b"X-Forwarded-Proto": b"gopher", b"X-Forwarded-Port": b"6666",
        b"X-Forwarded-Prefix": b"/evil-prefix", b"X-Real-IP": FORGED_IP,
        b"Forwarded": b"for=" + FORGED_IP + b";host=" + FORGED_HOST,
        b"CF-Connecting-IP": FORGED_IP, b"True-Client-IP": FORGED_IP,
        b"X-Client-IP": FORGED_IP,
    }
    for name, value in spoof.items():
        for casing in (name, name.lower(), name.upper()):
            out.append(case(f"spoofed {casing.decode()} (untrusted)", g,
                            request(headers=[casing + b": " + value]), OK, "must",
                            forbidden=(value,), origin_ip=b"127.0.0.1"))
        out.append(case(f"spoofed {name.decode()} twice", g,
                        request(headers=[name + b": " + value, name + b": " + FORGED_IP2]),
                        OK, "must", forbidden=(value, FORGED_IP2), origin_ip=b"127.0.0.1"))
    out.append(case("X-Forwarded-For list", g,
                    request(headers=[b"X-Forwarded-For: " + FORGED_IP + b", " + FORGED_IP2]),
                    OK, "must", forbidden=(FORGED_IP, FORGED_IP2), origin_ip=b"127.0.0.1"))
    for rid in (b"<script>alert(1)</script>", b"a" * 300, b"two words",
                b"\xc3\xa9t\xc3\xa9", b"id;drop"):
        out.append(case(f"malformed X-Request-Id {rid[:20]!r} is replaced", g,
                        request(headers=[b"X-Request-Id: " + rid]), OK, "must",
                        forbidden=(rid,)))

    t = "trusted"
    for casing in (b"CF-Connecting-IP", b"cf-connecting-ip", b"CF-CONNECTING-IP"):
        out.append(case(f"trusted {casing.decode()} becomes the client IP", t,
                        request(headers=[casing + b": " + FORGED_IP]), OK, "must",
                        config="trusted", origin_ip=FORGED_IP))
    out.append(case("trusted IPv6 client IP", t,
                    request(headers=[b"CF-Connecting-IP: 2001:db8::1"]), OK, "must",
                    config="trusted", origin_ip=b"2001:db8::1"))
    out.append(case("trusted header wins over a forged X-Forwarded-For", t,
                    request(headers=[b"CF-Connecting-IP: " + FORGED_IP,
                                     b"X-Forwarded-For: 9.9.9.9", b"X-Real-IP: 9.9.9.9"]),
                    OK, "must", config="trusted", origin_ip=FORGED_IP, forbidden=(b"9.9.9.9",)))
    for bad in (b"not-an-ip", b"6.6.6.6, 7.7.7.7", b"6.6.6.6:80", b"999.1.1.1", b""):
        out.append(case(f"trusted header malformed {bad!r}", t,
                        request(headers=[b"CF-Connecting-IP: " + bad]), _s(200, 400), "may",
                        config="trusted"))
    out.append(case("trusted header repeated with two values", t,
                    request(headers=[b"CF-Connecting-IP: " + FORGED_IP,
                                     b"CF-Connecting-IP: " + FORGED_IP2]),
                    _s(200, 400), "may", config="trusted"))
    out.append(case("trusted config still drops a forged secret", t,
                    request(headers=[b"CF-Connecting-IP: " + FORGED_IP,
                                     b"X-CF-Secret: " + FORGED_SECRET]), OK, "must",
                    config="trusted", forbidden=(FORGED_SECRET,)))
    out.append(case("trusted config without the header uses the peer", t, request(), OK,
                    "must", config="trusted", origin_ip=b"127.0.0.1"))
    return out


# ------------------------------------------------------------------ limits

# The corpus edge runs with these limits (see test_corpus.EDGE_SETTINGS).
MAX_BODY = 65536


def limits() -> list[Case]:
    f = "limits"
    out: list[Case] = []
    for size in (20_000, 70_000, 1_000_000):
        out.append(case(f"request line of {size} bytes", f,
                        request(target=b"/" + b"a" * size), _s(400, 414, 431), "none",
                        timeout=10.0))
    for size in (20_000, 100_000):
        out.append(case(f"one header of {size} bytes", f,
                        request(headers=[b"X-Big: " + b"v" * size]), _s(400, 431), "none",
                        timeout=10.0))
    for count in (101, 200, 1000):
        out.append(case(f"{count} headers", f,
                        request(headers=[b"X-H%d: v" % i for i in range(count)]),
                        _s(400, 431), "none"))
    out.append(case("90 headers pass", f,
                    request(headers=[b"X-H%d: v" % i for i in range(90)]), OK, "must"))
    out.append(case("8 KB of headers pass", f,
                    request(headers=[b"X-H%d: %s" % (i, b"v" * 100) for i in range(70)]),
                    OK, "must"))
    out.append(case("Content-Length above the body limit", f,
                    request(b"POST", headers=[b"Content-Length: %d" % (MAX_BODY + 1)]),
                    _s(413), "none"))
    out.append(case("Content-Length of a petabyte", f,
                    request(b"POST", headers=[b"Content-Length: 1000000000000000"]),
                    _s(413), "none"))
    chunk = b"8000\r\n" + b"z" * 0x8000 + b"\r\n"
    out.append(case("chunked body above the body limit", f,
                    request(b"POST", headers=[b"Transfer-Encoding: chunked"],
                            body=chunk * 3 + b"0\r\n\r\n"), _s(413), "may",
                    timeout=10.0))
    out.append(case("body at the limit passes", f,
                    request(b"POST", headers=[b"Content-Length: %d" % MAX_BODY],
                            body=b"q" * MAX_BODY), OK, "must"))
    return out


# ------------------------------------------------------------------ hostile origin

def origin_misbehaves() -> list[Case]:
    """The origin's answer is broken or hostile: the client gets a 502 (or a cleaned,
    well-formed answer), never the raw thing, never the secret, never a tunnel."""
    f = "origin"
    expect = {
        "cl-te": _s(200, 502), "two-cl": _s(502), "bad-te": _s(502),
        "unsolicited-101": _s(502), "secret-header": _s(200, 502),
        "early-hints": _s(200), "huge-header": _s(502), "garbage": _s(502),
        "nothing": _s(502), "bad-status": _s(502), "nul-header": _s(502), "http09": _s(502),
    }
    out = [case(f"origin answers {kind}", f, request(target=b"/_evil/" + kind.encode()),
                statuses, "must") for kind, statuses in expect.items()]
    out.append(case("origin answers a websocket upgrade with 101 to h2c", f,
                    request(target=b"/_bad/h2c", headers=upgrade_headers()), _s(502), "must"))
    return out


def all_cases() -> list[Case]:
    cases = smuggling() + upgrades() + secrets_and_identity() + limits() + origin_misbehaves()
    names = [c.name for c in cases]
    duplicates = {n for n in names if names.count(n) > 1}
    assert not duplicates, f"duplicate case names: {duplicates}"
    return cases
