"""The demo's pure parts (plan, verdict, report rendering) and its process handling."""

from __future__ import annotations

import json
import os
import py_compile
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.text import Text

from wsgate.demo.command import check_lines, diagnosis_lines
from wsgate.demo.stack import (
    SECRET_ENV,
    Child,
    DemoPlan,
    DemoStack,
    DoctorRun,
    Refusal,
    bundled_app,
    new_secret,
    parse_doctor_output,
    verdict,
)

HEALTHY = {"url": "http://127.0.0.1:1", "ok": True,
           "checks": [{"id": "tcp", "status": "pass", "detail": "connected", "durationMs": 1.2},
                      {"id": "idle", "status": "skip", "detail": "not asked", "durationMs": 0}],
           "diagnoses": []}
BROKEN = {"url": "http://127.0.0.1:1", "ok": False,
          "checks": [{"id": "upgrade", "status": "fail", "detail": "HTTP 403", "durationMs": 3}],
          "diagnoses": [{"id": "secret-rejected", "severity": "error",
                         "summary": "the origin refused the edge", "evidence": "403",
                         "fix": "use the same secret at edge and origin"}]}


def plan(tmp_path: Path) -> DemoPlan:
    return DemoPlan(app=Path("/x/app.py"), origin_port=8501, edge_port=8080, log_dir=tmp_path)


def test_bundled_app_ships_inside_the_package_and_compiles() -> None:
    app = bundled_app()
    assert app.name == "app.py" and app.parent.name == "demo"
    assert app.is_file()
    py_compile.compile(str(app), doraise=True)


def test_secrets_are_fresh_and_long() -> None:
    values = {new_secret() for _ in range(20)}
    assert len(values) == 20
    assert all(len(v) >= 43 for v in values)  # 32 random bytes, base64url


def test_plan_commands(tmp_path: Path) -> None:
    p = plan(tmp_path)
    assert p.public_url == "http://127.0.0.1:8080"
    assert p.origin_url == "http://127.0.0.1:8501"
    origin = p.origin_command()
    assert origin[1:5] == ["-m", "wsgate", "run", "/x/app.py"]
    for flag, value in [("--server.port", "8501"), ("--server.address", "127.0.0.1"),
                        ("--server.headless", "true"), ("--public-url", p.public_url),
                        ("--secret-env", SECRET_ENV)]:
        assert origin[origin.index(flag) + 1] == value
    edge = p.edge_command()
    assert edge[1:4] == ["-m", "wsgate", "edge"]
    assert edge[edge.index("--origin") + 1] == p.origin_url
    assert edge[edge.index("--listen") + 1] == "127.0.0.1:8080"
    through = p.doctor_command(p.public_url, through_edge=True)
    assert through[through.index("--origin") + 1] == p.origin_url
    direct = p.doctor_command(p.origin_url, through_edge=False)
    assert "--origin" not in direct and "--secret-env" not in direct


def test_secret_travels_in_the_environment_only(tmp_path: Path) -> None:
    stack = DemoStack(plan(tmp_path))
    p = stack.plan
    argv = " ".join(p.origin_command() + p.edge_command()
                    + p.doctor_command(p.public_url, through_edge=True))
    assert stack.secret not in argv
    assert stack.child_env()[SECRET_ENV] == stack.secret


def test_verdict_healthy() -> None:
    edge = DoctorRun("http://e", 0, HEALTHY)
    assert verdict(edge, Refusal(403, 403), DoctorRun("http://o", 1, BROKEN)) == []


@pytest.mark.parametrize(
    ("edge", "refusal", "expected"),
    [
        (DoctorRun("e", 1, BROKEN), Refusal(403, 403), "secret-rejected"),
        (DoctorRun("e", 2, None, "exit 2: No such command"), Refusal(403, 403),
         "did not report: exit 2"),
        (DoctorRun("e", 0, HEALTHY), Refusal(200, 403), "HTTP 200, upgrade 403"),
        (DoctorRun("e", 0, HEALTHY), Refusal(403, 101), "HTTP 403, upgrade 101"),
        (DoctorRun("e", 0, HEALTHY), Refusal(None, None, "ConnectionRefusedError"),
         "origin probe failed"),
        (DoctorRun("e", 0, {**HEALTHY, "ok": False}), Refusal(403, 403), "no diagnosis"),
    ],
)
def test_verdict_names_each_failure(edge: DoctorRun, refusal: Refusal, expected: str) -> None:
    problems = verdict(edge, refusal)
    assert len(problems) == 1
    assert expected in problems[0]


def test_verdict_origin_bypass_from_the_doctor() -> None:
    bypass = {**BROKEN, "diagnoses": [{"id": "origin-bypass", "severity": "error"}]}
    problems = verdict(DoctorRun("e", 0, HEALTHY), Refusal(403, 403), DoctorRun("o", 1, bypass))
    assert problems == ["doctor on the origin directly reports origin-bypass"]


def test_parse_doctor_output() -> None:
    run = parse_doctor_output("u", 0, json.dumps(HEALTHY), "", 0.5)
    assert run.ok and run.report == HEALTHY and run.error is None
    run = parse_doctor_output("u", 1, json.dumps(BROKEN), "", 0.5)
    assert not run.ok and run.diagnosis_ids() == ["secret-rejected"]
    run = parse_doctor_output("u", 2, "", "Error: No such command 'doctor'.\n", 0.1)
    assert run.report is None and run.error == "exit 2: Error: No such command 'doctor'."
    run = parse_doctor_output("u", 1, "Traceback...\nBoom", "", 0.1)
    assert run.report is None and run.error is not None and "Boom" in run.error
    assert not parse_doctor_output("u", 0, "[1, 2]", "", 0.1).ok


def test_report_rendering() -> None:
    lines = check_lines(HEALTHY)
    assert len(lines) == 2
    assert "tcp " in lines[0] and "connected" in lines[0] and "(1 ms)" in lines[0]
    plain = [Text.from_markup(line).plain for line in lines]
    assert plain[0].index("connected") == plain[1].index("not asked")  # aligned
    assert "(2.5 s)" in check_lines({"checks": [{"id": "s", "status": "pass",
                                                 "durationMs": 2500}]})[0]
    diag = diagnosis_lines(BROKEN)
    assert "secret-rejected" in diag[0] and "fix:" in diag[1]
    # Markup in report text is shown as text, not interpreted by rich.
    assert "\\[bold]" in check_lines({"checks": [{"id": "x", "status": "pass",
                                                  "detail": "[bold]"}]})[0]


def test_child_stop_leaves_no_process_of_its_group(tmp_path: Path) -> None:
    # A leader that forks a grandchild and ignores SIGTERM: stop() must still end both.
    script = ("import os, signal, subprocess, sys, time\n"
              "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
              "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
              "print(p.pid, flush=True)\n"
              "time.sleep(300)\n")
    child = Child("test", [sys.executable, "-c", script], tmp_path / "out", dict(os.environ))
    child.start()
    deadline = time.monotonic() + 20
    while not (tmp_path / "out").read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.05)
    grandchild = int((tmp_path / "out").read_text().split()[0])
    assert child.process is not None
    assert os.getpgid(grandchild) == child.process.pid
    code = child.stop(timeout=2)
    assert code == -signal.SIGKILL
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        # Reaped by init eventually; a zombie still answers kill(0).
        status = Path(f"/proc/{grandchild}/status")
        if status.exists() and "zombie" in status.read_text():
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"grandchild {grandchild} survived")


def test_child_stop_graceful(tmp_path: Path) -> None:
    child = Child("sleep", ["sleep", "300"], tmp_path / "out", dict(os.environ)).start()
    assert child.alive()
    assert child.stop() == -signal.SIGTERM
    assert not child.alive()
    assert Child("never", ["true"], tmp_path / "o2", {}).stop() is None


def test_cli_usage_errors() -> None:
    done = subprocess.run([sys.executable, "-m", "wsgate", "demo", "--app", "/nonexistent.py"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "does not exist" in done.stderr
    assert "Traceback" not in done.stderr
    for args, message in [(["--port", "70000"], "70000"),
                          (["--port", "9000", "--origin-port", "9000"], "different ports"),
                          (["--log-dir", "/proc/wsgate-demo"], "cannot create")]:
        done = subprocess.run([sys.executable, "-m", "wsgate", "demo", *args],
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 2, done.stderr
        assert message in done.stderr
        assert "Traceback" not in done.stderr


def test_reported_listening_reads_both_childrens_lines() -> None:
    from wsgate.demo.stack import reported_listening

    output = ("wsgate run: origin guard on: 1 secret(s) from $WSGATE_SECRET\n"
              "wsgate run: origin listening on http://127.0.0.1:8613 (guarded: answers 403 "
              "without the secret; open the app at http://127.0.0.1:8080)\n"
              "wsgate edge listening on http://127.0.0.1:8080 (*/* -> http://127.0.0.1:8613; "
              "secret header X-CF-Secret)\n"
              "wsgate edge listening on https://[::1]:8443 (…)\n")
    assert reported_listening(output) == {("127.0.0.1", 8613), ("127.0.0.1", 8080),
                                          ("::1", 8443)}
    # A port only named elsewhere in a line (the edge's origin) is not a report.
    assert reported_listening("wsgate run: port 8613 on 127.0.0.1 is already in use") == set()
