"""The benchmark's own parts work: origin, cheap clients, /proc readers, summaries.

The figures themselves are never asserted (a benchmark is not a test); these
tests make sure the harness measures what it claims, against real servers.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import micro, procstat, run, targets, wsclient
from tests.support import REPO

SECRET = "bench-test-secret"
BENCH = REPO / "bench"


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[targets.Process]:
    proc = targets.origin_process(tmp_path_factory.mktemp("origin"), SECRET, cpu=None)
    proc.start()
    yield proc
    proc.stop()


def get(port: int, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_origin_refuses_a_request_without_the_secret(origin: targets.Process) -> None:
    status, _ = get(origin.port, "/static/x.js", {})
    assert status == 403
    sock = wsclient.connect(origin.port)
    sock.sendall(wsclient.upgrade_request("127.0.0.1", origin.port))
    with pytest.raises(wsclient.BenchError, match="403"):
        wsclient.read_upgrade(sock)
    sock.close()


def test_origin_answers_the_rfc_accept_value(origin: targets.Process) -> None:
    sock = wsclient.connect(origin.port)
    sock.sendall(wsclient.upgrade_request("127.0.0.1", origin.port,
                                          extra={"X-CF-Secret": SECRET}))
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk
        head += chunk
    sock.close()
    # RFC 6455 §1.3's sample key and its accept value.
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in head


def test_origin_serves_the_asset_with_keepalive(origin: targets.Process) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", origin.port, timeout=10)
    for _ in range(3):  # same connection each time: keep-alive
        conn.request("GET", "/static/x.js", headers={"X-CF-Secret": SECRET})
        resp = conn.getresponse()
        assert resp.status == 200
        assert len(resp.read()) == 30 * 1024
    conn.close()


@pytest.mark.parametrize("size", [0, 32, 125, 126, 300, 65535, 65536, 200_000])
def test_origin_echoes_every_length_encoding(origin: targets.Process, size: int) -> None:
    payload = os.urandom(size)
    request = wsclient.upgrade_request("127.0.0.1", origin.port, extra={"X-CF-Secret": SECRET})
    conn = wsclient.open_ws(origin.port, request)
    conn.sock.sendall(wsclient.client_frame(payload))
    # The echo comes back unmasked: header then exactly our payload.
    expected_len = len(payload) + (2 if size < 126 else 4 if size < 65536 else 10)
    got = b""
    while len(got) < expected_len:
        chunk = conn.sock.recv(1 << 20)
        assert chunk
        got += chunk
    assert got[0] == 0x82
    assert got[-size:] == payload if size else got == b"\x82\x00"
    conn.close()


def test_pipelined_batches_and_handshakes_count_units(origin: targets.Process) -> None:
    request = wsclient.upgrade_request("127.0.0.1", origin.port, extra={"X-CF-Secret": SECRET})
    conns = [wsclient.open_ws(origin.port, request) for _ in range(3)]
    batch = wsclient.client_frame(b"s" * 100) * 50
    deadline = float("inf")
    assert wsclient.pipelined(conns, batch, 50, 4, deadline) == 3 * 50 * 4
    lat = wsclient.timed_round_trips(conns, wsclient.client_frame(b"r" * 32), 10, deadline)
    assert [len(x) for x in lat] == [10, 10, 10]
    wsclient.close_many(conns)
    assert wsclient.handshakes(origin.port, request, 20, deadline) == 20
    held = wsclient.open_many(origin.port, request, 50, deadline, batch=16)
    assert len(held) == 50
    wsclient.close_many(held)


def test_frame_reader_skips_control_frames() -> None:
    a, b = socket.socketpair()
    with a, b:
        ping = bytes((0x89, 4)) + b"ping"
        data = bytes((0x82, 126)) + (300).to_bytes(2, "big") + b"d" * 300
        # Split in awkward places to exercise partial headers.
        stream = ping + data + data
        for i in range(0, len(stream), 7):
            a.sendall(stream[i:i + 7])
        reader = wsclient.FrameReader(b)
        assert reader.read(2) == 600


def test_frame_reader_reports_a_close_as_an_error() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.sendall(bytes((0x88, 2)) + (1001).to_bytes(2, "big"))
        with pytest.raises(wsclient.BenchError, match="closed"):
            wsclient.FrameReader(b).read(1)


def test_procstat_sums_a_process_tree() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        usage = procstat.usage(os.getpid())
        assert child.pid in usage.pids
        assert usage.rss_bytes > 1_000_000
        assert usage.cpu_s > 0
        assert usage.sched_s > 0
    finally:
        child.kill()
        child.wait()


def test_summaries_and_ratio_to_the_best_nginx() -> None:
    per = {"nginx": run.summarise([300, 310, 290]), "nginx-64k": run.summarise([80, 90, 70]),
           "wsgate": run.summarise([120, 100, 110])}
    assert per["nginx"].median == 300
    assert (per["nginx"].low, per["nginx"].high) == (290, 310)
    assert run.ratio(per, run.NGINXES) == pytest.approx(110 / 80)
    assert run.ratio(per, run.NGINXES, lower_is_better=False) == pytest.approx(110 / 300)
    assert run.ratio({"nginx": per["nginx"]}, run.NGINXES) is None
    text = run.table({"rt_cpu_us": {k: [v.median] for k, v in per.items()}},
                     ["nginx", "nginx-64k", "wsgate"], run.CPU_FIGURES[:1], True, run.NGINXES,
                     "wsgate/best nginx")
    assert "1.38" in text


@pytest.mark.nginx
def test_nginx_target_does_the_edge_job(origin: targets.Process, tmp_path: Path) -> None:
    bench = run.Bench(run.QUICK, ["nginx-64k"], tmp_path, pin=False, wsgate_args=[])
    bench.origin = origin
    bench.secret = SECRET
    target = bench.make_target("nginx-64k")
    assert target.process is not None
    target.process.start()
    try:
        check = bench.verify(target)
        assert check["origin_saw"] == sorted(
            ["x-cf-secret", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto",
             "x-real-ip", "x-request-id"])
        assert check["asset_headers"] == {"x-worker-proxy": "Active",
                                          "cache-control": "public, max-age=86400"}
        assert procstat.usage(target.process.pid).pids[1:], "nginx worker not found"
    finally:
        target.process.stop()


@pytest.mark.slow
def test_quick_run_end_to_end(tmp_path: Path) -> None:
    """`bench/run.py --quick` runs to the end and writes every figure it promises."""
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--quick", "--targets", "direct",
         "--no-pin", "--out", str(out)],
        capture_output=True, text=True, timeout=170, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["failed"] == {}
    for key in ("rt_p50_us", "small_per_s", "large_mb_s", "handshake_per_s", "http_per_s"):
        assert result["summary"][key]["direct"]["n"] == 3, key
    assert "CPU per 32 B round trip" in proc.stdout


def test_micro_times_the_request_path_functions_on_real_input() -> None:
    """Each step micro.py times really does its work on the sample request (so a
    changed signature or a step that fails fast cannot pass for a fast step)."""
    results = {name.split(":")[0]: fn() for name, fn, _ in micro.steps()}
    assert results["client head"].method == b"GET"
    origin_headers = dict(results["origin headers"])
    assert origin_headers[b"x-cf-secret"] == b"bench-secret"
    assert origin_headers[b"x-forwarded-for"] == b"203.0.113.7"
    assert results["origin head"].startswith(b"GET /static/app.js?v=3 HTTP/1.1\r\n")
    assert results["origin answer"].length == micro.ASSET
    assert b"".join(results["chunked body"]) == b"c" * 8 * 4096
    client_headers = dict(results["client headers"])
    assert client_headers[b"cache-control"] == b"public, max-age=86400"
    assert b"x-cloud-trace-context" not in client_headers
    assert json.loads(results["log line"])["httpRequest"]["status"] == 200


@pytest.mark.parametrize("how", [["-m", "bench.run"], [str(BENCH / "run.py")],
                                 ["-m", "bench.soak"], [str(BENCH / "soak.py")]],
                         ids=["run-module", "run-script", "soak-module", "soak-script"])
def test_entry_points_start_as_module_and_as_script(how: list[str], tmp_path: Path) -> None:
    """`python -m bench.X` and `python bench/X.py` (quoted in the docs) both import
    the package; run from elsewhere so the checkout is not on the path by accident."""
    proc = subprocess.run([sys.executable, *how, "--help"], capture_output=True, text=True,
                          timeout=60, check=False, cwd=tmp_path if "-m" not in how else REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage:" in proc.stdout


def test_micro_smoke_run_prints_every_step() -> None:
    proc = subprocess.run([sys.executable, str(BENCH / "micro.py"), "--scale", "0.001"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name, _, _ in micro.steps():
        assert name in proc.stdout
