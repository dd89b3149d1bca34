"""Where the wsgate edge spends its CPU: py-spy samples under one benchmark workload.

    python bench/profile_edge.py --workload rt [--seconds 8] [--native] [--out-dir bench/results]

Starts the bench origin (CPU 0) and `wsgate edge` with every policy on (CPU 1),
drives one workload from the bench client while `py-spy record` samples the edge
without pausing it (--nonblocking), then prints the functions with the most
samples: self (the frame on top of the stack) and inclusive (anywhere on it).
The collapsed stacks are kept (`profile-<workload>.txt`: feed them to
flamegraph.pl or speedscope). Needs py-spy (`pip install py-spy`) and root or
ptrace permission.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # `python bench/X.py`: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import wsclient
from bench.targets import Target, origin_process, wsgate_target

WORKLOADS = ("rt", "small", "large", "handshake", "http")


def workload(name: str, target: Target) -> Callable[[float], int]:
    """A function that drives `name` until the given monotonic deadline; returns units."""
    request = wsclient.upgrade_request("127.0.0.1", target.port, "/ws", target.client_headers)

    def rt(deadline: float) -> int:
        conn = wsclient.open_ws(target.port, request)
        frame = wsclient.client_frame(b"r" * 32)
        n = 0
        while time.monotonic() < deadline and n < 10_000_000:
            for _ in range(200):
                conn.round_trip(frame)
            n += 200
        conn.close()
        return n

    def small(deadline: float) -> int:
        conns = [wsclient.open_ws(target.port, request) for _ in range(8)]
        batch = wsclient.client_frame(b"s" * 100) * 100
        n = wsclient.pipelined(conns, batch, 100, 10_000_000, deadline)
        for c in conns:
            c.close()
        return n

    def large(deadline: float) -> int:
        conn = wsclient.open_ws(target.port, request)
        frame = wsclient.client_frame(os.urandom(65536))
        n = 0
        while time.monotonic() < deadline and n < 10_000_000:
            conn.round_trip(frame)
            n += 1
        conn.close()
        return n

    def handshake(deadline: float) -> int:
        return wsclient.handshakes(target.port, request, 10_000_000, deadline)

    def http(deadline: float) -> int:
        seconds = max(1, round(deadline - time.monotonic()))
        out = subprocess.run(
            ["taskset", "-c", "0", "wrk", "-t1", "-c16", f"-d{seconds}s",
             f"http://127.0.0.1:{target.port}/static/x.js"],
            capture_output=True, text=True, timeout=seconds + 30, check=False).stdout
        m = re.search(r"(\d+) requests in", out)
        return int(m.group(1)) if m else 0

    return {"rt": rt, "small": small, "large": large, "handshake": handshake, "http": http}[name]


OURS = re.compile(r"[ (/]wsgate/(?!.*site-packages)")  # a frame of wsgate's own code
LOOP = re.compile(r"^(Runner\.run \(asyncio/runners|run \(uvloop/)")
FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def short(frame: str) -> str:
    """`data_received (/…/wsgate/edge/tunnel.py:41)` -> `data_received (edge/tunnel.py)`."""
    m = FRAME.match(frame)
    if not m:
        return frame
    path = m.group("file")
    parts = Path(path).parts
    tail = "/".join(parts[-2:]) if len(parts) >= 2 else path
    return f"{m.group('func')} ({tail})"


def summarise(collapsed: Path, top: int) -> str:
    """Self, inclusive, and per-wsgate-line shares of the samples.

    "wsgate line" charges each sample to the innermost frame in wsgate's own
    code: the line of ours that led to the time (a call into h11, logging or
    the transport is charged to the line that made it).
    """
    self_counts: collections.Counter[str] = collections.Counter()
    incl_counts: collections.Counter[str] = collections.Counter()
    line_counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        raw = stack.split(";")
        ours = next((f for f in reversed(raw) if OURS.search(f)), None)
        m = FRAME.match(ours) if ours else None
        if LOOP.search(raw[-1]):
            line_counts["(the event loop itself: uvloop's C code and its syscalls)"] += count
        elif m:
            line_counts[f"{m.group('func')} ({'/'.join(Path(m.group('file')).parts[-2:])}"
                        f":{m.group('line')})"] += count
        else:
            line_counts["(outside wsgate code: event loop, startup)"] += count
        frames = [short(f) for f in raw]
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        self_counts[frames[-1]] += count
        for f in set(frames):
            incl_counts[f] += count
    if not total:
        return "no samples (was the edge busy? is py-spy allowed to attach?)"
    lines = [f"{total} samples on CPU", "", "self (top of stack):"]
    lines += [f"  {c / total:6.1%}  {f}" for f, c in self_counts.most_common(top)]
    # Leave out the frames on every stack (runpy, click, the loop's run): no news.
    root = max(incl_counts.values())
    inclusive = [(f, c) for f, c in incl_counts.most_common() if c < root][:top]
    lines += ["", "inclusive (anywhere on the stack, frames common to all left out):"]
    lines += [f"  {c / total:6.1%}  {f}" for f, c in inclusive]
    lines += ["", "by wsgate line (innermost frame in wsgate's code):"]
    lines += [f"  {c / total:6.1%}  {f}" for f, c in line_counts.most_common(top)]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=WORKLOADS, default="rt")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rate", type=int, default=500, help="samples per second")
    parser.add_argument("--native", action="store_true", help="include C frames (uvloop)")
    parser.add_argument("--blocking", action="store_true",
                        help="pause the edge for each sample: slower, but stacks are never torn")
    parser.add_argument("--perf", action="store_true",
                        help="sample with Linux perf instead (kernel, libc, uvloop, CPython "
                             "symbols: where the time below the Python frames goes)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out-dir", type=Path, default=Path("bench/results"))
    parser.add_argument("--wsgate-arg", action="append", default=[],
                        help="extra argument for `wsgate edge` (repeatable)")
    args = parser.parse_args()
    tool = "perf" if args.perf else "py-spy"
    if shutil.which(tool) is None:
        hint = "apt-get install linux-perf" if args.perf else "pip install py-spy"
        parser.error(f"{tool} not found ({hint})")
    seconds = max(2, min(args.seconds, 120))

    os.sched_setaffinity(0, {0})
    workdir = Path(tempfile.mkdtemp(prefix="wsgate-profile-"))
    secret = secrets.token_urlsafe(24)
    origin = origin_process(workdir, secret, 0)
    origin.start()
    target = wsgate_target(workdir, origin.port, secret, 1, args.wsgate_arg)
    assert target.process is not None
    args.out_dir.mkdir(parents=True, exist_ok=True)
    collapsed = args.out_dir / f"profile-{args.workload}.txt"
    perf_data = workdir / "perf.data"
    try:
        target.process.start()
        drive = workload(args.workload, target)
        drive(time.monotonic() + 1)  # warm up: imports, first connections
        # The sampler runs on CPU 0 with the client, never on the edge's CPU.
        if args.perf:
            spy = ["taskset", "-c", "0", "perf", "record", "-F", str(args.rate), "-g",
                   "-p", str(target.process.pid), "-o", str(perf_data), "--",
                   "sleep", str(seconds)]
        else:
            spy = ["taskset", "-c", "0", "py-spy", "record", "--pid", str(target.process.pid),
                   "--rate", str(args.rate), "--duration", str(seconds), "--format", "raw",
                   "--output", str(collapsed),
                   # --native must pause the edge to unwind C frames; else never pause.
                   *([] if args.native or args.blocking else ["--nonblocking"]),
                   *(["--native"] if args.native else [])]
        with open(workdir / "py-spy.log", "wb") as log:
            spy_proc = subprocess.Popen(spy, stdout=log, stderr=subprocess.STDOUT)
            time.sleep(0.5)  # attach before the load starts
            units = drive(time.monotonic() + seconds)
            try:
                spy_proc.wait(timeout=seconds + 30)
            except subprocess.TimeoutExpired:
                spy_proc.kill()
                spy_proc.wait()
        if args.perf:
            summary = "".join(subprocess.run(
                ["perf", "report", "-i", str(perf_data), "--stdio", "--no-children",
                 "--sort", sort, "--percent-limit", "0.7", "-g", "none"],
                capture_output=True, text=True, timeout=120, check=False).stdout
                for sort in ("dso", "dso,symbol"))
            collapsed = args.out_dir / f"perf-{args.workload}.txt"
            collapsed.write_text(summary)
            summary = "\n".join(line for line in summary.splitlines()
                                if line.strip() and not line.startswith("#"))
        elif collapsed.exists():
            summary = summarise(collapsed, args.top)
        else:
            print((workdir / "py-spy.log").read_text()[-2000:], file=sys.stderr)
            return 1
        report = f"workload {args.workload}: {units} units in ~{seconds}s\n{summary}"
        print(report)
        name = f"{'perf' if args.perf else 'profile'}-{args.workload}.summary.txt"
        (args.out_dir / name).write_text(report + "\n")
        print(f"samples: {collapsed}")
    finally:
        target.process.stop()
        origin.stop()
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
