"""`wsgate logs` in Japanese: help, usage errors, the summary's headings and the notes
on stderr. The events themselves are data and stay as they were written."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.i18n.prose import english_prose, environment
from tests.support import wsgate_command
from wsgate.logs.events import HttpRequest, build_event


def wsgate_ja(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(wsgate_command("--lang", "ja", *args), capture_output=True,
                          text=True, timeout=60, env=environment())


def write_log(path: Path) -> Path:
    events = [
        build_event(source="edge", message="request", epoch=1_764_500_000.0 + i,
                    http=HttpRequest("GET", "/", status, 0.004, "127.0.0.1"),
                    requestId=f"r{i}")
        for i, status in enumerate((200, 200, 502))
    ]
    lines = [json.dumps(e) for e in events] + ["this is not json", json.dumps({"a": 1})]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_logs_help_is_japanese() -> None:
    result = wsgate_ja("logs", "--help")
    assert result.returncode == 0, result.stderr
    assert "エッジとオリジンのログを絞り込み、結合し、要約します。" in result.stdout
    assert english_prose(result.stdout) == [], result.stdout


def test_the_summary_and_its_notes_are_japanese(tmp_path: Path) -> None:
    result = wsgate_ja("logs", str(write_log(tmp_path / "edge.log")), "--summary",
                       "--format", "pretty")
    assert result.returncode == 0, result.stderr
    assert "wsgate logs 要約" in result.stdout
    assert "イベント: 3 件" in result.stdout
    assert "レイテンシー edge （3 件のリクエスト）" in result.stdout
    assert english_prose(result.stdout) == [], result.stdout
    assert result.stderr == ("wsgate logs: 解釈できない入力 2 件を読み飛ばしました: "
                             "JSON ではないもの 1 件, ログイベントではないもの 1 件\n")


def test_the_json_summary_keeps_its_keys(tmp_path: Path) -> None:
    result = wsgate_ja("logs", str(write_log(tmp_path / "edge.log")), "--summary",
                       "--format", "json")
    summary = json.loads(result.stdout)
    assert summary["events"] == 3
    assert set(summary) >= {"bySource", "byStatusClass", "latencyMs", "refusals"}


def test_logs_usage_errors_are_japanese(tmp_path: Path) -> None:
    log = str(write_log(tmp_path / "edge.log"))
    since = wsgate_ja("logs", log, "--since", "1q")
    assert since.returncode == 2
    assert "エラー: '1q': 30m、1h、2d のような期間か" in since.stderr
    views = wsgate_ja("logs", log, "--join", "--summary")
    assert views.returncode == 2
    assert "--join と --summary は別々の表示です。どちらかを選んでください" in views.stderr
    missing = wsgate_ja("logs", str(tmp_path / "nowhere.log"))
    assert missing.returncode == 1
    assert missing.stderr == f"wsgate logs: {tmp_path / 'nowhere.log'}: ファイルがありません\n"
