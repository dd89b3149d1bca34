"""`wsgate run app.py [options] [streamlit options] [-- script args]`."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from wsgate.guard.asgi import DEFAULT_ECHO_PATH, DEFAULT_OPEN_PATHS, DEFAULT_SECRET_HEADER
from wsgate.guard.secrets import (
    MIN_RECOMMENDED_LENGTH,
    SecretError,
    describe_missing,
    load_secrets,
)
from wsgate.guard.signals import tolerate_broken_pipes
from wsgate.i18n import N_, _

# Also a log event's message, which stays English: translated for the console only.
INSECURE_BANNER = N_(
    "WARNING: wsgate run --insecure-no-secret: the origin guard is OFF. Anyone who can "
    "reach this port uses the app directly and forwarded headers are not trusted. "
    "Use this for local development only."
)


class _RunCommand(click.Command):
    """Keeps everything after `--` for the script, as `streamlit run` does."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            cut = args.index("--")
            ctx.meta["wsgate.script_args"] = args[cut + 1:]
            args = args[:cut]
        return super().parse_args(ctx, args)


def _fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"wsgate run: {message}", err=True)
    sys.exit(code)


RUN_HELP = _("""Run a Streamlit SCRIPT exactly like `streamlit run`, behind the origin guard.

Every option not listed below (--server.port 8501, --server.address HOST, ...) goes
to Streamlit unchanged, and STREAMLIT_* variables and .streamlit/config.toml apply
too. Arguments after -- go to the script. Every route needs the edge's secret
header except the open paths; the console shows where the origin listens, which is
not the URL to open: browsers come through the edge.

\b
Examples:
  WSGATE_SECRET=... wsgate run app.py --server.port 8501
  WSGATE_SECRET=... wsgate run app.py --public-url https://app.example.com
  CLOUDFLARE_WORKER_SECRET=... wsgate run app.py --secret-env CLOUDFLARE_WORKER_SECRET
  wsgate run app.py --secret-file /run/secrets/wsgate --log-file origin.jsonl
  wsgate run app.py --insecure-no-secret          # local development only

\b
Exit status:
  0      stopped by SIGINT/SIGTERM (Ctrl-C), or the app ended
  1      Streamlit failed (e.g. its port is already in use)
  2      usage error: script missing, no secret, bad option
  128+N  signal N arrived while starting, or a second time while stopping

\b
Environment:
  WSGATE_SECRET   the secret; several, comma-separated, during a rotation
                  (another variable: --secret-env NAME)
  STREAMLIT_*     Streamlit's own settings, applied by Streamlit
""")


@click.command(
    cls=_RunCommand, help=RUN_HELP,
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                      "help_option_names": ["-h", "--help"]},
)
@click.option("--secret-env", "secret_env", multiple=True, default=("WSGATE_SECRET",),
              show_default=True, metavar="NAME",
              help=_("Environment variable holding the secret(s), comma-separated for a "
                     "rotation. Repeatable (e.g. CLOUDFLARE_WORKER_SECRET)."))
@click.option("--secret-file", type=click.Path(dir_okay=False), default=None,
              metavar="PATH", help=_("File with one secret per line (mounted secrets)."))
@click.option("--secret-header", default=DEFAULT_SECRET_HEADER, show_default=True,
              metavar="NAME", help=_("Request header that carries the secret."))
@click.option("--public-url", default=None, metavar="URL",
              help=_("Public URL of the app (e.g. https://app.example.com): named in refusals "
                     "and added to Streamlit's allowed WebSocket origins."))
@click.option("--open-path", "open_paths", multiple=True, default=DEFAULT_OPEN_PATHS,
              show_default=True, metavar="PATH",
              help=_("Exact path that needs no secret (under server.baseUrlPath). Repeatable."))
@click.option("--echo-path", default=DEFAULT_ECHO_PATH, show_default=True, metavar="PATH",
              help=_("Authenticated diagnostic endpoint; '' turns it off."))
@click.option("--insecure-no-secret", is_flag=True,
              help=_("Start without a secret (guard off). Local development only."))
@click.option("--log-file", default="stdout", metavar="PATH", show_default=True,
              help=_("Append the JSON log events (access log and refusals) to this file "
                     "('stdout' or 'stderr' for those streams), apart from the console output."))
@click.option("--access-log/--no-access-log", default=True, show_default=True,
              help=_("One JSON event per request and per WebSocket session, with the "
                     "edge's X-Request-Id (refusals are logged either way)."))
@click.option("--refusal-burst", type=click.IntRange(min=0), default=10, show_default=True,
              metavar="N",
              help=_("Refusals logged one by one per client address and window; the rest "
                     "are summarised in one event with refusedCount."))
@click.option("--refusal-window", type=click.FloatRange(min=0.001), default=60.0,
              show_default=True, metavar="SECONDS", help=_("Window for --refusal-burst."))
@click.argument("script")
@click.argument("streamlit_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run(ctx: click.Context, secret_env: tuple[str, ...], secret_file: str | None,
        secret_header: str, public_url: str | None, open_paths: tuple[str, ...],
        echo_path: str, insecure_no_secret: bool, log_file: str, access_log: bool,
        refusal_burst: int, refusal_window: float, script: str,
        streamlit_args: tuple[str, ...]) -> None:
    from wsgate.guard import streamlit as launcher

    _check_script(script, streamlit_args)
    if not secret_header.strip() or any(c in secret_header for c in " :\r\n"):
        _fail(_("--secret-header is not a header name: {value!r}").format(value=secret_header))
    secrets, sources = _secrets(secret_env, secret_file, insecure_no_secret)
    try:
        if public_url:
            launcher.public_origin(public_url)
        launcher.starlette_server_module()
    except launcher.LaunchError as exc:
        _fail(str(exc))

    from wsgate.logs.events import build_event, configure_event_logging, emit

    try:
        logger = configure_event_logging("origin", log_file)
    except OSError as exc:
        _fail(_("cannot open --log-file {path}: {error}").format(path=log_file,
                                                                  error=exc.strerror or exc))
    tolerate_broken_pipes(logger)
    if insecure_no_secret:
        click.secho(_(INSECURE_BANNER), err=True, fg="red", bold=True)
        emit(logger, build_event(source="origin", message=INSECURE_BANNER,
                                 severity="WARNING"))
    else:
        _announce_guard(secrets, sources, secret_header, open_paths)

    launcher.install(launcher.GuardSettings(
        secrets=tuple(secrets), secret_header=secret_header, public_url=public_url,
        open_paths=tuple(open_paths), echo_path=echo_path or None,
        insecure_no_secret=insecure_no_secret, logger=logger,
        flood_limit=refusal_burst, flood_window_s=refusal_window, access_log=access_log))
    script_args: list[str] = ctx.meta.get("wsgate.script_args", [])
    args = [*streamlit_args, *(["--", *script_args] if script_args else [])]
    sys.exit(_run_streamlit(launcher, script, args))


def _check_script(script: str, streamlit_args: tuple[str, ...]) -> None:
    if script.startswith("-"):
        # `wsgate run --server.port 8613`: the first thing click could not place as
        # an option of ours landed where the script goes.
        _fail(_("the script is missing: give it first, e.g. {command}").format(
            command=" ".join(["wsgate run app.py", script, *streamlit_args])))
    if "://" not in script:
        target = Path(script)
        if target.is_dir():
            target = target / "streamlit_app.py"
        if not target.is_file():
            _fail(_("script not found: {path}").format(path=target))


def _secrets(secret_env: tuple[str, ...], secret_file: str | None,
             insecure_no_secret: bool) -> tuple[list[str], list[str]]:
    try:
        secrets, sources = load_secrets(secret_env, os.environ, secret_file)
    except SecretError as exc:
        _fail(str(exc))
    if not secrets and not insecure_no_secret:
        advice = (_("set it to the edge's secret") if len(secret_env) == 1
                  else _("set one to the edge's secret"))
        _fail(_("no secret configured: {why}; {advice} (or use --secret-env NAME / "
                "--secret-file PATH), or pass --insecure-no-secret for local development"
                ).format(why=describe_missing(secret_env, os.environ), advice=advice))
    if secrets and insecure_no_secret:
        _fail(_("--insecure-no-secret given but a secret is configured; drop one of them"))
    return secrets, sources


def _announce_guard(secrets: list[str], sources: list[str], secret_header: str,
                    open_paths: tuple[str, ...]) -> None:
    click.echo("wsgate run: " + _("origin guard on: {count} secret(s) from {sources}, header "
                                  "{header}, open paths {paths}").format(
        count=len(secrets), sources=", ".join(sources), header=secret_header,
        paths=", ".join(open_paths) or _("none")), err=True)
    short = sum(1 for s in secrets if len(s) < MIN_RECOMMENDED_LENGTH)
    if short:
        click.echo("wsgate run: " + _("warning: {count} secret(s) shorter than {length} "
                                      "characters").format(
            count=short, length=MIN_RECOMMENDED_LENGTH), err=True)


def _run_streamlit(launcher: Any, script: str, args: list[str]) -> int:
    try:
        return int(launcher.run_streamlit(script, args))
    except click.ClickException as exc:
        click.echo(f"wsgate run: streamlit: {exc.format_message()}", err=True)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.Abort:
        return 1
    except KeyboardInterrupt:
        return 130
