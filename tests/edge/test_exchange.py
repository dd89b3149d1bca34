"""The exchange's rules as pure functions: no socket, no clock, no edge process.

Each request check and response decision of `wsgate.edge.exchange` is exercised
here on parsed heads; the hostile corpus (tests/hostile) checks the same rules
through a real edge process.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsgate.config import load_config
from wsgate.edge import exchange as xc
from wsgate.edge.exchange import EdgeRules, Exchange, ProxyError
from wsgate.edge.http1 import BadMessage, parse_request_head, parse_response_head
from wsgate.policy import headers as hp

SECRET = "s" * 24
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


def rules(**settings: Any) -> EdgeRules:
    config = load_config(None, {"origin": "http://127.0.0.1:8501", **settings},
                         {"WSGATE_SECRET": SECRET})
    return EdgeRules.from_config(config)


RULES = rules()


def head(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("latin-1")


def plan(text: str, r: EdgeRules = RULES, peer: str = "192.0.2.1") -> tuple[xc.RequestPlan,
                                                                           Exchange]:
    req = parse_request_head(head(text))
    ex = Exchange(0.0, peer)
    xc.describe(req, ex, r, peer)
    return xc.check_request(req, ex, r), ex


def refusal(text: str, r: EdgeRules = RULES) -> ProxyError:
    with pytest.raises(ProxyError) as info:
        plan(text, r)
    return info.value


def head_of(p: xc.RequestPlan, r: EdgeRules = RULES) -> bytes:
    return b"".join(xc.upstream_head(p, r))


def upstream_headers(p: xc.RequestPlan) -> list[tuple[bytes, bytes]]:
    lines = head_of(p).split(b"\r\n")[1:-2]
    return [(n, v) for n, _, v in (line.partition(b": ") for line in lines)]


@pytest.mark.parametrize("version", [b"2.0", b"0.9", b"9.9", b"3.0"])
def test_a_major_version_other_than_1_gets_505(version: bytes) -> None:
    with pytest.raises(BadMessage) as info:
        parse_request_head(b"GET / HTTP/" + version)
    err = xc.bad_message_error(info.value)
    assert (err.status, err.error_class) == (505, "http-version")


def test_http_1_2_is_served_as_http_1() -> None:
    p, _ = plan("GET / HTTP/1.2\nHost: a")
    assert head_of(p).startswith(b"GET / HTTP/1.1\r\n")


@pytest.mark.parametrize(("text", "status"), [
    ("TRACE / HTTP/1.1\nHost: a", 405),
    ("CONNECT a:443 HTTP/1.1\nHost: a", 405),
    ("GET http://a/ HTTP/1.1\nHost: a", 400),
    ("GET / HTTP/1.1\nHost: a\nHost: b", 400),
    ("POST / HTTP/1.1\nHost: a\nContent-Length: 3\nTransfer-Encoding: chunked", 400),
    ("POST / HTTP/1.0\nTransfer-Encoding: chunked", 400),
    ("GET / HTTP/1.1\nHost: a\nUpgrade: websocket\nConnection: Upgrade", 400),
    ("POST / HTTP/1.1\nHost: a\nContent-Length: 999999999999", 413),
])
def test_requests_the_edge_refuses(text: str, status: int) -> None:
    assert refusal(text).status == status


def test_too_many_headers_get_431() -> None:
    many = "\n".join(f"X-H{i}: v" for i in range(101))
    err = refusal(f"GET / HTTP/1.1\nHost: a\n{many}")
    assert (err.status, err.error_class) == (431, "headers-too-large")


def test_no_route_gets_404_and_names_host_and_path() -> None:
    r = rules(origin=None, routes=[{"pattern": "app.example.com/*",
                                    "origin": "http://127.0.0.1:8501"}])
    err = refusal("GET /x?q=1 HTTP/1.1\nHost: other.example", r)
    assert (err.status, err.error_class) == (404, "no-route")
    assert err.message == "no route for other.example/x"


def test_upstream_head_rewrites_host_and_sets_the_edge_headers() -> None:
    p, ex = plan("POST /p?q HTTP/1.1\nHost: app.example\nX-CF-Secret: forged\n"
                 "X-Forwarded-For: 6.6.6.6\nX-Forwarded-Proto: https\nX-Real-IP: 6.6.6.6\n"
                 "Connection: keep-alive, X-Drop-Me\nX-Drop-Me: 1\nContent-Length: 2")
    sent = upstream_headers(p)
    assert head_of(p).startswith(b"POST /p?q HTTP/1.1\r\n")
    assert sent[0] == (b"host", b"127.0.0.1:8501")
    assert [v for n, v in sent if n == b"x-cf-secret"] == [SECRET.encode()]
    assert [v for n, v in sent if n == b"x-forwarded-for"] == [b"192.0.2.1"]
    assert [v for n, v in sent if n == b"x-real-ip"] == [b"192.0.2.1"]
    assert [v for n, v in sent if n == b"x-forwarded-proto"] == [b"http"]
    assert [v for n, v in sent if n == b"x-forwarded-host"] == [b"app.example"]
    assert [v for n, v in sent if n == b"content-length"] == [b"2"]
    assert not any(n in (b"x-drop-me", b"connection") for n, _ in sent)
    assert (p.framing, p.websocket, p.key) == ("length", False, b"")
    assert ex.scheme == b"http" and ex.req_id


def test_choosing_another_origin_changes_only_the_host_line() -> None:
    r = rules(origin=None, routes=[{"pattern": "*/*", "origins": [
        "http://127.0.0.1:8501", "http://127.0.0.2:8502"]}])
    p, _ = plan("GET /x HTTP/1.1\nHost: app.example\nAccept: */*", r)
    first = head_of(p, r)
    p.origin = r.routes[0].origins[1]
    second = head_of(p, r)
    assert b"\r\nhost: 127.0.0.1:8501\r\n" in first
    assert second == first.replace(b"host: 127.0.0.1:8501", b"host: 127.0.0.2:8502")


@pytest.mark.parametrize(("settings", "sent", "expected"), [
    ({}, "https", b"http"),
    ({"client_ip_header": "CF-Connecting-IP"}, "https", b"https"),
    ({"client_ip_header": "CF-Connecting-IP"}, "HTTPS", b"https"),
    ({"client_ip_header": "CF-Connecting-IP"}, "gopher", b"http"),
    ({"forwarded_proto": "https"}, "http", b"https"),
])
def test_forwarded_proto(settings: dict[str, Any], sent: str, expected: bytes) -> None:
    policy = hp.RequestPolicy.from_config(
        load_config(None, {"origin": "http://127.0.0.1:8501", **settings},
                    {"WSGATE_SECRET": SECRET}))
    assert hp.forwarded_proto(policy, [(b"x-forwarded-proto", sent.encode())]) == expected


def test_forwarded_proto_auto_on_a_tls_edge_is_https() -> None:
    policy = dataclasses.replace(RULES.request, served_scheme=b"https")
    assert hp.forwarded_proto(policy, [(b"x-forwarded-proto", b"http")]) == b"https"


def test_a_websocket_upgrade_keeps_its_handshake_headers() -> None:
    p, _ = plan(f"GET /_stcore/stream HTTP/1.1\nHost: a\nUpgrade: websocket\n"
                f"Connection: Upgrade\nSec-WebSocket-Key: {KEY.decode()}\n"
                "Sec-WebSocket-Version: 13\nSec-WebSocket-Protocol: streamlit, x")
    sent = upstream_headers(p)
    assert p.websocket and p.key == KEY
    assert (b"upgrade", b"websocket") in sent and (b"connection", b"Upgrade") in sent
    assert (b"sec-websocket-protocol", b"streamlit, x") in sent


def response(text: str, method: bytes = b"GET") -> Any:
    return parse_response_head(head(text), method)


def plan_for(resp_text: str, req_text: str = "GET /a.js HTTP/1.1\nHost: a", *,
             upgrade_refused: bool = False, draining: bool = False) -> xc.ResponsePlan:
    req = parse_request_head(head(req_text))
    ex = Exchange(0.0, "192.0.2.1")
    ex.req_id = b"rid"
    return xc.plan_response(response(resp_text, req.method), req, ex, RULES,
                            upgrade_refused=upgrade_refused, draining=draining)


def test_a_chunked_answer_stays_chunked_for_an_http_1_1_client() -> None:
    rp = plan_for("HTTP/1.1 200 OK\nTransfer-Encoding: chunked")
    assert (rp.framing, rp.reframe, rp.keep_client, rp.keep_upstream) == (
        "chunked", True, True, True)
    assert b"transfer-encoding: chunked\r\n" in rp.head


def test_an_http_1_0_client_gets_the_body_until_close() -> None:
    rp = plan_for("HTTP/1.1 200 OK\nTransfer-Encoding: chunked", "GET / HTTP/1.0")
    assert (rp.reframe, rp.keep_client) == (False, False)
    assert b"connection: close" in rp.head and b"transfer-encoding" not in rp.head


def test_a_close_delimited_answer_is_rechunked_and_not_pooled() -> None:
    rp = plan_for("HTTP/1.1 200 OK\nContent-Length: 5\nContent-Length: 5")
    assert (rp.framing, rp.reframe) == ("length", False)
    rp = plan_for("HTTP/1.0 200 OK")
    assert (rp.framing, rp.reframe, rp.keep_upstream) == ("close", True, False)


@pytest.mark.parametrize("status", [204, 304])
def test_bodiless_statuses(status: int) -> None:
    rp = plan_for(f"HTTP/1.1 {status} X")
    assert rp.framing == "none" and rp.keep_client


def test_head_and_zero_length_have_nothing_to_read() -> None:
    assert plan_for("HTTP/1.1 200 OK\nContent-Length: 9", "HEAD / HTTP/1.1\nHost: a"
                    ).framing == "none"
    assert plan_for("HTTP/1.1 200 OK\nContent-Length: 0").framing == "none"


@pytest.mark.parametrize(("req_text", "kwargs", "keep"), [
    ("GET / HTTP/1.1\nHost: a", {}, True),
    ("GET / HTTP/1.1\nHost: a\nConnection: close", {}, False),
    ("GET / HTTP/1.1\nHost: a", {"draining": True}, False),
    ("GET / HTTP/1.1\nHost: a", {"upgrade_refused": True}, False),
])
def test_client_keep_alive(req_text: str, kwargs: dict[str, bool], keep: bool) -> None:
    rp = plan_for("HTTP/1.1 200 OK\nContent-Length: 0", req_text, **kwargs)
    assert rp.keep_client is keep
    assert (b"connection: close" in rp.head) is not keep


def test_response_policy_marker_cache_strip_and_request_id() -> None:
    rp = plan_for("HTTP/1.1 200 OK\nContent-Length: 0\nCache-Control: no-store\n"
                  f"X-Cloud-Trace-Context: t\nX-CF-Secret: {SECRET}\nKeep-Alive: x")
    assert b"cache-control: public, max-age=86400\r\n" in rp.head
    assert b"no-store" not in rp.head and b"x-cloud-trace-context" not in rp.head
    assert SECRET.encode() not in rp.head and b"keep-alive" not in rp.head
    assert b"x-worker-proxy: Active\r\n" in rp.head and b"x-request-id: rid\r\n" in rp.head
    error_page = plan_for("HTTP/1.1 404 Not Found\nContent-Length: 0")
    assert b"cache-control" not in error_page.head


@pytest.mark.parametrize(("err", "kwargs", "expected"), [
    (xc.upstream_closed(), {"reused": True}, True),
    (xc.upstream_closed(), {"reused": False}, False),  # a fresh connection closing is real
    (xc.classify_connect_error(ConnectionRefusedError()), {}, True),
    (xc.upstream_closed(), {"reused": True, "method": b"POST"}, False),
    (xc.upstream_closed(), {"reused": True, "body_sent": 1}, False),
    (xc.upstream_closed(), {"reused": True, "answered": True}, False),
    (xc.upstream_closed(), {"reused": True, "retried": True}, False),
    (xc.bad_response(), {"reused": True}, False),
    (xc.upstream_timeout("slow"), {"reused": True}, False),
])
def test_retry_hook(err: ProxyError, kwargs: dict[str, Any], expected: bool) -> None:
    args: dict[str, Any] = {"method": b"GET", "body_sent": 0, "answered": False,
                            "reused": False, "retried": False, **kwargs}
    assert xc.may_retry(err, **args) is expected


@pytest.mark.parametrize(("exc", "status", "error_class"), [
    (TimeoutError(), 504, "connect-timeout"),
    (ConnectionRefusedError(), 502, "connect-refused"),
    (OSError(113, "No route to host"), 502, "connect-error"),
])
def test_connect_errors(exc: BaseException, status: int, error_class: str) -> None:
    err = xc.classify_connect_error(exc)
    assert (err.status, err.error_class, err.retryable) == (status, error_class, True)


def test_find_head() -> None:
    assert xc.find_head(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest", 100) == 23
    assert xc.find_head(b"GET / HTTP/1.1\r\nHo", 100) == -1
    with pytest.raises(BadMessage) as info:
        xc.find_head(b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 30, 100)
    assert info.value.status == 431
    with pytest.raises(BadMessage):
        xc.find_head(b"GET / HTTP/1.1\nHost: a\n", 100)
    with pytest.raises(ProxyError):
        xc.find_response_head(b"x" * (xc.MAX_RESPONSE_HEAD + 1))


@given(status=st.sampled_from([400, 404, 405, 408, 413, 429, 431, 502, 503, 504, 505]),
       message=st.text(max_size=40), head_only=st.booleans())
def test_error_responses(status: int, message: str, head_only: bool) -> None:
    ex = Exchange(0.0, "192.0.2.1")
    ex.req_id, ex.method = b"rid-1", b"HEAD" if head_only else b"GET"
    data = xc.error_response(ProxyError(status, "x", message), ex, RULES,
                             [(b"retry-after", b"3")])
    top, _, body = data.partition(b"\r\n\r\n")
    lines = top.split(b"\r\n")
    assert lines[0].startswith(b"HTTP/1.1 %d " % status)
    assert b"connection: close" in lines and b"x-request-id: rid-1" in lines
    assert b"x-worker-proxy: Active" in lines and b"retry-after: 3" in lines
    expected = (f"Edge Proxy Error: {message}" if status >= 500 else message).encode(
        "utf-8", "replace") + b"\n"
    assert body == (b"" if head_only else expected)
    assert b"content-length: %d" % len(expected) in lines


@pytest.mark.parametrize(("status", "error_class", "expected"), [
    (200, None, ("INFO", "request")),
    (503, None, ("WARNING", "request")),
    (400, "bad-request", ("WARNING", "Request refused")),
    (502, "connect-refused", ("ERROR", "Edge Proxy Error")),
])
def test_outcome(status: int, error_class: str | None, expected: tuple[str, str]) -> None:
    ex = Exchange(0.0, "192.0.2.1")
    ex.status, ex.error_class = status, error_class
    assert ex.outcome() == expected
