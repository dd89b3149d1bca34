"""Benchmark (not a test): `wsgate edge` with 1 and with 2 workers.

Prints, for each worker count, HTTP requests per second (keep-alive connections)
and WebSocket handshakes per second (a new connection each: upgrade, 101, close),
and the edge's CPU per unit: CPU seconds of the edge's whole process tree
(supervisor and workers) divided by the requests or handshakes it completed. The
CPU figure does not depend on how fast the clients are; the rates do, since the
clients share the machine.

Standalone on purpose (only the standard library, uvloop if present, and the
installed `wsgate`): the origin is this file run with `--origin`, the clients are
this file run with `--client`.

    python bench/workers_bench.py --duration 5 --connections 16 --workers 1 2
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
CLOSE = bytes((0x88, 0x82)) + b"\x00\x00\x00\x00" + (1000).to_bytes(2, "big")
TICKS = os.sysconf("SC_CLK_TCK")


def run(coro: object) -> object:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)  # type: ignore[arg-type]
    return uvloop.run(coro)  # type: ignore[arg-type]


# ---------------------------------------------------------------- the origin
async def origin_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if b"upgrade: websocket" in head.lower():
                key = next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                           if line.lower().startswith(b"sec-websocket-key:"))
                accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
                writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept
                             + b"\r\n\r\n")
                await reader.read(8)  # the client's close frame
                writer.write(b"\x88\x02\x03\xe8")
                break
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
    writer.close()


async def origin(port: int) -> None:
    server = await asyncio.start_server(origin_connection, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


# ---------------------------------------------------------------- the clients
async def http_client(port: int, deadline: float) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = b"GET / HTTP/1.1\r\nHost: bench.example\r\n\r\n"
    done = 0
    while time.monotonic() < deadline:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        done += 1
    writer.close()
    return done


async def handshake_client(port: int, deadline: float) -> int:
    request = (f"GET /ws HTTP/1.1\r\nHost: bench.example\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode()
    done = 0
    while time.monotonic() < deadline:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"no 101: {head[:60]!r}")
        writer.write(CLOSE)
        await reader.read(16)
        writer.close()
        done += 1
    return done


async def clients(kind: str, port: int, connections: int, duration: float) -> int:
    deadline = time.monotonic() + duration
    one = http_client if kind == "http" else handshake_client
    return sum(await asyncio.gather(*(one(port, deadline) for _ in range(connections))))


# ---------------------------------------------------------------- measuring
def tree(root: int) -> list[int]:
    pids = [root]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
                if int(fields[1]) == root:
                    pids.append(int(entry.name))
    return pids


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / TICKS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(admin_port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", admin_port)) as s:
            s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            if s.recv(64).startswith(b"HTTP/1.1 200"):
                return
        time.sleep(0.1)
    raise RuntimeError("the edge did not become ready")


def phase(kind: str, edge: subprocess.Popen[bytes], port: int, args: argparse.Namespace
          ) -> tuple[float, float]:
    """(units per second, edge CPU microseconds per unit) for one load."""
    per_client = max(1, args.connections // args.clients)
    cmd = [sys.executable, __file__, "--client", kind, "--port", str(port),
           "--connections", str(per_client), "--duration", str(args.duration)]
    pids = tree(edge.pid)
    cpu0, t0 = cpu_seconds(pids), time.monotonic()
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE) for _ in range(args.clients)]
    units = sum(int(p.communicate(timeout=args.duration + 60)[0]) for p in procs)
    elapsed, cpu = time.monotonic() - t0, cpu_seconds(pids) - cpu0
    return units / elapsed, cpu / max(units, 1) * 1e6


def measure(workers: int, origin_port: int, args: argparse.Namespace) -> dict[str, float]:
    port, admin = free_port(), free_port()
    log = tempfile.mkstemp(suffix=".jsonl")[1]
    cmd = [sys.executable, "-m", "wsgate", "edge", "--origin",
           f"http://127.0.0.1:{origin_port}", "--listen", f"127.0.0.1:{port}",
           "--admin-listen", f"127.0.0.1:{admin}", "--insecure-no-secret", "--log-file", log]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    edge = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    try:
        wait_ready(admin)
        http_rate, http_cpu = phase("http", edge, port, args)
        ws_rate, ws_cpu = phase("ws", edge, port, args)
    finally:
        edge.send_signal(signal.SIGTERM)
        edge.wait(60)
        os.unlink(log)
    return {"workers": workers, "http_per_s": http_rate, "http_cpu_us": http_cpu,
            "handshakes_per_s": ws_rate, "handshake_cpu_us": ws_cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per load")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--origin", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client", choices=["http", "ws"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.origin:
        run(origin(args.port))
        return
    if args.client:
        print(run(clients(args.client, args.port, args.connections, args.duration)))
        return
    origin_port = free_port()
    origin_proc = subprocess.Popen([sys.executable, __file__, "--origin", "--port",
                                    str(origin_port)])
    try:
        print(f"{os.cpu_count()} CPUs; {args.clients} client processes, "
              f"{args.connections} connections, {args.duration:g} s per load")
        print(f"{'workers':>7}  {'HTTP req/s':>10}  {'CPU µs/req':>10}  "
              f"{'handshakes/s':>12}  {'CPU µs/handshake':>16}")
        for workers in args.workers:
            row = measure(workers, origin_port, args)
            if args.json:
                print(json.dumps(row))
                continue
            print(f"{workers:>7}  {row['http_per_s']:>10.0f}  {row['http_cpu_us']:>10.0f}  "
                  f"{row['handshakes_per_s']:>12.0f}  {row['handshake_cpu_us']:>16.0f}")
    finally:
        origin_proc.terminate()
        origin_proc.wait(10)


if __name__ == "__main__":
    main()
