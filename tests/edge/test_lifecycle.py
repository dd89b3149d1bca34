"""Process-level behaviour: SIGTERM drain, admin endpoints, keepalive pings, TLS, and
bounded memory with a slow reader."""

from __future__ import annotations

import contextlib
import http.client
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.edge.conftest import read_head, status_of, ws_upgrade_request
from tests.support import SECRET, Edge, RecordingOrigin, edge_process, wsgate_command


def test_sigterm_drains_http_and_closes_websockets_with_1001(origins: RecordingOrigin) -> None:
    edge = edge_process(None, settings={"timeouts": {"drain": 5}},
                        routes=[("*/slow/*", origins.url), ("*/*", origins.ws_url)]).start()
    port, admin = edge.port, edge.admin_port
    try:
        conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=5)
        conn.request("GET", "/readyz")
        assert conn.getresponse().status == 200
        with contextlib.ExitStack() as stack:
            sockets = [stack.enter_context(connect(f"ws://127.0.0.1:{port}/echo"))
                       for _ in range(2)]
            for ws in sockets:
                ws.send("x")
                assert ws.recv(timeout=5) == "x"
            result: dict[str, object] = {}

            def slow_request() -> None:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                c.request("GET", "/slow/1.5")
                r = c.getresponse()
                result["status"], result["body"] = r.status, r.read()

            worker = threading.Thread(target=slow_request)
            worker.start()
            time.sleep(0.5)  # the slow request is in flight at the origin
            started = time.monotonic()
            edge.signal(signal.SIGTERM)
            for ws in sockets:
                with pytest.raises(ConnectionClosed) as info:
                    ws.recv(timeout=5)
                assert info.value.rcvd is not None and info.value.rcvd.code == 1001
            worker.join(10)
            assert result.get("status") == 200 and result.get("body") == b"slow ok\n"
            assert edge.process is not None
            assert edge.process.wait(10) == 0
            assert time.monotonic() - started < 5 + 2
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        events = [e for e in edge.events() if e.get("isWebSocket")]
        assert sum(1 for e in events if e.get("closeCode") == 1001
                   and e.get("closedBy") == "edge") == 2
    finally:
        edge.stop()


def test_admin_metrics_and_health(origins: RecordingOrigin) -> None:
    edge = edge_process(origins.url).start()
    admin = edge.admin_port
    try:
        with connect(f"ws://127.0.0.1:{edge.port}/_bad/die") as _ws:
            pass
    except Exception:  # the origin kills it: only the counters matter here
        pass
    try:
        for path in ("/echo", "/status/404", "/status/500"):
            c = http.client.HTTPConnection("127.0.0.1", edge.port, timeout=5)
            c.request("GET", path)
            c.getresponse().read()
        c = http.client.HTTPConnection("127.0.0.1", admin, timeout=5)
        c.request("GET", "/healthz")
        assert c.getresponse().read() == b"ok\n"
        c.request("GET", "/metrics")
        body = c.getresponse().read().decode()
        assert 'wsgate_edge_requests_total{route="*/*",status_class="2xx"}' in body
        assert 'status_class="4xx"' in body and 'status_class="5xx"' in body
        assert "wsgate_edge_request_seconds_bucket" in body
        assert SECRET not in body
        # Metrics are not on the public listener.
        c = http.client.HTTPConnection("127.0.0.1", edge.port, timeout=5)
        c.request("GET", "/metrics")
        assert "wsgate_edge" not in c.getresponse().read().decode()
    finally:
        edge.stop()


@pytest.mark.slow
def test_keepalive_ping_sent_to_silent_client(origins: RecordingOrigin) -> None:
    edge = edge_process(origins.ws_url, extra=("--ping-interval", "1")).start()
    try:
        with socket.create_connection(("127.0.0.1", edge.port), timeout=5) as sock:
            sock.sendall(ws_upgrade_request("/silent"))
            head, rest = read_head(sock)
            assert status_of(head) == 101
            sock.settimeout(4)
            data = rest
            deadline = time.monotonic() + 4
            while b"\x89\x00" not in data and time.monotonic() < deadline:
                data += sock.recv(100)
            assert data.startswith(b"\x89\x00")  # an unmasked empty ping, nothing else
        # A real client answers the pings and the session stays healthy.
        with connect(f"ws://127.0.0.1:{edge.port}/echo") as ws:
            time.sleep(2.5)
            ws.send("still here")
            assert ws.recv(timeout=5) == "still here"
    finally:
        edge.stop()


@pytest.fixture(scope="module")
def tls_files() -> Iterator[tuple[trustme.CA, Path, Path, Path]]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    d = Path(tempfile.mkdtemp())
    chain, key, ca_file = d / "chain.pem", d / "key.pem", d / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(chain)
    cert.private_key_pem.write_to_path(key)
    ca.cert_pem.write_to_path(ca_file)
    yield ca, chain, key, ca_file


def test_tls_listener_and_https_origin(origins: RecordingOrigin,
                                       tls_files: tuple[trustme.CA, Path, Path, Path]) -> None:
    _ca, chain, key, ca_file = tls_files
    # An https origin: a second edge with TLS in front of the recording origin.
    inner = edge_process(origins.ws_url, extra=("--tls-cert", str(chain), "--tls-key", str(key),
                                                "--insecure-no-secret")).start()
    outer = edge_process(f"https://localhost:{inner.port}", extra=(
        "--tls-cert", str(chain), "--tls-key", str(key), "--origin-ca-file", str(ca_file))).start()
    try:
        client_ctx = ssl.create_default_context(cafile=str(ca_file))
        with connect(f"wss://localhost:{outer.port}/echo", ssl=client_ctx) as ws:
            ws.send("over tls twice")
            assert ws.recv(timeout=5) == "over tls twice"
        c = http.client.HTTPSConnection("localhost", outer.port, context=client_ctx, timeout=5)
        c.request("GET", "/http-plain")
        r = c.getresponse()
        assert r.status == 200 and r.read() == b"plain answer from the ws origin\n"
        # Without the CA the outer edge refuses the origin's certificate: 502, never a leak.
        bad = edge_process(f"https://localhost:{inner.port}").start()
        try:
            c2 = http.client.HTTPConnection("127.0.0.1", bad.port, timeout=5)
            c2.request("GET", "/x")
            r2 = c2.getresponse()
            assert r2.status == 502 and r2.read().startswith(b"Edge Proxy Error: ")
            bad.wait_event(lambda e: e.get("errorClass") == "tls-verify")
        finally:
            bad.stop()
    finally:
        outer.stop()
        inner.stop()


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.slow
def test_slow_reader_keeps_edge_memory_bounded(ws_edge: Edge) -> None:
    pid = ws_edge.pid
    before = rss_kb(pid)
    total = 64 * 1024 * 1024
    with socket.create_connection(("127.0.0.1", ws_edge.port), timeout=10) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(ws_upgrade_request(f"/flood/{total}"))
        head, rest = read_head(sock)
        assert status_of(head) == 101
        time.sleep(1.5)  # not reading: the origin must be paused, not buffered in the edge
        peak = rss_kb(pid)
        received = len(rest)
        sock.settimeout(10)
        deadline = time.monotonic() + 30
        while received < total and time.monotonic() < deadline:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            received += len(chunk)
            peak = max(peak, rss_kb(pid)) if received % (8 << 20) < (1 << 20) else peak
    assert received >= total
    assert peak - before < 16 * 1024, f"edge RSS grew by {peak - before} KiB"


def test_config_error_is_one_line_and_exit_2() -> None:
    proc = subprocess.run(wsgate_command("edge", "--origin", "ftp://x"), capture_output=True,
                          text=True, timeout=30, env={"WSGATE_SECRET": "x", "PATH": ""})
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "origin" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert sys.executable
