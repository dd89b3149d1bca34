"""`wsgate demo` end to end: real Streamlit, real edge, real doctor, real signals."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.demo.helpers import pids_mentioning
from tests.support import free_port, wait_for_port

pytestmark = [pytest.mark.streamlit, pytest.mark.slow]

TIMEOUT = 240  # whole command, on a loaded 2-core machine


def demo(*args: str) -> list[str]:
    return [sys.executable, "-m", "wsgate", "demo", "--startup-timeout", "150", *args]


def port_is_closed(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


def test_check_passes_and_leaves_nothing_behind(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    done = subprocess.run(demo("--check", "--log-dir", str(logs)), capture_output=True,
                          text=True, timeout=TIMEOUT, check=False)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "demo check passed" in out
    assert "doctor through the edge: ok" in out
    assert "origin without the secret: refused" in out
    assert re.search(r"Started and checked in \d+\.\d s", out)
    assert "Traceback" not in out + done.stderr
    assert pids_mentioning(str(logs)) == []
    # The JSON events of both sides were kept, and no line holds a secret-like header.
    assert (logs / "edge.jsonl").stat().st_size > 0
    assert (logs / "origin.jsonl").exists()
    for name in ("edge.jsonl", "origin.jsonl", "edge.out", "origin.out"):
        assert "x-cf-secret:" not in (logs / name).read_text().lower()
    assert f"Logs kept in {logs}" in out  # a --log-dir of the user's is never removed


def test_interactive_runs_until_ctrl_c_and_keeps_its_logs() -> None:
    # No --log-dir: the screen shows a `wsgate logs` command for a temporary
    # directory, so Ctrl-C must keep that directory and say where it is.
    process = subprocess.Popen(demo(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    lines: list[str] = []
    logs: Path | None = None
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Press Ctrl-C" in line:
                break
        text = "".join(lines)
        assert "Press Ctrl-C" in text, text
        public = int(re.search(r"Open\s+http://127\.0\.0\.1:(\d+)", text)[1])  # type: ignore[index]
        direct = int(re.search(r"Direct\s+http://127\.0\.0\.1:(\d+)", text)[1])  # type: ignore[index]
        shown = re.search(r"wsgate logs --join (\S+)/edge\.jsonl (\S+)/origin\.jsonl", text)
        assert shown is not None and shown[1] == shown[2], text
        logs = Path(shown[1])
        wait_for_port(public, timeout=5)
        wait_for_port(direct, timeout=5)
        children = pids_mentioning(str(logs))
        assert len(children) >= 2  # wsgate run (+ Streamlit) and wsgate edge

        process.send_signal(signal.SIGINT)  # what a terminal's Ctrl-C does
        rest, _ = process.communicate(timeout=60)
        assert process.returncode == 0, text + rest
        assert "stopped." in rest
        assert f"Logs kept in {logs}: wsgate logs --join {logs}/edge.jsonl" in rest
        assert (logs / "edge.jsonl").stat().st_size > 0  # the health checks, at least
        assert (logs / "origin.jsonl").exists()
        assert "Traceback" not in text + rest
        assert pids_mentioning(str(logs)) == []
        assert port_is_closed(public) and port_is_closed(direct)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        if logs is not None:
            shutil.rmtree(logs, ignore_errors=True)


def test_sigterm_stops_cleanly_too(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    process = subprocess.Popen(demo("--log-dir", str(logs)), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + TIMEOUT
        text = ""
        while "Press Ctrl-C" not in text and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            text += line
        assert "Press Ctrl-C" in text, text
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert process.returncode == 0, text + rest
    assert pids_mentioning(str(logs)) == []


def test_origin_that_cannot_start_fails_with_a_clear_message(tmp_path: Path) -> None:
    # A real failure: the origin's port is taken, so `wsgate run` cannot listen.
    logs = tmp_path / "logs"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(demo("--check", "--origin-port", str(port), "--port",
                                   str(free_port()), "--log-dir", str(logs)),
                              capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "origin (wsgate run)" in done.stdout
    assert "Traceback" not in done.stderr  # the demo itself did not crash
    assert pids_mentioning(str(logs)) == []


def test_check_fails_when_the_app_does_not_render(tmp_path: Path) -> None:
    # A real fault the doctor must see: a script with a syntax error never finishes,
    # so the page would stay on "Please wait..." and --check must say so and exit 1.
    app = tmp_path / "broken.py"
    app.write_text('import streamlit as st\nst.write("never closed"\n')
    logs = tmp_path / "logs"
    done = subprocess.run(demo("--check", "--app", str(app), "--log-dir", str(logs)),
                          capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "demo check FAILED" in done.stdout
    assert "doctor through the edge reports a fault: app-not-rendering" in done.stdout
    assert "SyntaxError" in done.stdout  # the origin's output is shown to explain it
    assert "Traceback" not in done.stderr
    assert pids_mentioning(str(logs)) == []


class _HealthyStack(BaseHTTPRequestHandler):
    """Answers every GET 200 "ok", as another stack's /_stcore/health does."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def healthy_server_on_a_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HealthyStack)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("taken", "child", "cause"), [
    ("--origin-port", "origin (wsgate run)", "is already in use"),
    ("--port", "edge (wsgate edge)", "ddress already in use"),
])
def test_port_served_by_another_stack_is_not_taken_for_ready(taken: str, child: str,
                                                             cause: str) -> None:
    # The other server answers the health path 200 the whole time: readiness must
    # come from the demo's own child, which fails to bind and says why.
    with healthy_server_on_a_port() as port:
        done = subprocess.run(demo("--check", taken, str(port)), capture_output=True,
                              text=True, timeout=TIMEOUT, check=False)
    out = done.stdout
    kept = re.search(r"Logs kept in (\S+):", out)
    try:
        assert done.returncode == 1, out + done.stderr
        assert f"✗ {child} exited with status 1 before it was ready" in out, out
        assert f"last lines of the {child} output:" in out
        assert cause in out  # the child's own words, not just an exit status
        assert "doctor through the edge" not in out  # nothing ran against the other stack
        assert f"127.0.0.1:{port}   the app" not in out
        assert kept is not None, out
        logs = Path(kept[1])
        output = (logs / ("origin.out" if "origin" in child else "edge.out")).read_text()
        assert cause in output
        assert "Traceback" not in done.stderr
        assert pids_mentioning(str(logs)) == []
    finally:
        if kept is not None:
            shutil.rmtree(kept[1], ignore_errors=True)
