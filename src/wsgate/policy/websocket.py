"""WebSocket handshake rules (RFC 6455 §4) for the edge, which is neither end: it
checks the client's request is a real WebSocket handshake before forwarding it, and
that the origin's 101 really answers that request (`Sec-WebSocket-Accept`) before
turning the connection into a tunnel."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from typing import Final, Literal

from wsgate.policy.headers import comma_tokens

GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

Upgrade = Literal["none", "websocket", "drop"]


def accept_value(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + GUID).digest())  # noqa: S324 - RFC 6455


def _values(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [v for n, v in headers if n == name]


def classify_upgrade(method: bytes, http_version: bytes,
                     headers: Sequence[tuple[bytes, bytes]]) -> tuple[Upgrade, str]:
    """("none", ""), ("drop", "") for non-WebSocket upgrades such as h2c (the header is
    removed and the request is plain HTTP), ("websocket", "") for a valid handshake, or
    ("websocket", problem) for a broken WebSocket handshake (answered 400)."""
    upgrade = comma_tokens(headers, b"upgrade")
    if not upgrade:
        return "none", ""
    if b"websocket" not in upgrade:
        return "drop", ""
    if upgrade != [b"websocket"]:
        return "websocket", "Upgrade must be exactly 'websocket'"
    if method != b"GET":
        return "websocket", "a WebSocket upgrade must use GET"
    if http_version != b"1.1":
        return "websocket", "a WebSocket upgrade needs HTTP/1.1"
    if b"upgrade" not in comma_tokens(headers, b"connection"):
        return "websocket", "Connection must include 'Upgrade'"
    keys = _values(headers, b"sec-websocket-key")
    if len(keys) != 1:
        return "websocket", "exactly one Sec-WebSocket-Key is required"
    try:
        raw = base64.b64decode(keys[0], validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 16:
        return "websocket", "Sec-WebSocket-Key must be 16 bytes in base64"
    if _values(headers, b"sec-websocket-version") != [b"13"]:
        return "websocket", "Sec-WebSocket-Version must be 13"
    for name in (b"content-length", b"transfer-encoding"):
        for value in _values(headers, name):
            if value.strip() != b"0":
                return "websocket", "a WebSocket upgrade must not have a body"
    return "websocket", ""


def check_switch(headers: Sequence[tuple[bytes, bytes]], key: bytes) -> str:
    """Problem with the origin's 101 for the client's `key`, or "" when it is valid."""
    if comma_tokens(headers, b"upgrade") != [b"websocket"]:
        return "origin's 101 has no 'Upgrade: websocket'"
    if b"upgrade" not in comma_tokens(headers, b"connection"):
        return "origin's 101 has no 'Connection: Upgrade'"
    accepts = _values(headers, b"sec-websocket-accept")
    if accepts != [accept_value(key)]:
        return "origin's 101 has a wrong Sec-WebSocket-Accept"
    return ""


def close_frame(code: int, reason: bytes = b"") -> bytes:
    """An unmasked (server → client) close frame; reason capped to fit a control frame."""
    payload = code.to_bytes(2, "big") + reason[:123]
    return bytes((0x88, len(payload))) + payload


PING_FRAME: Final = b"\x89\x00"  # unmasked ping, empty payload
