"""Click's own messages that wsgate's catalog translates: help headings, the help and
version options, defaults shown, usage errors.

Click looks these up through the stdlib's global gettext, which the CLI points at
wsgate's catalog (`wsgate.i18n.route_gettext_to_catalog`); listing the exact msgids
of click here puts them in wsgate.pot for `pybabel extract`.
"""

from __future__ import annotations

from wsgate.i18n import N_, ngettext

CLICK_MESSAGES = (
    N_("Usage:"),
    N_("Options"),
    N_("Commands"),
    N_("Show this message and exit."),
    N_("Show the version and exit."),
    N_("default: {default}"),
    N_("env var: {var}"),
    N_("required"),
    N_("Error: {message}"),
    N_("Try '{command} {option}' for help."),
    N_("Invalid value for {param_hint}: {message}"),
    N_("Invalid value: {message}"),
    N_("Missing argument"),
    N_("Missing option"),
    N_("Missing parameter"),
    N_("Missing command."),
    N_("No such option {name!r}."),
    N_("No such command {name!r}."),
    N_("Option {name!r} does not take a value."),
    N_("Aborted!"),
    N_("{value!r} is not a valid {number_type}."),
    N_("{value} is not in the range {range}."),
    N_("{name} {filename!r} does not exist."),
)
# Plural ones: listed as calls so extraction keeps both forms (never run: nothing
# imports this module).
CLICK_PLURALS = (
    ngettext("Did you mean {possibility}?", "(Did you mean one of: {possibilities}?)", 1),
    ngettext("Got unexpected extra argument ({args})",
             "Got unexpected extra arguments ({args})", 1),
    ngettext("Option {name!r} requires an argument.",
             "Option {name!r} requires {nargs} arguments.", 1),
)
# Not "file", "directory" or "path": click also shows them as metavars (FILE), which
# stay ASCII like every placeholder.
