"""The one `wsgate` entry point.

Subcommands are imported only when used: `wsgate edge` must not pay for
Streamlit's import (~0.6 s) and a broken optional extra must not break the rest.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import click

from wsgate import __version__
from wsgate.i18n import LANGUAGES, N_, _, route_gettext_to_catalog, set_language

# name -> "module:attribute" of a click.Command
COMMANDS: dict[str, tuple[str, str]] = {
    "edge": ("wsgate.edge.command:edge", N_("Run the edge proxy in front of an origin.")),
    "run": ("wsgate.guard.command:run", N_("Run a Streamlit script behind the origin guard.")),
    "doctor": ("wsgate.doctor.command:doctor",
               N_("Probe a deployment end to end and explain faults.")),
    "logs": ("wsgate.logs.command:logs", N_("Filter, join and summarise edge and origin logs.")),
    "demo": ("wsgate.demo.command:demo", N_("Start a guarded sample app behind the edge.")),
    "worker": ("wsgate.worker.command:worker",
               N_("Build the edge as a Cloudflare Worker, or run it in workerd.")),
}


class LazyGroup(click.Group):
    def main(self, *args: Any, **kwargs: Any) -> Any:
        # Before any parsing, so click's own words (Usage, Options, errors) follow too.
        route_gettext_to_catalog()
        return super().main(*args, **kwargs)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, _, attribute = target[0].partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target[0]} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Short help comes from the table so `wsgate --help` imports nothing heavy.
        with formatter.section(_("Commands")):
            formatter.write_dl([(name, _(help_text))
                                for name, (_target, help_text) in COMMANDS.items()])

    # The group's texts are translated when shown: its options were made, and its
    # --help may run, before --lang chose the language.
    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_paragraph()
        with formatter.indentation():
            formatter.write_text(_(MAIN_HELP))

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        options = [p for p in self.get_params(ctx) if isinstance(p, click.Option) and p.help]
        msgids = [option.help for option in options]
        try:
            for option, msgid in zip(options, msgids, strict=True):
                option.help = _(msgid) if msgid else msgid
            super().format_options(ctx, formatter)
        finally:
            for option, msgid in zip(options, msgids, strict=True):
                option.help = msgid


def choose_language(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """--lang: set before any subcommand is imported, so its messages and help follow."""
    if value is not None:
        set_language(value)
        # The processes a command starts (the demo's edge, guard and doctor) follow too.
        os.environ["WSGATE_LANG"] = value
        route_gettext_to_catalog()


MAIN_HELP = N_("""Make WebSocket apps work, stay private and stay diagnosable behind an edge proxy.

\b
Examples:
  wsgate demo                                  # the whole system on loopback
  wsgate edge --origin URL --listen HOST:PORT
  wsgate run app.py --server.port 8501
  wsgate doctor URL
  wsgate logs --join PATH PATH

\b
Exit status (each command's --help details its own):
  0  success
  1  a failure the command found or reports
  2  usage error

\b
Environment:
  WSGATE_SECRET   the shared secret of the edge and the origin (each command's
                  --help names the variables it reads)
  WSGATE_LANG     ja or en, as --lang; else LANGUAGE, LC_ALL, LC_MESSAGES or
                  LANG decide (ja_JP.UTF-8 and the like mean Japanese)

Run `wsgate COMMAND --help` for a command's options and examples.
""")


@click.group(cls=LazyGroup, help=MAIN_HELP,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="wsgate")
@click.option("--lang", type=click.Choice(LANGUAGES), is_eager=True,
              expose_value=False, callback=choose_language,
              help=N_("Language of messages and help (default: WSGATE_LANG, else LANGUAGE, "
                      "LC_ALL, LC_MESSAGES or LANG; ja_JP.UTF-8 and the like mean ja)."))
def main() -> None:
    """The `wsgate` group; its help is MAIN_HELP (translated when shown)."""
