"""Added latency and proxy CPU per round trip: the Worker in workerd next to `wsgate edge`
and nginx (a benchmark for the record, not a test; standalone on purpose).

    python bench/worker_bench.py [--requests 3000] [--messages 3000] [--json]

One lean origin (keep-alive HTTP 200 "ok" and a `websockets` echo) in its own process;
then, one at a time, each target in front of it on loopback: nothing (direct), `wsgate
edge`, `wsgate worker dev` (workerd) and Debian nginx when installed. The client makes
sequential round trips over one connection: HTTP GETs, then 64-byte WebSocket echoes.
Reported per target: median and p99 round-trip time, the added median against direct,
and the proxy's own CPU (utime+stime of its process tree from /proc) per round trip.
Every loop is bounded in count and in time. On a shared 2-core machine the figures are
noisy: compare targets within one run only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from websockets.asyncio.server import ServerConnection, serve
from websockets.sync.client import connect

LOOPBACK = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-" + "5" * 24
TICK = os.sysconf("SC_CLK_TCK")
PHASE_SECONDS = 30.0  # upper bound of each measured loop


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def wait_port(port: int, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), 0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing on port {port}")


# -- origin ------------------------------------------------------------------------------

async def _http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
        while True:
            await reader.readuntil(b"\r\n\r\n")  # GETs only: no body to read
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
    writer.close()


async def _origin(http_port: int, ws_port: int) -> None:
    async def echo(conn: ServerConnection) -> None:
        async for message in conn:
            await conn.send(message)

    await asyncio.start_server(_http, LOOPBACK, http_port)
    async with serve(echo, LOOPBACK, ws_port, compression=None, ping_interval=None):
        await asyncio.Future()


def run_origin(http_port: int, ws_port: int) -> None:
    asyncio.run(_origin(http_port, ws_port))


# -- targets -------------------------------------------------------------------------------

def cpu_ticks(root: int) -> int:
    """utime+stime of `root` and its descendants (workerd under `wsgate worker dev`)."""
    parents: dict[int, int] = {}
    times: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
                parents[int(name)] = int(fields[1])
                times[int(name)] = int(fields[11]) + int(fields[12])
    tree, total = [root], 0
    for pid in tree:  # breadth-first; grows while iterating, bounded by /proc
        total += times.get(pid, 0)
        tree += [child for child, parent in parents.items() if parent == pid]
    return total


@contextlib.contextmanager
def proxy(kind: str, http_port: int, ws_port: int, work: Path) -> Iterator[tuple[int, int]]:
    """(listen port, pid whose tree is the proxy) for `kind`."""
    port = free_port()
    config = work / f"{kind}.toml"
    config.write_text(f'listen = "{LOOPBACK}:{port}"\nlog_file = "{work / kind}.jsonl"\n'
                      f'[[routes]]\npattern = "*/ws"\norigin = "http://{LOOPBACK}:{ws_port}"\n'
                      f'[[routes]]\npattern = "*/*"\norigin = "http://{LOOPBACK}:{http_port}"\n')
    env = {**os.environ, "WSGATE_SECRET": SECRET}
    if kind == "nginx":
        (work / "logs").mkdir(exist_ok=True)
        (work / "nginx.conf").write_text(NGINX.format(port=port, http=http_port, ws=ws_port,
                                                      dir=work, secret=SECRET))
        argv = [NGINX_BIN, "-p", str(work), "-c", str(work / "nginx.conf")]
    else:
        command = ["edge"] if kind == "wsgate edge" else ["worker", "dev"]
        argv = [sys.executable, "-m", "wsgate", *command, "--config", str(config)]
    process = subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_port(port)
        yield port, process.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 15)
        process.wait(20)


NGINX_BIN = shutil.which("nginx", path=os.environ.get("PATH", "") + ":/usr/sbin") or ""
NGINX = """daemon off; worker_processes 1; pid {dir}/nginx.pid; error_log {dir}/error.log;
events {{ worker_connections 256; }}
http {{ access_log off; keepalive_requests 1000000;
  client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy;
  server {{ listen 127.0.0.1:{port};
    location /ws {{ proxy_pass http://127.0.0.1:{ws}; proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade";
      proxy_set_header X-CF-Secret {secret}; }}
    location / {{ proxy_pass http://127.0.0.1:{http}; proxy_http_version 1.1;
      proxy_set_header Connection ""; proxy_set_header X-CF-Secret {secret}; }} }} }}
"""


# -- client loops ---------------------------------------------------------------------------

def http_round_trips(port: int, count: int) -> list[float]:
    request = b"GET /small HTTP/1.1\r\nHost: bench.example\r\n\r\n"
    timings: list[float] = []
    deadline = time.monotonic() + PHASE_SECONDS
    with socket.create_connection((LOOPBACK, port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(count):
            start = time.perf_counter()
            sock.sendall(request)
            data = b""
            while not data.endswith(b"ok"):  # each answer ends with its 2-byte body
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the proxy closed the connection")
                data += chunk
            timings.append(time.perf_counter() - start)
            if time.monotonic() > deadline:
                break
    return timings


def ws_round_trips(port: int, count: int) -> list[float]:
    message = b"m" * 64
    timings: list[float] = []
    deadline = time.monotonic() + PHASE_SECONDS
    with connect(f"ws://{LOOPBACK}:{port}/ws", compression=None, open_timeout=20) as ws:
        for _ in range(count):
            start = time.perf_counter()
            ws.send(message)
            ws.recv(timeout=10)
            timings.append(time.perf_counter() - start)
            if time.monotonic() > deadline:
                break
    return timings


def measure(port: int, pid: int | None, loop: str, count: int) -> dict[str, float]:
    run = http_round_trips if loop == "http" else ws_round_trips
    run(port, min(200, count))  # warm-up: connections, JIT, pools
    before = cpu_ticks(pid) if pid else 0
    timings = run(port, count)
    cpu = (cpu_ticks(pid) - before) / TICK if pid else 0.0
    timings.sort()
    return {"median_us": statistics.median(timings) * 1e6,
            "p99_us": timings[int(len(timings) * 0.99) - 1] * 1e6,
            "cpu_us": cpu / len(timings) * 1e6, "n": len(timings)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    http_port, ws_port = free_port(), free_port()
    origin = multiprocessing.Process(target=run_origin, args=(http_port, ws_port), daemon=True)
    origin.start()
    results: dict[str, dict[str, dict[str, float]]] = {}
    try:
        wait_port(http_port)
        wait_port(ws_port)
        results["direct"] = {
            "http": measure(http_port, None, "http", args.requests),
            "ws": measure(ws_port, None, "ws", args.messages)}
        kinds = ["wsgate edge", "wsgate worker dev"] + (["nginx"] if NGINX_BIN else [])
        with tempfile.TemporaryDirectory(prefix="wsgate-worker-bench-") as tmp:
            for kind in kinds:
                with proxy(kind, http_port, ws_port, Path(tmp)) as (port, pid):
                    results[kind] = {"http": measure(port, pid, "http", args.requests),
                                     "ws": measure(port, pid, "ws", args.messages)}
    finally:
        origin.terminate()
        origin.join(10)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print("| target | HTTP median / p99 µs | added | CPU µs/req | WS median / p99 µs | added "
          "| CPU µs/msg |\n|---|---|---|---|---|---|---|")
    base = results["direct"]
    for kind, r in results.items():
        h, w = r["http"], r["ws"]
        print(f"| {kind} | {h['median_us']:.0f} / {h['p99_us']:.0f} "
              f"| {h['median_us'] - base['http']['median_us']:+.0f} | {h['cpu_us']:.0f} "
              f"| {w['median_us']:.0f} / {w['p99_us']:.0f} "
              f"| {w['median_us'] - base['ws']['median_us']:+.0f} | {w['cpu_us']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
