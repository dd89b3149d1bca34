"""`wsgate --lang ja demo --check`: the demo's screen in Japanese, and the doctor it
runs as a child process follows the language it was given."""

from __future__ import annotations

import io
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from tests.i18n.prose import english_prose, environment
from tests.support import wsgate_command
from wsgate import i18n
from wsgate.demo.command import _show_urls
from wsgate.demo.stack import DemoPlan


@pytest.fixture
def japanese() -> Iterator[None]:
    i18n.set_language("ja")
    try:
        yield
    finally:
        i18n.set_language(None)


@pytest.mark.usefixtures("japanese")
def test_the_urls_block_is_japanese_and_aligned(tmp_path: Path) -> None:
    """What the interactive demo shows before waiting for Ctrl-C (--check skips it)."""
    plan = DemoPlan(app=tmp_path / "app.py", origin_port=8501, edge_port=8080,
                    log_dir=tmp_path)
    out = io.StringIO()
    _show_urls(Console(file=out, no_color=True, width=200), plan,
               ["origin probe failed: x"])
    lines = out.getvalue().splitlines()
    assert "  開く  http://127.0.0.1:8080   アプリ（エッジ経由）" in lines
    assert "  直接  http://127.0.0.1:8501   オリジン本体（シークレットなしでは 403）" in lines
    assert f"  ログ  wsgate logs --join {tmp_path}/edge.jsonl {tmp_path}/origin.jsonl" in lines
    assert "Ctrl-C で停止します。" in lines


@pytest.mark.streamlit
@pytest.mark.slow
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
