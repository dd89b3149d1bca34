"""Real processes for the logs and metrics tests: a small origin and `wsgate edge`."""

from __future__ import annotations

import contextlib
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from prometheus_client.parser import text_string_to_metric_families

from tests.support import LOOPBACK, REPO, ServerProcess, free_port, wsgate_command

SECRET = "logs-test-secret-0123456789"


def origin_process() -> ServerProcess:
    port = free_port()
    return ServerProcess([sys.executable, "-m", "uvicorn", "tests.logs.origin_app:app",
                          "--host", LOOPBACK, "--port", str(port), "--log-level", "warning"],
                         port, cwd=str(REPO))


@dataclass
class EdgeProcess(ServerProcess):
    admin_port: int = 0  # 0: no admin listener


def edge_process(origin_url: str, log_file: Path, *, admin: bool = True,
                 secret: str = SECRET, extra: tuple[str, ...] = ()) -> EdgeProcess:
    port = free_port()
    admin_port = free_port() if admin else 0
    args = ["edge", "--origin", origin_url, "--listen", f"{LOOPBACK}:{port}",
            "--log-file", str(log_file), *extra]
    if admin:
        args += ["--admin-listen", f"{LOOPBACK}:{admin_port}"]
    return EdgeProcess(wsgate_command(*args), port, env={"WSGATE_SECRET": secret},
                       cwd=str(REPO), admin_port=admin_port)


S = TypeVar("S", bound=ServerProcess)


@contextlib.contextmanager
def started(server: S, timeout: float = 60.0) -> Iterator[S]:
    server.start(timeout)
    try:
        yield server
    finally:
        server.stop()


def http_get(port: int, path: str, headers: dict[str, str] | None = None,
             timeout: float = 10.0) -> tuple[int, bytes, int]:
    """A raw HTTP/1.1 GET with `Connection: close`: (status, body, bytes received)."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {LOOPBACK}:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
        sock.sendall(request)
        received = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, body, len(received)


def admin_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{port}{path}", timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics parsed by prometheus_client's own parser: (sample, labels) -> value."""
    status, text = admin_get(port, "/metrics")
    assert status == 200, text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_until(condition: object, timeout: float = 10.0, interval: float = 0.05) -> bool:
    """Polls `condition()` until true; bounded in time (for asynchronous bookkeeping)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(interval)
    return False
