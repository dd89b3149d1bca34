"""`wsgate edge`: run the edge proxy from a TOML file and/or flags."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import sys
from typing import Any

import click

from wsgate.config import ConfigError, EdgeConfig, load_config
from wsgate.edge.admin import start_admin
from wsgate.edge.metrics import EdgeMetrics
from wsgate.edge.server import EdgeServer
from wsgate.logs.events import EventWriter, open_event_writer


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Edge TOML file (see docs/edge.md). Flags override its values.")
@click.option("--origin", help="Origin URL for one catch-all route, e.g. http://127.0.0.1:8501.")
@click.option("--listen", help="Address to listen on, HOST:PORT (default 127.0.0.1:8080).")
@click.option("--secret-env", help="Environment variable holding the secret "
              "(default WSGATE_SECRET).")
@click.option("--secret-file", type=click.Path(dir_okay=False),
              help="File holding the secret (instead of the environment).")
@click.option("--secret-header", help="Header carrying the secret (default X-CF-Secret).")
@click.option("--insecure-no-secret", is_flag=True, default=None,
              help="Run without a secret (the origin is then unprotected).")
@click.option("--public-host", help="X-Forwarded-Host value (default: the client's Host).")
@click.option("--forwarded-proto", type=click.Choice(["http", "https"]),
              help="X-Forwarded-Proto value (default https).")
@click.option("--client-ip-header",
              help="Trusted header with the client IP, e.g. CF-Connecting-IP.")
@click.option("--log-file", help="Write JSON log events here instead of stdout.")
@click.option("--admin-listen", help="HOST:PORT for /metrics, /healthz, /readyz.")
@click.option("--ping-interval", type=float,
              help="Seconds of silence before the edge pings WebSocket clients (0 = off).")
@click.option("--tls-cert", type=click.Path(dir_okay=False), help="Serve TLS with this cert.")
@click.option("--tls-key", type=click.Path(dir_okay=False), help="Private key for --tls-cert.")
@click.option("--origin-ca-file", type=click.Path(dir_okay=False),
              help="CA bundle to verify https origins (default: system CAs).")
@click.option("--drain-timeout", type=float, help="Seconds to drain on SIGTERM (default 10).")
def edge(config_path: str | None, **flags: Any) -> None:
    """Run the edge proxy: HTTP and WebSocket to the origin, with the secret injected.

    \b
    Examples:
      WSGATE_SECRET=s3cret wsgate edge --origin http://127.0.0.1:8501
      CF_SECRET=s3cret wsgate edge --config examples/edge.toml
    """
    timeouts = {"websocket_ping_interval": flags.pop("ping_interval"),
                "drain": flags.pop("drain_timeout")}
    cli: dict[str, Any] = {k: v for k, v in flags.items() if v is not None}
    timeouts = {k: v for k, v in timeouts.items() if v is not None}
    if timeouts:
        cli["timeouts"] = timeouts
    try:
        config = load_config(config_path, cli)
    except ConfigError as exc:
        click.echo(f"wsgate edge: configuration error: {exc}", err=True)
        sys.exit(2)
    try:
        import uvloop
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    try:
        sys.exit(runner(serve(config)))
    except KeyboardInterrupt:
        sys.exit(0)


async def serve(config: EdgeConfig) -> int:
    # Events carry their own fields; skip the per-record pid/thread lookups of logging.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    try:
        writer, logger = open_event_writer("edge", config.log_file or None)
    except OSError as exc:
        click.echo(f"wsgate edge: log_file: cannot open {config.log_file!r}: "
                   f"{exc.strerror or exc}", err=True)
        return 2
    try:
        return await _serve(config, writer, logger)
    finally:
        writer.close()  # batched lines are written before the process exits


async def _serve(config: EdgeConfig, writer: EventWriter, logger: logging.Logger) -> int:
    metrics = EdgeMetrics()
    server = EdgeServer(config, logger, metrics, writer)
    try:
        await server.start()
        admin = None
        if config.admin_addr is not None:
            admin = await start_admin(*config.admin_addr, metrics, lambda: not server.draining)
    except ssl.SSLError as exc:
        click.echo(f"wsgate edge: tls_cert/tls_key: cannot load: {exc.reason or exc}", err=True)
        return 2
    except OSError as exc:
        click.echo(f"wsgate edge: cannot listen: {exc.strerror or exc}", err=True)
        return 1
    host, port = server.bound
    shown = f"[{host}]" if ":" in host else host
    routes = ", ".join(f"{r.pattern} -> {r.origin.url}" for r in config.routes)
    extra = ""
    if admin is not None:
        a_host, a_port = admin.sockets[0].getsockname()[:2]
        extra = f"; admin on http://{a_host}:{a_port}"
    secret = f"secret header {config.secret_header}" if config.secret else "NO SECRET"
    click.echo(f"wsgate edge listening on {server.scheme}://{shown}:{port} ({routes}; "
               f"{secret}{extra})", err=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    click.echo("wsgate edge: draining", err=True)
    await server.shutdown()
    if admin is not None:
        admin.close()
    writer.flush()
    click.echo("wsgate edge: stopped", err=True)
    return 0
