"""`wsgate run` against a real Streamlit server in a subprocess."""

from __future__ import annotations

import asyncio
import json
import re

import httpx
import pytest

from tests.guard.fixtures import (
    SECRET_HEADER,
    SECRETS,
    GuardedStreamlit,
    guarded_streamlit,
    http_get,
)
from wsgate.doctor.streamlit_session import SessionResult, run_session

pytestmark = [pytest.mark.streamlit, pytest.mark.slow]
_ = guarded_streamlit  # the module-scoped fixture, imported for pytest
GUARD_TEXT = "Direct access refused"


def session(guarded: GuardedStreamlit, headers: dict[str, str] | None = None,
            origin: str | None = None) -> SessionResult:
    return asyncio.run(run_session(guarded.ws_url, headers=headers, origin=origin,
                                   timeout=30.0))


def rendered(result: SessionResult, key: str) -> object:
    """The JSON value the test app printed as `key=<json>`."""
    for text in result.texts:
        if text.startswith(key + "="):
            return json.loads(text[len(key) + 1:])
    raise AssertionError(f"{key} not rendered; texts: {result.texts}")


def static_asset(guarded: GuardedStreamlit) -> str:
    status, page, _ = http_get(guarded.url("/"), guarded.secret_headers)
    assert status == 200
    found = re.search(r'(static/js/[^"]+\.js)', page)
    assert found, page[:500]
    return "/" + found.group(1)


@pytest.mark.parametrize("path,method", [
    ("/", "GET"),
    ("/_stcore/host-config", "GET"),
    ("/_stcore/metrics", "GET"),
    ("/media/0123456789abcdef.png", "GET"),
    ("/component/some.component/index.html", "GET"),
    ("/_stcore/upload_file/session-id/file-id", "PUT"),
    ("/x/_stcore/health", "GET"),
    ("/_stcore/health/", "GET"),
    ("/_wsgate/echo", "GET"),
])
def test_every_route_refused_without_secret(guarded_streamlit: GuardedStreamlit, path: str,
                                            method: str) -> None:
    status, body, headers = http_get(guarded_streamlit.url(path), method=method,
                                     data=b"x" if method == "PUT" else None)
    assert (status, body.startswith(GUARD_TEXT)) == (403, True)
    assert headers["content-type"].startswith("text/plain")


def test_static_asset_needs_secret(guarded_streamlit: GuardedStreamlit) -> None:
    asset = static_asset(guarded_streamlit)
    assert http_get(guarded_streamlit.url(asset))[0] == 403
    assert http_get(guarded_streamlit.url(asset), guarded_streamlit.secret_headers)[0] == 200


def test_with_secret_streamlit_answers_itself(guarded_streamlit: GuardedStreamlit) -> None:
    # Past the guard, Streamlit's own answers (its XSRF check, its 404) come back.
    status, body, _ = http_get(guarded_streamlit.url("/_stcore/upload_file/s/f"),
                               guarded_streamlit.secret_headers, method="PUT", data=b"x")
    assert status in (400, 403, 404) and GUARD_TEXT not in body
    status, body, _ = http_get(guarded_streamlit.url("/_stcore/host-config"),
                               guarded_streamlit.secret_headers)
    assert status == 200 and "allowedOrigins" in body


def test_health_is_open(guarded_streamlit: GuardedStreamlit) -> None:
    assert http_get(guarded_streamlit.url("/_stcore/health"))[:2] == (200, "ok")


def test_stream_upgrade_refused_without_secret(guarded_streamlit: GuardedStreamlit) -> None:
    result = session(guarded_streamlit)
    assert (result.ok, result.status, result.subprotocol) == (False, 403, None)
    assert result.messages == 0
    wrong = session(guarded_streamlit, {SECRET_HEADER: "not-the-secret"})
    assert (wrong.ok, wrong.status) == (False, 403)


def test_page_and_session_with_secret(guarded_streamlit: GuardedStreamlit) -> None:
    status, page, _ = http_get(guarded_streamlit.url("/"), guarded_streamlit.secret_headers)
    assert status == 200 and '<div id="root"' in page
    result = session(guarded_streamlit, guarded_streamlit.secret_headers)
    assert result.ok, result
    assert (result.status, result.subprotocol, result.script_finished) == (101, "streamlit", True)
    assert "app rendered" in result.texts
    assert result.exceptions == ()


def test_app_never_sees_the_secret(guarded_streamlit: GuardedStreamlit) -> None:
    result = session(guarded_streamlit, {**guarded_streamlit.secret_headers,
                                         "X-Other": "kept"})
    headers = rendered(result, "headers")
    assert isinstance(headers, list)
    names = {name for name, _ in headers}
    assert SECRET_HEADER.lower() not in names and "x-other" in names
    assert not any(secret in json.dumps(headers) for secret in SECRETS)


def test_forwarded_client_only_after_the_check(guarded_streamlit: GuardedStreamlit) -> None:
    forwarded = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
    result = session(guarded_streamlit, {**guarded_streamlit.secret_headers, **forwarded})
    assert rendered(result, "ip_address") == "203.0.113.7"
    # Without forwarding headers the peer is loopback, which Streamlit reports as None.
    plain = session(guarded_streamlit, guarded_streamlit.secret_headers)
    assert rendered(plain, "ip_address") is None
    # Refused requests never get their forwarded headers trusted: the refusal is
    # logged with the real peer, not the claimed one.
    refused = session(guarded_streamlit, {"X-Forwarded-For": "198.51.100.99",
                                          "X-Request-Id": "spoof-check-1"})
    assert refused.status == 403
    events = [e for e in guarded_streamlit.events() if e.get("requestId") == "spoof-check-1"]
    assert len(events) == 1
    assert events[0]["httpRequest"]["remoteIp"] == "127.0.0.1"


def test_rotation_two_secrets_pass_third_fails(guarded_streamlit: GuardedStreamlit) -> None:
    for secret in SECRETS:
        assert session(guarded_streamlit, {SECRET_HEADER: secret}).ok
        assert http_get(guarded_streamlit.url("/"), {SECRET_HEADER: secret})[0] == 200
    third = "guard-test-secret-third-000000000"
    assert session(guarded_streamlit, {SECRET_HEADER: third}).status == 403
    assert http_get(guarded_streamlit.url("/"), {SECRET_HEADER: third})[0] == 403


def test_echo_reports_what_the_origin_received(guarded_streamlit: GuardedStreamlit) -> None:
    status, body, _ = http_get(guarded_streamlit.url("/_wsgate/echo"), {
        **guarded_streamlit.secret_headers, "X-Forwarded-Proto": "https",
        "X-Forwarded-For": "203.0.113.8", "X-Forwarded-Host": "app.example.com",
        "X-Request-Id": "echo-req-1"})
    assert status == 200
    echo = json.loads(body)
    assert echo["scheme"] == "https" and echo["client"] == "203.0.113.8"
    assert echo["host"] == f"127.0.0.1:{guarded_streamlit.port}"
    assert echo["path"] == "/_wsgate/echo" and echo["requestId"] == "echo-req-1"
    assert echo["forwarded"] == {"proto": "https", "host": "app.example.com",
                                 "for": "203.0.113.8", "realIp": None}
    assert [SECRET_HEADER.lower(), SECRETS[0]] not in echo["headers"]
    assert ["x-forwarded-host", "app.example.com"] in echo["headers"]
    assert SECRETS[0] not in body


def test_refusals_are_logged_without_the_value(guarded_streamlit: GuardedStreamlit) -> None:
    http_get(guarded_streamlit.url("/_stcore/host-config"),
             {SECRET_HEADER: "wrong-value-xyz", "X-Request-Id": "log-check-mismatch"})
    http_get(guarded_streamlit.url("/"), {"X-Request-Id": "log-check-missing"})
    repeated = httpx.get(guarded_streamlit.url("/"), headers=[
        (SECRET_HEADER, SECRETS[0]), (SECRET_HEADER, SECRETS[0]),
        ("X-Request-Id", "log-check-repeated")])
    assert repeated.status_code == 403
    session(guarded_streamlit, {"X-Request-Id": "log-check-ws"})
    events = {e.get("requestId"): e for e in guarded_streamlit.events()}
    mismatch = events["log-check-mismatch"]
    assert mismatch["severity"] == "WARNING" and mismatch["message"] == GUARD_TEXT
    assert mismatch["source"] == "origin" and mismatch["reason"] == "mismatch"
    assert mismatch["isWebSocket"] is False
    assert mismatch["httpRequest"]["status"] == 403
    assert mismatch["httpRequest"]["requestUrl"] == "/_stcore/host-config"
    assert events["log-check-missing"]["reason"] == "missing"
    assert events["log-check-repeated"]["reason"] == "repeated"
    assert events["log-check-ws"]["isWebSocket"] is True
    log_text = guarded_streamlit.log_file.read_text()
    assert "wrong-value-xyz" not in log_text
    assert not any(secret in log_text for secret in SECRETS)
    assert not any(secret in guarded_streamlit.server.output() for secret in SECRETS)
