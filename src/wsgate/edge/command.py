"""`wsgate edge`: run the edge proxy from a TOML file and/or flags.

One process by default; `--workers N` runs N under `wsgate.edge.supervisor`. Either
way SIGHUP reloads the configuration without dropping a connection, and `--check`
validates it and prints it, as `nginx -t` does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import signal
import socket
import ssl
import sys
from collections.abc import Callable
from typing import Any

import click

from wsgate.config import ConfigError, EdgeConfig, load_config
from wsgate.edge.admin import start_admin
from wsgate.edge.metrics import EdgeMetrics
from wsgate.edge.server import EdgeServer
from wsgate.edge.supervisor import preflight, reload_problem, serving_summary, supervise
from wsgate.edge.worker_process import control_event, open_shared_event_writer, reopen_events
from wsgate.i18n import _
from wsgate.logs.events import EventWriter, Severity, open_event_writer

EDGE_HELP = _("""Run the edge proxy: HTTP and WebSocket to the origin, with the secret injected.

\b
Examples:
  WSGATE_SECRET=s3cret wsgate edge --origin http://127.0.0.1:8501
  CF_SECRET=s3cret wsgate edge --config examples/edge.toml --workers auto
  CF_SECRET=s3cret wsgate edge --config examples/edge.toml --check
  kill -HUP <pid>    # reload the file (and the secret) without dropping a connection
""")


@click.command(help=EDGE_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help=_("Edge TOML file (see docs/edge.md). Flags override its values."))
@click.option("--origin", help=_("Origin URL for one catch-all route, e.g. http://127.0.0.1:8501."))
@click.option("--listen", help=_("Address to listen on, HOST:PORT (default 127.0.0.1:8080)."))
@click.option("--secret-env", help=_("Environment variable holding the secret "
                "(default WSGATE_SECRET)."))
@click.option("--secret-file", type=click.Path(dir_okay=False),
              help=_("File holding the secret (instead of the environment)."))
@click.option("--secret-header", help=_("Header carrying the secret (default X-CF-Secret)."))
@click.option("--insecure-no-secret", is_flag=True, default=None,
              help=_("Run without a secret (the origin is then unprotected)."))
@click.option("--public-host", help=_("X-Forwarded-Host value (default: the client's Host)."))
@click.option("--forwarded-proto", type=click.Choice(["auto", "http", "https"]),
              help=_("X-Forwarded-Proto value (default auto: the scheme the edge serves, or a "
                "trusted proxy's X-Forwarded-Proto when --client-ip-header is set)."))
@click.option("--client-ip-header",
              help=_("Trusted header with the client IP, e.g. CF-Connecting-IP."))
@click.option("--log-file", help=_("Write JSON log events here instead of stdout."))
@click.option("--admin-listen", help=_("HOST:PORT for /metrics, /healthz, /readyz."))
@click.option("--ping-interval", type=float,
              help=_("Seconds of silence before the edge pings WebSocket clients (0 = off)."))
@click.option("--tls-cert", type=click.Path(dir_okay=False), help=_("Serve TLS with this cert."))
@click.option("--tls-key", type=click.Path(dir_okay=False), help=_("Private key for --tls-cert."))
@click.option("--origin-ca-file", type=click.Path(dir_okay=False),
              help=_("CA bundle to verify https origins (default: system CAs)."))
@click.option("--drain-timeout", type=float, help=_("Seconds to drain on SIGTERM (default 10)."))
@click.option("--workers", metavar="N|auto",
              help=_("Worker processes sharing the address (default 1; auto = one per core)."))
@click.option("--check", is_flag=True,
              help=_("Validate the configuration, print it (secret masked) and exit: 0 valid, "
                "2 invalid."))
def edge(config_path: str | None, check: bool, **flags: Any) -> None:
    """`wsgate edge`; its help is EDGE_HELP."""
    timeouts = {"websocket_ping_interval": flags.pop("ping_interval"),
                "drain": flags.pop("drain_timeout")}
    cli: dict[str, Any] = {k: v for k, v in flags.items() if v is not None}
    timeouts = {k: v for k, v in timeouts.items() if v is not None}
    if timeouts:
        cli["timeouts"] = timeouts
    def load() -> EdgeConfig:
        return load_config(config_path, cli)

    try:
        config = load()
        if check:
            preflight(config)
    except ConfigError as exc:
        click.echo("wsgate edge: " + _("configuration error: {error}").format(error=exc), err=True)
        sys.exit(2)
    if check:
        click.echo(effective_toml(config), nl=False)
        valid = (_("configuration {path} is valid").format(path=config_path) if config_path
                 else _("configuration (flags and environment) is valid"))
        click.echo("wsgate edge: " + valid, err=True)
        sys.exit(0)
    try:
        import uvloop
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    try:
        sys.exit(runner(serve(config, load)))
    except KeyboardInterrupt:
        sys.exit(0)


async def serve(config: EdgeConfig, load: Callable[[], EdgeConfig]) -> int:
    # Events carry their own fields; skip the per-record pid/thread lookups of logging.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    several = config.workers > 1
    try:
        if several:  # several processes write the destination: whole lines per write
            writer, logger = open_shared_event_writer(config.log_file)
        else:
            writer, logger = open_event_writer("edge", config.log_file or None)
    except OSError as exc:
        click.echo("wsgate edge: " + _("log_file: cannot open {path!r}: {error}").format(
            path=config.log_file, error=exc.strerror or exc), err=True)
        return 2
    try:
        if several:
            return await supervise(config, load, writer)
        return await _serve(config, load, writer, logger)
    finally:
        writer.close()  # batched lines are written before the process exits


async def _serve(config: EdgeConfig, load: Callable[[], EdgeConfig], writer: EventWriter,
                 logger: logging.Logger) -> int:
    metrics = EdgeMetrics()
    server = EdgeServer(config, logger, metrics, writer)
    edge = SingleEdge(server, load, writer, logger)
    # Signals count from now: a SIGHUP or SIGTERM while starting must neither kill the
    # edge (the default action) nor be lost.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, edge.request_reload)
    try:
        admin = await edge.start(config.admin_addr)
    except ssl.SSLError as exc:
        click.echo("wsgate edge: " + _("tls_cert/tls_key: cannot load: {error}").format(
            error=exc.reason or exc), err=True)
        return 2
    except OSError as exc:
        click.echo("wsgate edge: " + _("cannot listen: {error}").format(error=exc.strerror or exc),
                   err=True)
        return 1
    host, port = server.bound
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"wsgate edge listening on {server.scheme}://{shown}:{port} "
               f"({serving_summary(config, admin)})", err=True)
    await stop.wait()
    click.echo("wsgate edge: " + _("draining"), err=True)
    await edge.shutdown()
    if admin is not None:
        admin.close()
    writer.flush()
    click.echo("wsgate edge: " + _("stopped"), err=True)
    return 0


class SingleEdge:
    """SIGHUP in the one-process edge: a new EdgeServer with the new configuration
    takes over the same listening socket, then the old one retires, as a generation
    of workers does under the supervisor."""

    def __init__(self, server: EdgeServer, load: Callable[[], EdgeConfig],
                 writer: EventWriter, logger: logging.Logger) -> None:
        self.server = server
        self.load = load
        self.writer = writer
        self.logger = logger
        self.generation = 1
        self.retiring: dict[EdgeServer, asyncio.Task[None]] = {}
        self._reloading = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, admin_addr: tuple[str, int] | None) -> asyncio.Server | None:
        """Listen, and start the admin listener if asked; a SIGHUP meanwhile waits."""
        async with self._reloading:
            await self.server.start()
            if admin_addr is None:
                return None
            return await start_admin(*admin_addr, self.server.metrics.registry,
                                     lambda: not self.server.draining,
                                     lambda m, t: self.server.balancer.admin(m, t))

    def request_reload(self) -> None:
        task = asyncio.create_task(self.reload())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reload(self) -> None:
        async with self._reloading:
            if self.server.draining or self.server.listener is None:  # stopping / not up
                return
            try:
                config = self.load()
                problem = reload_problem(self.server.config, config) or _stays_single(config)
                if problem:
                    raise ConfigError(problem)
                preflight(config)
                new = await self._start(config)
            except ConfigError as exc:
                self._refuse(str(exc))
                return
            old, self.server = self.server, new
            self.generation += 1
            reopen_events(self.writer, config.log_file)
            limit = config.timeouts.reload_websockets or None
            task = self.retiring[old] = asyncio.create_task(old.retire(limit))
            task.add_done_callback(lambda _: self.retiring.pop(old, None))
            kept = "until they close" if limit is None else f"for up to {limit:g} s"
            self._event(f"reloaded: generation {self.generation} serving; generation "
                        f"{self.generation - 1} finishes its requests and keeps its "
                        f"WebSockets {kept}")

    async def _start(self, config: EdgeConfig) -> EdgeServer:
        assert self.server.listener is not None
        sockets = self.server.listener.sockets
        if len(sockets) != 1:
            raise ConfigError(f"listen: {config.listen!r} is bound to {len(sockets)} "
                              "addresses; a reload needs one (listen on an IP address)")
        sock = socket.socket(fileno=os.dup(sockets[0].fileno()))
        new = EdgeServer(config, self.logger, self.server.metrics, self.writer)
        # Both servers share one registry: only the new one's per-origin series (and
        # health checks) may run, or a scrape would hold each of them twice.
        self.server.balancer.stop()
        try:
            await new.start(sock=sock)
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            await self.server.balancer.start()
            raise ConfigError(f"listen: the new configuration cannot serve: {exc}") from None
        return new

    def _refuse(self, problem: str) -> None:
        click.echo("wsgate edge: " + _("reload refused, still serving generation {generation}: "
                                      "{problem}").format(generation=self.generation,
                                                          problem=problem), err=True)
        self._event(f"reload refused; generation {self.generation} keeps serving", "ERROR",
                    error_class="reload-invalid-config", error=problem)

    def _event(self, message: str, severity: Severity = "INFO", *,
               error_class: str | None = None, error: str | None = None) -> None:
        control_event(self.writer, message, severity, error_class=error_class, error=error)

    async def shutdown(self) -> None:
        """SIGTERM: the serving server and any retiring one close as a single edge does."""
        retiring = dict(self.retiring)
        await asyncio.gather(self.server.shutdown(), *(old.shutdown() for old in retiring))
        await asyncio.gather(*retiring.values())  # each retire ends once its server is shut


def _stays_single(config: EdgeConfig) -> str | None:
    if config.workers != 1:
        return ("workers: going from one process to several needs a restart "
                "(start the edge with --workers)")
    return None


def effective_toml(config: EdgeConfig) -> str:
    """The configuration as the edge will run it, in the TOML of `--config` (the
    secret masked, as a comment); sections and routes follow the top-level keys."""
    lines: list[str] = []
    sections: list[tuple[str, Any]] = []
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        if item.name in ("routes", "secret"):
            continue
        if dataclasses.is_dataclass(value):
            sections.append((item.name, value))
        else:
            lines.append(f"{item.name} = {_toml(value)}")
    source = (f"secret_file {config.secret_file}" if config.secret_file
              else f"environment variable {config.secret_env}")
    lines.append(f'# secret = "***" (from {source})' if config.secret
                 else "# secret: none (insecure_no_secret = true)")
    for name, section in sections:
        lines += ["", f"[{name}]"]
        lines += [f"{f.name} = {_toml(getattr(section, f.name))}"
                  for f in dataclasses.fields(section)]
    for route in config.routes:
        lines += ["", "[[routes]]", f"pattern = {_toml(route.pattern)}"]
        if len(route.origins) == 1:
            lines.append(f"origin = {_toml(route.origin.url)}")
        else:
            entries = [f'{{ url = {_toml(o.url)}, weight = {w} }}'
                       for o, w in zip(route.origins, route.weights, strict=True)]
            lines.append(f"origins = [{', '.join(entries)}]")
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value))  # a JSON string is a TOML basic string
