"""Rendering, the JSON interface, the CLI's exit codes and the library entry point."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess

import pytest

from tests.support import LOOPBACK, free_port, wsgate_command
from wsgate.doctor.diagnosis import diagnose_checks
from wsgate.doctor.doctor import DoctorOptions, diagnose
from wsgate.doctor.model import (
    Check,
    ForwardedFacts,
    HttpFacts,
    RefusalFacts,
    Report,
    TcpFacts,
    UpgradeFacts,
)
from wsgate.doctor.report import path_picture, render, to_json
from wsgate.doctor.target import UsageError, parse_target

CHECKS = (
    Check("dns", "pass", "literal", 0.1),
    Check("tcp", "pass", "connected", 1.0),
    Check("tls", "skip", "skipped: plain http URL"),
    Check("http", "pass", "HTTP 200", 3.0, HttpFacts(200)),
    Check("upgrade", "fail", "HTTP 200 instead of 101", 2.0, UpgradeFacts(200)),
    Check("forwarded", "warn", "proto", 1.0,
          ForwardedFacts(public_scheme="https", proto=None, spoofed_headers=())),
)
BROKEN = Report("http://x/", CHECKS, diagnose_checks(CHECKS))


def test_json_has_exactly_the_documented_shape() -> None:
    data = to_json(BROKEN)
    assert set(data) == {"url", "ok", "checks", "diagnoses"}
    assert data["ok"] is False
    for item in data["checks"]:
        assert set(item) == {"id", "status", "detail", "durationMs"}
        assert item["status"] in ("pass", "fail", "warn", "skip")
    assert [d["id"] for d in data["diagnoses"]] == ["upgrade-not-forwarded",
                                                    "forwarded-proto-missing"]
    for item in data["diagnoses"]:
        assert set(item) == {"id", "severity", "summary", "evidence", "fix"}
    json.dumps(data)


def test_plain_rendering_has_symbols_picture_and_fixes_without_escapes() -> None:
    out = io.StringIO()
    render(BROKEN, file=out, color=False)
    text = out.getvalue()
    assert "\x1b[" not in text
    assert " ✓ dns" in text and " ✗ upgrade" in text and " ! forwarded" in text
    assert " - tls" in text
    assert "edge ✗" in text
    assert "ERROR [upgrade-not-forwarded]" in text
    assert "WARNING [forwarded-proto-missing]" in text
    assert "fix: Forward the upgrade" in text


def test_picture_marks_the_hop() -> None:
    for checks, mark in [
        ((Check("tcp", "fail", "refused", 1.0, TcpFacts("x")),), "client ──✗──▶ edge"),
        ((Check("http", "fail", "502", 1.0, HttpFacts(502)),), "edge ──✗──▶ origin"),
        ((Check("origin-http-no-secret", "fail", "200", 1.0,
                RefusalFacts(200, answered=True)),), "origin ✗"),
    ]:
        assert mark in path_picture(Report("u", checks, diagnose_checks(checks)))
    assert "no break found" in path_picture(Report("u", (), ()))


def test_no_color_environment_and_pipes_give_plain_text() -> None:
    port = free_port()
    env = {**os.environ, "NO_COLOR": "1", "FORCE_COLOR": ""}
    result = subprocess.run(wsgate_command("doctor", f"http://{LOOPBACK}:{port}/"),
                            capture_output=True, text=True, env=env, timeout=30)
    assert result.returncode == 1
    assert "\x1b[" not in result.stdout
    assert "✗ tcp" in result.stdout
    assert "ERROR [tcp-unreachable]" in result.stdout


@pytest.mark.parametrize("args", [
    ("not a url",),
    ("ftp://example.com/",),
    ("http://127.0.0.1:99999/",),
    ("http://127.0.0.1:1/", "--timeout", "-1"),
    ("http://127.0.0.1:1/", "--path", "no-slash"),
    ("http://127.0.0.1:1/", "--origin", "nonsense"),
    ("http://127.0.0.1:1/", "--idle-seconds", "x"),
    (),
])
def test_usage_errors_exit_2_without_traceback(args: tuple[str, ...]) -> None:
    result = subprocess.run(wsgate_command("doctor", *args), capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    assert result.stderr.strip()


def test_library_entry_point() -> None:
    port = free_port()
    report = asyncio.run(diagnose(f"http://{LOOPBACK}:{port}/", DoctorOptions(timeout=2)))
    assert not report.ok
    assert [d.id for d in report.diagnoses] == ["tcp-unreachable"]
    with pytest.raises(UsageError):
        asyncio.run(diagnose("gopher://x/"))


def test_targets() -> None:
    target = parse_target("wss://[::1]:8443/app/")
    assert (target.scheme, target.host, target.port, target.base_path) == (
        "https", "::1", 8443, "/app")
    assert target.origin == "https://[::1]:8443"
    assert target.path("/_stcore/stream") == "/app/_stcore/stream"
    assert parse_target("https://example.com").authority == "example.com"
