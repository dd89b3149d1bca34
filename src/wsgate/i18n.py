"""The language of wsgate's human text, and its translations (gettext catalogs).

Messages are English in the code and marked with `_()` (translated where they are
made) or `N_()` (table entries, translated where they are used). Japanese comes
from `locale/ja/LC_MESSAGES/wsgate.mo`, compiled from the committed `.po` when
the package is built or installed. Ids, JSON keys, commands and header names are
never translated, only prose.

The language: `set_language("ja" | "en")` (the CLI's `--lang`), else
`WSGATE_LANG`, else the first of `LANGUAGE`, `LC_ALL`, `LC_MESSAGES`, `LANG` that
is set (Python's gettext order), where `ja`, `ja_JP.UTF-8`... mean Japanese;
anything else is English.
"""

from __future__ import annotations

import functools
import gettext
import os
from collections.abc import Callable, Mapping
from pathlib import Path

DOMAIN = "wsgate"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
LANGUAGES = ("en", "ja")
DEFAULT_LANGUAGE = "en"
# Where the language is read from when not chosen explicitly, first set wins.
LANGUAGE_VARIABLES = ("WSGATE_LANG", "LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")

_active: gettext.NullTranslations | None = None
_active_language = DEFAULT_LANGUAGE


def parse_language(value: str) -> str | None:
    """`ja_JP.UTF-8` → "ja"; a colon list (`LANGUAGE=fr:ja`) → its first known
    language; `C`/`POSIX` → "en"; None when nothing in it is known."""
    for entry in value.split(":"):
        tag = entry.split(".")[0].split("@")[0].replace("-", "_").split("_")[0].lower()
        if tag in ("c", "posix"):
            return DEFAULT_LANGUAGE
        if tag in LANGUAGES:
            return tag
    return None


def language_from_environment(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    for variable in LANGUAGE_VARIABLES:
        value = env.get(variable, "")
        if value:
            return parse_language(value) or DEFAULT_LANGUAGE
    return DEFAULT_LANGUAGE


@functools.cache
def load(language: str) -> gettext.NullTranslations:
    """The catalog of `language`; English (and a missing catalog) is the identity."""
    return gettext.translation(DOMAIN, localedir=LOCALE_DIR, languages=[language],
                               fallback=True)


def set_language(language: str | None = None) -> str:
    """Use `language` from now on (None: the environment's); returns the one chosen."""
    global _active, _active_language
    chosen = language_from_environment() if language is None else parse_language(language)
    if chosen is None:
        raise ValueError(f"unknown language {language!r}; known: {', '.join(LANGUAGES)}")
    _active, _active_language = load(chosen), chosen
    return chosen


def translator(language: str | None) -> Callable[[str], str]:
    """`gettext` of `language` (None: the current one), for text made for someone
    else than this process's user (a refusal page follows the request's
    Accept-Language); `language` must be one of LANGUAGES."""
    return _translations().gettext if language is None else load(language).gettext


def route_gettext_to_catalog() -> None:
    """Libraries that translate through the stdlib's global gettext (click: "Usage:",
    "Options", "[default: …]", usage errors) get this catalog, in the current language.

    For a program's entry point only: it sets the process-wide text domain, and
    LANGUAGE (which the stdlib reads first, as do the processes this one starts).
    """
    gettext.bindtextdomain(DOMAIN, str(LOCALE_DIR))
    gettext.textdomain(DOMAIN)
    os.environ["LANGUAGE"] = current_language()


def current_language() -> str:
    _translations()
    return _active_language


def _translations() -> gettext.NullTranslations:
    if _active is None:
        set_language(None)
    assert _active is not None
    return _active


def _(message: str) -> str:
    """`message` in the current language."""
    return _translations().gettext(message)


def ngettext(singular: str, plural: str, count: int) -> str:
    """The form for `count` in the current language (Japanese has one form)."""
    return _translations().ngettext(singular, plural, count)


def N_(message: str) -> str:
    """Mark `message` for extraction only; translate it with `_()` where it is shown."""
    return message
