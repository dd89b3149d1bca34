"""OriginGuard around a FastAPI app under a real uvicorn, HTTP and WebSocket."""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.support import LOOPBACK, ServerProcess, free_port

SECRETS = ("asgi-secret-current-0123456789", "asgi-secret-previous-012345678")
PUBLIC_URL = "https://app.example.com"
BURST = 3


@dataclass
class Guarded:
    server: ServerProcess
    port: int
    log: Path

    def url(self, path: str) -> str:
        return f"http://{LOOPBACK}:{self.port}{path}"

    def ws(self, path: str) -> str:
        return f"ws://{LOOPBACK}:{self.port}{path}"

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]


def start_guarded(burst: int, window_s: float) -> Guarded:
    port = free_port()
    log = Path(tempfile.mkstemp(suffix=".jsonl")[1])
    # --no-proxy-headers: the guard, not uvicorn's peer-IP rule, decides whom to trust.
    server = ServerProcess(
        [sys.executable, "-m", "uvicorn", "tests.guard.asgi_app:app", "--host", LOOPBACK,
         "--port", str(port), "--no-proxy-headers", "--ws", "websockets-sansio"],
        port, {"GUARD_TEST_SECRETS": ",".join(SECRETS), "GUARD_TEST_LOG": str(log),
               "GUARD_TEST_BURST": str(burst), "GUARD_TEST_WINDOW": str(window_s),
               "GUARD_TEST_PUBLIC_URL": PUBLIC_URL})
    server.start(60)
    return Guarded(server, port, log)


@pytest.fixture(scope="module")
def guarded() -> Iterator[Guarded]:
    started = start_guarded(BURST, 2.0)
    server, log = started.server, started.log
    try:
        yield started
    finally:
        server.stop()
        log.unlink(missing_ok=True)


async def ws_status(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    try:
        async with connect(url, additional_headers=headers or {}, open_timeout=10) as ws:
            return 101, json.loads(await asyncio.wait_for(ws.recv(), 10))
    except InvalidStatus as exc:
        return exc.response.status_code, exc.response.body


def test_http_refused_without_secret(guarded: Guarded) -> None:
    response = httpx.get(guarded.url("/hello"))
    assert response.status_code == 403
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text.startswith("Direct access refused") and PUBLIC_URL in response.text
    repeated = httpx.get(guarded.url("/hello"),
                         headers=[("X-CF-Secret", SECRETS[0]), ("X-CF-Secret", SECRETS[0])])
    assert repeated.status_code == 403 and "more than once" in repeated.text


def test_a_different_secret_is_told_apart_from_none(guarded: Guarded) -> None:
    # A request that came through an edge holding another secret: the page says the
    # secrets differ, and nothing of either value.
    wrong = SECRETS[0][:-1] + "X"  # one character off
    response = httpx.get(guarded.url("/hello"), headers={"X-CF-Secret": wrong})
    assert response.status_code == 403
    assert "different secrets" in response.text
    assert "Direct access refused" not in response.text
    assert wrong not in response.text and not any(s in response.text for s in SECRETS)


def test_http_passes_with_either_secret(guarded: Guarded) -> None:
    for secret in SECRETS:
        response = httpx.get(guarded.url("/hello"), headers={
            "x-cf-secret": secret, "X-Forwarded-Proto": "https",
            "X-Forwarded-For": "203.0.113.5"})
        assert response.status_code == 200
        body = response.json()
        assert (body["scheme"], body["client"]) == ("https", "203.0.113.5")
        assert "x-cf-secret" not in dict(body["headers"])


def test_open_path_is_exact(guarded: Guarded) -> None:
    assert httpx.get(guarded.url("/open")).status_code == 404  # passed to the app
    assert httpx.get(guarded.url("/open/")).status_code == 403
    assert httpx.get(guarded.url("/x/open")).status_code == 403


def test_websocket_refused_before_accept(guarded: Guarded) -> None:
    status, _ = asyncio.run(ws_status(guarded.ws("/ws")))
    assert status == 403
    status, _ = asyncio.run(ws_status(guarded.ws("/ws"), {"X-CF-Secret": "wrong"}))
    assert status == 403


def test_websocket_passes_with_secret(guarded: Guarded) -> None:
    status, body = asyncio.run(ws_status(guarded.ws("/ws"), {
        "X-CF-Secret": SECRETS[1], "X-Forwarded-Proto": "https",
        "X-Real-IP": "198.51.100.4"}))
    assert status == 101
    assert (body["scheme"], body["client"]) == ("wss", "198.51.100.4")
    assert "x-cf-secret" not in dict(body["headers"])


def flood_events(guarded: Guarded, start: int) -> list[dict[str, Any]]:
    # Summaries of earlier tests' refusals may land in the same stretch of log.
    return [e for e in guarded.events()[start:]
            if e.get("httpRequest", {}).get("requestUrl") == "/flood"]


@pytest.mark.slow
def test_flood_is_summarised_per_address(guarded: Guarded) -> None:
    time.sleep(2.1)  # let earlier refusals' window (2 s) end
    before = len(guarded.events())
    with httpx.Client() as client:
        for i in range(BURST + 20):
            assert client.get(guarded.url("/flood"),
                              headers={"X-Request-Id": f"flood-{i}"}).status_code == 403
    during = flood_events(guarded, before)
    individual = [e for e in during if "refusedCount" not in e]
    # Each window logs at most BURST one by one (a slow machine may span two).
    assert len(individual) < BURST + 20
    time.sleep(2.1)
    # Any request after the window (even one that passes) emits the summary.
    httpx.get(guarded.url("/hello"), headers={"X-CF-Secret": SECRETS[0]})
    after = flood_events(guarded, before)
    logged = [e for e in after if "refusedCount" not in e]
    summaries = [e for e in after if "refusedCount" in e]
    assert summaries, after
    assert len(logged) + sum(e["refusedCount"] for e in summaries) == BURST + 20
    for event in summaries:
        assert event["severity"] == "WARNING" and event["message"] == "Direct access refused"
        assert event["httpRequest"]["remoteIp"] == "127.0.0.1"
    assert not any(secret in guarded.log.read_text() for secret in SECRETS)


def test_pending_summary_is_written_at_shutdown() -> None:
    started = start_guarded(burst=1, window_s=3600.0)
    try:
        with httpx.Client() as client:
            for _ in range(5):
                assert client.get(started.url("/x")).status_code == 403
    finally:
        started.server.stop()  # SIGTERM: uvicorn runs the lifespan shutdown
    events = started.events()
    started.log.unlink(missing_ok=True)
    assert [e.get("refusedCount") for e in events] == [None, 4]


def test_access_log_one_event_per_request_and_session(guarded: Guarded) -> None:
    headers = {"X-CF-Secret": SECRETS[0], "X-Real-IP": "203.0.113.9",
               "X-Request-Id": "access-http-1", "User-Agent": "access-test"}
    response = httpx.get(guarded.url("/hello"), headers=headers)
    assert response.status_code == 200
    status, _ = asyncio.run(ws_status(guarded.ws("/ws"), {
        "X-CF-Secret": SECRETS[1], "X-Request-Id": "access-ws-1"}))
    assert status == 101
    events = {e.get("requestId"): e for e in guarded.events()}
    http = events["access-http-1"]
    assert (http["message"], http["severity"], http["source"]) == ("request", "INFO", "origin")
    assert http["isWebSocket"] is False
    assert http["httpRequest"]["status"] == 200
    assert http["httpRequest"]["requestUrl"] == "/hello"
    assert http["httpRequest"]["remoteIp"] == "203.0.113.9"  # the edge's view, trusted
    assert http["httpRequest"]["userAgent"] == "access-test"
    assert http["bytesToClient"] == len(response.content)
    ws = events["access-ws-1"]
    assert (ws["message"], ws["isWebSocket"]) == ("websocket session", True)
    assert ws["httpRequest"]["status"] == 101
    assert (ws["closedBy"], ws["closeCode"]) == ("origin", 1000)  # the app closed it
    assert ws["bytesToClient"] > 0 and isinstance(ws["wsDurationMs"], int)
    assert not any(secret in guarded.log.read_text() for secret in SECRETS)


def test_access_log_names_an_app_error_by_class_only(guarded: Guarded) -> None:
    response = httpx.get(guarded.url("/boom"), headers={"X-CF-Secret": SECRETS[0],
                                                         "X-Request-Id": "access-boom-1"})
    assert response.status_code == 500
    event = next(e for e in guarded.events() if e.get("requestId") == "access-boom-1")
    assert (event["severity"], event["errorClass"]) == ("ERROR", "app-error")
    assert event["error"] == "RuntimeError raised by the app"  # not the message
    assert event["httpRequest"]["status"] == 500
