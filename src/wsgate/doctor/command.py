"""`wsgate doctor URL`: probe a deployment end to end and explain what is wrong."""

from __future__ import annotations

import asyncio
import json
import sys

import click

from wsgate.doctor.doctor import DoctorOptions, diagnose
from wsgate.doctor.probes import MAX_REDIRECTS
from wsgate.doctor.report import render, to_json
from wsgate.doctor.target import UsageError
from wsgate.i18n import _

DOCTOR_HELP = _("""Probe URL hop by hop (DNS, TCP, TLS, HTTP, WebSocket upgrade, Streamlit
session, idle hold, the origin's guard) and explain what is wrong and how to fix it.

URL is the public address users open (https://, http://, wss:// or ws://; a path
such as /app is kept and Streamlit's paths are probed under it).

\b
Examples:
  wsgate doctor https://app.example.com
  WSGATE_SECRET=... wsgate doctor https://app.example.com --origin URL --idle-seconds 110
  wsgate doctor https://app.example.com --connect-to HOST:PORT   # before the DNS switch
  wsgate doctor http://example.com --follow --json
  wsgate doctor wss://chat.example.com --generic --path /ws --subprotocol chat

\b
Environment:
  WSGATE_SECRET      the shared secret, only for the --origin checks
                     (another variable: --secret-env NAME); never printed
  NO_COLOR           plain output (also when stdout is not a terminal)
  SSL_CERT_FILE,     a CA bundle or directory to trust instead of the system's
  SSL_CERT_DIR       (read by OpenSSL; --ca-file PATH replaces them)
  HTTP(S)_PROXY      ignored: the doctor always connects directly

\b
Exit status:
  0    no error found (warnings allowed)
  1    at least one error-severity diagnosis
  2    usage error: bad URL, option or --ca-file
  130  interrupted (Ctrl-C)
""")


@click.command(help=DOCTOR_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("url", metavar="URL")
@click.option("--origin", metavar="URL",
              help=_("The origin's own URL, probed directly: it must refuse requests without "
                     "the secret and accept them with it."))
@click.option("--secret-env", default="WSGATE_SECRET", show_default=True, metavar="NAME",
              help=_("Environment variable holding the shared secret (for --origin checks)."))
@click.option("--secret-header", default="X-CF-Secret", show_default=True, metavar="NAME",
              help=_("Header the origin expects the secret in."))
@click.option("--path", "stream_path", default="/_stcore/stream", show_default=True,
              metavar="PATH", help=_("WebSocket path, relative to the URL's path."))
@click.option("--generic", is_flag=True,
              help=_("Not a Streamlit app: skip health, host-config and the Streamlit session."))
@click.option("--subprotocol", "subprotocols", multiple=True, metavar="NAME",
              help=_("Subprotocol to offer in --generic mode (repeatable)."))
@click.option("--idle-seconds", type=click.FloatRange(min=0), default=0.0, show_default=True,
              metavar="SECONDS",
              help=_("Hold an idle WebSocket this long and report if and when it drops (0: off)."))
@click.option("--timeout", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
              metavar="SECONDS",
              help=_("Limit of each step (the Streamlit session gets twice this)."))
@click.option("--insecure", is_flag=True, help=_("Do not verify the TLS certificate."))
@click.option("--ca-file", type=click.Path(dir_okay=False), default=None, metavar="PATH",
              help=_("PEM file of CA certificates to trust (a private CA)."))
@click.option("--connect-to", metavar="HOST:PORT",
              help=_("Connect there for the URL's host and port, keeping the URL's host in Host, "
                     "Origin and TLS (as curl's --connect-to): test an edge before DNS points "
                     "at it."))
@click.option("--follow", is_flag=True,
              help=_("Follow the URL's redirects (at most {count}) and probe where they lead, "
                     "instead of only showing them.").format(count=MAX_REDIRECTS))
@click.option("--json", "as_json", is_flag=True,
              help=_("Print one JSON object (stable schema, see docs/doctor.md)."))
def doctor(url: str, origin: str | None, secret_env: str, secret_header: str, stream_path: str,
           generic: bool, subprotocols: tuple[str, ...], idle_seconds: float, timeout: float,
           insecure: bool, ca_file: str | None, connect_to: str | None, follow: bool,
           as_json: bool) -> None:
    if not stream_path.startswith("/"):
        raise click.UsageError(_("--path must start with '/'"))
    options = DoctorOptions(
        origin=origin, secret_env=secret_env, secret_header=secret_header, path=stream_path,
        generic=generic, subprotocols=subprotocols, idle_seconds=idle_seconds,
        timeout=timeout, insecure=insecure, ca_file=ca_file, connect_to=connect_to,
        follow=follow)
    try:
        report = asyncio.run(diagnose(url, options))
    except UsageError as exc:
        raise click.UsageError(str(exc)) from None
    except KeyboardInterrupt:
        click.echo(_("interrupted"), err=True)
        sys.exit(130)
    if as_json:
        click.echo(json.dumps(to_json(report), indent=2, ensure_ascii=False))
    else:
        render(report, color=None if sys.stdout.isatty() else False)
    sys.exit(0 if report.ok else 1)
