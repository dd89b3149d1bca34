"""The doctor against real nginx misconfigurations in front of real Streamlit."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.doctor.helpers import (
    GOOD_WS_LINES,
    diagnosis,
    diagnosis_ids,
    explain,
    nginx,
    nginx_available,
    run_doctor,
    statuses,
    streamlit_server,
)
from tests.support import LOOPBACK, ServerProcess, free_port

pytestmark = [
    pytest.mark.nginx, pytest.mark.streamlit,
    pytest.mark.skipif(not nginx_available(), reason="Debian nginx is not installed"),
]

APP = 'import streamlit as st\nst.write("doctor test app")\n'


@pytest.fixture(scope="module")
def streamlit_port() -> Iterator[int]:
    port = free_port()
    with streamlit_server(APP, port) as server:
        assert server.process is not None
        yield port


def proxy(port: int, ws_lines: str = GOOD_WS_LINES, extra: str = "",
          host: str = "$http_host") -> str:
    return (f"proxy_pass http://{LOOPBACK}:{port};\n{ws_lines}\n"
            f"proxy_set_header Host {host};\n{extra}")


def test_healthy_nginx_in_front_of_streamlit(streamlit_port: int) -> None:
    with nginx(proxy(streamlit_port)) as port:
        code, report = run_doctor(f"http://{LOOPBACK}:{port}/")
    assert code == 0, explain(report)
    assert report["ok"] is True
    assert report["diagnoses"] == []
    checks = statuses(report)
    for check_id in ("dns", "tcp", "http", "health", "host-config", "upgrade",
                     "upgrade-origin", "session"):
        assert checks[check_id] == "pass", report
    assert checks["tls"] == "skip"
    assert all(c["durationMs"] < 5000 for c in report["checks"])


def test_connect_to_runs_the_streamlit_session_under_the_public_name(
        streamlit_port: int) -> None:
    # An edge that DNS does not point at yet: dialled by address, named as the public URL.
    public = "app.doctor-test.invalid"
    only_public = f'if ($host != "{public}") {{ return 421; }}'
    with nginx(proxy(streamlit_port), server_lines=only_public) as port:
        code, report = run_doctor(f"http://{public}/", "--connect-to", f"{LOOPBACK}:{port}")
    assert code == 0, explain(report)
    checks = statuses(report)
    assert checks["upgrade-origin"] == checks["session"] == "pass"


def test_nginx_without_upgrade_lines(streamlit_port: int) -> None:
    with nginx(proxy(streamlit_port, ws_lines="")) as port:
        code, report = run_doctor(f"http://{LOOPBACK}:{port}/")
    assert code == 1
    assert report["ok"] is False
    assert diagnosis_ids(report)[0] == "upgrade-not-forwarded"
    assert "proxy_set_header Upgrade" in diagnosis(report, "upgrade-not-forwarded")["fix"]
    assert statuses(report)["session"] == "skip"


def test_nginx_short_read_timeout_is_measured(streamlit_port: int) -> None:
    with nginx(proxy(streamlit_port, extra="proxy_read_timeout 2s;")) as port:
        code, report = run_doctor(f"http://{LOOPBACK}:{port}/", "--idle-seconds", "4")
    assert code == 1
    assert diagnosis_ids(report) == ["idle-timeout"]
    found = diagnosis(report, "idle-timeout")
    seconds = float(found["summary"].split("after ")[1].split(" s")[0])
    assert 1.5 <= seconds < 4.0, found
    assert "server.websocketPingInterval = 1" in found["fix"]
    assert "proxy_read_timeout" in found["summary"]
    assert statuses(report)["idle"] == "fail"


def test_nginx_with_long_enough_timeout_holds_idle(streamlit_port: int) -> None:
    with nginx(proxy(streamlit_port, extra="proxy_read_timeout 30s;")) as port:
        code, report = run_doctor(f"http://{LOOPBACK}:{port}/", "--idle-seconds", "1")
    assert code == 0, explain(report)
    assert statuses(report)["idle"] == "pass"


def test_host_rewritten_without_public_url_allowed(streamlit_port: int) -> None:
    # Public URL on ::1 so that Streamlit's localhost/127.0.0.1 allowance does not apply.
    location = proxy(streamlit_port, host=f"{LOOPBACK}:{streamlit_port}")
    with nginx(location, listen="::1") as port:
        code, report = run_doctor(f"http://[::1]:{port}/")
    assert code == 1
    assert diagnosis_ids(report) == ["origin-check-rejected"]
    assert statuses(report)["upgrade"] == "pass"
    assert statuses(report)["upgrade-origin"] == "fail"
    assert statuses(report)["session"] == statuses(report)["affinity"] == "skip"
    assert "--public-url" in diagnosis(report, "origin-check-rejected")["fix"]


def test_host_kept_passes_the_origin_check(streamlit_port: int) -> None:
    with nginx(proxy(streamlit_port), listen="::1") as port:
        code, report = run_doctor(f"http://[::1]:{port}/")
    assert code == 0, explain(report)
    assert statuses(report)["upgrade-origin"] == "pass"


def test_proxy_hiding_the_accept_header(streamlit_port: int) -> None:
    location = proxy(streamlit_port, extra="proxy_hide_header Sec-WebSocket-Accept;")
    with nginx(location) as port:
        code, report = run_doctor(f"http://{LOOPBACK}:{port}/")
    assert code == 1
    assert diagnosis_ids(report) == ["accept-invalid"]
    assert "Sec-WebSocket-Accept is missing" in diagnosis(report, "accept-invalid")["evidence"]


def test_origin_stopped_behind_nginx() -> None:
    dead = free_port()
    with nginx(proxy(dead)) as port:
        code, report = run_doctor(f"http://{LOOPBACK}:{port}/",
                                  "--origin", f"http://{LOOPBACK}:{dead}")
    assert code == 1
    assert diagnosis_ids(report) == ["edge-origin-unreachable"]
    found = diagnosis(report, "edge-origin-unreachable")
    assert "502" in found["summary"]
    assert "connection refused" in found["evidence"]
    assert statuses(report)["upgrade"] == "skip"


def test_origin_that_accepts_but_never_answers() -> None:
    # A listening socket nobody accepts from: the kernel completes the handshake,
    # nothing ever answers, like a stuck origin.
    with socket.socket() as stuck:
        stuck.bind((LOOPBACK, 0))
        stuck.listen(16)
        stuck_port = stuck.getsockname()[1]
        with nginx(proxy(stuck_port, extra="proxy_read_timeout 1s;")) as port:
            code, report = run_doctor(f"http://{LOOPBACK}:{port}/")
    assert code == 1
    assert diagnosis_ids(report) == ["edge-timeout"]
    assert "504" in diagnosis(report, "edge-timeout")["summary"]


def test_origin_without_guard_is_bypassable(streamlit_port: int) -> None:
    with nginx(proxy(streamlit_port)) as port:
        code, report = run_doctor(f"http://{LOOPBACK}:{port}/",
                                  "--origin", f"http://{LOOPBACK}:{streamlit_port}")
    assert code == 1
    assert diagnosis_ids(report) == ["origin-bypass"]
    checks = statuses(report)
    assert checks["origin-http-no-secret"] == "fail"
    assert checks["origin-upgrade-no-secret"] == "fail"


def test_nothing_listening() -> None:
    port = free_port()
    code, report = run_doctor(f"http://{LOOPBACK}:{port}/")
    assert code == 1
    assert diagnosis_ids(report) == ["tcp-unreachable"]
    assert statuses(report)["http"] == "skip"


@pytest.fixture(scope="module")
def hanging_streamlit_port() -> Iterator[int]:
    port = free_port()
    script = "import time\nimport streamlit as st\nst.write('starting')\ntime.sleep(60)\n"
    server: ServerProcess
    with streamlit_server(script, port) as server:
        assert server.process is not None
        yield port


def test_script_that_never_finishes(hanging_streamlit_port: int) -> None:
    with nginx(proxy(hanging_streamlit_port)) as port:
        code, report = run_doctor(f"http://{LOOPBACK}:{port}/", "--timeout", "1.5")
    assert code == 1
    assert diagnosis_ids(report) == ["app-not-rendering"]
    assert statuses(report)["upgrade"] == "pass"


def test_tls_edge_with_private_ca_runs_the_streamlit_session(
        streamlit_port: int, tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "both.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    lines = f"ssl_certificate {tmp_path}/both.pem;\nssl_certificate_key {tmp_path}/both.pem;"
    with nginx(proxy(streamlit_port), server_extra="ssl", server_lines=lines) as port:
        code, report = run_doctor(f"https://localhost:{port}/", "--ca-file",
                                  str(tmp_path / "ca.pem"))
    assert code == 0, explain(report)
    checks = statuses(report)
    assert checks["tls"] == checks["session"] == checks["upgrade-origin"] == "pass"
