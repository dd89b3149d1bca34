"""Parsers: each documented format, mixed input, and bad input never raising."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.logs.helpers import FIXTURES, FOREIGN, events_of
from wsgate.logs.events import HttpRequest, build_event, dumps
from wsgate.logs.formats import normalise
from wsgate.logs.model import EVENT_FIELDS
from wsgate.logs.reader import DocumentReader, ReadStats, read_events


def test_gcloud_export_is_one_pretty_array_read_entry_by_entry() -> None:
    text = (FIXTURES / "gcloud_read.json").read_text()
    assert text.startswith("[\n  {") and text.count("\n") > 100  # really multi-line
    events, stats = events_of("gcloud_read.json")
    assert stats.skipped == 0
    assert len(events) == len(json.loads(text))
    assert {e["format"] for e in events} == {"cloud-logging"}
    refusal = next(e for e in events if e.get("message") == "Direct access refused")
    assert refusal["requestId"] == "b7c1d2e3f4a5b6c7"
    assert refusal["reason"] == "missing"
    assert refusal["status"] == 403
    assert refusal["severity"] == "WARNING"
    assert refusal["trace"].startswith("projects/example-project/traces/")
    stream = next(e for e in events if e.get("status") == 101)
    assert stream["isWebSocket"] is True
    assert stream["latencyMs"] == 312448.125
    assert stream["host"] == "sagebase-streamlit-abc123-an.a.run.app"
    assert stream["path"] == "/_stcore/stream"
    text_entry = next(e for e in events if "tornado" in e.get("message", ""))
    assert text_entry["severity"] == "ERROR" and "status" not in text_entry
    offset = next(e for e in events if e.get("requestId") == "c0ffee00c0ffee00")
    assert offset["timestamp"] == "2026-11-25T10:03:59.950000Z"  # +00:00 normalised
    assert offset["closeCode"] == 1001


def test_one_log_entry_per_line_reads_the_same_as_the_array() -> None:
    lines, stats = events_of("cloud_logging_lines.jsonl")
    array, _ = events_of("gcloud_read.json")
    assert stats.skipped == 0
    assert lines == array[2:6]


def test_wrangler_pretty_and_compact_output_read_the_same() -> None:
    pretty, stats = events_of("wrangler_tail.json")
    compact, stats2 = events_of("wrangler_lines.jsonl")
    assert stats.skipped == stats2.skipped == 0
    assert pretty == compact
    assert len(pretty) == 7
    assert {e["source"] for e in pretty} == {"edge"}
    proxy_error = pretty[2]
    assert proxy_error["status"] == 502
    assert proxy_error["severity"] == "ERROR"
    assert proxy_error["message"].startswith("Edge Proxy Error:")
    assert proxy_error["isWebSocket"] is True
    assert proxy_error["remoteIp"] == "198.51.100.99"
    exception = pretty[3]
    assert exception["outcome"] == "exception"
    assert exception["error"].startswith("TypeError: Cannot read properties")
    assert "status" not in exception
    assert pretty[1]["requestId"] == "wrangler-ws-0001"
    assert pretty[1]["timestamp"] == "2026-11-25T10:00:01.500000Z"
    assert pretty[6]["headers"]["user-agent"] == "curl/8.5.0"


def test_timestamps_are_validated_before_they_are_trusted() -> None:
    bad = '{"severity":"INFO","message":"x","timestamp":"2026-11-25T\\u001b[2J:00:00Z"}'
    [event] = normalise_lines([bad.encode()])
    assert "timestamp" not in event
    odd = '{"severity":"INFO","message":"x","timestamp":"2026-11-25 10:00:00.5+01:00"}'
    [event] = normalise_lines([odd.encode()])
    assert event["timestamp"] == "2026-11-25T09:00:00.500000Z"


def test_every_normalised_key_is_documented() -> None:
    for name in FOREIGN:
        for event in events_of(name)[0]:
            assert set(event) <= set(EVENT_FIELDS), name


def test_wsgate_events_keep_their_fields() -> None:
    event = build_event(
        source="edge", message="Edge Proxy Error", severity="ERROR",
        http=HttpRequest("GET", "/_stcore/stream", 502, 0.0125, "127.0.0.1", "ua/1"),
        requestId="abc", isWebSocket=True, errorClass="connect-refused",
        error="connection refused", bytesToClient=40, closeCode=None)
    [normalised] = normalise_lines([dumps(event).encode()])
    assert normalised["source"] == "edge"
    assert normalised["format"] == "wsgate"
    assert normalised["status"] == 502
    assert normalised["latencyMs"] == 12.5
    assert normalised["errorClass"] == "connect-refused"
    assert normalised["bytesToClient"] == 40
    assert normalised["userAgent"] == "ua/1" and "headers" not in normalised
    assert "closeCode" not in normalised


def normalise_lines(lines: list[bytes]) -> list[dict[str, object]]:
    return list(read_events(lines, ReadStats()))


def test_bad_input_is_counted_never_raised() -> None:
    events, stats = events_of("bad_input.log")
    messages = [e.get("message") for e in events]
    assert "ok line" in messages
    assert any("bad utf8" in str(m) for m in messages)
    # wrong types are dropped field by field, the rest of the event stays
    wrong = next(e for e in events if e.get("latencyMs") == 7000.0)
    assert "status" not in wrong and "url" not in wrong and "closeCode" not in wrong
    assert stats.not_json == 5 and stats.not_event == 4
    assert stats.describe() == "skipped 9 unparseable input(s): 5 not JSON, 4 not a log event"


def test_a_document_cut_short_does_not_swallow_what_follows() -> None:
    good = b'{"severity":"INFO","message":"after"}\n'
    lines = [b"{\n", b'  "severity": "INFO",\n', b'  "message": "cut', good]
    stats = ReadStats()
    events = list(read_events(lines, stats))
    assert [e["message"] for e in events] == ["after"]
    assert stats.not_json == 3


def test_array_elements_one_per_line_and_compact_arrays() -> None:
    entry = '{"textPayload":"a","severity":"INFO"}'
    lines = [b"[\n", f"{entry},\n".encode(), f"{entry}\n".encode(), b"]\n",
             f"[{entry},{entry}]\n".encode(), b"[]\n"]
    stats = ReadStats()
    assert len(list(read_events(lines, stats))) == 4
    assert stats.skipped == 0


def test_truncated_array_counts_its_rest_as_bad() -> None:
    lines = [b"[\n", b'  {"textPayload": "a"},\n', b'  {"textPayload": "b\n']
    stats = ReadStats()
    assert [e["message"] for e in read_events(lines, stats)] == ["a"]
    assert stats.not_json >= 1


def test_prefilter_skips_lines_without_decoding_them() -> None:
    lines = [b'{"message":"needle here"}', b'{"message":"other"}', b"garbage"]
    stats = ReadStats()
    events = list(read_events(lines, stats, lambda raw: b"needle" in raw))
    assert [e["message"] for e in events] == ["needle here"]
    assert stats.not_json == 1  # non-object lines are still counted


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from([
        "severity", "message", "httpRequest", "status", "latency", "requestUrl", "outcome",
        "eventTimestamp", "event", "request", "response", "headers", "logs", "exceptions",
        "jsonPayload", "textPayload", "protoPayload", "timestamp", "requestId", "closeCode",
        "isWebSocket", "level", "name", "url", "method", "source", "insertId",
    ]) | st.text(max_size=5), children, max_size=6),
    max_leaves=25)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_normalise_never_raises_on_any_json(value: object) -> None:
    event = normalise(value)
    if event is not None:
        assert set(event) <= set(EVENT_FIELDS)
        json.dumps(event)  # always serialisable


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40) | st.sampled_from(
    [b"{", b"}", b"[", b"]", b"},", b'  "a": 1,', b'{"message":"x"}', b"\xff", b""]),
    max_size=12))
def test_reader_never_raises_on_any_bytes(lines: list[bytes]) -> None:
    stats = ReadStats()
    reader = DocumentReader(stats)
    for line in lines:
        list(reader.feed(line + b"\n"))
    reader.finish()
    assert reader.idle()
