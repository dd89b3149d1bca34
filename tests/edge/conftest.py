"""Fixtures for edge tests: the recording origin and real `wsgate edge` processes."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.support import Edge, RecordingOrigin, edge_process


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/") else 0


@pytest.fixture(scope="module")
def origins() -> Iterator[RecordingOrigin]:
    with RecordingOrigin() as origin:
        yield origin


@pytest.fixture(scope="module")
def http_edge(origins: RecordingOrigin) -> Iterator[Edge]:
    with edge_process(origins.url, extra=("--drain-timeout", "3")) as edge:
        yield edge


@pytest.fixture(scope="module")
def ws_edge(origins: RecordingOrigin) -> Iterator[Edge]:
    with edge_process(origins.ws_url) as edge:
        yield edge


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
