"""`wsgate logs` as users run it: files, stdin, mixed formats, bad input, bad options."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
from pathlib import Path

import pytest

from tests.logs.helpers import FIXTURES, FOREIGN, json_lines, run_logs
from tests.support import wsgate_command
from wsgate.logs.command import logs
from wsgate.logs.join import join
from wsgate.logs.model import EVENT_FIELDS, event_epoch
from wsgate.logs.query import build_query
from wsgate.logs.reader import ReadStats, read_events
from wsgate.logs.render import pretty_group, pretty_line, summary_text
from wsgate.logs.summary import summarise


def test_mixed_formats_from_files_and_stdin() -> None:
    wrangler = (FIXTURES / "wrangler_tail.json").read_bytes()
    out = run_logs(str(FIXTURES / "gcloud_read.json"), "-",
                   str(FIXTURES / "cloud_logging_lines.jsonl"), stdin=wrangler)
    assert out.returncode == 0, out.stderr
    events = json_lines(out.stdout)  # a pipe: JSON is the default
    assert [e["format"] for e in events].count("wrangler") == 7
    assert [e["format"] for e in events].count("cloud-logging") == 8 + 4
    assert out.stderr == b""


def test_bad_input_reported_once_at_the_end() -> None:
    out = run_logs(str(FIXTURES / "bad_input.log"), str(FIXTURES / "bad_input.log"))
    assert out.returncode == 0
    assert b"Traceback" not in out.stderr
    assert out.stderr.decode().splitlines() == [
        "wsgate logs: skipped 18 unparseable input(s): 10 not JSON, 8 not a log event"]
    assert len(json_lines(out.stdout)) == 8


@pytest.mark.parametrize("args", [
    ["--status", "teapot"], ["--since", "yesterday"], ["--ip", "nope"],
    ["--severity", "loud"], ["--header", "bad header"], ["--join", "--summary"],
    ["--follow", "--join", "x.log"], ["--follow"], ["--format", "xml"], ["--limit", "0"],
])
def test_bad_options_are_one_line_usage_errors(args: list[str]) -> None:
    out = run_logs(*args, stdin=b"")
    assert out.returncode == 2
    assert b"Traceback" not in out.stderr
    assert b"Error:" in out.stderr


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    out = run_logs(str(tmp_path / "absent.log"))
    assert out.returncode == 1
    assert out.stderr.decode().strip() == f"wsgate logs: {tmp_path / 'absent.log'}: no such file"


def test_limit_and_a_closed_pipe(tmp_path: Path) -> None:
    out = run_logs(str(FIXTURES / "gcloud_read.json"), "--limit", "2")
    assert len(json_lines(out.stdout)) == 2
    # A reader that goes away early (`| head -1`) ends the command quietly.
    big = tmp_path / "big.log"
    big.write_bytes(b"".join(json.dumps({"message": f"m{i}", "severity": "INFO"}).encode()
                             + b"\n" for i in range(200_000)))
    with subprocess.Popen(wsgate_command("logs", str(big)), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) as process:
        assert process.stdout is not None and process.stderr is not None
        first = process.stdout.readline()
        process.stdout.close()
        errors = process.stderr.read()
        assert process.wait(60) == 0
    assert json.loads(first)["message"] == "m0"
    assert b"Traceback" not in errors


def test_json_output_uses_only_documented_fields() -> None:
    for name in FOREIGN:
        for event in json_lines(run_logs(str(FIXTURES / name)).stdout):
            assert set(event) <= set(EVENT_FIELDS)


def _events(name: str) -> list[dict[str, object]]:
    with open(FIXTURES / name, "rb") as handle:
        return list(read_events(handle, ReadStats()))


def test_join_groups_by_request_id_across_formats() -> None:
    events = _events("wrangler_tail.json") + _events("gcloud_read.json")
    groups = join(events, build_query(request_id=["b7c1d2e3f4a5b6c7"]))
    [group] = groups
    assert [e["format"] for e in group.edge] == ["wrangler"]
    assert [e.get("reason") for e in group.origin] == ["missing"]
    assert group.as_json()["status"] == 403
    lines = pretty_group(group, colour=False)
    assert len(lines) == 2 and lines[1].startswith("  └ ")
    # Events without a request id stay single entries, in time order.
    everything = join(events, build_query())
    assert sum(len(g.events) for g in everything) == len(events)
    firsts = [g.first_time for g in everything]
    assert firsts == sorted(firsts)
    # The string keys order like the parsed times.
    epochs = [event_epoch(g.events[0]) for g in everything]
    known = [e for e in epochs if e is not None]
    assert known == sorted(known) and len(known) > 3


def test_join_from_files_and_from_stdin_agree() -> None:
    """Files are joined in two passes, stdin in one; a --search that only the edge event
    satisfies must still bring the origin's event of the same request."""
    args = ["--join", "--search", "origin refused"]
    files = run_logs(str(FIXTURES / "wrangler_tail.json"), str(FIXTURES / "gcloud_read.json"),
                     *args)
    stdin = run_logs(*args, stdin=(FIXTURES / "wrangler_tail.json").read_bytes()
                     + (FIXTURES / "gcloud_read.json").read_bytes())
    assert files.returncode == stdin.returncode == 0
    [group] = json_lines(files.stdout)
    assert json_lines(stdin.stdout) == [group]
    assert group["requestId"] == "b7c1d2e3f4a5b6c7"
    assert len(group["edge"]) == 1 and group["origin"][0]["reason"] == "missing"


def test_summary_counts_and_percentiles() -> None:
    summary = summarise(_events("gcloud_read.json") + _events("wrangler_tail.json"),
                        build_query())
    data = summary.as_json()
    assert data["events"] == 15
    assert data["byStatusClass"] == {"1xx": 2, "2xx": 3, "4xx": 3, "5xx": 3, "none": 4}
    assert data["websocketSessionsByCloseCode"] == {"1001": 1}
    origin = data["latencyMs"]["origin"]
    # origin latencies (ms): 4.512, 0.812, 1.204, 3600001, 51 -> nearest rank
    assert origin == {"count": 5, "p50": 4.512, "p90": 3600001.0, "p99": 3600001.0,
                      "max": 3600001.0}
    assert data["topErrors"][0]["count"] >= 1
    text = summary_text(summary, colour=False)
    assert "status: 1xx=2, 2xx=3, 4xx=3, 5xx=3, none=4" in text


def test_pretty_lines_are_aligned_and_safe() -> None:
    events = _events("wrangler_tail.json")
    lines = [pretty_line(e, colour=False) for e in events]
    # time, source, status, method and path start in the same columns on every line
    assert len({line.index(" edge ") for line in lines}) == 1
    assert len({line[:70].rfind("/") > 0 for line in lines}) == 1
    hostile = {"timestamp": "2026-11-25T10:00:00Z", "source": "edge",
               "message": "evil \x1b[2J\x1b]0;title\x07 text\nsecond line", "path": "/\x1b[31m",
               "method": "\x1b[5m"}
    rendered = pretty_line(hostile, colour=True)
    assert "\x1b[2J" not in rendered and "\x1b]0" not in rendered and "\n" not in rendered
    assert "\x1b" not in pretty_line(hostile, colour=False)


def test_help_examples_parse_and_exit_codes_hold(tmp_path: Path) -> None:
    """The help's Examples are real invocations of this command; its blocks are there."""
    text = run_logs("--help").stdout.decode()
    for block in ("Examples:", "Environment:", "Exit status:", "NO_COLOR", "[PATH]..."):
        assert block in text
    examples = [line.split("#")[0].split("| ")[-1].strip()
                for line in text.split("Examples:")[1].split("Environment:")[0].splitlines()
                if "wsgate logs" in line]
    assert len(examples) == 5
    for example in examples:
        args = shlex.split(example)[2:]
        logs.make_context("logs", args)  # raises click.UsageError on a bad option or value

    # 130 on Ctrl-C, after writing what was found so far.
    path = tmp_path / "edge.log"
    path.write_text(json.dumps({"severity": "INFO", "message": "seen"}) + "\n")
    with subprocess.Popen(wsgate_command("logs", "--follow", str(path)),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        assert process.stdout is not None
        assert json.loads(process.stdout.readline())["message"] == "seen"
        # The line was flushed from inside the read loop, where Ctrl-C is handled.
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 130
