"""The doctor's words for network errors: the system's in English, translated in
Japanese (a check detail is read as much as a diagnosis)."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator

import pytest

from wsgate import i18n
from wsgate.doctor.http_client import OS_ERRORS, describe_error


@pytest.fixture
def japanese() -> Iterator[None]:
    i18n.set_language("ja")
    try:
        yield
    finally:
        i18n.set_language(None)


@pytest.mark.parametrize("code", sorted(OS_ERRORS))
def test_english_is_what_the_system_says(code: int) -> None:
    i18n.set_language("en")
    try:
        assert describe_error(OSError(code, os.strerror(code))) == os.strerror(code)
    finally:
        i18n.set_language(None)


@pytest.mark.usefixtures("japanese")
@pytest.mark.parametrize(("error", "expected"), [
    (OSError(errno.EHOSTUNREACH, "No route to host"), "ホストへの経路がありません"),
    (OSError(errno.ENETUNREACH, "Network is unreachable"), "ネットワークに到達できません"),
    (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "接続が拒否されました"),
    (TimeoutError(), "タイムアウトしました"),
    (socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
     "名前解決に失敗しました: 名前が見つかりません"),
    (socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"),
     "名前解決に失敗しました: 名前解決が一時的に失敗しました"),
    (EOFError("closed"), "有効な HTTP 応答がないまま接続が閉じられました（EOFError）"),
])
def test_japanese_words_for_network_errors(error: BaseException, expected: str) -> None:
    assert describe_error(error) == expected


@pytest.mark.usefixtures("japanese")
def test_an_unknown_error_is_shown_as_the_system_words_it() -> None:
    assert describe_error(OSError(errno.EPROTO, "Protocol error")) == "Protocol error"
