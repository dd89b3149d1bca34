"""Hypothesis-generated requests on top of the hand-written corpus.

Whatever arrives, the edge must: stay up, answer (or close) within a few seconds,
never answer 5xx for the client's bad input (501 for an unknown transfer coding or
method and 505 for an unsupported version are the RFC's own answers), never put the
secret in a response, never send a 101 the origin did not send, and never let a
request reach the origin without exactly its own secret and X-Forwarded-For.

The examples are derandomized so CI is stable; set WSGATE_FUZZ_EXAMPLES=5000 and
WSGATE_FUZZ_RANDOM=1 to search further.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.hostile import figures
from tests.hostile.corpus import FORGED_IP, FORGED_SECRET
from tests.support import Edge, RecordingOrigin, edge_process
from tests.support.origin import SPECIAL_PATHS
from tests.support.wire import exchange

EXAMPLES = int(os.environ.get("WSGATE_FUZZ_EXAMPLES", "300"))
RANDOM = os.environ.get("WSGATE_FUZZ_RANDOM") == "1"
ALLOWED_5XX = {501, 505}

methods = st.sampled_from([b"GET", b"POST", b"PUT", b"HEAD", b"OPTIONS", b"DELETE", b"PATCH",
                           b"CONNECT", b"TRACE", b"PRI", b"get", b"G\x00T"]) | st.binary(
    min_size=0, max_size=8)
targets = st.sampled_from([b"/", b"/ws", b"*", b"http://x/y", b"/a?b=c", b"", b"//x",
                           b"/%00", b"/\xff"]) | st.binary(max_size=40).map(lambda b: b"/" + b)
versions = st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.2", b"HTTP/2.0", b"http/1.1",
                            b"HTTP/1.1 ", b"", b"HTTP/0.9", b"HTTP/1.1\x00"])
names = st.sampled_from([
    b"Host", b"Content-Length", b"Transfer-Encoding", b"Connection", b"Upgrade",
    b"X-CF-Secret", b"x-cf-secret", b"X-Forwarded-For", b"X-Real-IP", b"Forwarded",
    b"Sec-WebSocket-Key", b"Sec-WebSocket-Version", b"Expect", b"CF-Connecting-IP",
    b"X-Request-Id", b"Content-Type", b"Trailer", b"TE", b"Keep-Alive", b"Proxy-Connection",
]) | st.binary(min_size=0, max_size=16)
values = st.sampled_from([
    b"chunked", b"websocket", b"Upgrade", b"h2c", b"13", b"0", b"5", b"-1", b"close",
    b"keep-alive", b"100-continue", FORGED_SECRET, FORGED_IP, b"dGhlIHNhbXBsZSBub25jZQ==",
    b"X-CF-Secret", b"Upgrade, X-CF-Secret", b"gzip, chunked", b"5, 6", b"",
    b"app.example.com", b"1" * 30,
]) | st.binary(max_size=40)
endings = st.sampled_from([b"\r\n"] * 8 + [b"\n", b"\r", b"\r\r\n", b"\n\r"])
separators = st.sampled_from([b": ", b":", b" : ", b":\t", b"::"])


WS_HEADERS = [b"Upgrade: websocket", b"Connection: Upgrade",
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", b"Sec-WebSocket-Version: 13",
              b"Sec-WebSocket-Protocol: streamlit, x", b"Sec-WebSocket-Extensions: x"]


@st.composite
def chunked_bodies(draw: st.DrawFn) -> bytes:
    """A chunked body whose size lines are sometimes right, sometimes lies."""
    out = b""
    for data, lie, ext in draw(st.lists(st.tuples(st.binary(max_size=40), st.integers(-3, 3),
                                                  st.sampled_from([b"", b";a=b", b";", b" "])),
                                        max_size=4)):
        out += b"%x" % max(0, len(data) + lie) + ext + b"\r\n" + data + b"\r\n"
    return out + draw(st.sampled_from([b"0\r\n\r\n", b"0\r\nX-T: 1\r\n\r\n", b"0\r\n",
                                       b"", b"0\n\n"]))


@st.composite
def websocket_requests(draw: st.DrawFn) -> bytes:
    """A WebSocket handshake with headers dropped, duplicated or mutated, then bytes
    sent before any 101."""
    headers = []
    for header in WS_HEADERS:
        action = draw(st.sampled_from(["keep"] * 4 + ["drop", "twice", "mutate"]))
        if action == "keep":
            headers.append(header)
        elif action == "twice":
            headers += [header, header]
        elif action == "mutate":
            name = header.partition(b": ")[0]
            headers.append(name + b": " + draw(values))
    method = draw(st.sampled_from([b"GET"] * 5 + [b"POST", b"HEAD", b"CONNECT"]))
    version = draw(st.sampled_from([b"HTTP/1.1"] * 5 + [b"HTTP/1.0"]))
    head = method + b" /ws " + version + b"\r\nHost: app.example.com\r\n"
    return head + b"\r\n".join(headers) + b"\r\n\r\n" + draw(st.binary(max_size=64))


@st.composite
def raw_requests(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 4)) == 0:
        return draw(websocket_requests())
    eol = draw(endings)
    line = draw(methods) + b" " + draw(targets) + b" " + draw(versions)
    headers = []
    if draw(st.booleans()):
        headers.append(b"Host: app.example.com")
    for name, sep, value in draw(st.lists(st.tuples(names, separators, values), max_size=10)):
        headers.append(name + sep + value)
    if draw(st.booleans()):
        headers.append(b"Transfer-Encoding: chunked")
        body = draw(chunked_bodies())
    else:
        body = draw(st.binary(max_size=300))
    raw = eol.join([line, *headers]) + eol + eol + body
    if draw(st.integers(0, 9)) == 0:
        raw += raw  # pipelined copy
    return raw


@pytest.fixture(scope="module")
def origin() -> Iterator[RecordingOrigin]:
    server = RecordingOrigin().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def edge(origin: RecordingOrigin) -> Iterator[Edge]:
    settings_ = {"limits": {"max_body_bytes": 65536},
                 "timeouts": {"request_header": 3.0, "client_body": 3.0, "client_idle": 5.0}}
    with edge_process(f"http://127.0.0.1:{origin.port}", settings=settings_) as e:
        yield e
        assert e.alive(), "edge crashed"
        assert e.secret not in e.all_output(), "the secret appears in an edge log line"


@pytest.mark.slow
@settings(max_examples=EXAMPLES, deadline=None, derandomize=not RANDOM, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(raw=raw_requests(), cuts=st.lists(st.integers(1, 400), max_size=3))
def test_random_requests(raw: bytes, cuts: list[int], edge: Edge, origin: RecordingOrigin) -> None:
    figures.add("fuzz.requests")
    mark = origin.mark()
    # Half-close after sending, so an incomplete request ends in EOF, not in a wait
    # for more bytes: the edge must then answer or close promptly.
    # A HEAD answer has no body; the reader must know which requests were HEAD.
    methods = [b"HEAD", b"HEAD"] if raw.startswith(b"HEAD ") else None
    # Cut into pieces sent 5 ms apart: parser state must survive any TCP segmentation.
    points = sorted({c for c in cuts if c < len(raw)})
    pieces = [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]
    ex = exchange(edge.port, pieces, expect=1, timeout=8.0, shutdown_write=True,
                  methods=methods, gap=0.005)
    time.sleep(0.01)
    seen = origin.since(mark)
    secret = edge.secret.encode()
    problems = []
    if not edge.alive():
        figures.add("fuzz.crashes")
        problems.append("EDGE CRASHED")
    if not ex.responses and not ex.closed:
        problems.append("hang: neither an answer nor a close within 8 s")
    if ex.malformed:
        problems.append(f"malformed response: {ex.malformed}")
    if secret in ex.raw:
        figures.add("fuzz.secrets_leaked")
        problems.append("secret in the response")
    if ex.statuses.count(101) > seen.sent_101:
        figures.add("fuzz.fake_101")
        problems.append("fake 101")
    special = any(raw.split(b" ", 2)[1:2] and raw.split(b" ", 2)[1].startswith(p)
                  for p in SPECIAL_PATHS)
    for status in ex.statuses:
        if status >= 500 and status not in ALLOWED_5XX and not special:
            problems.append(f"{status} for a client's input")
    if seen.errors:
        problems.append(f"origin got malformed HTTP: {seen.errors}")
    for req in seen.requests:
        if req.values("x-cf-secret") != [secret]:
            problems.append(f"origin request without exactly the edge's secret: {req.headers}")
        if req.values("x-forwarded-for") != [b"127.0.0.1"]:
            problems.append(f"origin X-Forwarded-For {req.values('x-forwarded-for')}")
        if req.values("x-real-ip") not in ([], [b"127.0.0.1"]):
            problems.append(f"origin X-Real-IP {req.values('x-real-ip')}")
    if problems:
        figures.add("fuzz.failed")
    assert not problems, f"{problems}\nrequest: {raw[:400]!r}\nresponse: {ex.raw[:400]!r}"
