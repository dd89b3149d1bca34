"""Every filter on every source (Cloud Logging and wrangler fixtures), and their parsing."""

from __future__ import annotations

import pytest

from tests.logs.helpers import events_of
from wsgate.logs.query import (
    QueryError,
    build_query,
    parse_header,
    parse_status,
    parse_time,
)

# filter options -> (matches in gcloud_read.json, matches in wrangler_tail.json).
# Counts were worked out by hand from the fixture entries, not by running the code.
CASES: list[tuple[dict[str, object], int, int]] = [
    ({}, 8, 7),
    ({"status": ["ok"]}, 3, 3),
    ({"status": ["error"]}, 3, 2),
    ({"status": ["canceled"]}, 0, 1),
    ({"status": ["4xx"]}, 2, 1),
    ({"status": ["5xx"]}, 2, 1),
    ({"status": ["403"]}, 2, 1),
    ({"status": ["4xx", "5xx"]}, 4, 2),
    ({"status": ["1xx"]}, 1, 1),
    ({"since": "2026-11-25T10:01:00Z"}, 5, 5),
    ({"until": "2026-11-25T10:01:00Z"}, 3, 3),
    ({"since": "2026-11-25T10:00:30Z", "until": "2026-11-25T10:02:30Z"}, 3, 2),
    ({"since": "2026-11-25T19:01:00+09:00"}, 5, 5),  # 10:01 UTC written in JST
    ({"websocket": True}, 2, 2),
    ({"method": ["post"]}, 1, 1),
    ({"method": ["GET", "POST"]}, 6, 7),
    ({"ip": ["198.51.100.23"]}, 2, 1),
    ({"ip": ["198.51.100.0/24"]}, 2, 2),
    ({"header": ["user-agent:CURL"]}, 2, 1),
    ({"header": ["upgrade"]}, 0, 2),
    ({"header": ["X-Request-Id"]}, 2, 2),
    ({"header": ["upgrade:websocket", "x-request-id"]}, 0, 1),
    ({"search": "MAXIMUM request timeout"}, 1, 0),
    ({"search": "network connection lost"}, 0, 1),
    ({"search": "/admin"}, 2, 1),  # slash: no raw prefilter, still found
    ({"request_id": ["b7c1d2e3f4a5b6c7"]}, 1, 1),
    ({"request_id": ["b7c1d2e3f4a5b6c7", "wrangler-ws-0001"]}, 1, 2),
    ({"severity": "warning"}, 5, 3),
    ({"severity": "ERROR"}, 3, 2),
    ({"status": ["4xx"], "method": ["GET"], "ip": ["198.51.100.23"]}, 2, 1),
    ({"websocket": True, "status": ["error"]}, 0, 1),
]


@pytest.mark.parametrize(("options", "gcloud", "wrangler"), CASES,
                         ids=[str(c[0]) for c in CASES])
def test_filter_on_each_source(options: dict[str, object], gcloud: int, wrangler: int) -> None:
    query = build_query(**options)  # type: ignore[arg-type]
    assert len(events_of("gcloud_read.json", query)[0]) == gcloud
    assert len(events_of("wrangler_tail.json", query)[0]) == wrangler
    # The other layouts of the same formats agree with the pretty-printed ones.
    assert events_of("wrangler_lines.jsonl", query)[0] == events_of(
        "wrangler_tail.json", query)[0]
    lines = events_of("cloud_logging_lines.jsonl", query)[0]
    assert lines == [e for e in events_of("gcloud_read.json", query)[0] if e in lines]


def test_relative_times_count_back_from_now() -> None:
    now = 1_800_000_000.0
    assert parse_time("1h", now) == now - 3600
    assert parse_time("30m", now) == now - 1800
    assert parse_time("45s", now) == now - 45
    assert parse_time("2d", now) == now - 2 * 86400
    assert parse_time("2026-11-25T10:00:00", now) == parse_time("2026-11-25T10:00:00Z", now)


@pytest.mark.parametrize(("option", "value"), [
    ("status", ["teapot"]), ("status", ["600"]), ("status", ["6xx"]), ("since", "yesterday"),
    ("until", "10 parsecs"), ("ip", ["not-an-ip"]), ("header", [":value"]),
    ("header", ["bad header"]), ("severity", "loud"), ("method", ["G3T"]), ("search", ""),
])
def test_bad_values_are_one_line_errors(option: str, value: object) -> None:
    with pytest.raises(QueryError) as error:
        build_query(**{option: value})  # type: ignore[arg-type]
    assert "\n" not in str(error.value)


def test_error_means_the_server_side_failed() -> None:
    from wsgate.logs.query import is_error

    assert is_error({"status": 502, "severity": "ERROR", "errorClass": "connect-refused"})
    assert is_error({"errorClass": "origin-lost", "severity": "INFO"})
    assert not is_error({"status": 400, "severity": "WARNING", "errorClass": "bad-request"})
    assert not is_error({"status": 404, "severity": "INFO"})
    assert is_error({"outcome": "exceededCpu"}) and not is_error({"outcome": "canceled"})


def test_since_after_until_is_refused() -> None:
    with pytest.raises(QueryError, match="later"):
        build_query(since="2026-01-02T00:00:00Z", until="2026-01-01T00:00:00Z")


def test_parsers() -> None:
    assert parse_status("OK").kind == "ok"
    assert parse_status("5XX").value == 5
    assert parse_header("X-Foo: Bar") == ("x-foo", "bar")
    assert parse_header("x-foo") == ("x-foo", None)


def test_prefilter_is_only_a_necessary_condition() -> None:
    query = build_query(search="Refused")
    check = query.prefilter()
    assert check is not None
    assert check(b'{"message":"Direct access refused"}')
    assert not check(b'{"message":"fine"}')
    assert build_query(search='say "hi"').prefilter() is None
    assert build_query(search="caf\u00e9").prefilter() is None
