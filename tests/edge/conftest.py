"""Fixtures for edge tests: recording origins and real `wsgate edge` processes."""

from __future__ import annotations

import json
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.edge.origins import Origins
from tests.support import ServerProcess, free_port, wsgate_command

SECRET = "edge-test-secret-9f2c"


class Edge:
    """A running `wsgate edge` subprocess with its JSON log file."""

    def __init__(self, origin: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.log = Path(tempfile.mkstemp(suffix=".jsonl")[1])
        self.args = args
        cmd = wsgate_command("edge", "--origin", origin, "--listen", f"127.0.0.1:{self.port}",
                             "--log-file", str(self.log), *args)
        self.process = ServerProcess(cmd, self.port, {"WSGATE_SECRET": SECRET, **(env or {})})

    def start(self) -> Edge:
        self.process.start(timeout=60)
        return self

    def stop(self) -> None:
        self.process.stop()

    def events(self) -> list[dict[str, Any]]:
        lines = self.log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def wait_events(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.events()
            if len(events) >= count:
                return events
            time.sleep(0.02)
        return self.events()

    def wait_event(self, predicate: Callable[[dict[str, Any]], bool],
                   timeout: float = 5.0) -> dict[str, Any]:
        """The first log event matching `predicate`, waiting for it to be written."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events():
                if predicate(event):
                    return event
            time.sleep(0.02)
        raise AssertionError(f"no matching event in {self.log}: {self.events()[-3:]}")

    def raw(self, data: bytes, timeout: float = 5.0) -> bytes:
        return raw_exchange(self.port, data, timeout)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def raw_exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send bytes, read until the server closes (or `timeout`)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        return recv_until_closed(sock, timeout=timeout)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/") else 0


@pytest.fixture(scope="module")
def origins() -> Iterator[Origins]:
    with Origins() as o:
        yield o


@pytest.fixture(scope="module")
def http_edge(origins: Origins) -> Iterator[Edge]:
    edge = Edge(origins.http_url, "--drain-timeout", "3").start()
    yield edge
    edge.stop()


@pytest.fixture(scope="module")
def ws_edge(origins: Origins) -> Iterator[Edge]:
    edge = Edge(origins.ws_url).start()
    yield edge
    edge.stop()


WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
WS_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def ws_upgrade_request(path: str, extra: str = "") -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: app.example.com\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{extra}\r\n").encode()


def read_head(sock: socket.socket, timeout: float = 5.0) -> tuple[bytes, bytes]:
    """Read one response head; returns (head, bytes that followed it)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def recv_until_closed(sock: socket.socket, initial: bytes = b"", timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    data = initial
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        data += chunk
    return data
