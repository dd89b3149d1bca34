"""`wsgate worker` in Japanese: help of the group and its commands, the build's
notes and result, its usage errors. What it writes (worker.js, wrangler.toml) is not
translated."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.i18n.prose import english_prose, environment
from tests.support import REPO, wsgate_command

EXAMPLE = str(REPO / "examples" / "edge.toml")


def wsgate_ja(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(wsgate_command("--lang", "ja", *args), capture_output=True,
                          text=True, timeout=60, env=environment())


@pytest.mark.parametrize("command", [("worker",), ("worker", "build"), ("worker", "dev")])
def test_worker_help_is_japanese(command: tuple[str, ...]) -> None:
    result = wsgate_ja(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "使い方:" in result.stdout
    assert english_prose(result.stdout) == [], result.stdout


def test_build_reports_in_japanese(tmp_path: Path) -> None:
    result = wsgate_ja("worker", "build", "--config", EXAMPLE, "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert ("wsgate worker build: admin_listen: Worker では適用されません。/metrics、/healthz、"
            "/readyz はありません。") in result.stderr
    assert "を書き出しました。シークレットは `wrangler secret put CF_SECRET` で設定し" \
        in result.stderr
    assert english_prose(result.stderr) == [], result.stderr
    english = subprocess.run(
        wsgate_command("worker", "build", "--config", EXAMPLE, "--out", str(tmp_path / "en")),
        capture_output=True, text=True, timeout=60, env=environment())
    assert english.returncode == 0, english.stderr
    for name in ("worker.js", "wrangler.toml"):
        assert (tmp_path / name).read_bytes() == (tmp_path / "en" / name).read_bytes()


def test_build_usage_error_is_japanese(tmp_path: Path) -> None:
    result = wsgate_ja("worker", "build", "--config", EXAMPLE, "--out", str(tmp_path),
                       "--name", "Not_A_Name")
    assert result.returncode == 2
    assert result.stderr.endswith("wsgate worker build: --name: 'Not_A_Name' は Worker の名前と"
                                  "して使えません（小文字、数字、ハイフンで 63 文字まで）\n")
