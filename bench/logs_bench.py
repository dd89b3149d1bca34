"""`wsgate logs` on a big file: lines per second and peak RSS, against a bare baseline.

Writes N lines (default 1,000,000) of realistic wsgate edge/origin events to a temporary
file, then runs the real command (`python -m wsgate logs FILE ...`, output to /dev/null)
for several filters and reports, for each: wall time, lines/s, the ratio to the baseline
(a Python loop doing only `json.loads` per line, the floor for any Python reader) and
the process's peak RSS. It runs the filters on N/10 lines as well, so "constant memory
outside --join/--summary" shows as (nearly) equal RSS at both sizes.

Run: `python bench/logs_bench.py [--lines 1000000]`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES: list[tuple[str, list[str]]] = [
    ("--status 5xx", ["--status", "5xx"]),
    ("--search 'edge proxy error'", ["--search", "edge proxy error"]),
    ("--request-id ID", ["--request-id", "req-00777777"]),
    ("--websocket --since 2026-01-01", ["--websocket", "--since", "2026-01-01T00:00:00Z"]),
    ("no filter, json out", []),
    ("--format pretty", ["--format", "pretty"]),
    ("--summary", ["--summary"]),
    ("--join --status 403", ["--join", "--status", "403"]),
]


def make_file(path: Path, lines: int) -> None:
    rnd = random.Random(5)
    paths = ["/", "/_stcore/health", "/_stcore/host-config", "/static/js/main.js",
             "/_stcore/stream", "/admin"]
    start = 1_795_600_800.0
    with open(path, "w", encoding="utf-8") as out:
        for i in range(lines):
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start + i * 0.01))
            path_ = rnd.choice(paths)
            roll = rnd.random()
            status = 502 if roll < 0.01 else 403 if roll < 0.05 else (
                101 if path_ == "/_stcore/stream" else 200)
            source = "origin" if status == 403 and rnd.random() < 0.5 else "edge"
            event = {
                "timestamp": f"{stamp}.{i % 1_000_000:06d}Z",
                "severity": "ERROR" if status == 502 else "WARNING" if status == 403 else "INFO",
                "message": "Edge Proxy Error" if status == 502 else (
                    "Direct access refused" if source == "origin" else "request"),
                "source": source,
                "httpRequest": {"requestMethod": "GET",
                                "requestUrl": f"https://app.example.com{path_}",
                                "status": status, "latency": f"{rnd.random() / 50:.6f}s",
                                "remoteIp": f"203.0.113.{i % 250}",
                                "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0",
                                "requestSize": "0", "responseSize": str(rnd.randint(200, 40000)),
                                "protocol": "HTTP/1.1"},
                "requestId": f"req-{i:08d}",
                "route": "*/*", "upstream": "http://127.0.0.1:8501",
                "isWebSocket": status == 101,
                "bytesFromClient": 0, "bytesToClient": rnd.randint(200, 40000),
            }
            if status == 101:
                event.update(wsDurationMs=rnd.randint(10, 600_000), closeCode=1001,
                             closedBy="client")
            if status == 502:
                event.update(errorClass="connect-refused", error="connection refused")
            out.write(json.dumps(event, separators=(",", ":")) + "\n")


BASELINE = ("import json, sys\n"
            "loads = json.loads\n"
            "for line in open(sys.argv[1], 'rb'):\n"
            "    loads(line)\n")


def run(command: list[str]) -> tuple[float, int, int]:
    """(seconds, peak RSS in KiB, exit status) of one process, output to /dev/null."""
    started = time.perf_counter()
    with open(os.devnull, "wb") as devnull:
        process = subprocess.Popen(command, stdout=devnull, stderr=devnull)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - started, usage.ru_maxrss, process.returncode


def logs(path: Path, args: list[str]) -> list[str]:
    return [sys.executable, "-m", "wsgate", "logs", str(path), *args]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        big, small = Path(tmp) / "big.log", Path(tmp) / "small.log"
        make_file(big, options.lines)
        make_file(small, max(1, options.lines // 10))
        print(f"{options.lines:,} lines, {big.stat().st_size / 1e6:.0f} MB. 'x base': time "
              "over a bare json.loads-per-line loop run just before (same machine load).")
        print(f"{'case':<32} {'seconds':>8} {'lines/s':>11} {'x base':>7} "
              f"{'RSS MiB':>8} {'RSS at 1/10':>11}")
        for name, args in CASES:
            base, _, _ = run([sys.executable, "-c", BASELINE, str(big)])
            seconds, rss, code = run(logs(big, args))
            _, rss_small, _ = run(logs(small, args))
            flag = "" if code == 0 else f"  (exit {code})"
            print(f"{name:<32} {seconds:>8.2f} {options.lines / seconds:>11,.0f} "
                  f"{seconds / base:>7.2f} {rss / 1024:>8.1f} {rss_small / 1024:>11.1f}{flag}",
                  flush=True)


if __name__ == "__main__":
    main()
