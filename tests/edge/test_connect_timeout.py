"""An origin that never answers the TCP handshake: 504 and a `connect-timeout` event.

On loopback a connect is either accepted or refused at once, so the silent origin
lives in a private network namespace made for the test: a veth pair whose far end
holds no address, so the SYN to 192.0.2.2 (TEST-NET-1) is never answered. The edge
and the client both run inside that namespace; nothing leaves it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.edge.conftest import ws_upgrade_request
from tests.support import IP, ip_command, private_network_namespace

SILENT_ORIGIN = "http://192.0.2.2:80"
EDGE_PORT = 18080

# Runs inside the namespace: waits for the edge, sends one request, prints the answer.
CLIENT = r"""
import socket, sys, time
deadline = time.monotonic() + 20
while True:
    try:
        s = socket.create_connection(("127.0.0.1", PORT), timeout=1)
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.05)
s.settimeout(10)
s.sendall(sys.stdin.buffer.read())
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
sys.stdout.write(data.decode("latin-1"))
""".replace("PORT", str(EDGE_PORT))


@pytest.fixture
def silent_origin_namespace() -> Iterator[str]:
    with private_network_namespace("wsgate-edge") as name:
        for args in (("link", "add", "va", "type", "veth", "peer", "name", "vb"),
                     ("addr", "add", "192.0.2.1/24", "dev", "va"),
                     ("link", "set", "va", "up"), ("link", "set", "vb", "up")):
            result = ip_command("netns", "exec", name, "ip", *args)
            assert result.returncode == 0, result.stderr
        yield name


@pytest.mark.parametrize("request_bytes", [
    b"GET /page HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n",
    ws_upgrade_request("/_stcore/stream"),
], ids=["http", "upgrade"])
def test_silent_origin_gives_504_and_an_error_event(
        silent_origin_namespace: str, request_bytes: bytes, tmp_path: Path) -> None:
    log_file = tmp_path / "edge.jsonl"
    secret = "connect-timeout-" + uuid.uuid4().hex
    env = {**os.environ, "WSGATE_SECRET": secret, "WSGATE_EDGE_TIMEOUTS_CONNECT": "0.5"}
    assert IP is not None
    netns = [IP, "netns", "exec", silent_origin_namespace]
    edge = subprocess.Popen(
        [*netns, sys.executable, "-m", "wsgate", "edge", "--origin", SILENT_ORIGIN,
         "--listen", f"127.0.0.1:{EDGE_PORT}", "--log-file", str(log_file)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # Bytes, not text: universal newlines would turn the CRLFs into LFs.
        answer = subprocess.run([*netns, sys.executable, "-c", CLIENT], input=request_bytes,
                                capture_output=True, timeout=30)
    finally:
        edge.terminate()
        _, stderr = edge.communicate(timeout=15)
    assert answer.returncode == 0, answer.stderr
    response = answer.stdout.decode("latin-1")
    status_line, _, rest = response.partition("\r\n")
    assert status_line == "HTTP/1.1 504 Gateway Timeout", response
    body = rest.partition("\r\n\r\n")[2]
    assert body.startswith("Edge Proxy Error: "), body
    assert secret not in response
    assert edge.returncode == 0, stderr

    events = [json.loads(line) for line in log_file.read_text().splitlines()]
    errors = [e for e in events if e["message"] == "Edge Proxy Error"]
    assert len(errors) == 1, events
    assert errors[0]["severity"] == "ERROR"
    assert errors[0]["errorClass"] == "connect-timeout"
    assert errors[0]["httpRequest"]["status"] == 504
    assert errors[0]["isWebSocket"] is (b"Upgrade" in request_bytes)
    assert secret not in log_file.read_text()
