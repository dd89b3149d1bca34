"""--connect-to (dial elsewhere, keep the URL's Host and SNI) and --follow (redirects).

Real nginx and a real `websockets` app on loopback. The public name is under
`.invalid` and is never looked up: --connect-to names a loopback address.
"""

from __future__ import annotations

import subprocess
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
    ws_origin,
)
from tests.support import LOOPBACK, ServerProcess, free_port, wsgate_command
from wsgate.doctor.target import page_target, request_target, resolve_location

pytestmark = [pytest.mark.nginx,
              pytest.mark.skipif(not nginx_available(), reason="Debian nginx is not installed")]

PUBLIC_NAME = "app.doctor-test.invalid"
GENERIC = ("--generic", "--subprotocol", "streamlit")
# nginx answers 421 Misdirected Request unless Host is the public name.
ONLY_PUBLIC_NAME = f'if ($host != "{PUBLIC_NAME}") {{ return 421; }}'


@pytest.fixture(scope="module")
def app() -> Iterator[ServerProcess]:
    with ws_origin("silent") as origin:
        yield origin


def proxy_to(app: ServerProcess) -> str:
    return f"proxy_pass http://{LOOPBACK}:{app.port};{GOOD_WS_LINES}"


def test_connect_to_keeps_the_urls_host(app: ServerProcess) -> None:
    with nginx(proxy_to(app), server_lines=ONLY_PUBLIC_NAME) as port:
        # The URL's port (80) is not where the edge listens: --connect-to says where.
        code, report = run_doctor(f"http://{PUBLIC_NAME}/", *GENERIC,
                                  "--connect-to", f"{LOOPBACK}:{port}")
        assert code == 0, explain(report)
        checks = statuses(report)
        assert checks["http"] == checks["upgrade"] == "pass"
        assert report["url"] == f"http://{PUBLIC_NAME}/"
        tcp = next(c for c in report["checks"] if c["id"] == "tcp")
        assert f"{LOOPBACK}:{port}" in tcp["detail"]
        # The same edge by its address: the Host differs, nginx refuses (the check can fail).
        code, report = run_doctor(f"http://{LOOPBACK}:{port}/", *GENERIC)
    assert code == 1, explain(report)
    assert "421" in next(c["detail"] for c in report["checks"] if c["id"] == "http")


def test_connect_to_keeps_the_urls_name_for_tls(app: ServerProcess, tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert(PUBLIC_NAME)  # valid for the public name only
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "both.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    lines = (f"ssl_certificate {tmp_path}/both.pem;\nssl_certificate_key {tmp_path}/both.pem;\n"
             f"{ONLY_PUBLIC_NAME}")
    with nginx(proxy_to(app), server_extra="ssl", server_lines=lines) as port:
        code, report = run_doctor(f"https://{PUBLIC_NAME}/", *GENERIC, "--connect-to",
                                  f"{LOOPBACK}:{port}", "--ca-file", str(tmp_path / "ca.pem"))
        assert code == 0, explain(report)
        assert statuses(report)["tls"] == statuses(report)["upgrade"] == "pass"
        # By address, the certificate does not match: the name really went into SNI/checks.
        code, report = run_doctor(f"https://{LOOPBACK}:{port}/", *GENERIC,
                                  "--ca-file", str(tmp_path / "ca.pem"))
    assert code == 1
    assert diagnosis_ids(report) == ["tls-invalid"]


@pytest.mark.parametrize("value", ["nonsense", f"{LOOPBACK}:0", f"{LOOPBACK}:99999",
                                   "[::1", ":8080", f"{LOOPBACK}:80/path"])
def test_bad_connect_to_is_a_usage_error(value: str) -> None:
    result = subprocess.run(wsgate_command("doctor", "http://example.test/", "--connect-to",
                                           value), capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "--connect-to must be HOST:PORT" in result.stderr


def test_a_redirect_is_shown_and_with_follow_followed(app: ServerProcess) -> None:
    target = f"http://{LOOPBACK}:{app.port}/"
    with nginx(f"return 301 {target};") as port:
        code, report = run_doctor(f"http://{LOOPBACK}:{port}/", *GENERIC)
        assert code == 1
        assert "→ " + target in next(c["detail"] for c in report["checks"]
                                     if c["id"] == "http")
        assert diagnosis_ids(report) == ["upgrade-not-forwarded"]
        assert "redirects" not in statuses(report)
        code, report = run_doctor(f"http://{LOOPBACK}:{port}/", *GENERIC, "--follow")
    assert code == 0, explain(report)
    assert report["url"] == target
    assert report["diagnoses"] == []
    assert [c["id"] for c in report["checks"]][:2] == ["redirects", "dns"]
    redirects = report["checks"][0]
    assert redirects["status"] == "pass"
    assert f"1 redirect: http://{LOOPBACK}:{port}/ → {target} (HTTP 200)" == \
        redirects["detail"]


@pytest.mark.parametrize(("location", "shown"), [
    ("return 302 http://$http_host/;", "redirect loop"),  # back to itself
    ("absolute_redirect off; return 302 /r$uri;", "more than 10 redirects"),  # never ends
])
def test_endless_redirects_are_a_redirect_loop(location: str, shown: str) -> None:
    with nginx(location) as port:
        code, report = run_doctor(f"http://{LOOPBACK}:{port}/", *GENERIC, "--follow")
    assert code == 1, explain(report)
    assert diagnosis_ids(report)[0] == "redirect-loop"
    assert shown in diagnosis(report, "redirect-loop")["evidence"]
    assert statuses(report)["redirects"] == "fail"
    # The other checks still probe the given URL and show its redirect.
    assert statuses(report)["upgrade"] == "fail"


def test_follow_to_a_dead_url_probes_it(app: ServerProcess) -> None:
    dead = free_port()
    with nginx(f"return 307 http://{LOOPBACK}:{dead}/;") as port:
        code, report = run_doctor(f"http://{LOOPBACK}:{port}/", *GENERIC, "--follow")
    assert code == 1
    assert report["url"] == f"http://{LOOPBACK}:{dead}/"
    assert diagnosis_ids(report) == ["tcp-unreachable"]
    assert "connection refused" in report["checks"][0]["detail"]


def test_a_redirect_to_a_login_page_is_not_a_loop(app: ServerProcess) -> None:
    # `/` → `/login?next=/`: the query makes it another URL, and the page's directory
    # is `/` again, where the app's paths are probed.
    location = f'if ($request_uri = "/") {{ return 302 /login?next=/; }}\n{proxy_to(app)}'
    with nginx(location, server_lines="absolute_redirect off;") as port:
        code, report = run_doctor(f"http://{LOOPBACK}:{port}/", *GENERIC, "--follow")
    assert code == 0, explain(report)
    assert report["checks"][0]["detail"] == (
        f"1 redirect: http://{LOOPBACK}:{port}/ → http://{LOOPBACK}:{port}/login?next=/ "
        f"(HTTP 200)")
    assert report["url"] == f"http://{LOOPBACK}:{port}/"


def test_where_a_redirect_leads() -> None:
    here = "http://a.test:8080/app/page?x=1"
    assert resolve_location(here, "/login?next=/#top") == "http://a.test:8080/login?next=/"
    assert resolve_location(here, "other") == "http://a.test:8080/app/other"
    assert resolve_location(here, "https://b.test/") == "https://b.test/"
    assert resolve_location(here, "ftp://b.test/") is None
    assert resolve_location(here, "javascript:alert(1)") is None
    assert request_target(here) == "/app/page?x=1"
    assert request_target("http://a.test") == "/"
    assert page_target("https://b.test/app/").url == "https://b.test/app/"
    assert page_target("https://b.test/app/index.html").url == "https://b.test/app/"
    assert page_target("https://b.test/login").url == "https://b.test/"


def test_follow_through_connect_to_keeps_dialling_there(app: ServerProcess) -> None:
    # Both hops are for the public name and port: both go to --connect-to, named as the URL.
    location = f'if ($request_uri = "/") {{ return 302 /login?next=/; }}\n{proxy_to(app)}'
    lines = f"absolute_redirect off;\n{ONLY_PUBLIC_NAME}"
    with nginx(location, server_lines=lines) as port:
        code, report = run_doctor(f"http://{PUBLIC_NAME}/", *GENERIC, "--follow",
                                  "--connect-to", f"{LOOPBACK}:{port}")
    assert code == 0, explain(report)
    assert report["checks"][0]["detail"].endswith(
        f"http://{PUBLIC_NAME}/login?next=/ (HTTP 200)")
    assert statuses(report)["upgrade"] == "pass"
