"""The Worker (in workerd) in front of a real `wsgate run`: what the doctor reports,
and its log lines joined with the guard's by `wsgate logs --join`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.doctor.helpers import diagnosis, diagnosis_ids, explain, run_doctor, statuses
from tests.guard.fixtures import SECRETS, GuardedStreamlit, start_guarded_streamlit
from tests.support import LOOPBACK, free_port, wait_until
from tests.support.wire import exchange
from tests.worker.targets import target_process

pytestmark = [pytest.mark.streamlit, pytest.mark.slow]
SECRET = SECRETS[0]


@pytest.fixture(scope="module")
def guarded() -> Iterator[GuardedStreamlit]:
    with start_guarded_streamlit() as server:
        yield server


def test_doctor_through_the_worker_reports_ok(guarded: GuardedStreamlit) -> None:
    with target_process("worker", [("*/*", guarded.base_url)], secret=SECRET) as worker:
        code, report = run_doctor(f"http://{LOOPBACK}:{worker.port}/",
                                  "--origin", guarded.base_url, env={"WSGATE_SECRET": SECRET})
    assert code == 0, explain(report)
    assert report["diagnoses"] == [], explain(report)
    checks = statuses(report)
    for check in ("http", "health", "upgrade", "upgrade-origin", "session", "forwarded",
                  "origin-http-no-secret", "origin-upgrade-no-secret", "origin-with-secret"):
        assert checks[check] == "pass", (check, explain(report))
    assert SECRET not in explain(report)


def test_doctor_names_a_wrong_worker_secret(guarded: GuardedStreamlit) -> None:
    wrong = "not-the-origin-secret-0000"
    with target_process("worker", [("*/*", guarded.base_url)], secret=wrong) as worker:
        code, report = run_doctor(f"http://{LOOPBACK}:{worker.port}/",
                                  "--origin", guarded.base_url, env={"WSGATE_SECRET": SECRET})
    assert code == 1
    assert diagnosis_ids(report)[0] == "secret-rejected", explain(report)
    assert "403" in diagnosis(report, "secret-rejected")["summary"]
    assert wrong not in explain(report) and SECRET not in explain(report)


def test_doctor_names_an_unreachable_origin() -> None:
    dead = f"http://{LOOPBACK}:{free_port()}"
    with target_process("worker", [("*/*", dead)], secret=SECRET) as worker:
        code, report = run_doctor(f"http://{LOOPBACK}:{worker.port}/", "--origin", dead)
    assert code == 1
    assert diagnosis_ids(report) == ["edge-origin-unreachable"], explain(report)
    assert "502" in diagnosis(report, "edge-origin-unreachable")["summary"]


def test_worker_lines_join_the_guards_lines(guarded: GuardedStreamlit) -> None:
    with target_process("worker", [("*/*", guarded.base_url)], secret=SECRET) as worker:
        ex = exchange(worker.port, [b"GET /_stcore/host-config HTTP/1.1\r\nHost: app\r\n"
                                    b"X-Request-Id: worker-join-ok\r\nConnection: close\r\n\r\n"],
                      timeout=15)
        assert ex.statuses == [200]
        worker.wait_event(lambda e: e.get("requestId") == "worker-join-ok", timeout=10)
    assert wait_until(
        lambda: any(e.get("requestId") == "worker-join-ok" for e in guarded.events()), 10)
    done = subprocess.run(
        [sys.executable, "-m", "wsgate", "logs", "--join", "--format", "json",
         "--request-id", "worker-join-ok", str(worker.log_file), str(guarded.log_file)],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    groups = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert [g["requestId"] for g in groups] == ["worker-join-ok"], done.stdout
    group = groups[0]
    assert [e["source"] for e in group["edge"]] == ["edge"]
    assert group["origin"] and all(e["source"] == "origin" for e in group["origin"])
    assert group["status"] == 200


def wrangler_envelope(line: str, headers: dict[str, str], status: int) -> dict[str, object]:
    """A `wrangler tail --format json` invocation carrying one Worker console line, in
    the envelope of tests/logs/fixtures/wrangler_tail.json."""
    event = json.loads(line)
    return {
        "outcome": "ok", "scriptName": "wsgate-edge", "diagnosticsChannelEvents": [],
        "exceptions": [], "eventTimestamp": 1795600801000,
        "logs": [{"message": [line], "level": "log", "timestamp": 1795600801001}],
        "event": {"request": {"url": event["httpRequest"]["requestUrl"], "method": "GET",
                              "headers": headers, "cf": {"colo": "NRT"}},
                  "response": {"status": status}},
    }


def test_wrangler_tail_output_reads_and_joins(guarded: GuardedStreamlit, tmp_path: Path) -> None:
    rid = "worker-tail-join-1"
    with target_process("worker", [("*/*", guarded.base_url)], secret=SECRET) as worker:
        ex = exchange(worker.port, [f"GET /_stcore/host-config HTTP/1.1\r\nHost: app\r\n"
                                    f"X-Request-Id: {rid}\r\nCF-Connecting-IP: 203.0.113.7\r\n"
                                    "Connection: close\r\n\r\n".encode()], timeout=15)
        assert ex.statuses == [200]
        worker.wait_event(lambda e: e.get("requestId") == rid, timeout=10)
    line = next(line for line in worker.events_text().splitlines() if rid in line)
    tail = tmp_path / "tail.json"
    # wrangler pretty-prints each invocation over many lines, one after another.
    tail.write_text(json.dumps(wrangler_envelope(
        line, {"host": "app", "x-request-id": rid, "cf-connecting-ip": "203.0.113.7"}, 200),
        indent=2) + "\n")
    assert wait_until(lambda: any(e.get("requestId") == rid for e in guarded.events()), 10)
    done = subprocess.run(
        [sys.executable, "-m", "wsgate", "logs", "--join", "--format", "json",
         "--request-id", rid, str(tail), str(guarded.log_file)],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    groups = [json.loads(text) for text in done.stdout.splitlines() if text.strip()]
    assert [g["requestId"] for g in groups] == [rid], done.stdout
    edge = groups[0]["edge"]
    assert len(edge) == 1 and edge[0]["format"] == "wrangler"
    assert edge[0]["status"] == 200 and edge[0]["remoteIp"] == "203.0.113.7"
    assert any(rid in text for text in edge[0]["logs"])  # the Worker's own JSON line
    assert groups[0]["origin"]
