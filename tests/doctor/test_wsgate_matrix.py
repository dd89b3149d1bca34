"""The doctor against the wsgate edge and `wsgate run` (the guard), healthy and broken."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager

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
)
from tests.guard.fixtures import SECRETS, GuardedStreamlit, start_guarded_streamlit
from tests.support import LOOPBACK, ServerProcess, free_port, running, wsgate_command

pytestmark = pytest.mark.streamlit
SECRET = SECRETS[0]


@pytest.fixture(scope="module")
def guarded() -> Iterator[GuardedStreamlit]:
    with start_guarded_streamlit() as server:
        yield server


def edge(origin_port: int, secret: str, *extra: str,
         ) -> AbstractContextManager[ServerProcess]:
    port = free_port()
    return running(wsgate_command("edge", "--origin", f"http://{LOOPBACK}:{origin_port}",
                                  "--listen", f"{LOOPBACK}:{port}", *extra),
                   port, env={"WSGATE_SECRET": secret}, timeout=30)


def test_healthy_edge_and_guard(guarded: GuardedStreamlit) -> None:
    with edge(guarded.port, SECRET, "--forwarded-proto", "http") as proxy:
        code, report = run_doctor(f"http://{LOOPBACK}:{proxy.port}/",
                                  "--origin", guarded.base_url, env={"WSGATE_SECRET": SECRET})
    assert code == 0, explain(report)
    assert report["ok"] is True
    assert report["diagnoses"] == []
    checks = statuses(report)
    expected_pass = ("dns", "tcp", "http", "health", "host-config", "upgrade", "upgrade-origin",
                     "session", "forwarded", "origin-http-no-secret",
                     "origin-upgrade-no-secret", "origin-with-secret")
    assert {c: checks[c] for c in expected_pass} == dict.fromkeys(expected_pass, "pass")
    # The secret is never shown, whatever the outcome.
    assert SECRET not in explain(report)


def test_edge_with_a_different_secret(guarded: GuardedStreamlit) -> None:
    with edge(guarded.port, "not-the-origin-secret", "--forwarded-proto", "http") as proxy:
        code, report = run_doctor(f"http://{LOOPBACK}:{proxy.port}/",
                                  "--origin", guarded.base_url, env={"WSGATE_SECRET": SECRET})
    assert code == 1
    assert diagnosis_ids(report)[0] == "secret-rejected"
    found = diagnosis(report, "secret-rejected")
    assert "403" in found["summary"]
    assert "the edge sends another" in found["evidence"]
    assert SECRET not in explain(report)
    assert "not-the-origin-secret" not in explain(report)


def test_edge_in_front_of_a_stopped_origin() -> None:
    dead = free_port()
    with edge(dead, SECRET) as proxy:
        code, report = run_doctor(f"http://{LOOPBACK}:{proxy.port}/",
                                  "--origin", f"http://{LOOPBACK}:{dead}")
    assert code == 1
    assert diagnosis_ids(report) == ["edge-origin-unreachable"]
    assert "502" in diagnosis(report, "edge-origin-unreachable")["summary"]


def test_edge_default_proto_is_the_scheme_it_serves(guarded: GuardedStreamlit) -> None:
    # The README's plain-http setup: no flag, so no warning to explain away.
    with edge(guarded.port, SECRET) as proxy:
        code, report = run_doctor(f"http://{LOOPBACK}:{proxy.port}/")
    assert code == 0, explain(report)
    assert diagnosis_ids(report) == [], explain(report)
    assert statuses(report)["forwarded"] == "pass"


def test_edge_told_https_behind_a_plain_http_url(guarded: GuardedStreamlit) -> None:
    # A wrong value is a warning with its own id, and the fix names the value needed.
    with edge(guarded.port, SECRET, "--forwarded-proto", "https") as proxy:
        code, report = run_doctor(f"http://{LOOPBACK}:{proxy.port}/")
    assert code == 0, explain(report)
    assert diagnosis_ids(report) == ["forwarded-proto-mismatch"]
    found = diagnosis(report, "forwarded-proto-mismatch")
    assert found["severity"] == "warning"
    assert "X-Forwarded-Proto: https" in found["evidence"]
    assert "`wsgate edge --forwarded-proto http`" in found["fix"]


@pytest.mark.nginx
@pytest.mark.skipif(not nginx_available(), reason="Debian nginx is not installed")
def test_nginx_appending_the_clients_forwarded_for(guarded: GuardedStreamlit) -> None:
    location = (f"proxy_pass http://{LOOPBACK}:{guarded.port};{GOOD_WS_LINES}"
                f"proxy_set_header Host $http_host;\n"
                f"proxy_set_header X-CF-Secret {SECRET};\n"
                "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;")
    with nginx(location) as port:
        code, report = run_doctor(f"http://{LOOPBACK}:{port}/")
    assert code == 0, explain(report)  # warnings only
    assert diagnosis_ids(report) == ["forwarded-proto-missing", "client-ip-spoofable"]
    assert "198.51.100.77" in diagnosis(report, "client-ip-spoofable")["evidence"]
    assert statuses(report)["forwarded"] == "warn"
