from __future__ import annotations

import base64

import pytest

from wsgate.policy.websocket import accept_value, check_switch, classify_upgrade, close_frame

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
GOOD = [(b"host", b"a"), (b"upgrade", b"websocket"), (b"connection", b"keep-alive, Upgrade"),
        (b"sec-websocket-key", KEY), (b"sec-websocket-version", b"13")]


def test_rfc_example_accept() -> None:
    assert accept_value(KEY) == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_valid_handshake() -> None:
    assert classify_upgrade(b"GET", b"1.1", GOOD) == ("websocket", "")


def test_no_upgrade_and_other_protocols() -> None:
    assert classify_upgrade(b"GET", b"1.1", [(b"host", b"a")]) == ("none", "")
    assert classify_upgrade(b"GET", b"1.1", [(b"upgrade", b"h2c")]) == ("drop", "")


def replace(name: bytes, value: bytes | None) -> list[tuple[bytes, bytes]]:
    out = [(n, v) for n, v in GOOD if n != name]
    return out + ([(name, value)] if value is not None else [])


@pytest.mark.parametrize(("method", "version", "headers"), [
    (b"POST", b"1.1", GOOD),
    (b"GET", b"1.0", GOOD),
    (b"GET", b"1.1", replace(b"sec-websocket-key", None)),
    (b"GET", b"1.1", replace(b"sec-websocket-key", b"short")),
    (b"GET", b"1.1", replace(b"sec-websocket-key", base64.b64encode(b"x" * 17))),
    (b"GET", b"1.1", [*GOOD, (b"sec-websocket-key", KEY)]),
    (b"GET", b"1.1", replace(b"sec-websocket-version", b"8")),
    (b"GET", b"1.1", replace(b"sec-websocket-version", None)),
    (b"GET", b"1.1", replace(b"connection", b"keep-alive")),
    (b"GET", b"1.1", replace(b"upgrade", b"websocket, h2c")),
    (b"GET", b"1.1", [*GOOD, (b"upgrade", b"websocket")]),
    (b"GET", b"1.1", [*GOOD, (b"content-length", b"5")]),
])
def test_broken_handshakes_are_refused(method: bytes, version: bytes,
                                       headers: list[tuple[bytes, bytes]]) -> None:
    kind, problem = classify_upgrade(method, version, headers)
    assert kind == "websocket" and problem


def test_check_switch() -> None:
    ok = [(b"upgrade", b"websocket"), (b"connection", b"Upgrade"),
          (b"sec-websocket-accept", accept_value(KEY))]
    assert check_switch(ok, KEY) == ""
    assert "Accept" in check_switch([*ok[:2], (b"sec-websocket-accept", b"x")], KEY)
    assert "Accept" in check_switch([*ok, (b"sec-websocket-accept", accept_value(KEY))], KEY)
    assert "Upgrade" in check_switch(ok[1:], KEY)
    assert "Connection" in check_switch([ok[0], ok[2]], KEY)


def test_close_frame_is_unmasked_and_bounded() -> None:
    assert close_frame(1001, b"bye") == b"\x88\x05\x03\xe9bye"
    frame = close_frame(1011, b"x" * 500)
    assert frame[0] == 0x88 and frame[1] == 125 and len(frame) == 127
