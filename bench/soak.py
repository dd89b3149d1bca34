"""Soak the edge at moderate load and watch for growth (not run in CI).

    python bench/soak.py                 # 10 minutes, the figure docs/reliability.md quotes
    python bench/soak.py --minutes 1     # a quick look

Starts the bench origin and a real `wsgate edge` (bench/targets.py), then keeps a steady mix going:
`--websockets` WebSockets cycling (open, a message every 100 ms for 1-10 s, clean
close) and `--rps` HTTP requests per second. Every `--sample` seconds it records the
edge's RSS and descriptor count. After a warm-up (the first 20 % of the run), RSS
must not grow by more than `--max-growth-mib` and descriptors must come back to
the warm-up level; the exit status says whether they did (0 = no growth).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # `python bench/soak.py`: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import procstat, wsclient
from bench.targets import origin_process, wsgate_target

HANDSHAKE = wsclient.upgrade_request("soak.example.com", 443)
MESSAGE = wsclient.client_frame(b"hello", opcode=0x1)
ECHO = b"\x81\x05hello"  # the origin echoes a frame as it came, unmasked
CLOSE = wsclient.CLOSE_FRAME
CLOSE_ECHO = b"\x88\x02" + (1000).to_bytes(2, "big")
MIB = 1024 * 1024


async def ws_cycle(port: int, stop_at: float, counts: dict[str, int]) -> None:
    """Open, chat, close cleanly, repeat until `stop_at`."""
    while time.monotonic() < stop_at:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(HANDSHAKE)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            if not head.startswith(b"HTTP/1.1 101"):
                counts["ws_refused"] += 1
                writer.close()
                continue
            life = time.monotonic() + random.uniform(1, 10)
            while time.monotonic() < min(life, stop_at):
                writer.write(MESSAGE)
                if await asyncio.wait_for(reader.readexactly(len(ECHO)), 10) != ECHO:
                    counts["ws_bad_echo"] += 1
                    break
                counts["ws_messages"] += 1
                await asyncio.sleep(0.1)
            writer.write(CLOSE)
            ok = await asyncio.wait_for(reader.readexactly(len(CLOSE_ECHO)), 10) == CLOSE_ECHO
            counts["ws_closed" if ok else "ws_bad_close"] += 1
            writer.close()
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            counts["ws_errors"] += 1
            await asyncio.sleep(0.1)


async def http_load(port: int, rps: int, stop_at: float, counts: dict[str, int]) -> None:
    async def one() -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /static/x.js HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            data = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            counts["http_200" if data.startswith(b"HTTP/1.1 200") else "http_other"] += 1
        except (OSError, TimeoutError):
            counts["http_errors"] += 1

    tasks: set[asyncio.Task[None]] = set()
    while time.monotonic() < stop_at:
        task = asyncio.create_task(one())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        await asyncio.sleep(1 / rps)
    await asyncio.gather(*tasks)


async def soak(edge_port: int, pid: int, args: argparse.Namespace
               ) -> tuple[list[tuple[float, int, int]], dict[str, int]]:
    counts: dict[str, int] = dict.fromkeys(
        ["ws_messages", "ws_closed", "ws_refused", "ws_bad_echo", "ws_bad_close",
         "ws_errors", "http_200", "http_other", "http_errors"], 0)
    t0 = time.monotonic()
    stop_at = t0 + args.minutes * 60
    load = [asyncio.create_task(ws_cycle(edge_port, stop_at, counts))
            for _ in range(args.websockets)]
    load.append(asyncio.create_task(http_load(edge_port, args.rps, stop_at, counts)))
    samples: list[tuple[float, int, int]] = []
    while time.monotonic() < stop_at:
        samples.append((time.monotonic() - t0, procstat.usage(pid).rss_bytes,
                        procstat.fd_count(pid)))
        print(f"{samples[-1][0]:7.0f}s  rss {samples[-1][1] / MIB:7.1f} MiB  "
              f"fds {samples[-1][2]:6d}  {counts}", flush=True)
        await asyncio.sleep(min(args.sample, max(0.0, stop_at - time.monotonic())))
    await asyncio.gather(*load)
    await asyncio.sleep(6)  # let the last closes land and pooled upstreams expire (4 s)
    samples.append((time.monotonic() - t0, procstat.usage(pid).rss_bytes,
                        procstat.fd_count(pid)))
    return samples, counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--websockets", type=int, default=200)
    parser.add_argument("--rps", type=int, default=100)
    parser.add_argument("--sample", type=float, default=10.0)
    parser.add_argument("--max-growth-mib", type=float, default=8.0)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="wsgate-soak-"))
    secret = secrets.token_hex(16)
    origin = origin_process(workdir, secret, cpu=None)
    origin.start()
    try:
        edge = wsgate_target(workdir, origin.port, secret, None, [])
        assert edge.process is not None
        edge.process.start()
        try:
            samples, counts = asyncio.run(soak(edge.port, edge.process.pid, args))
            alive = edge.process.running()
        finally:
            edge.process.stop()
    finally:
        origin.stop()
    warm = [s for s in samples if s[0] >= samples[-1][0] * 0.2] or samples
    growth = (max(s[1] for s in warm) - warm[0][1]) / MIB
    fd_delta = samples[-1][2] - samples[0][2]  # idle after the run vs idle before it
    failures = counts["ws_bad_echo"] + counts["ws_bad_close"] + counts["http_other"]
    print(f"\nran {samples[-1][0]:.0f}s: {counts}")
    print(f"RSS after warm-up {warm[0][1] / MIB:.1f} MiB, max {max(s[1] for s in warm) / MIB:.1f}"
          f" MiB (growth {growth:.1f} MiB, bound {args.max_growth_mib} MiB); "
          f"descriptors idle before {samples[0][2]}, under load {warm[0][2]}, "
          f"idle after {samples[-1][2]}")
    ok = alive and growth <= args.max_growth_mib and fd_delta <= 4 and failures == 0
    print("OK: no growth" if ok else "FAIL: growth, errors or a crash")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
