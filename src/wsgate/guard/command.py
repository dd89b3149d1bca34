"""`wsgate run app.py [options] [streamlit options] [-- script args]`."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from wsgate.guard.asgi import DEFAULT_ECHO_PATH, DEFAULT_OPEN_PATHS, DEFAULT_SECRET_HEADER
from wsgate.guard.secrets import MIN_RECOMMENDED_LENGTH, SecretError, load_secrets

INSECURE_BANNER = (
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


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"wsgate run: {message}", err=True)
    sys.exit(code)


@click.command(
    cls=_RunCommand,
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                      "help_option_names": ["-h", "--help"]},
)
@click.option("--secret-env", "secret_env", multiple=True, default=("WSGATE_SECRET",),
              show_default=True, metavar="NAME",
              help="Environment variable holding the secret(s), comma-separated for a "
                   "rotation. Repeatable (e.g. CLOUDFLARE_WORKER_SECRET).")
@click.option("--secret-file", type=click.Path(dir_okay=False), default=None,
              help="File with one secret per line (mounted secrets).")
@click.option("--secret-header", default=DEFAULT_SECRET_HEADER, show_default=True,
              help="Request header that carries the secret.")
@click.option("--public-url", default=None, metavar="URL",
              help="Public URL of the app (e.g. https://app.example.com): named in refusals "
                   "and added to Streamlit's allowed WebSocket origins.")
@click.option("--open-path", "open_paths", multiple=True, default=DEFAULT_OPEN_PATHS,
              show_default=True,
              help="Exact path that needs no secret (under server.baseUrlPath). Repeatable.")
@click.option("--echo-path", default=DEFAULT_ECHO_PATH, show_default=True,
              help="Authenticated diagnostic endpoint; '' turns it off.")
@click.option("--insecure-no-secret", is_flag=True,
              help="Start without a secret (guard off). Local development only.")
@click.option("--log-file", default=None, metavar="PATH",
              help="Write JSON log events here instead of stdout.")
@click.option("--refusal-burst", type=click.IntRange(min=0), default=10, show_default=True,
              help="Refusals logged one by one per client address and window; the rest "
                   "are summarised in one event with refusedCount.")
@click.option("--refusal-window", type=click.FloatRange(min=0.001), default=60.0,
              show_default=True, metavar="SECONDS", help="Window for --refusal-burst.")
@click.argument("script")
@click.argument("streamlit_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run(ctx: click.Context, secret_env: tuple[str, ...], secret_file: str | None,
        secret_header: str, public_url: str | None, open_paths: tuple[str, ...],
        echo_path: str, insecure_no_secret: bool, log_file: str | None,
        refusal_burst: int, refusal_window: float, script: str,
        streamlit_args: tuple[str, ...]) -> None:
    """Run a Streamlit SCRIPT exactly like `streamlit run`, behind the origin guard.

    Every option not listed here (--server.port 8501, --server.address ...) goes to
    Streamlit unchanged; STREAMLIT_* variables and .streamlit/config.toml apply too.
    """
    from wsgate.guard import streamlit as launcher

    script_args: list[str] = ctx.meta.get("wsgate.script_args", [])
    if "://" not in script:
        target = Path(script)
        if target.is_dir():
            target = target / "streamlit_app.py"
        if not target.is_file():
            _fail(f"script not found: {target}")
    if not secret_header.strip() or any(c in secret_header for c in " :\r\n"):
        _fail(f"--secret-header is not a header name: {secret_header!r}")
    try:
        secrets, sources = load_secrets(secret_env, os.environ, secret_file)
    except SecretError as exc:
        _fail(str(exc))
    if not secrets and not insecure_no_secret:
        names = " or ".join(f"${name}" for name in secret_env)
        _fail(f"no secret configured: set {names} (or --secret-env NAME / --secret-file "
              "PATH), or pass --insecure-no-secret for local development")
    if secrets and insecure_no_secret:
        _fail("--insecure-no-secret given but a secret is configured; drop one of them")
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
        _fail(f"cannot open --log-file {log_file}: {exc.strerror or exc}")
    if insecure_no_secret:
        click.secho(INSECURE_BANNER, err=True, fg="red", bold=True)
        emit(logger, build_event(source="origin", message=INSECURE_BANNER,
                                 severity="WARNING"))
    else:
        short = sum(1 for s in secrets if len(s) < MIN_RECOMMENDED_LENGTH)
        click.echo(f"wsgate run: origin guard on: {len(secrets)} secret(s) from "
                   f"{', '.join(sources)}, header {secret_header}, open paths "
                   f"{', '.join(open_paths) or 'none'}", err=True)
        if short:
            click.echo(f"wsgate run: warning: {short} secret(s) shorter than "
                       f"{MIN_RECOMMENDED_LENGTH} characters", err=True)

    launcher.install(launcher.GuardSettings(
        secrets=tuple(secrets), secret_header=secret_header, public_url=public_url,
        open_paths=tuple(open_paths), echo_path=echo_path or None,
        insecure_no_secret=insecure_no_secret, logger=logger,
        flood_limit=refusal_burst, flood_window_s=refusal_window))
    args = [*streamlit_args, *(["--", *script_args] if script_args else [])]
    sys.exit(_run_streamlit(launcher, script, args))


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
