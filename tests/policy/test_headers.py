"""Header policy: table tests plus properties over arbitrary client headers."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from wsgate.config import load_config
from wsgate.policy import headers as hp

SECRET = "the-real-secret"


def policies(**cli: object) -> tuple[hp.RequestPolicy, hp.ResponsePolicy]:
    config = load_config(None, {"origin": "http://127.0.0.1:1", **cli}, {"WSGATE_SECRET": SECRET})
    return hp.RequestPolicy.from_config(config), hp.ResponsePolicy.from_config(config)


REQ, RESP = policies()
REQ_CF, _ = policies(client_ip_header="CF-Connecting-IP", public_host="app.example.com")


def build(policy: hp.RequestPolicy, headers: list[tuple[bytes, bytes]], *,
          websocket: bool = False, peer: str = "10.0.0.1") -> list[tuple[bytes, bytes]]:
    ip = hp.client_ip(headers, policy.trusted_ip_header, peer)
    return hp.upstream_headers(policy, headers, origin_host=b"origin:1", client_host=b"pub",
                               client_addr=ip, req_id=hp.request_id(headers),
                               websocket=websocket, proto=hp.forwarded_proto(policy, headers))


def values(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [v for n, v in headers if n == name]


def test_edge_headers_set_exactly_once() -> None:
    out = build(REQ, [(b"host", b"pub"), (b"accept", b"*/*")])
    assert values(out, b"host") == [b"origin:1"]
    assert values(out, b"x-forwarded-host") == [b"pub"]
    assert values(out, b"x-forwarded-proto") == [b"http"]  # auto: the scheme served
    assert values(out, b"x-forwarded-for") == [b"10.0.0.1"]
    assert values(out, b"x-real-ip") == [b"10.0.0.1"]
    assert values(out, b"x-cf-secret") == [SECRET.encode()]
    assert len(values(out, b"x-request-id")) == 1
    assert values(out, b"accept") == [b"*/*"]


def test_client_copies_and_connection_tricks_removed() -> None:
    out = build(REQ, [
        (b"x-cf-secret", b"forged"), (b"X-CF-SECRET".lower(), b"forged2"),
        (b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-host", b"evil"),
        (b"x-forwarded-port", b"1"), (b"forwarded", b"for=6.6.6.6"), (b"x-real-ip", b"6.6.6.6"),
        (b"cf-connecting-ip", b"6.6.6.6"), (b"connection", b"X-CF-Secret, x-forwarded-for, keep"),
        (b"keep", b"me-not"), (b"te", b"trailers"), (b"proxy-connection", b"keep-alive"),
        (b"upgrade", b"h2c"), (b"transfer-encoding", b"chunked"), (b"content-length", b"3"),
    ])
    names = [n for n, _ in out]
    assert b"keep" not in names and b"te" not in names and b"upgrade" not in names
    assert b"forwarded" not in names and b"cf-connecting-ip" not in names
    assert b"x-forwarded-port" not in names
    assert b"transfer-encoding" not in names and b"content-length" not in names  # caller frames
    assert values(out, b"x-cf-secret") == [SECRET.encode()]
    assert values(out, b"x-forwarded-for") == [b"10.0.0.1"]
    assert values(out, b"x-real-ip") == [b"10.0.0.1"]


def test_trusted_client_ip_header() -> None:
    out = build(REQ_CF, [(b"cf-connecting-ip", b"203.0.113.7"), (b"x-forwarded-for", b"6.6.6.6")])
    assert values(out, b"x-forwarded-for") == [b"203.0.113.7"]
    assert values(out, b"x-real-ip") == [b"203.0.113.7"]
    assert values(out, b"cf-connecting-ip") == [b"203.0.113.7"]
    assert values(out, b"x-forwarded-host") == [b"app.example.com"]
    # Invalid, scoped, repeated or missing → the TCP peer.
    for bad in ([(b"cf-connecting-ip", b"not-an-ip")],
                [(b"cf-connecting-ip", b"fe80::1%" + b"x" * 200)],
                [(b"cf-connecting-ip", b"1.2.3.4"), (b"cf-connecting-ip", b"5.6.7.8")], []):
        assert values(build(REQ_CF, bad), b"x-forwarded-for") == [b"10.0.0.1"]


def test_websocket_headers_kept_end_to_end() -> None:
    client = [(b"upgrade", b"websocket"), (b"connection", b"Upgrade, Sec-WebSocket-Protocol"),
              (b"sec-websocket-key", b"k"), (b"sec-websocket-version", b"13"),
              (b"sec-websocket-protocol", b"streamlit, tok"),
              (b"sec-websocket-extensions", b"permessage-deflate")]
    out = build(REQ, client, websocket=True)
    assert values(out, b"upgrade") == [b"websocket"]
    assert values(out, b"connection") == [b"Upgrade"]
    for name in (b"sec-websocket-key", b"sec-websocket-version", b"sec-websocket-protocol",
                 b"sec-websocket-extensions"):
        assert values(out, name) == values(client, name)


def test_request_id_kept_when_well_formed() -> None:
    assert hp.request_id([(b"x-request-id", b"abc-123")]) == b"abc-123"
    assert hp.request_id([(b"x-request-id", b"bad id!")]) != b"bad id!"
    assert hp.request_id([(b"x-request-id", b"a"), (b"x-request-id", b"b")]) not in (b"a", b"b")
    assert hp.valid_request_id(hp.new_request_id())


def test_response_policy() -> None:
    origin = [(b"content-type", b"text/javascript"), (b"cache-control", b"no-cache"),
              (b"x-cloud-trace-context", b"abc"), (b"connection", b"keep-alive, x-internal"),
              (b"x-internal", b"1"), (b"keep-alive", b"timeout=5"), (b"content-length", b"10"),
              (b"transfer-encoding", b"chunked")]
    out = hp.response_headers(RESP, origin, path=b"/static/app.JS", status=200)
    assert values(out, b"cache-control") == [b"public, max-age=86400"]
    assert values(out, b"x-worker-proxy") == [b"Active"]
    assert values(out, b"content-length") == [b"10"]
    names = [n for n, _ in out]
    for gone in (b"x-cloud-trace-context", b"connection", b"x-internal", b"keep-alive",
                 b"transfer-encoding"):
        assert gone not in names
    # Not a static path, or an error: the origin's cache header stays.
    assert values(hp.response_headers(RESP, origin, path=b"/page", status=200),
                  b"cache-control") == [b"no-cache"]
    assert values(hp.response_headers(RESP, origin, path=b"/a.js", status=404),
                  b"cache-control") == [b"no-cache"]


# Properties: whatever the client sends, the origin sees the edge's values only.
NAMES = st.sampled_from([
    b"x-cf-secret", b"x-forwarded-for", b"x-forwarded-host", b"x-forwarded-proto", b"x-real-ip",
    b"forwarded", b"cf-connecting-ip", b"connection", b"host", b"x-request-id", b"te",
    b"upgrade", b"keep-alive", b"accept", b"cookie", b"x-anything",
]) | st.from_regex(rb"\A[a-z][a-z0-9-]{0,20}\Z")
VALUES = st.from_regex(rb"\A[!-~]([ -~]{0,30}[!-~])?\Z") | st.sampled_from([
    b"X-CF-Secret", b"x-forwarded-for, x-real-ip", b"6.6.6.6", b"Upgrade, x-cf-secret"])
HEADERS = st.lists(st.tuples(NAMES, VALUES), max_size=25)


@settings(max_examples=200, deadline=None)
@given(HEADERS, st.booleans(), st.booleans())
def test_no_client_header_reaches_origin_as_secret_or_forwarding(
        headers: list[tuple[bytes, bytes]], websocket: bool, trusted: bool) -> None:
    policy = REQ_CF if trusted else REQ
    out = build(policy, headers, websocket=websocket)
    assert values(out, b"x-cf-secret") == [SECRET.encode()]
    ip = hp.client_ip(headers, policy.trusted_ip_header, "10.0.0.1")
    assert values(out, b"x-forwarded-for") == [ip.encode()]
    assert values(out, b"x-real-ip") == [ip.encode()]
    assert ip == "10.0.0.1" or trusted
    assert len(values(out, b"host")) == 1 and len(values(out, b"x-request-id")) == 1
    assert len(values(out, b"x-forwarded-host")) == 1
    assert b"forwarded" not in [n for n, _ in out]
    named = hp.connection_tokens(headers)
    hop = set(hp.HOP_BY_HOP) - ({b"upgrade", b"connection"} if websocket else set())
    edge_set = {b"host", b"x-forwarded-host", b"x-forwarded-proto", b"x-forwarded-for",
                b"x-real-ip", b"x-cf-secret", b"x-request-id", b"upgrade", b"connection"}
    for name, value in out:
        if name in edge_set:
            continue
        # Hop-by-hop and Connection-named client headers never pass (edge's own aside).
        if name in hop:
            raise AssertionError(f"hop-by-hop {name!r} forwarded")
        if name in named and (name, value) in headers and not name.startswith(b"sec-websocket-"):
            raise AssertionError(f"{name!r} named in Connection forwarded")
