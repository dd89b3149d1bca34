"""The guard's 403 page follows the request's Accept-Language (ja or en), else the
language of the `wsgate run` process (LANG, WSGATE_LANG): a real `wsgate run`; and
`wsgate run`'s own console, usage errors and help in Japanese."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.guard.fixtures import (
    SECRET_HEADER,
    GuardedStreamlit,
    http_get,
    start_guarded_streamlit,
)
from tests.i18n.prose import LANGUAGE_VARIABLES, english_prose, environment
from tests.support import wsgate_command
from wsgate.guard import policy

DIRECT_JA = ("直接のアクセスは拒否されました。"
             "このサーバーはエッジプロキシからのリクエストにのみ応答します。\n")
DIRECT_EN = "Direct access refused: this server only answers requests from its edge proxy.\n"


@pytest.mark.parametrize(("header", "expected"), [
    ("ja", "ja"),
    ("ja-JP,ja;q=0.9,en-US;q=0.8,en;q=0.7", "ja"),
    ("en-US,en;q=0.9,ja;q=0.8", "en"),
    ("fr-FR, ja;q=0.5, en;q=0.4", "ja"),
    ("en;q=0.5, ja;q=0.5", "en"),  # a tie: the first listed
    ("ja;q=0, en", "en"),  # q=0: not acceptable
    ("fr, de", None),
    ("*", None),
    ("", None),
    ("ja;q=abc", None),  # a malformed weight counts as 0
])
def test_page_language(header: str, expected: str | None) -> None:
    assert policy.page_language(header) == expected


def test_every_refusal_reason_has_its_japanese_page() -> None:
    pages = {reason: policy.refusal_text("https://app.example.com", reason, "ja")
             for reason in ("missing", "mismatch", "repeated")}
    assert pages["missing"] == (
        "直接のアクセスは拒否されました。代わりに https://app.example.com を開いてください。\n")
    assert "別々のシークレット" in pages["mismatch"]
    assert "複数" in pages["repeated"]
    assert policy.refusal_text(None, "missing", "en") == DIRECT_EN



@pytest.fixture(scope="module")
def guard_in_english() -> Iterator[GuardedStreamlit]:
    with start_guarded_streamlit(env={**dict.fromkeys(LANGUAGE_VARIABLES, ""),
                                      "LANG": "C.UTF-8"}) as server:
        yield server


@pytest.fixture(scope="module")
def guard_in_japanese() -> Iterator[GuardedStreamlit]:
    with start_guarded_streamlit(env={**dict.fromkeys(LANGUAGE_VARIABLES, ""),
                                      "LANG": "ja_JP.UTF-8"}) as server:
        yield server


@pytest.mark.streamlit
def test_a_browser_preferring_japanese_gets_the_japanese_page(
        guard_in_english: GuardedStreamlit) -> None:
    status, body, headers = http_get(guard_in_english.url("/"),
                                     {"Accept-Language": "ja,en-US;q=0.9"})
    assert status == 403
    assert body == DIRECT_JA
    assert headers.get("content-language") == "ja"
    assert "accept-language" in headers.get("vary", "").lower()
    assert headers.get("content-type") == "text/plain; charset=utf-8"


@pytest.mark.streamlit
def test_a_different_secret_is_explained_in_japanese(
        guard_in_english: GuardedStreamlit) -> None:
    status, body, _headers = http_get(guard_in_english.url("/"), {
        "Accept-Language": "ja", SECRET_HEADER: "not-the-secret-0123456789abcdef"})
    assert status == 403
    assert body.startswith("拒否しました: ")
    assert "not-the-secret" not in body


@pytest.mark.streamlit
def test_without_accept_language_the_page_follows_the_process(
        guard_in_english: GuardedStreamlit, guard_in_japanese: GuardedStreamlit) -> None:
    assert http_get(guard_in_english.url("/"))[1] == DIRECT_EN
    status, body, headers = http_get(guard_in_japanese.url("/"))
    assert (status, body, headers.get("content-language")) == (403, DIRECT_JA, "ja")
    # The browser's preference still wins over the process's language.
    assert http_get(guard_in_japanese.url("/"), {"Accept-Language": "en"})[1] == DIRECT_EN


@pytest.mark.streamlit
def test_the_console_of_wsgate_run_is_japanese(guard_in_japanese: GuardedStreamlit) -> None:
    console = guard_in_japanese.server.output()
    assert "wsgate run: オリジンガード有効: シークレット 2 件（$WSGATE_SECRET）" in console
    # The part `wsgate demo` and scripts read stays as it is; the rest is Japanese.
    assert re.search(r"wsgate run: origin listening on http://\S+ （ガード有効: "
                     r"シークレットなしでは 403 を返します。アプリはエッジ経由で開いて", console)


def test_usage_errors_of_wsgate_run_are_japanese(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text("import streamlit as st\n")
    env = environment(WSGATE_SECRET="")
    missing = subprocess.run(wsgate_command("--lang", "ja", "run", str(script)),
                             capture_output=True, text=True, timeout=60, env=env)
    assert missing.returncode == 2
    assert missing.stderr.startswith(
        "wsgate run: シークレットが設定されていません: $WSGATE_SECRET は空です。")
    no_script = subprocess.run(wsgate_command("--lang", "ja", "run", "--server.port", "8613"),
                               capture_output=True, text=True, timeout=60, env=env)
    assert no_script.returncode == 2
    assert no_script.stderr == ("wsgate run: スクリプトが指定されていません。最初に指定して"
                                "ください。例: wsgate run app.py --server.port 8613\n")


def test_run_help_is_japanese() -> None:
    result = subprocess.run(wsgate_command("--lang", "ja", "run", "--help"), capture_output=True,
                            text=True, timeout=60, env=environment())
    assert result.returncode == 0
    assert "オリジンガードの背後で実行します。" in result.stdout
    assert english_prose(result.stdout) == [], result.stdout
