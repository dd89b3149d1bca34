"""Which language wsgate speaks: --lang, WSGATE_LANG, then gettext's variables."""

from __future__ import annotations

import pytest

from wsgate import i18n


@pytest.mark.parametrize(("environ", "expected"), [
    ({}, "en"),
    ({"LANG": "ja_JP.UTF-8"}, "ja"),
    ({"LANG": "ja_JP.eucJP"}, "ja"),
    ({"LANG": "C.UTF-8"}, "en"),
    ({"LANG": "en_US.UTF-8"}, "en"),
    ({"LANG": "fr_FR.UTF-8"}, "en"),  # no French catalog: English
    ({"LC_MESSAGES": "ja_JP.UTF-8", "LANG": "en_US.UTF-8"}, "ja"),
    ({"LC_ALL": "ja_JP.UTF-8", "LC_MESSAGES": "en_US.UTF-8"}, "ja"),
    ({"LC_ALL": "C", "LANG": "ja_JP.UTF-8"}, "en"),
    ({"LANGUAGE": "ja", "LC_ALL": "en_US.UTF-8"}, "ja"),
    ({"LANGUAGE": "fr:ja:en", "LANG": "en_US.UTF-8"}, "ja"),  # first known in the list
    ({"LANGUAGE": "", "LANG": "ja_JP.UTF-8"}, "ja"),  # empty means unset
    ({"WSGATE_LANG": "en", "LANG": "ja_JP.UTF-8"}, "en"),
    ({"WSGATE_LANG": "ja", "LANG": "en_US.UTF-8"}, "ja"),
])
def test_language_from_environment(environ: dict[str, str], expected: str) -> None:
    assert i18n.language_from_environment(environ) == expected


def test_set_language_switches_the_messages() -> None:
    try:
        assert i18n.set_language("ja") == "ja"
        assert i18n._("No problems found.") == "問題は見つかりませんでした。"
        assert i18n.ngettext("{count} redirect: {chain} (HTTP {status})",
                             "{count} redirects: {chain} (HTTP {status})", 3).startswith(
            "リダイレクト {count} 回")
        assert i18n.set_language("en") == "en"
        assert i18n._("No problems found.") == "No problems found."
    finally:
        i18n.set_language(None)


def test_an_unknown_language_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown language 'de'"):
        i18n.set_language("de")
