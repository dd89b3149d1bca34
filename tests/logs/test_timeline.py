"""Several logs, one timeline: merged by time, streamed; and the summary keeps every
refusal reason's first line; blank lines are no input; floats come out rounded."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.logs.helpers import json_lines, read_messages, run_logs
from tests.support import wsgate_command
from wsgate.logs.model import Event
from wsgate.logs.reader import ReadStats, merge_by_time, read_events
from wsgate.logs.render import summary_text
from wsgate.logs.summary import Summary

TIMEOUT = 15.0


def _line(second: int | None, message: str, **fields: object) -> str:
    event: dict[str, object] = {"severity": "INFO", "message": message, **fields}
    if second is not None:
        event["timestamp"] = f"2026-11-26T10:00:{second:02d}.000000Z"
    return json.dumps(event) + "\n"


def test_two_files_print_one_timeline(tmp_path: Path) -> None:
    edge, origin = tmp_path / "edge.log", tmp_path / "origin.log"
    edge.write_text(_line(1, "e1") + _line(4, "e4") + _line(None, "e-untimed")
                    + _line(9, "e9"))
    origin.write_text(_line(2, "o2") + "\n" + _line(3, "o3") + _line(5, "o5"))
    out = run_logs(str(edge), str(origin))
    assert out.returncode == 0 and out.stderr == b""
    # The untimed event stays right after its predecessor in its own file.
    assert [e["message"] for e in json_lines(out.stdout)] == [
        "e1", "o2", "o3", "e4", "e-untimed", "o5", "e9"]
    # The order of the PATHs does not matter, except for ties (first PATH first).
    swapped = run_logs(str(origin), str(edge))
    assert json_lines(swapped.stdout) == json_lines(out.stdout)


def test_the_merge_streams_holding_one_event_per_input() -> None:
    consumed = [0, 0, 0]

    def stream(index: int, seconds: range) -> Iterator[Event]:
        for second in seconds:
            consumed[index] += 1
            yield {"timestamp": f"2026-11-26T10:{second // 60:02d}:{second % 60:02d}Z",
                   "n": second}

    inputs = [stream(0, range(0, 3000, 3)), stream(1, range(1, 3000, 3)),
              stream(2, range(2, 3000, 3))]
    seen = []
    for event in merge_by_time(inputs):
        seen.append(event["n"])
        # What was read but not yet written: at most one waiting event per input.
        assert sum(consumed) - len(seen) <= len(inputs)
    assert seen == list(range(3000))


def test_an_input_running_backwards_is_not_reordered() -> None:
    """`gcloud logging read` prints newest first: its events keep their own order."""
    newest_first = [{"timestamp": f"2026-11-26T10:00:0{s}Z", "n": s} for s in (8, 6, 2)]
    in_order = [{"timestamp": f"2026-11-26T10:00:0{s}Z", "n": s} for s in (1, 5, 9)]
    merged = [e["n"] for e in merge_by_time([newest_first, in_order])]
    assert merged == [1, 5, 8, 6, 2, 9]



def test_follow_merges_what_the_files_hold_and_what_they_get(tmp_path: Path) -> None:
    edge, origin = tmp_path / "edge.log", tmp_path / "origin.log"
    edge.write_text(_line(1, "e1") + _line(3, "e3"))
    origin.write_text(_line(2, "o2") + _line(4, "o4"))
    process = subprocess.Popen(
        wsgate_command("logs", "--follow", "--format", "json", str(edge), str(origin)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        assert read_messages(process, 4) == ["e1", "o2", "e3", "o4"]
        # Lines written between two polls come out in time order too.
        with open(origin, "a") as writer:
            writer.write(_line(6, "o6"))
        with open(edge, "a") as writer:
            writer.write(_line(5, "e5"))
        got = read_messages(process, 2)
        assert sorted(got) == ["e5", "o6"]
    finally:
        process.terminate()
        process.wait(TIMEOUT)


def _refusal(second: int, reason: str, **more: object) -> Event:
    return {"timestamp": f"2026-11-26T10:00:{second:02d}Z", "source": "origin",
            "format": "wsgate", "severity": "WARNING", "message": "Direct access refused",
            "status": 403, "path": f"/p{second}", "reason": reason, **more}


def test_summary_keeps_the_first_line_of_every_refusal_reason() -> None:
    summary = Summary()
    for second in range(1, 21):
        summary.add(_refusal(second, "missing"))
    # A flood summary stands for its refusals; its own text names an address.
    summary.add(_refusal(30, "missing", refusedCount=500,
                         error="500 more refusals from 198.51.100.7 within 60s (summarised)"))
    summary.add(_refusal(40, "mismatch"))
    data = summary.as_json()
    assert data["topErrors"][:2] == [
        {"message": "origin: Direct access refused (reason=missing)", "count": 520},
        {"message": "origin: Direct access refused (reason=mismatch)", "count": 1}]
    assert [(r["reason"], r["count"], r["first"]["path"]) for r in data["refusals"]] == [
        ("mismatch", 1, "/p40"), ("missing", 520, "/p1")]
    text = summary_text(summary, colour=False)
    assert "refusals by reason" in text
    assert "reason=mismatch" in text and "/p40" in text and "/p1 " in text


def test_blank_lines_are_no_input(tmp_path: Path) -> None:
    path = tmp_path / "blank.log"
    path.write_text("\n" + _line(1, "a") + "\n   \n\t\r\n" + _line(2, "b") + "\n\n"
                    # a pretty-printed document with blank lines inside it
                    + '{\n  "severity": "INFO",\n\n  "message": "c"\n}\n\n'
                    # one cut short: its two non-blank lines are bad, the blank ones not
                    + '{\n\n  "severity": "INFO",\n\n')
    stats = ReadStats()
    with open(path, "rb") as handle:
        events = list(read_events(handle, stats))
    assert [e["message"] for e in events] == ["a", "b", "c"]
    assert (stats.not_json, stats.not_event) == (2, 0)
    clean = tmp_path / "clean.log"
    clean.write_text("\n\n" + _line(1, "a") + "\n \n")
    out = run_logs(str(clean))
    assert out.returncode == 0 and out.stderr == b""


def test_floats_come_out_rounded(tmp_path: Path) -> None:
    path = tmp_path / "edge.log"
    path.write_text(json.dumps({"severity": "INFO", "message": "m",
                                "httpRequest": {"status": 200, "latency": "0.006022s"}})
                    + "\n" + json.dumps({"severity": "INFO", "message": "ws",
                                         "wsDurationMs": 0.1 + 0.2}))
    out = run_logs(str(path))
    assert b'"latencyMs":6.022' in out.stdout and b'"wsDurationMs":0.3' in out.stdout
    summary = run_logs(str(path), "--summary", "--format", "json")
    assert json.loads(summary.stdout)["latencyMs"]["origin"]["p50"] == 6.022
