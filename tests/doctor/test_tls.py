"""TLS: an untrusted certificate is diagnosed; a private CA passed with --ca-file works."""

from __future__ import annotations

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
from tests.support import LOOPBACK

# The test app is a plain WebSocket server that speaks the `streamlit` subprotocol.
GENERIC = ("--generic", "--subprotocol", "streamlit")

pytestmark = [pytest.mark.nginx,
              pytest.mark.skipif(not nginx_available(), reason="Debian nginx is not installed")]


@pytest.fixture(scope="module")
def tls_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """nginx serving TLS for 127.0.0.1/localhost from a private CA, in front of a WS app."""
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_pem.write_to_path(str(folder / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    lines = (f"ssl_certificate {folder}/cert.pem;\n"
             f"ssl_certificate_key {folder}/key.pem;")
    with ws_origin("silent") as origin, nginx(
            f"proxy_pass http://{LOOPBACK}:{origin.port};{GOOD_WS_LINES}",
            server_extra="ssl", server_lines=lines) as port:
        yield port, folder / "ca.pem"


def test_untrusted_certificate(tls_edge: tuple[int, Path]) -> None:
    port, _ = tls_edge
    code, report = run_doctor(f"https://{LOOPBACK}:{port}/", *GENERIC)
    assert code == 1, explain(report)
    assert diagnosis_ids(report) == ["tls-invalid"]
    assert "certificate" in diagnosis(report, "tls-invalid")["evidence"]
    assert statuses(report)["http"] == "skip"


def test_private_ca_with_ca_file(tls_edge: tuple[int, Path]) -> None:
    port, ca_file = tls_edge
    code, report = run_doctor(f"https://localhost:{port}/", *GENERIC,
                              "--ca-file", str(ca_file), "--idle-seconds", "0.5")
    assert code == 0, explain(report)
    checks = statuses(report)
    assert checks["tls"] == "pass"
    assert checks["upgrade"] == "pass"
    assert checks["idle"] == "pass"
    tls = next(c for c in report["checks"] if c["id"] == "tls")
    assert "expires in" in tls["detail"]


def test_ssl_cert_file_from_the_environment_is_trusted(tls_edge: tuple[int, Path]) -> None:
    # As `wsgate doctor --help` says: OpenSSL's SSL_CERT_FILE replaces the system CAs.
    port, ca_file = tls_edge
    code, report = run_doctor(f"https://localhost:{port}/", *GENERIC,
                              env={"SSL_CERT_FILE": str(ca_file)})
    assert code == 0, explain(report)
    assert statuses(report)["tls"] == "pass"


def test_insecure_skips_verification_with_a_warning(tls_edge: tuple[int, Path]) -> None:
    port, _ = tls_edge
    code, report = run_doctor(f"wss://{LOOPBACK}:{port}/", *GENERIC, "--insecure")
    assert code == 0, explain(report)
    assert statuses(report)["tls"] == "warn"


def test_ca_file_must_exist(tmp_path: Path) -> None:
    import subprocess

    from tests.support import wsgate_command
    result = subprocess.run(
        wsgate_command("doctor", "https://127.0.0.1:1/", "--ca-file", str(tmp_path / "no.pem")),
        capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
