"""`affinity-missing`: the doctor against real nginx over two real Streamlit replicas.

Round-robin (nginx's default) sends a reconnect to the other replica, which starts a
new session; `ip_hash` keeps one client on one replica; a single Streamlit always
resumes. The doctor must tell these apart from outside.
"""

from __future__ import annotations

from collections.abc import Iterator

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
    streamlit_server,
)
from tests.support import LOOPBACK, free_port

pytestmark = [
    pytest.mark.nginx, pytest.mark.streamlit,
    pytest.mark.skipif(not nginx_available(), reason="Debian nginx is not installed"),
]

APP = 'import streamlit as st\nst.write("affinity test app")\n'


@pytest.fixture(scope="module")
def replicas() -> Iterator[tuple[int, int]]:
    first, second = free_port(), free_port()
    with streamlit_server(APP, first), streamlit_server(APP, second):
        yield first, second


def upstream(ports: tuple[int, int], policy: str = "") -> str:
    servers = "".join(f"server {LOOPBACK}:{port};\n" for port in ports)
    return f"upstream replicas {{\n{policy}\n{servers}}}"


PROXY = f"proxy_pass http://replicas;\n{GOOD_WS_LINES}\nproxy_set_header Host $http_host;\n"


def test_round_robin_over_two_replicas_is_affinity_missing(replicas: tuple[int, int]) -> None:
    with nginx(PROXY, http_lines=upstream(replicas)) as port:
        code, report = run_doctor(f"http://{LOOPBACK}:{port}/")
    assert code == 1, explain(report)
    assert statuses(report)["session"] == "pass"
    assert statuses(report)["affinity"] == "fail"
    assert diagnosis_ids(report) == ["affinity-missing"], explain(report)
    found = diagnosis(report, "affinity-missing")
    assert "new session" in found["evidence"]
    assert "ip_hash" in found["fix"] and "origins = [...]" in found["fix"]


def test_ip_hash_keeps_the_session(replicas: tuple[int, int]) -> None:
    with nginx(PROXY, http_lines=upstream(replicas, "ip_hash;")) as port:
        code, report = run_doctor(f"http://{LOOPBACK}:{port}/")
    assert code == 0, explain(report)
    assert statuses(report)["affinity"] == "pass"
    assert report["diagnoses"] == []


def test_a_single_streamlit_keeps_the_session(replicas: tuple[int, int]) -> None:
    code, report = run_doctor(f"http://{LOOPBACK}:{replicas[0]}/")
    assert code == 0, explain(report)
    checks = {c["id"]: c for c in report["checks"]}
    assert checks["affinity"]["status"] == "pass"
    assert "4 reconnects resumed the same session" in checks["affinity"]["detail"]
