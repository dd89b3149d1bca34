"""The Japanese catalog: complete for every message in the code, faithful to the
placeholders and code spans of each, and the installed .mo is the one the .po says."""

from __future__ import annotations

import gettext
import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from wsgate import i18n

REPO = Path(__file__).resolve().parents[2]
LOCALE = REPO / "src" / "wsgate" / "locale"
PLACEHOLDER = re.compile(r"\{[^{}]*\}")
CODE_SPAN = re.compile(r"`[^`]*`")


def read(path: Path, locale: str | None = None) -> Catalog:
    with path.open("rb") as file:
        return read_po(file, locale=locale)


def entries(catalog: Catalog) -> list[Message]:
    return [m for m in catalog if m.id]


def msgid(message: Message) -> str:
    return message.id if isinstance(message.id, str) else message.id[0]


def translations(message: Message) -> list[str]:
    string = message.string
    return [string] if isinstance(string, str) else list(string)


def code_spans(text: str) -> list[str]:
    """The backticked spans, a line break inside one (wrapping) read as a space."""
    return sorted(" ".join(span.split()) for span in CODE_SPAN.findall(text))


TEMPLATE = read(LOCALE / "wsgate.pot")
JAPANESE = read(LOCALE / "ja" / "LC_MESSAGES" / "wsgate.po", "ja")


def test_the_template_has_every_message_of_the_code() -> None:
    """A `_()` added without `pybabel extract` (docs/i18n.md) fails here."""
    method_map = [("**.py", "python")]
    in_code = {msgid if isinstance(msgid, str) else msgid[0]
               for _file, _line, msgid, _comments, _context
               in extract_from_dir(str(REPO / "src" / "wsgate"), method_map)}
    in_template = {msgid(m) for m in entries(TEMPLATE)}
    assert sorted(in_code - in_template) == []
    assert sorted(in_template - in_code) == []


def test_every_message_has_a_japanese_translation() -> None:
    by_id = {m.id: m for m in entries(JAPANESE)}
    missing = [m.id for m in entries(TEMPLATE)
               if m.id not in by_id or not all(translations(by_id[m.id]))]
    fuzzy = [m.id for m in entries(JAPANESE) if m.fuzzy]
    assert missing == []
    assert fuzzy == []


@pytest.mark.parametrize("message", entries(JAPANESE), ids=lambda m: msgid(m)[:40])
def test_translation_keeps_placeholders_and_code(message: Message) -> None:
    for translated in translations(message):
        assert set(PLACEHOLDER.findall(translated)) == set(PLACEHOLDER.findall(msgid(message)))
        # Commands, config lines and header names in backticks are typed by users.
        assert code_spans(translated) == code_spans(msgid(message))


def test_the_installed_catalog_is_the_committed_one() -> None:
    """The .mo the package loads (built by setup.py at install) matches the .po;
    a stale one means `pip install -e .` has to run again."""
    installed = i18n.load("ja")
    assert isinstance(installed, gettext.GNUTranslations)
    for message in entries(JAPANESE):
        if isinstance(message.id, str):
            assert installed.gettext(message.id) == message.string
        else:
            assert installed.ngettext(*message.id, 1) == message.string[0]
