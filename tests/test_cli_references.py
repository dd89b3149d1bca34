"""Every `wsgate …` command that wsgate tells users to type exists in the real CLI.

Collected from the string literals of the package (diagnosis fixes, messages, help
texts), from each command's help as click holds it, and from the code spans and
code blocks of README.md and docs/*.md. Each is checked against the click commands
themselves: the subcommand exists (and its subcommand, for a group), and every
`--option` is one of that command's options, the ones its --help lists; for
`wsgate run`, a `--section.key` option must be a real Streamlit config option (it
passes those to Streamlit). Arguments are not checked: placeholders such as URL,
PATH or <host> stand where values go.
"""

from __future__ import annotations

import ast
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from wsgate.cli import COMMANDS, main

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "src" / "wsgate"
CODE_SPAN = re.compile(r"`([^`\n]+)`")
FENCE = re.compile(r"^\s*```")
# "wsgate" as a word of its own: not wsgate.cli, wsgate-demo-…, wsgate's, $WSGATE_…
# and not a quoted string in code (b"wsgate affinity v1").
WSGATE = re.compile(r"(?<![\w./$'\"-])wsgate(?=\s)")
OPTION = re.compile(r"--?[A-Za-z]")
PUNCTUATION = "[](),;:.'\"`"
SHELL_BREAKS = frozenset({"|", "||", "&&", ";", ">", ">>", "2>&1", "&"})
ALWAYS_VALID = frozenset({"--help", "-h"})


@dataclass(frozen=True)
class Reference:
    where: str
    text: str  # from "wsgate" on
    strict: bool  # from code (a span, a block, an example): the subcommand must exist


# ---------------------------------------------------------------------------
# Collecting


def commands_in(text: str, where: str, *, code: bool) -> Iterator[Reference]:
    """Each `wsgate …` in `text`, cut at the next "wsgate" and at the line's end.

    In prose (`code=False`), backticked spans are taken as code; elsewhere in the
    prose a "wsgate" counts only when a subcommand name follows it.
    """
    text = re.sub(r"\\\n\s*", " ", text)  # shell line continuations
    pieces: list[tuple[str, bool]] = []
    if code:
        pieces.append((text, True))
    else:
        pieces += [(span, True) for span in CODE_SPAN.findall(text)]
        pieces.append((CODE_SPAN.sub(" ", text), False))
    for piece, strict in pieces:
        for line in piece.splitlines():
            starts = [m.start() for m in WSGATE.finditer(line)]
            ends = [*starts[1:], len(line)] if starts else []
            for begin, end in zip(starts, ends, strict=True):
                reference = line[begin:end].strip()
                if strict or _next_word(reference) in COMMANDS:
                    yield Reference(where, reference, strict)


def _next_word(reference: str) -> str:
    words = reference.split()
    return words[1].strip(PUNCTUATION) if len(words) > 1 else ""


def literal_texts(path: Path) -> Iterator[tuple[int, str]]:
    """Every string literal of a module; an f-string's fields read as "X"."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    inside_fstring = {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr)
                      for part in node.values}
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(part.value if isinstance(part, ast.Constant) else "X"
                           for part in node.values)
            yield node.lineno, text
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and id(node) not in inside_fstring):
            yield node.lineno, node.value


def source_references() -> Iterator[Reference]:
    for path in sorted(PACKAGE.rglob("*.py")):
        for line, text in literal_texts(path):
            yield from commands_in(text, f"{path.relative_to(REPO)}:{line}", code=False)


def markdown_references() -> Iterator[Reference]:
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        block: list[str] = []
        in_block = False
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            where = f"{path.relative_to(REPO)}:{number}"
            if FENCE.match(line):
                if in_block:
                    yield from commands_in("\n".join(block), where, code=True)
                block, in_block = [], not in_block
            elif in_block:
                block.append(line)
            else:
                yield from commands_in(line, where, code=False)


def all_commands() -> Iterator[tuple[str, click.Command]]:
    ctx = click.Context(main)
    for name in main.list_commands(ctx):
        command = main.get_command(ctx, name)
        assert command is not None, name
        yield name, command
        if isinstance(command, click.Group):
            for sub in command.list_commands(ctx):
                found = command.get_command(ctx, sub)
                assert found is not None, f"{name} {sub}"
                yield f"{name} {sub}", found


def help_references() -> Iterator[Reference]:
    for name, command in [("", main), *all_commands()]:
        texts = [command.help or "", command.epilog or ""]
        texts += [param.help or "" for param in command.params if isinstance(param, click.Option)]
        for text in texts:
            yield from commands_in(text, f"wsgate {name} --help".replace("  ", " "), code=False)


def every_reference() -> list[Reference]:
    return [*source_references(), *help_references(), *markdown_references()]


# ---------------------------------------------------------------------------
# Checking


def tokens_of(reference: str) -> list[str]:
    """The words after "wsgate", up to the end of the shell command."""
    try:
        words = shlex.split(reference, comments=True)
    except ValueError:  # prose: an apostrophe is not a quote
        words = reference.split()
    out = []
    for word in words[1:]:
        if word in SHELL_BREAKS or word.startswith("#"):
            break
        out.append(word)
    return out


def _option_name(word: str) -> str:
    return word.split("=", 1)[0].strip(PUNCTUATION)


def option_names(command: click.Command) -> set[str]:
    names = set(ALWAYS_VALID)
    for param in command.params:
        if isinstance(param, click.Option):
            names.update(param.opts)
            names.update(param.secondary_opts)
    return names


def streamlit_options() -> set[str]:
    from streamlit import config

    return {f"--{key}" for key in config._config_options_template}


def _group_option_words(group: click.Group, words: list[str]) -> int:
    """How many words an option of the group itself takes before the subcommand
    (`wsgate --lang ja doctor URL`); 0 when words[0] is not one."""
    name = _option_name(words[0])
    for param in group.params:
        if isinstance(param, click.Option) and name in param.opts:
            return 1 if param.is_flag or "=" in words[0] else 2
    return 0


def problems(reference: str) -> list[str]:
    """What is wrong with one `wsgate …` command (empty: it is valid)."""
    words = tokens_of(reference)
    ctx = click.Context(main)
    command: click.Command = main
    path = "wsgate"
    while words and isinstance(command, click.Group):
        if words[0].startswith("-"):
            taken = _group_option_words(command, words)
            if not taken:
                break
            words = words[taken:]
            continue
        name = words[0].strip(PUNCTUATION)
        if name.isupper() or name.startswith("<"):  # `wsgate COMMAND --help`
            return [f"{path} {name}: {_option_name(w)} is not an option of every command"
                    for w in words[1:]
                    if OPTION.match(_option_name(w)) and _option_name(w) not in ALWAYS_VALID]
        found = command.get_command(ctx, name)
        if found is None:
            return [f"{path}: no subcommand {name!r}"]
        command, path, words = found, f"{path} {name}", words[1:]
    valid = option_names(command)
    if command is main:
        valid |= {"--version"}
    out = []
    for word in words:
        name = _option_name(word)
        if name == "--":
            break  # the rest goes to the script
        if not OPTION.match(name) or name in valid:
            continue
        if path == "wsgate run" and "." in name and name in streamlit_options():
            continue  # passed on to Streamlit, which knows it
        out.append(f"{path}: no option {name}")
    return out


# ---------------------------------------------------------------------------
# Tests


def test_the_checker_flags_what_does_not_exist() -> None:
    # Issue 14's example: the doctor's fix for edge-origin-unreachable named these.
    assert problems("wsgate logs --source edge --errors") == [
        "wsgate logs: no option --source", "wsgate logs: no option --errors"]
    assert problems("wsgate doktor URL") == ["wsgate: no subcommand 'doktor'"]
    assert problems("wsgate run app.py --server.prot 8501") == [
        "wsgate run: no option --server.prot"]
    assert problems("wsgate COMMAND --help") == []
    assert problems("wsgate doctor URL --json") == []
    assert problems("wsgate run app.py --server.port 8501 -- --not-checked") == []
    assert problems("wsgate logs PATH --status 403 --join | head # --nope") == []


def test_the_collector_finds_commands_in_each_kind_of_source() -> None:
    found = every_reference()
    kinds = {r.where.split(":")[0].split(" ")[0] for r in found}
    assert "README.md" in kinds and "docs/doctor.md" in kinds
    assert any(r.where.startswith("src/wsgate/doctor/") for r in found)
    assert any(r.where.startswith("wsgate run --help") for r in found)
    texts = {r.text for r in found}
    assert any(t.startswith("wsgate demo --check") for t in texts)
    # Prose in a literal counts only before a subcommand name; code always counts.
    prose = list(commands_in("wsgate is a toolkit; see `wsgate nope`", "x", code=False))
    assert [r.text for r in prose] == ["wsgate nope"]


def test_every_quoted_command_exists() -> None:
    bad = [f"{r.where}: `{r.text}`: {'; '.join(found)}"
           for r in every_reference() if (found := problems(r.text))]
    assert not bad, "commands that do not exist in the CLI:\n" + "\n".join(bad)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_subcommand_loads(name: str) -> None:
    assert main.get_command(click.Context(main), name) is not None


@pytest.mark.parametrize("path", [(), ("run",), ("demo",)])
def test_help_has_examples_exit_status_and_environment(path: tuple[str, ...]) -> None:
    # The shape every command's --help shares (issue 14); add a command here when
    # its help follows it.
    command: click.Command = main
    ctx = click.Context(main, info_name="wsgate")
    for name in path:
        assert isinstance(command, click.Group)
        found = command.get_command(ctx, name)
        assert found is not None
        command, ctx = found, click.Context(found, info_name=name, parent=ctx)
    lines = command.get_help(ctx).splitlines()
    starts = [next((i for i, line in enumerate(lines) if line.startswith(f"  {heading}")), -1)
              for heading in ("Examples:", "Exit status", "Environment:")]
    assert -1 not in starts and starts == sorted(starts), starts  # all three, in this order
    examples = lines[starts[0] + 1:starts[1]]
    assert sum(line.lstrip().startswith("wsgate ") for line in examples) >= 2
    exit_codes = lines[starts[1] + 1:starts[2]]
    assert any(line.split()[:1] == ["2"] for line in exit_codes)  # usage errors
