"""System calls per unit of work, per proxy: where kernel time comes from.

    python bench/syscalls.py [--targets nginx-64k,wsgate] [--workload rt|handshake|http]
                             [--count 2000]

Attaches `strace -c -f` to all of a proxy's processes, drives COUNT units of one
workload from the bench client, and prints the calls made per unit (those made
at least once per two units). strace slows the proxy down a lot, so read the
counts, never the times.
"""

from __future__ import annotations

import argparse
import http.client
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # `python bench/X.py`: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import procstat, run, targets, wsclient


def drive(workload: str, target: targets.Target, request: bytes, count: int) -> None:
    if workload == "rt":
        conn = wsclient.open_ws(target.port, request)
        frame = wsclient.client_frame(b"r" * 32)
        for _ in range(count):
            conn.round_trip(frame)
        conn.close()
    elif workload == "handshake":
        wsclient.handshakes(target.port, request, count, time.monotonic() + 120)
    else:
        h = http.client.HTTPConnection("127.0.0.1", target.port, timeout=10)
        for _ in range(count):
            h.request("GET", "/static/x.js", headers=target.client_headers)
            h.getresponse().read()
        h.close()


def per_unit(strace_output: str, count: int) -> list[tuple[str, float]]:
    rows: list[tuple[str, float]] = []
    for line in strace_output.splitlines():
        parts = line.split()
        # "% time  seconds  usecs/call  calls  [errors]  syscall"
        if len(parts) >= 5 and parts[3].isdigit():
            rows.append((parts[-1], int(parts[3]) / count))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="nginx-64k,wsgate")
    parser.add_argument("--workload", choices=("rt", "handshake", "http"), default="rt")
    parser.add_argument("--count", type=int, default=2000)
    args = parser.parse_args()
    if shutil.which("strace") is None:
        parser.error("strace not found (Debian package strace)")
    count = max(100, min(args.count, 100_000))
    workdir = Path(tempfile.mkdtemp(prefix="wsgate-syscalls-"))
    bench = run.Bench(run.QUICK, [], workdir, pin=(os.cpu_count() or 1) >= 2, wsgate_args=[])
    bench.secret = secrets.token_urlsafe(16)
    if bench.client_cpu is not None:
        os.sched_setaffinity(0, {bench.client_cpu})
    bench.origin = targets.origin_process(workdir, bench.secret, bench.client_cpu)
    bench.origin.start()
    try:
        for name in args.targets.split(","):
            target = bench.make_target(name)
            if target.process is None:
                continue
            target.process.start()
            try:
                bench.warm(target)
                out = workdir / f"{name}.strace"
                pids = procstat.usage(target.process.pid).pids
                argv = ["strace", "-c", "-f", "-o", str(out)]
                for pid in pids:
                    argv += ["-p", str(pid)]
                with subprocess.Popen(argv, stderr=subprocess.DEVNULL) as spy:
                    time.sleep(1.0)  # attached before the load starts
                    drive(args.workload, target, bench.request(target), count)
                    time.sleep(0.3)
                    spy.terminate()
                    spy.wait(30)
                print(f"{name}: system calls per {args.workload} ({count} units)")
                for call, n in per_unit(out.read_text(), count):
                    if n >= 0.5:
                        print(f"  {call:<20} {n:7.2f}")
            finally:
                target.process.stop()
    finally:
        bench.origin.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
