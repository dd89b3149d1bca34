"""`wsgate doctor` in Japanese against real stacks on loopback: no English prose is
left (ids, commands, header names, URLs and numbers aside), the JSON keeps its ids
and keys, and the report matches the golden one in tests/i18n/golden/."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.guard.fixtures import SECRETS, GuardedStreamlit, start_guarded_streamlit
from tests.i18n.prose import english_prose, environment
from tests.support import LOOPBACK, Edge, edge_process, free_port, started, wsgate_command

GOLDEN = Path(__file__).resolve().parent / "golden"
# WSGATE_UPDATE_GOLDEN=1 rewrites the golden files from this run (then review the diff).
UPDATE = os.environ.get("WSGATE_UPDATE_GOLDEN") == "1"
# The two ways users ask: the option (under an English locale) and the locale alone.
JAPANESE_WAYS = {"--lang ja": (("--lang", "ja"), environment()),
                 "LANG=ja_JP.UTF-8": ((), environment(LANG="ja_JP.UTF-8"))}


def doctor(*args: str, lang: tuple[str, ...] = (), env: dict[str, str] | None = None,
           ) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(wsgate_command(*lang, "doctor", *args), capture_output=True,
                            text=True, timeout=120, env=env or environment())
    assert result.returncode in (0, 1), result
    return result


def normalised(report: str) -> str:
    """The report without what changes from run to run: ports, durations, timings."""
    report = re.sub(rf"{re.escape(LOOPBACK)}:\d+", f"{LOOPBACK}:PORT", report)
    report = re.sub(r"\d+ ms", "N ms", report)
    report = re.sub(r"(?<![\d.])\d+\.\d+(?![\d.])", "N.N", report)
    return "\n".join(re.sub(r" {2,}", "  ", line).rstrip() for line in report.splitlines())


def assert_golden(name: str, report: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(normalised(report) + "\n", encoding="utf-8")
    assert normalised(report) + "\n" == path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def edge_to_stopped_origin() -> Iterator[tuple[Edge, str]]:
    stopped_origin = f"http://{LOOPBACK}:{free_port()}"
    with started(edge_process(stopped_origin, admin=False)) as edge:
        yield edge, stopped_origin


@pytest.mark.parametrize("way", JAPANESE_WAYS)
def test_broken_stack_report_is_japanese(edge_to_stopped_origin: tuple[Edge, str],
                                         way: str) -> None:
    edge, origin = edge_to_stopped_origin
    lang, env = JAPANESE_WAYS[way]
    result = doctor(edge.url, "--origin", origin, lang=lang, env=env)
    assert result.returncode == 1
    assert "[edge-origin-unreachable]" in result.stdout
    assert english_prose(result.stdout) == [], result.stdout
    assert_golden("edge-origin-unreachable.txt", result.stdout)


def test_the_same_report_in_english_is_caught_as_prose(
        edge_to_stopped_origin: tuple[Edge, str]) -> None:
    edge, origin = edge_to_stopped_origin
    result = doctor(edge.url, "--origin", origin)
    assert "The edge answered 502" in result.stdout
    assert english_prose(result.stdout)


def test_json_keeps_ids_and_keys_in_english(edge_to_stopped_origin: tuple[Edge, str]) -> None:
    edge, origin = edge_to_stopped_origin
    english = json.loads(doctor(edge.url, "--origin", origin, "--json").stdout)
    japanese = json.loads(doctor(edge.url, "--origin", origin, "--json",
                                 lang=("--lang", "ja")).stdout)
    assert japanese.keys() == english.keys()
    assert ([(c["id"], c["status"], sorted(c)) for c in japanese["checks"]]
            == [(c["id"], c["status"], sorted(c)) for c in english["checks"]])
    assert ([(d["id"], d["severity"], sorted(d)) for d in japanese["diagnoses"]]
            == [(d["id"], d["severity"], sorted(d)) for d in english["diagnoses"]])
    (diagnosis,) = japanese["diagnoses"]
    assert diagnosis["summary"] == "エッジが 502 を返しました。オリジンに到達できていません。"
    assert "`wsgate logs edge.log --status 5xx`" in diagnosis["fix"]
    for text in (diagnosis["summary"], diagnosis["fix"], diagnosis["evidence"],
                 *(c["detail"] for c in japanese["checks"])):
        assert english_prose(text) == [], text


@pytest.fixture(scope="module")
def guarded() -> Iterator[GuardedStreamlit]:
    with start_guarded_streamlit() as server:
        yield server


@pytest.mark.streamlit
def test_healthy_stack_report_is_japanese(guarded: GuardedStreamlit) -> None:
    with started(edge_process(guarded.base_url, admin=False, secret=SECRETS[0])) as edge:
        result = doctor(edge.url, "--origin", guarded.base_url,
                        env=environment(LANG="ja_JP.UTF-8", WSGATE_SECRET=SECRETS[0]))
    assert result.returncode == 0, result.stdout
    assert "問題は見つかりませんでした。" in result.stdout
    assert english_prose(result.stdout) == [], result.stdout
    assert_golden("healthy.txt", result.stdout)


@pytest.mark.streamlit
def test_secret_rejected_report_is_japanese(guarded: GuardedStreamlit) -> None:
    other_secret = "a-different-secret-0123456789abcdef"
    with started(edge_process(guarded.base_url, admin=False, secret=other_secret)) as edge:
        result = doctor(edge.url, "--origin", guarded.base_url, lang=("--lang", "ja"),
                        env=environment(WSGATE_SECRET=SECRETS[0]))
    assert result.returncode == 1
    assert "[secret-rejected]" in result.stdout
    assert "修正方法:" in result.stdout
    assert english_prose(result.stdout) == [], result.stdout
    assert SECRETS[0] not in result.stdout and other_secret not in result.stdout
    assert_golden("secret-rejected.txt", result.stdout)
