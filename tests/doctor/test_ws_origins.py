"""The doctor against real `websockets` servers that misbehave at the WebSocket layer."""

from __future__ import annotations

import pytest

from tests.doctor.helpers import (
    GOOD_WS_LINES,
    diagnosis,
    diagnosis_ids,
    explain,
    nginx,
    nginx_available,
    run_doctor,
    statuses,
    ws_origin,
)
from tests.support import LOOPBACK


def test_origin_that_does_not_select_the_subprotocol() -> None:
    with ws_origin("no-subprotocol") as origin:
        code, report = run_doctor(f"http://{LOOPBACK}:{origin.port}/")
    assert code == 1, explain(report)
    assert diagnosis_ids(report) == ["subprotocol-dropped"]
    assert "streamlit" in diagnosis(report, "subprotocol-dropped")["summary"]
    assert statuses(report)["session"] == "skip"


def test_generic_mode_offers_only_what_it_is_told() -> None:
    with ws_origin("no-subprotocol") as origin:
        code, report = run_doctor(f"http://{LOOPBACK}:{origin.port}/", "--generic",
                                  "--path", "/ws")
    assert code == 0, explain(report)
    assert "session" not in statuses(report)
    assert "health" not in statuses(report)
    with ws_origin("no-subprotocol") as origin:
        code, report = run_doctor(f"http://{LOOPBACK}:{origin.port}/", "--generic",
                                  "--path", "/ws", "--subprotocol", "chat")
    assert code == 1
    assert diagnosis_ids(report) == ["subprotocol-dropped"]


def test_app_that_closes_right_after_open() -> None:
    with ws_origin("close-at-once") as origin:
        code, report = run_doctor(f"http://{LOOPBACK}:{origin.port}/")
    assert code == 1, explain(report)
    assert diagnosis_ids(report) == ["closed-after-open"]
    assert "1011" in diagnosis(report, "closed-after-open")["evidence"]


@pytest.mark.nginx
@pytest.mark.skipif(not nginx_available(), reason="Debian nginx is not installed")
def test_silent_app_behind_nginx_never_renders() -> None:
    with ws_origin("silent") as origin, nginx(
            f"proxy_pass http://{LOOPBACK}:{origin.port};{GOOD_WS_LINES}") as port:
        code, report = run_doctor(f"http://{LOOPBACK}:{port}/", "--timeout", "1")
    assert code == 1, explain(report)
    assert diagnosis_ids(report) == ["app-not-rendering"]
