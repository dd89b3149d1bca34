"""Run every hostile corpus case against a real edge process and a recording origin.

Per case: the status (or close) matches the case, the origin saw exactly what it may,
and the rules that hold for every case (see `check_invariants`) are kept. At the end
of the module, no edge log line contains the secret.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterator

import pytest

from tests.hostile import figures
from tests.hostile.corpus import CLOSED, Case, all_cases, masked_text
from tests.support import SECRET_HEADER, Edge, RecordingOrigin, edge_process
from tests.support.origin import Seen
from tests.support.wire import (
    OP_CLOSE,
    OP_TEXT,
    Exchange,
    close_payload,
    encode_frame,
    exchange,
    parse_all,
    parse_frame,
)

EDGE_SETTINGS = {
    "limits": {"max_body_bytes": 65536},
    # Short client timeouts so the "then EOF" and slow cases settle quickly.
    "timeouts": {"request_header": 3.0, "client_body": 3.0, "client_idle": 5.0,
                 "upstream_response": 10.0},
}
TRUSTED_SETTINGS = {**EDGE_SETTINGS, "client_ip_header": "CF-Connecting-IP"}
SETTLE = 0.03  # let a wrongly forwarded request land at the origin before checking

CASES = all_cases()


@pytest.fixture(scope="module")
def origin() -> Iterator[RecordingOrigin]:
    server = RecordingOrigin().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def edges(origin: RecordingOrigin) -> Iterator[dict[str, Edge]]:
    url = f"http://127.0.0.1:{origin.port}"
    with edge_process(url, settings=EDGE_SETTINGS) as default, \
            edge_process(url, settings=TRUSTED_SETTINGS) as trusted:
        yield {"default": default, "trusted": trusted}
        for edge in (default, trusted):
            assert edge.alive(), f"edge crashed:\n{edge.all_output()[-3000:]}"
            output = edge.all_output()
            assert edge.secret not in output, "the secret appears in an edge log line"
            figures.put("corpus.log_lines_scanned",
                        int(figures.FIGURES.get("corpus.log_lines_scanned", 0))
                        + output.count("\n"))


def ws_exchange(port: int, case: Case) -> tuple[Exchange, list[str]]:
    """Send the case, and after a 101 check that the tunnel echoes a frame and closes."""
    problems: list[str] = []
    ex = Exchange()
    buf = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=case.timeout) as sock:
        for chunk in case.send:
            sock.sendall(chunk)
        deadline = time.monotonic() + case.timeout
        while b"\r\n\r\n" not in buf and time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                ex.closed = True
                break
            buf += data
        ex.responses, ex.malformed = parse_all(bytes(buf), ex.closed)
        if ex.statuses[:1] == [101]:
            head_end = buf.index(b"\r\n\r\n") + 4
            frames = bytearray(buf[head_end:])
            if masked_text(case.ws_echo) not in b"".join(case.send):
                sock.sendall(masked_text(case.ws_echo))
            got: list[tuple[int, bytes]] = []
            while time.monotonic() < deadline:
                parsed = parse_frame(frames)
                if parsed is None:
                    data = sock.recv(65536)
                    if not data:
                        break
                    frames += data
                    continue
                frame, used = parsed
                del frames[:used]
                got.append((frame.opcode, frame.payload))
                if frame.opcode == OP_TEXT:
                    sock.sendall(encode_frame(OP_CLOSE, close_payload(1000)))
                if frame.opcode == OP_CLOSE:
                    break
            if (OP_TEXT, case.ws_echo) not in got:
                problems.append(f"tunnel did not echo {case.ws_echo!r}: got {got!r}")
            if not got or got[-1][0] != OP_CLOSE:
                problems.append("no close frame came back through the tunnel")
        ex.raw = bytes(buf)
    return ex, problems


def outcome(ex: Exchange, index: int) -> int | str:
    if index < len(ex.statuses):
        return ex.statuses[index]
    if ex.closed:
        return CLOSED
    return "no answer (timeout)" if ex.timed_out else "nothing"


def check_invariants(case: Case, edge: Edge, origin: RecordingOrigin, ex: Exchange,
                     seen: Seen) -> list[str]:
    """The rules every case keeps, whatever its expected status."""
    problems: list[str] = []
    secret = edge.secret.encode()
    if not edge.alive():
        problems.append("EDGE CRASHED")
        figures.add("corpus.crashes")
    if ex.malformed:
        problems.append(f"malformed response: {ex.malformed}")
    if secret in ex.raw:
        problems.append("the secret appears in the response bytes")
        figures.add("corpus.secrets_leaked")
    clients_101 = ex.statuses.count(101)
    if clients_101 > seen.sent_101:
        problems.append(f"fake 101: client got {clients_101}, origin sent {seen.sent_101}")
        figures.add("corpus.fake_101")
    for status in ex.statuses:
        if status >= 500 and status not in set().union(*case.statuses):
            problems.append(f"unexpected 5xx {status}")
    if seen.errors:
        problems.append(f"origin received malformed HTTP: {seen.errors}")
    raw_low = seen.raw.lower()
    for token in case.forbidden:
        if token.lower() in raw_low:
            problems.append(f"origin saw forbidden bytes {token[:40]!r}")
    host = f"127.0.0.1:{origin.port}".encode()
    for req in seen.requests:
        where = f"origin request {req.method!r} {req.target[:60]!r}"
        if any(t in req.target for t in case.forbidden_targets):
            problems.append(f"{where}: a smuggled request reached the origin")
        if req.values(SECRET_HEADER) != [secret]:
            problems.append(f"{where}: secret header values are not exactly the edge's")
        xff = req.values("x-forwarded-for")
        if len(xff) != 1:
            problems.append(f"{where}: X-Forwarded-For {xff!r}")
        elif case.origin_ip:
            if xff[0] != case.origin_ip or req.values("x-real-ip") != [case.origin_ip]:
                problems.append(f"{where}: client IP {xff!r} / {req.values('x-real-ip')!r}, "
                                f"want {case.origin_ip!r}")
        elif case.config == "default" and xff != [b"127.0.0.1"]:
            problems.append(f"{where}: X-Forwarded-For {xff!r}, want the TCP peer 127.0.0.1")
        elif not _is_ip(xff[0]):
            problems.append(f"{where}: X-Forwarded-For {xff[0]!r} is not one IP address")
        if req.values("host") != [host]:
            problems.append(f"{where}: Host {req.values('host')!r}, want {host!r}")
        if req.values("content-length") and req.values("transfer-encoding"):
            problems.append(f"{where}: both Content-Length and Transfer-Encoding")
        if not (req.target.startswith(b"/") or req.target == b"*"):
            problems.append(f"{where}: target is not origin-form")
        for name in case.origin_absent:
            if req.values(name.decode()):
                problems.append(f"{where}: header {name!r} must not reach the origin")
    return problems


def _is_ip(value: bytes) -> bool:
    try:
        ipaddress.ip_address(value.decode())
    except (UnicodeDecodeError, ValueError):
        return False
    return True


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case: Case, edges: dict[str, Edge], origin: RecordingOrigin) -> None:
    edge = edges[case.config]
    mark = origin.mark()
    problems: list[str] = []
    if case.ws_echo:
        ex, problems = ws_exchange(edge.port, case)
    else:
        ex = exchange(edge.port, case.send, expect=len(case.statuses), timeout=case.timeout,
                      gap=case.gap, shutdown_write=case.shutdown_write,
                      until_close=case.close_after,
                      methods=[b"HEAD"] if case.send[0].startswith(b"HEAD") else None)
    time.sleep(SETTLE)
    seen = origin.since(mark)
    figures.add("corpus.cases")

    for i, acceptable in enumerate(case.statuses):
        got = outcome(ex, i)
        if got not in acceptable:
            problems.append(f"response {i + 1}: got {got}, want one of {sorted(acceptable)}")
    if case.close_after:
        if not ex.closed:
            problems.append("the edge kept the connection open (must close after this request)")
        # No answer may follow the last one the case allows (CLOSED-only sets count 0).
        if len(ex.statuses) > len([s for s in case.statuses if s - {CLOSED}]):
            problems.append(f"extra responses after the one that must close: {ex.statuses}")
    if case.origin == "none" and (seen.requests or seen.raw):
        problems.append(f"origin must see nothing, saw {len(seen.requests)} request(s) "
                        f"and {len(seen.raw)} bytes: {seen.raw[:200]!r}")
    if case.origin == "must" and not seen.requests:
        problems.append("the origin saw no request")
    if 0 <= case.max_origin_requests < len(seen.requests):
        problems.append(f"origin saw {len(seen.requests)} requests, at most "
                        f"{case.max_origin_requests} allowed: "
                        f"{[(r.method, r.target) for r in seen.requests]}")
    problems += check_invariants(case, edge, origin, ex, seen)
    if problems:
        figures.add("corpus.failed")
    assert not problems, "\n".join([f"case {case.name!r} ({case.family}):", *problems,
                                    f"response bytes: {ex.raw[:300]!r}"])


def test_corpus_size() -> None:
    assert len(CASES) >= 200, len(CASES)
    figures.put("corpus.size", len(CASES))
