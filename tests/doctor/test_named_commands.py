"""Every `wsgate …` command the doctor tells users to type exists in the real CLI.

The commands are taken from the diagnosis table's fixes and summaries, from the
doctor's --help and from docs/doctor.md, and checked against the click commands
themselves: the subcommand, each option, and a choice option's value.
"""

from __future__ import annotations

import re
import shlex
import string
from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from tests.support import REPO
from wsgate.cli import COMMANDS, main
from wsgate.doctor.diagnosis import CAUSES, UNEXPLAINED

# Values for the fix templates' fields, as the rules produce them.
SAMPLE_VALUES = {"scheme": "http", "proto": "https", "ping": 30, "seconds": "60.0",
                 "status": 502, "host": "app.example.com", "target": "127.0.0.1:8080",
                 "origin": "https://app.example.com", "offered": "streamlit",
                 "owner": "nginx", "code": 1006, "ip": "198.51.100.77", "count": 11,
                 "limit": "max_websockets_per_client"}
BACKTICKED = re.compile(r"`([^`]*\bwsgate [a-z][^`]*)`")
SHELL_LINE = re.compile(r"^\s*(?:\$ )?((?:[A-Z_]+=\S+ )*wsgate [a-z].*)$", re.MULTILINE)
ENV_ASSIGNMENT = re.compile(r"^[A-Z_]+=")
FENCED = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def filled(template: str) -> str:
    fields = [name for _, name, _, _ in string.Formatter().parse(template) if name]
    return template.format(**{name: SAMPLE_VALUES[name] for name in fields})


def doctor_texts() -> Iterator[tuple[str, str]]:
    for cause in (*CAUSES, UNEXPLAINED):
        yield f"{cause.id} fix", filled(cause.fix)
        yield f"{cause.id} summary", filled(cause.summary)
    help_text = CliRunner().invoke(main, ["doctor", "--help"], terminal_width=200).output
    yield "wsgate doctor --help", help_text
    yield "docs/doctor.md", (REPO / "docs" / "doctor.md").read_text()


def commands_in(text: str) -> list[str]:
    found = [m.group(1) for m in BACKTICKED.finditer(FENCED.sub("", text))]
    for block in FENCED.findall(text) or [text]:
        found += [m.group(1).split("  #")[0] for m in SHELL_LINE.finditer(block)]
    return found


def problems_with(command_line: str) -> list[str]:
    """What in `command_line` the real CLI would not accept (empty when fine)."""
    words = [w for w in shlex.split(command_line.replace("...", "X"))
             if not ENV_ASSIGNMENT.match(w)]
    start = words.index("wsgate")
    if len(words) <= start + 1 or words[start + 1] not in COMMANDS:
        return [f"no subcommand {words[start + 1:start + 2]}"]
    command = main.get_command(click.Context(main), words[start + 1])
    assert command is not None
    options = {opt: param for param in command.params if isinstance(param, click.Option)
               for opt in (*param.opts, *param.secondary_opts)}
    problems = []
    rest = words[start + 2:]
    for i, word in enumerate(rest):
        name = word.split("=", 1)[0]
        if not name.startswith("-") or name == "-":
            continue
        param = options.get(name)
        if param is None:
            problems.append(f"no option {name}")
            continue
        value = word.split("=", 1)[1] if "=" in word else (rest[i + 1] if i + 1 < len(rest)
                                                            else None)
        if isinstance(param.type, click.Choice) and value is not None \
                and value not in param.type.choices:
            problems.append(f"{name} {value}: not one of {list(param.type.choices)}")
    return problems


def test_the_texts_name_commands_at_all() -> None:
    # Guard against a regex that finds nothing and so checks nothing.
    named = [c for _, text in doctor_texts() for c in commands_in(text)]
    assert len(named) >= 20
    assert any(c.startswith("wsgate logs") for c in named)
    assert any("wsgate edge" in c for c in named)


@pytest.mark.parametrize(("where", "text"), list(doctor_texts()),
                         ids=[where for where, _ in doctor_texts()])
def test_every_named_command_exists(where: str, text: str) -> None:
    for command_line in commands_in(text):
        assert problems_with(command_line) == [], f"{where}: {command_line!r}"


@pytest.mark.parametrize(("command_line", "problem"), [
    ("wsgate logs --source edge --errors", "no option --source"),
    ("wsgate edge --forwarded-proto ftp", "--forwarded-proto ftp"),
    ("wsgate frobnicate", "no subcommand"),
])
def test_the_checker_catches_what_does_not_exist(command_line: str, problem: str) -> None:
    assert any(problem in p for p in problems_with(command_line))
