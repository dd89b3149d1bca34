"""`wsgate edge --workers N`: several edge processes on one address, reloads that drop
nothing.

The nginx model: the supervisor binds the listening socket once and every worker
(`wsgate.edge.worker_process`) accepts from that same socket, inherited. All workers
of all generations share one kernel accept queue, so
- a reload (SIGHUP) starts the new generation, waits until every new worker accepts,
  then retires the old one (it stops accepting, finishes its requests and keeps its
  WebSockets until they end or `timeouts.reload_websockets` passes): a connection
  waiting in the queue is taken by whichever worker accepts next, never reset;
- a worker that dies loses only the connections it had accepted; the others keep
  taking new ones while the supervisor starts a replacement (with a backoff, so a
  worker that cannot start does not spin).

Per-worker SO_REUSEPORT sockets would spread connections more evenly, but closing
one such socket resets the connections queued on it; docs/edge.md has the trade-off.

Metrics: workers send snapshots of their own registries; the supervisor's single
admin listener serves their sum (`wsgate.edge.worker_metrics`), with its own
counters (restarts, reloads) beside them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import click
from prometheus_client import CollectorRegistry

from wsgate.config import ConfigError, EdgeConfig
from wsgate.edge.admin import start_admin
from wsgate.edge.metrics import SupervisorMetrics
from wsgate.edge.worker_metrics import WorkersCollector
from wsgate.edge.worker_process import control_event, encode_config, reopen_events
from wsgate.i18n import _
from wsgate.logs.events import EventWriter, Severity

STARTUP_TIMEOUT: Final = 30.0  # seconds for a new worker to accept (imports included)
STOP_GRACE: Final = 5.0  # beyond timeouts.drain before a worker that will not stop is killed
RELOADABLE_EXCEPT: Final = ("listen", "admin_listen")  # bound once, by the supervisor


@dataclass
class RestartBackoff:
    """Delay before restarting a worker slot: at once after a worker that ran a while,
    doubling (up to `cap`) while replacements keep dying young."""

    min_uptime: float = 5.0
    first: float = 0.1
    cap: float = 30.0
    quick_deaths: int = 0

    def next_delay(self, uptime: float) -> float:
        if uptime >= self.min_uptime:
            self.quick_deaths = 0
            return 0.0
        self.quick_deaths += 1
        return float(min(self.first * 2 ** (self.quick_deaths - 1), self.cap))


@dataclass(eq=False)
class Worker:
    slot: int
    generation: int
    process: asyncio.subprocess.Process
    status: asyncio.StreamReader
    started: float = field(default_factory=time.monotonic)
    state: str = "starting"  # starting | serving | retiring | stopping
    watch: asyncio.Task[None] | None = None
    snapshot: bytes = b""  # its latest metrics (Prometheus text)
    reader: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return f"edge worker {self.slot} (pid {self.process.pid}, generation {self.generation})"


def reload_problem(running: EdgeConfig, new: EdgeConfig) -> str | None:
    """What a reload cannot change, as `key: problem`; None when the new file is fine."""
    for key in RELOADABLE_EXCEPT:
        if getattr(running, key) != getattr(new, key):
            return (f"{key}: cannot change on reload (it is bound once); "
                    "restart the edge to move it")
    return None


def preflight(config: EdgeConfig) -> None:
    """What validation cannot see but a worker would fail on: files that do not load
    or cannot be written."""
    if config.tls_cert:
        try:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(config.tls_cert, config.tls_key)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"tls_cert: cannot load {config.tls_cert!r} with "
                              f"{config.tls_key!r}: {_one_line(exc)}") from None
    if config.log_file and config.log_file not in ("-", "stdout"):
        try:
            os.close(os.open(config.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))
        except OSError as exc:
            raise ConfigError(f"log_file: cannot open {config.log_file!r} for appending: "
                              f"{exc.strerror or exc}") from None
    if config.origin_ca_file:
        try:
            ssl.create_default_context(cafile=config.origin_ca_file)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"origin_ca_file: cannot load {config.origin_ca_file!r}: "
                              f"{_one_line(exc)}") from None


def bind_listener(config: EdgeConfig) -> socket.socket:
    host, port = config.listen_addr
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        # Listening before any worker runs: connections queue instead of being refused.
        sock.listen(4096)
    except OSError:
        sock.close()
        raise
    return sock


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exited with status {code}"


def serving_summary(config: EdgeConfig, admin: asyncio.Server | None) -> str:
    """Routes, secret header and admin address, for the ready line on stderr."""
    routes = ", ".join(f"{r.pattern} -> {' | '.join(o.url for o in r.origins)}"
                       for r in config.routes)
    extra = ""
    if admin is not None:
        a_host, a_port = admin.sockets[0].getsockname()[:2]
        extra = "; " + _("admin on {url}").format(url=f"http://{a_host}:{a_port}")
    secret = (_("secret header {name}").format(name=config.secret_header) if config.secret
              else _("NO SECRET"))
    return f"{routes}; {secret}{extra}"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(getattr(exc, "reason", None) or exc).split())


class Supervisor:
    def __init__(self, config: EdgeConfig, load: Callable[[], EdgeConfig],
                 writer: EventWriter) -> None:
        self.config = config
        self.load = load  # re-reads the file, environment and flags, secret included
        self.writer = writer
        self.sock = bind_listener(config)
        self.registry = CollectorRegistry()
        self.metrics = SupervisorMetrics(self.registry)
        self.collector = WorkersCollector(
            lambda: [(str(w.slot), w.snapshot) for w in self.workers if w.snapshot])
        self.registry.register(self.collector)
        self.generation = 0
        self.current: dict[int, Worker] = {}  # slot -> worker of the serving generation
        self.workers: set[Worker] = set()  # every live worker, retiring ones included
        self.backoff: dict[int, RestartBackoff] = {}
        self.stopping = False
        self.admin: asyncio.Server | None = None
        self._reloading = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    # events
    def event(self, message: str, severity: Severity = "INFO", *,
              error_class: str | None = None, error: str | None = None) -> None:
        control_event(self.writer, message, severity, error_class=error_class, error=error)

    def ready(self) -> bool:
        """/readyz: serving (not draining) with at least one worker accepting."""
        return not self.stopping and any(w.state == "serving" for w in self.current.values())

    def _count_states(self) -> None:
        for state in ("starting", "serving", "retiring", "stopping"):
            self.metrics.workers.labels(state).set(
                sum(1 for w in self.workers if w.state == state))

    # lifecycle
    async def start(self) -> str | None:
        """First generation and the admin listener; a problem as one line, or None.
        A SIGHUP meanwhile waits for it (the reload lock), then reloads."""
        async with self._reloading:
            if self.config.admin_addr is not None:
                self.admin = await start_admin(*self.config.admin_addr, self.registry,
                                               self.ready)
            started = await self._start_generation(self.config, 1)
        if isinstance(started, str):
            return started
        self.current, self.generation = started, 1
        self.metrics.generation.set(1)
        self.event(f"edge supervisor (pid {os.getpid()}) serving with "
                   f"{len(started)} workers")
        return None

    async def stop(self) -> None:
        """SIGTERM: every worker drains as a single edge does (WebSockets get 1001)."""
        self.stopping = True
        self.sock.close()  # once the workers have closed theirs, new connections are refused
        workers = list(self.workers)
        for worker in workers:
            self._command(worker, "stop", "stopping")
        watches = [w.watch for w in workers if w.watch is not None]
        if watches:
            _, late = await asyncio.wait(watches, timeout=self.config.timeouts.drain + STOP_GRACE)
            for worker in workers:
                if worker.process.returncode is None:
                    worker.process.kill()
            if late:
                await asyncio.wait(late, timeout=STOP_GRACE)
        if self.admin is not None:
            self.admin.close()

    # reload
    def request_reload(self) -> None:
        task = asyncio.create_task(self.reload())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reload(self) -> None:
        async with self._reloading:
            if self.stopping or not self.generation:  # stopping, or it never started
                return
            try:
                config = self.load()
                problem = reload_problem(self.config, config)
                if problem:
                    raise ConfigError(problem)
                preflight(config)
            except ConfigError as exc:
                self._refuse(str(exc))
                return
            await self._switch(config)

    def _refuse(self, problem: str) -> None:
        self.metrics.reloads.labels("invalid").inc()
        click.echo("wsgate edge: " + _("reload refused, still serving generation {generation}: "
                                      "{problem}").format(generation=self.generation,
                                                          problem=problem), err=True)
        self.event(f"reload refused; generation {self.generation} keeps serving",
                   "ERROR", error_class="reload-invalid-config", error=problem)

    async def _switch(self, config: EdgeConfig) -> None:
        generation = self.generation + 1
        started = await self._start_generation(config, generation)
        if isinstance(started, str):
            self.metrics.reloads.labels("failed").inc()
            click.echo("wsgate edge: " + _("reload failed, still serving generation {generation}: "
                                          "{problem}").format(generation=self.generation,
                                                              problem=started), err=True)
            self.event(f"reload failed; generation {self.generation} keeps serving", "ERROR",
                       error_class="reload-worker-failed", error=started)
            return
        if self.stopping:  # a SIGTERM came while it started: those workers drain too
            return
        old = list(self.current.values())
        self.current, self.config, self.generation = started, config, generation
        limit = config.timeouts.reload_websockets or None
        for worker in old:
            self._command(worker, f"retire {'none' if limit is None else limit}", "retiring")
        reopen_events(self.writer, config.log_file)
        self.metrics.reloads.labels("ok").inc()
        self.metrics.generation.set(generation)
        kept = "until they close" if limit is None else f"for up to {limit:g} s"
        self.event(f"reloaded: generation {generation} serving with {len(started)} workers; "
                   f"generation {generation - 1} finishes its requests and keeps its "
                   f"WebSockets {kept}")

    # workers
    async def _start_generation(self, config: EdgeConfig,
                                generation: int) -> dict[int, Worker] | str:
        """Start `config.workers` workers and wait until each accepts; on any failure
        stop them all and return the first problem."""
        workers: list[Worker] = []
        try:
            for slot in range(config.workers):
                workers.append(await self._spawn(config, slot, generation))
        except OSError as exc:
            problem: str | None = f"cannot start a worker: {_one_line(exc)}"
        else:
            results = await asyncio.gather(*(self._until_ready(w) for w in workers))
            problem = next((p for p in results if p), None)
        if problem is None:
            return {w.slot: w for w in workers}
        for worker in workers:
            self._discard(worker)
        return problem

    def _discard(self, worker: Worker) -> None:
        """Stop a worker that is not wanted: drain it if it serves, else end it now
        (one that never became ready would not read the command)."""
        if worker.state == "serving":
            self._command(worker, "stop", "stopping")
            return
        worker.state = "stopping"
        self._count_states()
        if worker.process.returncode is None:
            worker.process.kill()

    async def _spawn(self, config: EdgeConfig, slot: int, generation: int) -> Worker:
        if self.stopping:
            raise OSError("the edge is stopping")
        status_read, status_write = os.pipe()
        listen_fd = self.sock.fileno()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "wsgate.edge.worker_process",
                "--listen-fd", str(listen_fd), "--status-fd", str(status_write),
                "--worker", str(slot), stdin=asyncio.subprocess.PIPE,
                pass_fds=(listen_fd, status_write), env=self._worker_env(config))
        except OSError:
            os.close(status_read)
            raise
        finally:
            os.close(status_write)
        status = asyncio.StreamReader()
        await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(status), os.fdopen(status_read, "rb", 0))
        assert process.stdin is not None
        process.stdin.write(encode_config(config))
        worker = Worker(slot, generation, process, status)
        self.workers.add(worker)
        worker.watch = asyncio.create_task(self._watch(worker))
        self._count_states()
        return worker

    def _worker_env(self, config: EdgeConfig) -> dict[str, str]:
        env = dict(os.environ)
        # Workers get the secret with their configuration, never from the environment.
        env.pop(config.secret_env, None)
        return env

    async def _until_ready(self, worker: Worker) -> str | None:
        """None once `worker` accepts; else why it did not start (and it is stopped)."""
        try:
            line = await asyncio.wait_for(worker.status.readline(), STARTUP_TIMEOUT)
        except TimeoutError:
            line = f"error did not accept within {STARTUP_TIMEOUT:g} s".encode()
        text = line.decode("utf-8", "replace").strip()
        if text == "ready":
            if worker.state == "starting":
                worker.state = "serving"
                self._count_states()
            worker.reader = asyncio.create_task(self._read_snapshots(worker))
            return None
        if worker.process.returncode is None and not text:
            # It closed its status pipe: it is exiting (else it is ended here).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(worker.process.wait(), STOP_GRACE)
            if worker.process.returncode is None:
                worker.process.kill()
        detail = text.removeprefix("error ").strip() or describe_exit(
            worker.process.returncode or 0)
        return f"{worker.name} did not start: {detail}"

    async def _read_snapshots(self, worker: Worker) -> None:
        """Keep the worker's latest metrics; ends when it closes the pipe (exits)."""
        with contextlib.suppress(asyncio.IncompleteReadError, ValueError, ConnectionError):
            while line := await worker.status.readline():
                kind, _, size = line.decode("ascii", "replace").partition(" ")
                if kind != "metrics" or not size.strip().isdigit():
                    return
                worker.snapshot = await worker.status.readexactly(int(size))

    def _command(self, worker: Worker, command: str, state: str) -> None:
        worker.state = state
        self._count_states()
        stdin = worker.process.stdin
        if stdin is None or stdin.is_closing():
            return
        with contextlib.suppress(OSError, RuntimeError):
            stdin.write(command.encode() + b"\n")
            if command == "stop":
                stdin.close()

    async def _watch(self, worker: Worker) -> None:
        code = await worker.process.wait()
        if worker.reader is not None:  # its last snapshot, written before it exited
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(worker.reader, 5)
        # In one step, so a scrape counts the worker exactly once: live or retired.
        self.collector.worker_exited(str(worker.slot), worker.snapshot)
        self.workers.discard(worker)
        self._count_states()
        if self.stopping or self.current.get(worker.slot) is not worker:
            self.event(f"{worker.name} finished ({describe_exit(code)})")
            return
        await self._restart(worker, code)

    async def _restart(self, dead: Worker, code: int) -> None:
        backoff = self.backoff.setdefault(dead.slot, RestartBackoff())
        delay = backoff.next_delay(time.monotonic() - dead.started)
        self.metrics.worker_restarts.inc()
        self.event(f"{dead.name} died ({describe_exit(code)}); restarting it in {delay:g} s",
                   "ERROR", error_class="worker-died", error=describe_exit(code))
        click.echo("wsgate edge: " + _("{name} died ({why}); restarting").format(
            name=dead.name, why=describe_exit(code)), err=True)
        while True:
            await asyncio.sleep(delay)
            if self.stopping or self.current.get(dead.slot) is not dead:
                return  # stopped, or replaced by a reload meanwhile
            try:
                replacement = await self._spawn(self.config, dead.slot, self.generation)
                break
            except OSError as exc:  # no process or pipe to be had now: try again later
                delay = backoff.next_delay(uptime=0.0)
                self.event(f"cannot restart edge worker {dead.slot}: {_one_line(exc)}; "
                           f"trying again in {delay:g} s", "ERROR",
                           error_class="worker-died", error=_one_line(exc))
        if self.current.get(dead.slot) is not dead:  # a reload took the slot meanwhile
            self._discard(replacement)
            return
        self.current[dead.slot] = replacement
        problem = await self._until_ready(replacement)
        if problem:
            # Its watch restarts the slot again, after a longer delay.
            self.event(problem, "ERROR", error_class="worker-died", error=problem)
            if replacement.process.returncode is None:
                replacement.process.kill()


async def supervise(config: EdgeConfig, load: Callable[[], EdgeConfig],
                    writer: EventWriter) -> int:
    """Run the workers until SIGTERM/SIGINT; SIGHUP reloads. Returns the exit status."""
    try:
        supervisor = Supervisor(config, load, writer)
    except OSError as exc:
        click.echo("wsgate edge: " + _("cannot listen: {error}").format(error=exc.strerror or exc),
                   err=True)
        return 1
    # Signals count from now: a SIGHUP or SIGTERM while the workers start must neither
    # kill the supervisor (the default action) nor be lost.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, supervisor.request_reload)
    try:
        problem = await supervisor.start()
    except OSError as exc:
        problem = "admin_listen: " + _("cannot listen: {error}").format(
            error=exc.strerror or exc)
    if problem:
        click.echo(f"wsgate edge: {problem}", err=True)
        await supervisor.stop()
        return 1
    click.echo(f"wsgate edge listening on {_listening(supervisor)}", err=True)
    await stop.wait()
    click.echo("wsgate edge: " + _("draining"), err=True)
    await supervisor.stop()
    writer.flush()
    click.echo("wsgate edge: " + _("stopped"), err=True)
    return 0


def _listening(supervisor: Supervisor) -> str:
    host, port = supervisor.sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    scheme = "https" if supervisor.config.tls_cert else "http"
    return (f"{scheme}://{shown}:{port} with {len(supervisor.current)} workers "
            f"({serving_summary(supervisor.config, supervisor.admin)})")
