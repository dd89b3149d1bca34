"""The shortcuts that make `wsgate logs` fast must never change what it finds.

- the raw-line prefilter (`Query.prefilter`) may only skip lines that cannot match;
- the quick part of an event (`Format.quick`) must hold the same QUICK_FIELDS as the
  finished event, and `Query.quick_check` may only drop events that do not match;
- orjson (strict) falls back to the lenient standard reader, output stays valid JSON;
- time keys order like the times they stand for.
"""

from __future__ import annotations

import contextlib
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.logs.helpers import FIXTURES, json_lines, run_logs
from wsgate.logs.formats import detect, normalise
from wsgate.logs.model import QUICK_FIELDS, parse_iso, time_key
from wsgate.logs.query import Query, build_query
from wsgate.logs.reader import DocumentReader, ReadStats, read_events
from wsgate.logs.render import json_line

# Queries whose shortcuts are exercised: each has a raw prefilter and/or a quick check.
QUERIES: list[dict[str, Any]] = [
    {"status": ["5xx"]}, {"status": ["403"]}, {"status": ["1xx", "404"]},
    {"status": ["101"]}, {"status": ["error"]}, {"status": ["ok"]},
    {"websocket": True}, {"websocket": True, "status": ["1xx"]},
    {"since": "2026-11-25T10:00:00.5Z"}, {"until": "2026-11-25T10:00:00Z"},
    {"method": ["get"]}, {"severity": "warning"}, {"request_id": ["req-1"]},
    {"search": "refused"}, {"websocket": True, "since": "2026-11-25T09:00:00Z"},
]
BUILT = [build_query(**q, now=1_800_000_000.0) for q in QUERIES]

# Values a status can be written as, including the ones only the lenient reading accepts
# (403.0 is read as 403, "0403" too) and ones that must not count ("١٠١", "²", -403).
status_values = st.sampled_from([
    101, 200, 403, 404, 502, 599, 600, -403, "101", "0403", "00502", "5xx", "", "1" * 25,
    "\u00b2", "\u0661\u0660\u0661", 403.0, 101.0, 5.02e2, 502.5, 1e300, True, None,
    {"code": 502},
])
text = st.sampled_from(["refused", "Direct access refused", "x\"y", "caf\u00e9", "a\\b",
                        "websocket", "WebSocket", "\u212aeep", "status", '"status":502',
                        "true", "101", "req-1", "GET", "get", "\u0000", "\ud800"])
timestamps = st.sampled_from([
    "2026-11-25T10:00:00Z", "2026-11-25T10:00:00.5Z", "2026-11-25T10:00:00.499999999Z",
    "2026-11-25T10:00:00.500001Z", "2026-11-25T09:59:59.999Z", "2026-11-25T11:00:00+01:00",
    "2026-11-25T10:00:00.5+00:00", "2026-11-25T23:59:60Z", "not a time", "",
])
http_requests = st.fixed_dictionaries({"status": status_values}, optional={
    "requestMethod": st.sampled_from(["GET", "get", "POST", 7]),
    "requestUrl": st.sampled_from(["https://a.example/x?q=1", "/p", "http://[::1]:80/"]),
    "latency": st.sampled_from(["0.01s", 3, "xs"]), "remoteIp": st.just("10.0.0.1"),
})
payload_fields = {
    "severity": st.sampled_from(["INFO", "warning", "ERROR", "WARN", 3]),
    "message": text, "timestamp": timestamps, "httpRequest": http_requests,
    "isWebSocket": st.one_of(st.booleans(), st.just("true")),
    "requestId": st.sampled_from(["req-1", "req-2", 1]),
    "errorClass": st.just("connect-refused"), "source": st.sampled_from(["edge", "origin"]),
    "status": status_values,  # a "status" key where no reader looks
}
wsgate_docs = st.fixed_dictionaries(
    {"httpRequest": http_requests},
    optional={k: v for k, v in payload_fields.items() if k != "httpRequest"})
cloud_docs = st.fixed_dictionaries({"insertId": st.just("i"), "httpRequest": http_requests},
                                   optional={
    "jsonPayload": st.fixed_dictionaries({}, optional=payload_fields),
    "textPayload": text, "severity": payload_fields["severity"], "timestamp": timestamps,
    "receiveTimestamp": timestamps,
    "protoPayload": st.fixed_dictionaries({}, optional={"status": status_values}),
})
wrangler_docs = st.fixed_dictionaries({"outcome": st.sampled_from(["ok", "exception",
                                                                    "canceled"])}, optional={
    "scriptName": st.just("proxy"), "eventTimestamp": st.integers(0, 2_000_000_000_000),
    "logs": st.lists(st.fixed_dictionaries({"level": st.sampled_from(["log", "error"]),
                                            "message": st.lists(text, max_size=2)}),
                     max_size=2),
    "event": st.fixed_dictionaries({}, optional={
        "request": st.fixed_dictionaries({}, optional={
            "method": st.sampled_from(["GET", "post"]), "url": st.just("https://a/b"),
            "headers": st.dictionaries(st.sampled_from(["Upgrade", "UPGRADE", "x-request-id",
                                                        "cf-connecting-ip"]),
                                       st.sampled_from(["websocket", "WebSocket",
                                                        "websoc\u212aet", "req-1",
                                                        "10.0.0.1"]), min_size=1, max_size=3)}),
        "response": st.fixed_dictionaries({"status": status_values}),
    }),
})
documents = st.one_of(wsgate_docs, cloud_docs, wrangler_docs)


def _writings(doc: dict[str, Any]) -> list[bytes]:
    """The same document as different encoders write it on one line."""
    compact = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    out = [json.dumps(doc).encode(), compact.encode("utf-8", "surrogatepass")]
    with contextlib.suppress(TypeError):  # lone surrogates, which orjson does not write
        out.append(orjson.dumps(doc))
    out.append(json.dumps(doc, separators=(" ,\t", " :  ")).encode())
    return out


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_shortcuts_never_drop_a_matching_event(doc: dict[str, Any]) -> None:
    event = normalise(doc)
    assume(event is not None)
    assert event is not None
    fmt = detect(doc)
    assert fmt is not None
    quick = fmt.quick(doc)
    assert {k: v for k, v in quick.items() if k in QUICK_FIELDS} == {
        k: v for k, v in event.items() if k in QUICK_FIELDS}
    for query in BUILT:
        if not query.matches(event):
            continue
        check = query.quick_check()
        assert check is None or check(quick), query
        prefilter = query.prefilter()
        if prefilter is not None:
            for line in _writings(doc):
                assert prefilter(line), (query, line)


@pytest.mark.parametrize("name", ["gcloud_read.json", "cloud_logging_lines.jsonl",
                                  "wrangler_tail.json", "wrangler_lines.jsonl",
                                  "bad_input.log"])
@pytest.mark.parametrize("query", BUILT, ids=[str(q) for q in QUERIES])
def test_fixtures_read_the_same_with_and_without_shortcuts(name: str, query: Query) -> None:
    def read(fast: bool) -> list[dict[str, Any]]:
        with open(FIXTURES / name, "rb") as handle:
            events = read_events(handle, ReadStats(), query.prefilter() if fast else None,
                                 query.quick_check() if fast else None)
            return [e for e in events if query.matches(e)]

    assert read(fast=True) == read(fast=False)


@pytest.mark.parametrize(("line", "options"), [
    (b'{"httpRequest":{"status":5.02e2}}', {"status": ["5xx"]}),
    (b'{"httpRequest":{"status":4030e-1}}', {"status": ["403"]}),
    (b'{"httpRequest":{"status":1.01E2}}', {"websocket": True}),
    (b'{"httpRequest":{"st\\u0061tus":502}}', {"status": ["5xx"]}),
    (b'{"httpRequest":{"status":"\\u0035\\u0030\\u0032"}}', {"status": ["502"]}),
    (b'{"httpRequest":{"status":"\\u0031\\u0030\\u0031"}}', {"websocket": True}),
    (b'{"httpRequest":{"status"\t:\t"0101"}}', {"websocket": True}),
    (b'{"isWebSocket"  :  true, "message": "m"}', {"websocket": True}),
    (b'{"outcome":"ok","event":{"request":{"headers":{"UPGRADE":"WEBSOCKET"}}}}',
     {"websocket": True}),
])
def test_hand_written_forms_pass_the_prefilter(line: bytes, options: dict[str, Any]) -> None:
    """Forms no encoder in the property test writes: exponents, escapes, odd spacing."""
    query = build_query(**options)
    [event] = read_events([line], ReadStats())
    assert query.matches(event)  # the line really matches ...
    check = query.prefilter()
    assert check is not None and check(line)  # ... so the prefilter must let it through


def test_prefilters_skip_what_cannot_match() -> None:
    """They are worth having: the common non-matching lines are not decoded."""
    line = orjson.dumps({"severity": "INFO", "isWebSocket": False, "httpRequest": {
        "status": 200, "requestUrl": "https://a/", "remoteIp": "10.1.1.1"}})
    for options in ({"status": ["5xx"]}, {"status": ["403", "1xx"]}, {"websocket": True}):
        check = build_query(**options).prefilter()  # type: ignore[arg-type]
        assert check is not None and not check(line), options
    assert build_query(status=["error"]).prefilter() is None  # severity counts too
    assert build_query(websocket=True).prefilter()(line.replace(b"200", b"101"))  # type: ignore[misc]


@settings(max_examples=300, deadline=None)
@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9998, 1, 1)),
       st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9998, 1, 1)),
       st.integers(0, 9), st.integers(0, 9))
def test_time_keys_order_like_times(a: datetime, b: datetime, da: int, db: int) -> None:
    def stamp(moment: datetime, digits: int) -> str:
        base = moment.strftime("%Y-%m-%dT%H:%M:%S")
        fraction = f"{moment.microsecond:06d}000"[:digits]
        return base + ("." + fraction if digits else "") + "Z"

    sa, sb = stamp(a, da), stamp(b, db)
    ea, eb = parse_iso(sa), parse_iso(sb)
    assert ea is not None and eb is not None
    if ea != eb:
        assert (time_key(sa) < time_key(sb)) == (ea < eb)
    b_later = a + timedelta(microseconds=1)
    assert time_key(stamp(a, 6)) < time_key(stamp(b_later, 6))


def test_orjson_refusals_fall_back_to_the_lenient_reader(tmp_path: Path) -> None:
    lines = [
        b'{"message":"nan","wsDurationMs":NaN,"httpRequest":{"status":500}}',
        b'{"message":"surrogate \\ud800","httpRequest":{"status":503}}',
        b'{"message":"bad utf8 \xff","httpRequest":{"status":504}}',
        b'{"message":"superscript","httpRequest":{"status":"\xc2\xb2"}}',
        b'{"message":"deep","x":' + b"[" * 3000 + b"]" * 3000 + b"}",
        b'{"message":"fine","httpRequest":{"status":502}}',
    ]
    path = tmp_path / "odd.log"
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = run_logs(str(path), "--format", "json")
    assert result.returncode == 0, result.stderr
    assert b"Traceback" not in result.stderr
    events = json_lines(result.stdout)  # every output line is valid JSON
    assert [e["message"] for e in events] == [
        "nan", "surrogate \ud800", "bad utf8 \ufffd", "superscript", "fine"]
    assert events[0].get("wsDurationMs") is None
    assert "status" not in events[3]  # "²" is not a number
    assert b"1 not JSON" in result.stderr  # the nesting that no reader accepts
    filtered = json_lines(run_logs(str(path), "--status", "5xx").stdout)
    assert [e["message"] for e in filtered] == ["nan", "surrogate \ud800", "bad utf8 \ufffd",
                                                "fine"]


def test_json_line_is_valid_json_for_what_orjson_refuses() -> None:
    for value in ({"n": 2**70}, {"s": "\ud800"}, {"ok": "caf\u00e9"}):
        line = json_line(value)
        assert line.endswith(b"\n") and json.loads(line) == value


def test_reader_gives_up_on_nesting_no_decoder_accepts() -> None:
    stats = ReadStats()
    reader = DocumentReader(stats)
    deep = b"{\n" + b'  "x": ' + b"[" * 3000 + b"]" * 3000 + b"\n}\n"
    for line in deep.splitlines(keepends=True):
        assert list(reader.feed(line)) == []
    reader.finish()
    assert stats.not_json >= 1 and reader.idle()
