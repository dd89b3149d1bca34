"""Helpers for the multi-worker and reload tests: an origin that checks the secret,
clients that classify every failure, the supervisor's processes and metrics.

Everything is bounded: each request has a deadline, each loop a count and a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from tests.support.edge import SECRET_HEADER


@dataclass
class SecretOrigin:
    """A real origin on loopback that refuses (403) any request without its secret,
    answers plain GETs with its name and echoes WebSocket messages."""

    name: str
    secret: str
    port: int = 0
    accepted: int = 0
    refused: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _check(self, conn: ServerConnection, request: Request) -> Response | None:
        ok = request.headers.get(SECRET_HEADER) == self.secret
        with self._lock:
            if ok:
                self.accepted += 1
            else:
                self.refused += 1
        if not ok:
            return conn.respond(http.HTTPStatus.FORBIDDEN, "direct access is forbidden\n")
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return conn.respond(http.HTTPStatus.OK, json.dumps({"origin": self.name}))
        return None

    async def _echo(self, conn: ServerConnection) -> None:
        with contextlib.suppress(Exception):  # a client vanishing is a scenario here
            async for message in conn:
                await conn.send(f"{self.name}:{message}")

    def __enter__(self) -> SecretOrigin:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def start() -> None:
            server = await serve(self._echo, "127.0.0.1", 0, process_request=self._check,
                                 ping_interval=None)
            self.port = server.sockets[0].getsockname()[1]

        def main() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(start())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=main, name=f"origin-{self.name}", daemon=True)
        self._thread.start()
        assert ready.wait(10), "origin did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)


@dataclass
class Outcome:
    """One client request through the edge: started after `seq` events, and what came back."""

    started: float
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and self.status == 200


async def get(port: int, path: str = "/", timeout: float = 10.0) -> Outcome:
    """GET on a new connection (Connection: close); any refusal, reset or timeout is
    recorded in `error`, never raised."""
    outcome = Outcome(time.monotonic())
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(f"GET {path} HTTP/1.1\r\nHost: app.example.com\r\n"
                             "Connection: close\r\n\r\n".encode())
                raw = await reader.read(-1)
            finally:
                writer.close()
    except (OSError, TimeoutError) as exc:
        outcome.error = f"{type(exc).__name__}: {exc}"
        return outcome
    head, _, outcome.body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/1.1 "):
        outcome.error = f"no HTTP answer: {raw[:80]!r}"
        return outcome
    outcome.status = int(lines[0].split()[1])
    outcome.headers = {k.strip().lower(): v.strip() for k, _, v in
                       (line.partition(":") for line in lines[1:])}
    return outcome


async def burst(port: int, count: int, path: str = "/") -> list[Outcome]:
    """`count` concurrent GETs, each on its own connection."""
    return list(await asyncio.gather(*(get(port, path) for _ in range(count))))


async def client_loop(port: int, outcomes: list[Outcome], stop: asyncio.Event,
                      max_requests: int, concurrency: int = 4) -> None:
    """`concurrency` sequential clients, each request on a new connection, until `stop`
    or `max_requests` in all."""
    async def one_client() -> None:
        while not stop.is_set() and len(outcomes) < max_requests:
            outcomes.append(await get(port))

    await asyncio.gather(*(one_client() for _ in range(concurrency)))


def child_pids(pid: int) -> set[int]:
    """Live (not zombie) direct children of `pid`, from /proc."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            fields = stat.rpartition(")")[2].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.add(int(entry.name))
    return found


def metrics_text(admin_port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5) as r:
        return str(r.read().decode())


def metrics(admin_port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample on the admin listener: (name, sorted labels) -> value."""
    text = metrics_text(admin_port)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def metric(admin_port: int, name: str, **labels: str) -> float:
    return metrics(admin_port).get((name, tuple(sorted(labels.items()))), 0.0)


def readyz(admin_port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/readyz", timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
