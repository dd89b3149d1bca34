"""The CLI's help and usage errors in Japanese: `wsgate --lang ja ...` and a ja_*
locale, click's own words (Usage, Options, defaults, errors) included."""

from __future__ import annotations

import subprocess

import pytest

from tests.i18n.prose import english_prose, environment
from tests.support import wsgate_command

JAPANESE = {"--lang ja": (("--lang", "ja"), environment()),
            "LANG=ja_JP.UTF-8": ((), environment(LANG="ja_JP.UTF-8")),
            "WSGATE_LANG=ja": ((), environment(WSGATE_LANG="ja"))}


def wsgate(*args: str, lang: tuple[str, ...] = (), env: dict[str, str] | None = None,
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(wsgate_command(*lang, *args), capture_output=True, text=True,
                          timeout=60, env=env or environment())


@pytest.mark.parametrize("way", JAPANESE)
def test_doctor_help_is_japanese(way: str) -> None:
    lang, env = JAPANESE[way]
    result = wsgate("doctor", "--help", lang=lang, env=env)
    assert result.returncode == 0, result.stderr
    for words in ("使い方:", "オプション:", "例:", "環境変数:", "終了ステータス:",
                  "このメッセージを表示して終了します。", "[既定値: X-CF-Secret]"):
        assert words in result.stdout
    assert english_prose(result.stdout) == [], result.stdout
    assert "\b" not in result.stdout  # click's no-rewrap marker, misplaced in a translation


def test_demo_help_is_japanese() -> None:
    result = wsgate("demo", "--help", lang=("--lang", "ja"))
    assert result.returncode == 0, result.stderr
    for words in ("使い方:", "例:", "終了ステータス:", "環境変数:", "既定値:", "(同梱のサンプル)"):
        assert words in result.stdout
    assert english_prose(result.stdout) == [], result.stdout
    assert "\b" not in result.stdout  # click's no-rewrap marker, misplaced in a translation


def test_the_group_help_is_japanese() -> None:
    result = wsgate("--lang", "ja", "--help")
    assert result.returncode == 0, result.stderr
    assert "コマンド:" in result.stdout
    assert "デプロイ全体を端から端まで診断し、障害を説明します。" in result.stdout
    assert english_prose(result.stdout) == [], result.stdout
    assert "\b" not in result.stdout  # click's no-rewrap marker, misplaced in a translation


def test_english_help_is_caught_as_prose() -> None:
    """The filter that passes the Japanese help does see English sentences."""
    result = wsgate("doctor", "--help")
    assert "Probe URL hop by hop" in result.stdout
    assert english_prose(result.stdout)


@pytest.mark.parametrize(("args", "message"), [
    (("doctor",), "エラー: 引数がありません 'URL'."),
    (("doctor", "ftp://x"), "エラー: URL は https://host[:port][/path] の形式である必要があります"),
    (("doctor", "http://127.0.0.1:9/", "--connect-to", "nope"),
     "エラー: --connect-to はポートが 1-65535 の HOST:PORT である必要があります"),
    (("doctor", "http://127.0.0.1:9/", "--bogus"), "エラー: オプション '--bogus' はありません。"),
    (("doctor", "http://127.0.0.1:9/", "--path", "ws"),
     "エラー: --path は '/' で始まる必要があります"),
])
def test_usage_errors_are_japanese(args: tuple[str, ...], message: str) -> None:
    result = wsgate(*args, lang=("--lang", "ja"))
    assert result.returncode == 2
    assert message in result.stderr
    assert "使い方: " in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unknown_language_is_a_usage_error() -> None:
    result = wsgate("--lang", "de", "doctor", "--help")
    assert result.returncode == 2
    assert "Invalid value for '--lang': 'de' is not one of 'en', 'ja'." in result.stderr


def test_english_stays_the_default() -> None:
    result = wsgate("doctor")
    assert result.returncode == 2
    assert "Error: Missing argument 'URL'." in result.stderr


def test_lang_en_wins_over_a_japanese_locale() -> None:
    result = wsgate("doctor", "--help", lang=("--lang", "en"),
                    env=environment(LANG="ja_JP.UTF-8", LANGUAGE="ja"))
    assert result.returncode == 0
    assert result.stdout.startswith("Usage: ")
    assert "Probe URL hop by hop" in result.stdout
    assert "使い方" not in result.stdout
