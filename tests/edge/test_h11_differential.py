"""The edge's request parser against h11's, on generated request heads.

The edge left h11 for speed (design.md), not to read requests differently: where
h11 accepts a request, the edge accepts it with the same method, target and body
framing; where h11 refuses one, the edge refuses it too. The only exceptions are
the edge's documented stricter rules, each named in `edge_stricter` with its reason.
"""

from __future__ import annotations

import dataclasses

import h11
from hypothesis import given, settings
from hypothesis import strategies as st

from wsgate.config import load_config
from wsgate.edge import exchange as xc
from wsgate.edge.exchange import EdgeRules, Exchange, ProxyError
from wsgate.edge.http1 import BadMessage, parse_request_head

CONFIG = load_config(None, {"origin": "http://127.0.0.1:8501"}, {"WSGATE_SECRET": "s" * 24})
# Limits far above the generated heads: only the parse and the checks decide.
RULES = dataclasses.replace(EdgeRules.from_config(CONFIG), max_header_count=1000,
                            max_header_bytes=1 << 20, max_body_bytes=1 << 30)

HEADER_LINES = [
    b"Host: a", b"Host: a", b"Host: a", b"Host: a", b"X-Ok: 1", b"X-Ok: 1", b"Host: b",
    b"Content-Length: 3", b"Content-Length: 3, 3",
    b"Content-Length: 3,4", b"Content-Length: 03", b"Content-Length: -1",
    b"Content-Length: 3 ", b"Content-Length:3", b"Content-Length: x",
    b"Transfer-Encoding: chunked", b"Transfer-Encoding: Chunked",
    b"Transfer-Encoding: gzip, chunked", b"Transfer-Encoding: identity",
    b"X-A: a b", b"X-A:  spaced  ", b"X-A:", b"X-A: \t tab", b"Bad Name: v",
    b"X-A: nul\x00", b"X-A: \x7f", b"X-A: caf\xc3\xa9", b"Connection: close",
    b" folded", b"\tfolded", b"X-B: a\rb", b":empty-name",
]
# Valid parts more often than broken ones, so both answers are well represented.
REQUEST_LINES = st.tuples(
    st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE"] * 3 + [b"get", b"G@T", b""]),
    st.sampled_from([b"/", b"/a?b=c", b"/%20x"] * 3 + [b"/\x7f", b"/a b", b""]),
    st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"] * 4 + [b"HTTP/1.1 ", b"http/1.1", b"HTTP/11"]),
)


def h11_reads(data: bytes) -> tuple[bytes, bytes, str] | None:
    """(method, target, framing) as h11 reads the head, or None when it refuses."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    try:
        event = conn.next_event()
    except h11.RemoteProtocolError:
        return None
    if not isinstance(event, h11.Request):
        return None
    names = {n for n, _ in event.headers}
    framing = ("chunked" if b"transfer-encoding" in names
               else "length" if b"content-length" in names else "none")
    return event.method, event.target, framing


def edge_reads(data: bytes) -> tuple[bytes, bytes, str] | None:
    try:
        end = xc.find_head(data, RULES.max_header_bytes)
        assert end >= 0, "the generated head is complete"
        req = parse_request_head(data[:end])
        ex = Exchange(0.0, "192.0.2.1")
        xc.describe(req, ex, RULES, "192.0.2.1")
        plan = xc.check_request(req, ex, RULES)
    except (BadMessage, ProxyError):
        return None
    return req.method, req.target, plan.framing


def edge_stricter(data: bytes) -> str:
    """Why the edge may refuse what h11 accepts ("" when it must not)."""
    lines = data.split(b"\r\n")
    if any(line[:1] in (b" ", b"\t") for line in lines[1:]):
        return "obs-fold continuation lines are refused (RFC 9112 §5.2 allows it)"
    if b"\n" in data.replace(b"\r\n", b"") or b"\r" in data.replace(b"\r\n", b""):
        return "a bare CR or LF is refused (RFC 9112 §2.2 allows it)"
    if sum(1 for line in lines if line.lower().startswith(b"host:")) > 1:
        return "two Host headers are refused (RFC 9112 §3.2: a server MUST refuse them)"
    if lines[0].split(b" ")[:2][-1:] == [b"/\x7f"]:
        return "a target with DEL is refused (only visible ASCII, RFC 9112 §3.2)"
    names = [line.split(b":", 1)[0].lower() for line in lines[1:]]
    if b"content-length" in names and b"transfer-encoding" in names:
        return ("Content-Length with Transfer-Encoding is refused, not resolved "
                "(RFC 9112 §6.1 allows either; refusing leaves nothing to smuggle)")
    version = lines[0].rsplit(b" ", 1)[-1]
    if version == b"HTTP/1.0" and any(line.lower().startswith(b"transfer-encoding:")
                                      for line in lines):
        return "Transfer-Encoding in HTTP/1.0 is refused (RFC 9112 §6.1)"
    return ""


@settings(max_examples=400, deadline=None)
@given(request_line=REQUEST_LINES,
       headers=st.lists(st.sampled_from(HEADER_LINES), max_size=5))
def test_edge_reads_requests_as_h11_does(request_line: tuple[bytes, bytes, bytes],
                                         headers: list[bytes]) -> None:
    data = b" ".join(request_line) + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n"
    theirs, ours = h11_reads(data), edge_reads(data)
    if theirs is None:
        assert ours is None, f"the edge accepts what h11 refuses: {data!r}"
    elif ours is None:
        assert edge_stricter(data), f"the edge refuses what h11 accepts: {data!r}"
    else:
        assert ours == theirs, data
