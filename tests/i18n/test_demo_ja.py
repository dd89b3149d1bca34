"""`wsgate --lang ja demo --check`: the demo's screen in Japanese, and the doctor it
runs as a child process follows the language it was given."""

from __future__ import annotations

import subprocess

import pytest

from tests.i18n.prose import english_prose, environment
from tests.support import wsgate_command

pytestmark = [pytest.mark.streamlit, pytest.mark.slow]


def test_demo_check_screen_is_japanese() -> None:
    result = subprocess.run(wsgate_command("--lang", "ja", "demo", "--check"),
                            capture_output=True, text=True, timeout=240, env=environment())
    screen = result.stdout + result.stderr
    assert result.returncode == 0, screen
    assert "デモの確認に成功しました" in screen
    assert "エッジ経由の診断: 正常" in screen
    # Check details come from the `wsgate doctor` child: it spoke Japanese too.
    assert "に接続しました" in screen
    assert "期待どおり拒否されました" in screen
    assert english_prose(screen) == [], screen
