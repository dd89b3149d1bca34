"""`wsgate worker build` and `wsgate worker dev`: the edge as a Cloudflare Worker."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import IO, NoReturn

import click

from wsgate.config import ConfigError, EdgeConfig, load_config
from wsgate.i18n import _
from wsgate.worker import workerd
from wsgate.worker.build import DEFAULT_NAME, write_worker
from wsgate.worker.rules import check_platform, platform_notes

# A stand-in secret for `build`, which needs only the secret's NAME: it lets the edge's
# loader validate the rest without the real value on the build machine. Never rendered.
_BUILD_PLACEHOLDER = "wsgate-build-placeholder-never-used"


def _fail(command: str, message: str) -> NoReturn:
    click.echo(f"wsgate worker {command}: {message}", err=True)
    sys.exit(2)


def load_for_build(config_path: str | None) -> EdgeConfig:
    """The edge configuration as `wsgate edge` reads it, without the secret's value:
    the Worker needs only its name (the binding), the value is set with wrangler."""
    names = load_config(config_path, {"secret_file": "", "insecure_no_secret": True})
    environ = {**os.environ, names.secret_env: _BUILD_PLACEHOLDER}
    config = load_config(config_path, {"secret_file": ""}, environ)
    return dataclasses.replace(config, secret="")


def _checked(command: str, load: Callable[[], EdgeConfig]) -> EdgeConfig:
    try:
        config = load()
        check_platform(config)
    except ConfigError as exc:
        _fail(command, _("configuration error: {error}").format(error=exc))
    for note in platform_notes(config):
        click.echo(f"wsgate worker {command}: {note}", err=True)
    return config


@click.group(help=_("Build the edge as a Cloudflare Worker, or run it locally in workerd."),
             context_settings={"help_option_names": ["-h", "--help"]})
def worker() -> None:
    """`wsgate worker`."""


BUILD_HELP = _("""Write worker.js and wrangler.toml from the edge configuration.

\b
Example:
  wsgate worker build --config examples/edge.toml --out worker
  cd worker && wrangler secret put CF_SECRET && wrangler deploy
""")


@worker.command(help=BUILD_HELP)
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help=_("Edge TOML file, the same one `wsgate edge --config` reads."))
@click.option("--out", "out_dir", default="worker", show_default=True,
              type=click.Path(file_okay=False), help=_("Folder for worker.js and wrangler.toml."))
@click.option("--name", default=DEFAULT_NAME, show_default=True, help=_("The Worker's name."))
def build(config_path: str | None, out_dir: str, name: str) -> None:
    """`wsgate worker build`; its help is BUILD_HELP."""
    config = _checked("build", lambda: load_for_build(config_path))
    try:
        paths = write_worker(config, Path(out_dir), name)
    except ValueError as exc:
        _fail("build", str(exc))
    except OSError as exc:
        _fail("build", _("--out: cannot write {path!r}: {error}").format(
            path=out_dir, error=exc.strerror or exc))
    click.echo(_("wrote {paths}; secret: `wrangler secret put {name}`, then `wrangler deploy`"
                 ).format(paths=", ".join(str(p) for p in paths), name=config.secret_env),
               err=True)


@contextlib.contextmanager
def _folder(out_dir: str | None) -> Iterator[Path]:
    if out_dir:
        yield Path(out_dir)
        return
    with tempfile.TemporaryDirectory(prefix="wsgate-worker-") as tmp:
        yield Path(tmp)


DEV_HELP = _("""Run the Worker locally in workerd (outbound network: loopback only).

The secret is read as `wsgate edge` reads it (secret_env / secret_file) and handed
to workerd as a binding through its environment, never through a file.
""")


@worker.command(help=DEV_HELP)
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help=_("Edge TOML file, the same one `wsgate edge --config` reads."))
@click.option("--listen", help=_("HOST:PORT for workerd (default: the config's listen)."))
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help=_("Keep the built Worker and workerd config here (default: a temporary "
                     "folder)."))
def dev(config_path: str | None, listen: str | None, out_dir: str | None) -> None:
    """`wsgate worker dev`; its help is DEV_HELP."""
    cli = {"listen": listen} if listen else None
    config = _checked("dev", lambda: load_config(config_path, cli))
    try:
        binary = workerd.find_workerd(os.environ, Path.cwd())
    except workerd.WorkerdMissing as exc:
        _fail("dev", str(exc))
    reported = workerd.reported_version(binary)
    if not workerd.version_matches(reported):
        click.echo("wsgate worker dev: " + _(
            "{binary} is {version}; wsgate is tested with workerd@{tested} (`{install}`)").format(
                binary=binary, version=reported or _("of unknown version"),
                tested=workerd.WORKERD_VERSION, install=workerd.install_command()), err=True)
    host, port = config.listen_addr
    problem = workerd.listen_problem(host, port)
    if problem:
        click.echo("wsgate worker dev: " + _("cannot listen on {address}: {problem}").format(
            address=config.listen, problem=problem), err=True)
        sys.exit(1)
    with _folder(out_dir) as folder:
        write_worker(config, folder)
        (folder / "config.capnp").write_text(
            workerd.render_capnp(config, config.listen, with_secret=bool(config.secret)))
        environ = {**os.environ, config.secret_env: config.secret}
        sys.exit(_serve(binary, folder, environ, config, host, port))


def _serve(binary: Path, folder: Path, environ: dict[str, str], config: EdgeConfig,
           host: str, port: int) -> int:
    log: IO[str] | None = None
    if config.log_file:
        try:
            log = open(config.log_file, "a", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            _fail("dev", _("log_file: cannot open {path!r}: {error}").format(
                path=config.log_file, error=exc.strerror or exc))
    process = workerd.start(binary, folder, environ, log)
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        process.terminate()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    try:
        if workerd.wait_listening(process, host, port, 30.0):
            shown = f"[{host}]" if ":" in host else host
            routes = ", ".join(f"{r.pattern} -> {r.origin.url}" for r in config.routes)
            # "workerd serving URL" stays as it is in every language (read by scripts).
            click.echo(f"wsgate worker dev: workerd serving http://{shown}:{port} "
                       + _("({routes}; outbound loopback only)").format(routes=routes), err=True)
        code = process.wait()
    finally:
        workerd.stop(process)
        if log is not None:
            log.close()
    if stopping:
        click.echo("wsgate worker dev: " + _("stopped"), err=True)
        return 0
    click.echo("wsgate worker dev: " + _("workerd exited with status {code}").format(code=code),
               err=True)
    return 1 if code == 0 else code if code > 0 else 1

