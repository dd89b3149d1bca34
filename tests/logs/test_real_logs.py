"""Logs written by the real edge and the real `wsgate run`, then filtered and joined.

One Streamlit origin behind two edges: one holding the right secret, one a wrong one
(so the origin refuses what it forwards, and the edge's 403 joins the origin's reason).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.logs.edge_support import http_get
from tests.logs.helpers import json_lines, run_logs
from tests.support import (
    LOOPBACK,
    REPO,
    SECRET,
    ServerProcess,
    edge_process,
    free_port,
    started,
    wait_until,
    wsgate_command,
)
from wsgate.doctor.streamlit_session import run_session

pytestmark = [pytest.mark.streamlit, pytest.mark.slow]

APP = Path(__file__).resolve().parent / "hello_app.py"
DIRECT_ID = "direct-refusal-0001"
MISMATCH_ID = "edge-mismatch-0001"
WS_MISMATCH_ID = "edge-ws-mismatch-0001"


@dataclass
class Stack:
    origin_log: Path
    good_log: Path
    bad_log: Path
    ws_close_code: int | None

    @property
    def files(self) -> list[str]:
        return [str(self.good_log), str(self.bad_log), str(self.origin_log)]


def _origin(log: Path) -> ServerProcess:
    port = free_port()
    return ServerProcess(
        wsgate_command("run", str(APP), "--log-file", str(log), "--server.port", str(port),
                       "--server.address", LOOPBACK, "--server.headless", "true",
                       "--browser.gatherUsageStats", "false"),
        port, env={"WSGATE_SECRET": SECRET}, cwd=str(REPO))


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("real-logs")
    origin_log, good_log, bad_log = root / "origin.log", root / "edge.log", root / "bad.log"
    with started(_origin(origin_log), timeout=90) as origin:
        origin_url = f"http://{LOOPBACK}:{origin.port}"
        good = edge_process(origin_url, good_log, admin=False)
        bad = edge_process(origin_url, bad_log, admin=False, secret="not-the-secret-at-all")
        with started(good), started(bad):
            assert http_get(good.port, "/")[0] == 200
            result = asyncio.run(run_session(f"ws://{LOOPBACK}:{good.port}/_stcore/stream",
                                             timeout=60))
            assert result.ok, result
            assert http_get(origin.port, "/", {"X-Request-Id": DIRECT_ID})[0] == 403
            assert http_get(bad.port, "/", {"X-Request-Id": MISMATCH_ID})[0] == 403
            refused = asyncio.run(run_session(f"ws://{LOOPBACK}:{bad.port}/_stcore/stream",
                                              headers={"X-Request-Id": WS_MISMATCH_ID},
                                              timeout=60))
            assert refused.status == 403
            # Each log line is written when its request or session ends.
            assert wait_until(lambda: any(e.get("closedBy") for e in _lines(good_log)),
                              timeout=20)
            assert wait_until(lambda: len(_lines(origin_log)) >= 3, timeout=20)
        yield Stack(origin_log, good_log, bad_log, result.close_code)


def test_the_logs_are_real_and_ours(stack: Stack) -> None:
    out = run_logs(*stack.files, "--format", "json")
    assert out.returncode == 0, out.stderr
    assert b"skipped" not in out.stderr  # every line of both components is understood
    events = json_lines(out.stdout)
    assert {e["format"] for e in events} == {"wsgate"}
    assert {e["source"] for e in events} == {"edge", "origin"}
    assert all(SECRET not in json.dumps(e) for e in events)


def test_join_puts_the_origin_refusal_beside_the_edge_403(stack: Stack) -> None:
    out = run_logs(*stack.files, "--join", "--format", "json", "--request-id", MISMATCH_ID)
    assert out.returncode == 0, out.stderr
    [group] = json_lines(out.stdout)
    assert group["requestId"] == MISMATCH_ID
    assert group["status"] == 403
    [edge] = group["edge"]
    [origin] = group["origin"]
    assert edge["status"] == 403 and origin["status"] == 403
    assert origin["message"] == "Direct access refused"
    assert origin["reason"] == "mismatch"


def test_join_by_status_keeps_whole_groups(stack: Stack) -> None:
    out = run_logs(*stack.files, "--join", "--format", "json", "--status", "403")
    groups = {g["requestId"]: g for g in json_lines(out.stdout)}
    assert {MISMATCH_ID, WS_MISMATCH_ID, DIRECT_ID} <= set(groups)
    direct = groups[DIRECT_ID]
    assert direct["edge"] == [] and direct["origin"][0]["reason"] == "missing"
    ws = groups[WS_MISMATCH_ID]
    assert ws["edge"][0]["isWebSocket"] is True
    assert ws["origin"][0]["reason"] == "mismatch"
    assert ws["origin"][0]["isWebSocket"] is True


def test_filters_on_real_logs(stack: Stack) -> None:
    def run(*args: str) -> list[dict[str, Any]]:
        out = run_logs(*stack.files, "--format", "json", *args)
        assert out.returncode == 0, out.stderr
        return json_lines(out.stdout)

    # The one session, as the edge and the origin's access log saw it: one request id.
    sessions = {e["source"]: e for e in run("--websocket", "--status", "1xx")}
    assert set(sessions) == {"edge", "origin"}
    assert sessions["edge"]["requestId"] == sessions["origin"]["requestId"]
    for session in sessions.values():
        assert session["closeCode"] == stack.ws_close_code or stack.ws_close_code is None
        assert session["wsDurationMs"] >= 0
    refusals = run("--severity", "warning", "--search", "direct access")
    assert {e["requestId"] for e in refusals if "requestId" in e} >= {DIRECT_ID, MISMATCH_ID}
    assert all(e["source"] == "origin" for e in refusals)
    assert len(run("--since", "10m")) == len(run())  # all were written just now
    assert run("--until", "1h") == []
    assert {e["status"] for e in run("--status", "ok", "--method", "GET")} <= {101, 200, 304}
    assert run("--ip", "127.0.0.1", "--request-id", DIRECT_ID)[0]["reason"] == "missing"
    assert run("--header", f"x-request-id:{MISMATCH_ID}")  # synthesised from requestId


def test_summary_and_pretty_views(stack: Stack) -> None:
    out = run_logs(*stack.files, "--summary", "--format", "json")
    summary = json.loads(out.stdout)
    assert summary["byStatusClass"]["4xx"] >= 5  # 3 edge/direct 403s + 2 origin refusals
    assert sum(summary["websocketSessionsByCloseCode"].values()) == 2  # edge and origin
    top = {e["message"]: e["count"] for e in summary["topErrors"]}
    assert top["origin: Direct access refused (reason=mismatch)"] == 2
    assert top["origin: Direct access refused (reason=missing)"] == 1
    refusals = {(r["source"], r["reason"]): r for r in summary["refusals"]}
    assert refusals[("origin", "missing")]["first"]["requestId"] == DIRECT_ID
    assert refusals[("origin", "mismatch")]["count"] == 2
    # The edge's two 403s (their label depends on how the edge describes them).
    assert sum(count for label, count in top.items() if label.startswith("edge: ")) == 2
    assert set(summary["latencyMs"]["edge"]) == {"count", "p50", "p90", "p99", "max"}
    assert summary["latencyMs"]["edge"]["count"] == 3  # 200 + two 403s, not the session
    pretty = run_logs(*stack.files, "--join", "--format", "pretty", "--color")
    text = pretty.stdout.decode()
    assert pretty.returncode == 0 and "\x1b[" in text and "└" in text
    plain = run_logs(*stack.files, "--format", "pretty", "--no-color").stdout.decode()
    assert "\x1b" not in plain and "reason=mismatch" in plain
