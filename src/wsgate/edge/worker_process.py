"""One worker of a multi-process edge: `python -m wsgate.edge.worker_process`, started
by `wsgate.edge.supervisor`, never by hand.

The supervisor hands each worker:
- the listening socket it bound once (`--listen-fd`): every worker of every
  generation accepts from that one kernel queue, so a reload refuses nothing;
- the validated configuration, pickled on stdin (length-prefixed), so a worker never
  re-reads files or the environment and all workers of a generation agree, secret
  included;
- a status pipe (`--status-fd`) where the worker writes `ready` once it accepts, or
  `error <one line>` if it cannot start; then, every second while they change and
  once more as it exits, its metrics as `metrics <length>` and that many bytes of
  Prometheus text (summed by `wsgate.edge.worker_metrics`).

Then stdin carries commands, one per line: `retire <seconds|none>` (a reload: stop
accepting, finish requests, keep WebSockets up to that limit) or `stop` (drain as a
single edge does on SIGTERM, WebSockets closed with 1001). End of stdin means the
supervisor is gone: the worker drains and exits rather than serve orphaned.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import pickle
import select
import signal
import socket
import ssl
import stat
import struct
import sys
from typing import IO, cast

from prometheus_client import CollectorRegistry, disable_created_metrics, generate_latest

from wsgate.config import EdgeConfig
from wsgate.edge.metrics import EdgeMetrics
from wsgate.edge.server import EdgeServer
from wsgate.logs.events import EventWriter, Severity, build_event, dumps, open_event_writer

CONFIG_HEADER = struct.Struct("!I")  # length of the pickled EdgeConfig that follows
SNAPSHOT_INTERVAL = 1.0  # seconds between metric snapshots to the supervisor


class LineAtomicStream:
    """Text stream over a file descriptor where no line is ever split between writes.

    Several worker processes write events to one stdout or one log file. A regular
    file opened with O_APPEND takes each `write` whole, so a batch of lines is one
    write; a pipe or socket (docker, journald) only keeps writes of up to PIPE_BUF
    bytes together, so batches are cut at line ends into pieces of at most that.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.limit = 0 if stat.S_ISREG(os.fstat(fd).st_mode) else select.PIPE_BUF

    def write(self, text: str) -> int:
        data = text.encode("utf-8")
        for piece in self._pieces(data):
            self._write_all(piece)
        return len(text)

    def _pieces(self, data: bytes) -> list[bytes]:
        if not self.limit or len(data) <= self.limit:
            return [data]
        pieces: list[bytes] = []
        start = 0
        while start < len(data):
            end = start + self.limit
            if end < len(data):
                cut = data.rfind(b"\n", start, end)
                # A single line longer than PIPE_BUF cannot be atomic: write it alone.
                end = cut + 1 if cut >= start else data.find(b"\n", end) + 1 or len(data)
            pieces.append(data[start:end])
            start = end
        return pieces

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.fd, view):]
            except BlockingIOError:  # a pipe someone else set non-blocking
                select.select([], [self.fd], [], 1.0)

    def flush(self) -> None:
        pass  # every write goes straight to the descriptor

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def open_line_stream(log_file: str) -> LineAtomicStream:
    """The shared event destination: `log_file` (appended) or this process's stdout."""
    if log_file and log_file not in ("-", "stdout"):
        fd = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    else:
        fd = os.dup(sys.stdout.fileno())
    return LineAtomicStream(fd)


def open_shared_event_writer(log_file: str) -> tuple[EventWriter, logging.Logger]:
    """An EventWriter (and its logger) whose batches never split a line (see above)."""
    writer, logger = open_event_writer("edge", "stdout")
    writer.stream = cast(IO[str], open_line_stream(log_file))
    return writer, logger


def reopen_events(writer: EventWriter, log_file: str) -> None:
    """After a reload: write to `log_file` as it is now (it may have moved or been
    rotated). If it cannot be opened, events keep going where they went."""
    try:
        stream = open_line_stream(log_file)
    except OSError:
        return
    writer.flush()
    old, writer.stream = writer.stream, cast(IO[str], stream)
    if old not in (sys.stdout, sys.stderr):
        old.close()


def control_event(writer: EventWriter, message: str, severity: Severity = "INFO", *,
                  error_class: str | None = None, error: str | None = None) -> None:
    """A supervisor, worker or reload event (no request): the one schema, source edge."""
    writer.write_line(dumps(build_event(source="edge", message=message, severity=severity,
                                        errorClass=error_class, error=error)))


def read_config(fd: int) -> EdgeConfig:
    header = _read_exactly(fd, CONFIG_HEADER.size)
    (length,) = CONFIG_HEADER.unpack(header)
    # The payload comes from the supervisor that started this process, over a pipe
    # only it holds: as trusted as this process's own argv.
    config = pickle.loads(_read_exactly(fd, length))  # noqa: S301
    if not isinstance(config, EdgeConfig):
        raise TypeError("the supervisor sent no EdgeConfig")
    return config


def _read_exactly(fd: int, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            raise EOFError("the supervisor closed the configuration pipe")
        data += chunk
    return data


def encode_config(config: EdgeConfig) -> bytes:
    payload = pickle.dumps(config, protocol=pickle.HIGHEST_PROTOCOL)
    return CONFIG_HEADER.pack(len(payload)) + payload


def parse_retire_limit(command: str) -> float | None:
    """`retire 30` -> 30.0; `retire none` -> None (keep WebSockets until they end)."""
    value = command.split()[1] if len(command.split()) > 1 else "none"
    return None if value == "none" else float(value)


class _Commands(asyncio.Protocol):
    """Lines from the supervisor on stdin, and signals, as one queue of commands."""

    def __init__(self, queue: asyncio.Queue[str]) -> None:
        self.queue = queue
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\n" in self.buffer:
            line, _, self.buffer = self.buffer.partition(b"\n")
            self.queue.put_nowait(line.decode("ascii", "replace").strip())

    def eof_received(self) -> bool:
        self.queue.put_nowait("stop")  # the supervisor is gone
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.queue.put_nowait("stop")


class Snapshots(asyncio.Protocol):
    """This worker's metrics, sent to the supervisor over the status pipe."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.transport: asyncio.WriteTransport | None = None
        self.closed = asyncio.get_running_loop().create_future()
        self.last = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.WriteTransport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def send(self, *, final: bool = False) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        # A supervisor that reads slowly gets the next snapshot, not a growing queue.
        if not final and self.transport.get_write_buffer_size():
            return
        data = generate_latest(self.registry)
        if data != self.last or final:
            self.last = data
            self.transport.write(b"metrics %d\n" % len(data) + data)

    async def every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            self.send()

    async def close(self) -> None:
        self.send(final=True)
        if self.transport is not None:
            self.transport.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.closed), 5)


async def serve_worker(config: EdgeConfig, listen_fd: int, status_fd: int, worker: str) -> int:
    try:
        writer, logger = open_shared_event_writer(config.log_file)
    except OSError as exc:
        _report(status_fd, f"error log_file: cannot open {config.log_file!r}: {exc.strerror}")
        return 1
    try:
        metrics = EdgeMetrics()
        server = EdgeServer(config, logger, metrics, writer)
        try:
            await server.start(sock=socket.socket(fileno=listen_fd))
        except (OSError, ssl.SSLError) as exc:
            _report(status_fd, f"error {' '.join(str(exc).split())}")
            os.close(status_fd)
            return 1
        _report(status_fd, "ready")
        snapshots = Snapshots(metrics.registry)
        await asyncio.get_running_loop().connect_write_pipe(
            lambda: snapshots, os.fdopen(status_fd, "wb", 0))
        ticker = asyncio.create_task(snapshots.every(SNAPSHOT_INTERVAL))
        await _obey(server, writer, f"edge worker {worker} (pid {os.getpid()})")
        ticker.cancel()
        await snapshots.close()  # the last counts, after the drain
        return 0
    finally:
        writer.close()


def _report(status_fd: int, line: str) -> None:
    with contextlib.suppress(OSError):
        os.write(status_fd, line.encode() + b"\n")


async def _obey(server: EdgeServer, writer: EventWriter, name: str) -> None:
    """Serve until told to retire or stop; a `stop` during a retirement cuts it short."""
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[str] = asyncio.Queue()
    loop.add_signal_handler(signal.SIGTERM, commands.put_nowait, "stop")
    await loop.connect_read_pipe(lambda: _Commands(commands), os.fdopen(0, "rb", 0))
    while True:
        command = await commands.get()
        if command == "stop":
            await server.shutdown()
            return
        if command.startswith("retire"):
            break
    limit = parse_retire_limit(command)
    retiring = asyncio.create_task(server.retire(limit))
    await asyncio.sleep(0)  # retire() stops accepting before its first await
    kept = "until they close" if limit is None else f"for up to {limit:g} s"
    control_event(writer, f"{name} retiring: accepts no more connections, finishes its "
                  f"requests and keeps its {server.open_websockets()} WebSockets {kept}")
    stop = asyncio.create_task(_wait_for(commands, "stop"))
    await asyncio.wait({retiring, stop}, return_when=asyncio.FIRST_COMPLETED)
    if not retiring.done():
        await server.shutdown()  # closes the kept WebSockets with 1001; retire then ends
    stop.cancel()
    await retiring


async def _wait_for(commands: asyncio.Queue[str], wanted: str) -> None:
    while await commands.get() != wanted:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wsgate.edge.worker_process")
    parser.add_argument("--listen-fd", type=int, required=True)
    parser.add_argument("--status-fd", type=int, required=True)
    parser.add_argument("--worker", required=True)
    args = parser.parse_args(argv)
    # A terminal's hangup or Ctrl-C reaches the whole process group: reloads and
    # stops are the supervisor's to order. SIGTERM (systemd signals every process of
    # the unit) drains, as `stop` does.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    disable_created_metrics()  # type: ignore[no-untyped-call]  # per-process timestamps
    config = read_config(0)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(serve_worker(config, args.listen_fd, args.status_fd, args.worker))
    return uvloop.run(serve_worker(config, args.listen_fd, args.status_fd, args.worker))


if __name__ == "__main__":
    sys.exit(main())
