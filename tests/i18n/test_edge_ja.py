"""`wsgate edge` in Japanese: help, --check and its console lines around a real run
(the 'listening on URL' prefix others read stays as it is)."""

from __future__ import annotations

import subprocess

import pytest

from tests.i18n.prose import english_prose, environment
from tests.support import LOOPBACK, edge_process, free_port, wait_until, wsgate_command


def wsgate_ja(*args: str) -> subprocess.CompletedProcess[str]:
    env = environment()
    env.pop("WSGATE_SECRET", None)  # the configuration-error cases need it unset
    return subprocess.run(wsgate_command("--lang", "ja", *args), capture_output=True,
                          text=True, timeout=60, env=env)


def test_edge_help_is_japanese() -> None:
    result = wsgate_ja("edge", "--help")
    assert result.returncode == 0, result.stderr
    assert "エッジプロキシを実行します。" in result.stdout
    assert "--config FILE" in result.stdout  # placeholders stay ASCII
    assert english_prose(result.stdout) == [], result.stdout


def test_edge_check_says_valid_in_japanese() -> None:
    origin = f"http://{LOOPBACK}:{free_port()}"
    result = wsgate_ja("edge", "--origin", origin, "--insecure-no-secret", "--check")
    assert result.returncode == 0, result.stderr
    assert f'origin = "{origin}"' in result.stdout  # the TOML itself is not translated
    assert result.stderr == "wsgate edge: フラグと環境変数による設定は有効です\n"


@pytest.mark.parametrize("workers", ["1", "2"])  # one process, or under the supervisor
def test_a_running_edge_reports_in_japanese(workers: str) -> None:
    edge = edge_process(f"http://{LOOPBACK}:{free_port()}", admin=False,
                        extra=("--workers", workers), env={"WSGATE_LANG": "ja"})
    edge.start(30)
    try:
        # The port accepts once bound; the ready line comes when the workers serve.
        assert wait_until(lambda: "listening on" in edge.output(), timeout=30), edge.output()
        assert edge.stop() is not None
    finally:
        edge.stop()
    console = edge.output()
    assert f"wsgate edge listening on http://{LOOPBACK}:{edge.port}" in console
    assert "シークレット用ヘッダー X-CF-Secret" in console
    assert "wsgate edge: ドレイン中\n" in console
    assert "wsgate edge: 停止しました\n" in console


@pytest.mark.parametrize(("args", "message"), [
    (("--origin", "ftp://x", "--insecure-no-secret"),
     "routes[0].origin: 'ftp://x' は http:// か https:// で始めてください"),
    (("--origin", "http://127.0.0.1:1"),
     "secret: 環境変数 WSGATE_SECRET が設定されていません。"),
    (("--origin", "http://127.0.0.1:1", "--insecure-no-secret", "--workers", "0"),
     "workers: \"auto\" か 1-256 にしてください（指定値: 0）"),
])
def test_configuration_errors_are_japanese(args: tuple[str, ...], message: str) -> None:
    result = wsgate_ja("edge", *args, "--check")
    assert result.returncode == 2
    assert result.stderr.startswith("wsgate edge: 設定エラー: " + message), result.stderr
    assert english_prose(result.stderr) == [], result.stderr
