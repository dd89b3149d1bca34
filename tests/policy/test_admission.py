"""Admission control: the pure core (`wsgate.policy.admission`), its `[admission]`
settings, and the edge glue's metrics and flood summaries. Time is passed in: no test
here sleeps or reads a clock."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsgate.config import AdmissionLimits, ConfigError, load_config
from wsgate.edge.admission import Admission
from wsgate.edge.metrics import EdgeMetrics
from wsgate.policy.admission import (
    LIMIT_NAMES,
    AdmissionState,
    Occupancy,
    TokenBuckets,
    client_key,
    limit_in_text,
)

ENV = {"WSGATE_SECRET": "s3cret"}
ORIGIN = "http://127.0.0.1:8501"


def limits(**values: int) -> AdmissionLimits:
    return AdmissionLimits(**values)


# -- settings ---------------------------------------------------------------------------

def test_every_limit_is_off_by_default() -> None:
    config = load_config(None, {"origin": ORIGIN}, ENV)
    state = AdmissionState(config.admission)
    assert not state.enabled
    for _ in range(1000):  # nothing is refused or kept while every limit is off
        assert state.connection_opened(10**6) is None
        assert state.check_request("10.0.0.1", 0.0) is None
        assert state.open_websocket("10.0.0.1", ORIGIN, 0.0) is None
    assert state.buckets is None and len(state.client_websockets) == 0


def test_admission_table_from_toml_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text('[admission]\nmax_websockets_per_client = 4\n'
                    'max_requests_per_second_per_client = 20\nburst = 40\n'
                    f'[[routes]]\npattern = "*/*"\norigin = "{ORIGIN}"\n')
    env = {**ENV, "WSGATE_EDGE_ADMISSION_MAX_CONNECTIONS": "5000"}
    c = load_config(path, None, env).admission
    assert (c.max_websockets_per_client, c.max_requests_per_second_per_client, c.burst,
            c.max_connections, c.max_websockets_per_origin) == (4, 20, 40, 5000, 0)


@pytest.mark.parametrize(("table", "message"), [
    ({"burst": 10}, "admission.burst: set admission.max_requests_per_second_per_client"),
    ({"max_connections": -1}, "admission.max_connections: must not be negative"),
    ({"max_tracked_clients": 10}, "admission.max_tracked_clients: must be at least 1000"),
    ({"max_websocket_per_client": 1}, "max_websocket_per_client: unknown key in [admission]"),
    ({"max_websockets_per_client": "many"}, "admission.max_websockets_per_client: expected "
                                            "an integer"),
])
def test_bad_admission_settings_are_named(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(None, {"origin": ORIGIN, "admission": table}, ENV)


# -- token bucket -----------------------------------------------------------------------

def test_a_burst_passes_then_the_rate_holds_and_retry_after_is_honest() -> None:
    state = AdmissionState(limits(max_requests_per_second_per_client=2, burst=5))
    assert [state.check_request("10.0.0.1", 100.0) for _ in range(5)] == [None] * 5
    refused = state.check_request("10.0.0.1", 100.0)
    assert refused is not None
    assert (refused.status, refused.limit, refused.retry_after) == (
        429, "max_requests_per_second_per_client", 1)
    assert limit_in_text(refused.message) == "max_requests_per_second_per_client"
    assert state.check_request("10.0.0.2", 100.0) is None  # another client: its own bucket
    assert state.check_request("10.0.0.1", 100.0 + refused.retry_after) is None


def test_burst_defaults_to_one_second_of_requests() -> None:
    state = AdmissionState(limits(max_requests_per_second_per_client=3))
    assert [state.check_request("a", 7.0) is None for _ in range(4)] == [True] * 3 + [False]


times = st.lists(st.floats(min_value=0, max_value=5, allow_nan=False), min_size=1,
                 max_size=120).map(lambda gaps: [sum(gaps[:i + 1]) for i in range(len(gaps))])


@settings(max_examples=300, deadline=None)
@given(rate=st.integers(1, 50), capacity=st.integers(1, 50), arrivals=times)
def test_bucket_never_admits_more_than_burst_plus_rate_times_elapsed(
        rate: int, capacity: int, arrivals: list[float]) -> None:
    buckets = TokenBuckets(rate, capacity, max_keys=1000)
    admitted = [t for t in arrivals if buckets.take("client", t) == 0.0]
    # Over every window between two admitted requests (both ends included).
    for i, start in enumerate(admitted):
        for j in range(i, len(admitted)):
            assert j - i + 1 <= capacity + rate * (admitted[j] - start) + 1e-6


@settings(max_examples=300, deadline=None)
@given(rate=st.integers(1, 50), capacity=st.integers(1, 50), arrivals=times)
def test_a_refused_request_passes_after_its_retry_after(
        rate: int, capacity: int, arrivals: list[float]) -> None:
    state = AdmissionState(limits(max_requests_per_second_per_client=rate, burst=capacity))
    for t in arrivals:
        refused = state.check_request("c", t)
        if refused is not None:
            assert refused.retry_after >= 1
            probe = AdmissionState(state.limits)
            assert probe.buckets is not None and state.buckets is not None
            probe.buckets._full_at = state.buckets._full_at.copy()
            assert probe.check_request("c", t + refused.retry_after) is None


@settings(max_examples=200, deadline=None)
@given(max_keys=st.integers(1, 40),
       steps=st.lists(st.tuples(st.integers(0, 200), st.floats(0, 0.05)), max_size=400))
def test_bucket_table_never_exceeds_its_cap(max_keys: int,
                                            steps: list[tuple[int, float]]) -> None:
    buckets = TokenBuckets(rate=1, capacity=3, max_keys=max_keys)
    now = 0.0
    for key, gap in steps:
        now += gap
        buckets.take(f"10.0.{key // 256}.{key % 256}", now)
        assert len(buckets) <= max_keys


def test_full_buckets_leave_the_table() -> None:
    buckets = TokenBuckets(rate=10, capacity=20, max_keys=100_000)
    for i in range(5000):
        buckets.take(f"10.1.{i // 256}.{i % 256}", 0.0)
    assert len(buckets) == 5000
    # Two seconds refill a 20-token bucket at 10/s: those entries mean nothing any more.
    buckets.take("10.2.0.1", 2.0)
    assert len(buckets) == 1


def test_a_flood_of_distinct_addresses_costs_at_most_the_cap() -> None:
    state = AdmissionState(limits(max_requests_per_second_per_client=5,
                                  max_tracked_clients=1000))
    for i in range(100_000):  # all within one instant: nothing expires, the cap holds
        state.check_request(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", 50.0)
    assert state.buckets is not None and len(state.buckets) == 1000
    # The most recently seen clients are the ones kept: the last one (i = 99999) spent
    # one of its five tokens in the loop, so four more pass and the fifth is refused.
    assert [state.check_request("10.1.134.159", 50.0) is None for _ in range(5)] == [
        True, True, True, True, False]


def test_client_keys_are_bounded() -> None:
    assert client_key("2001:db8::1") == "2001:db8::1"
    assert client_key("fe80::1%" + "x" * 5000) == "fe80::1"
    assert len(client_key("a" * 5000)) == 45


# -- concurrency ------------------------------------------------------------------------

def test_websockets_per_client_and_per_origin() -> None:
    state = AdmissionState(limits(max_websockets_per_client=2, max_websockets_per_origin=3))
    assert state.open_websocket("10.0.0.1", ORIGIN, 0) is None
    assert state.open_websocket("10.0.0.1", ORIGIN, 0) is None
    refused = state.open_websocket("10.0.0.1", ORIGIN, 0)
    assert refused is not None and (refused.status, refused.limit) == (
        429, "max_websockets_per_client")
    assert state.open_websocket("10.0.0.2", ORIGIN, 0) is None
    full = state.open_websocket("10.0.0.3", ORIGIN, 0)
    assert full is not None and (full.status, full.limit, full.retry_after) == (
        503, "max_websockets_per_origin", 5)
    # The refused upgrade holds no client place: once the origin has room, it passes.
    assert state.client_websockets.held("10.0.0.3") == 0
    state.close_websocket("10.0.0.1", ORIGIN)
    assert state.open_websocket("10.0.0.3", ORIGIN, 0) is None
    assert state.open_websocket("10.0.0.3", "http://127.0.0.1:8502", 0) is None


def test_max_connections() -> None:
    state = AdmissionState(limits(max_connections=2))
    assert state.connection_opened(0) is None and state.connection_opened(1) is None
    refused = state.connection_opened(2)
    assert refused is not None and (refused.status, refused.limit) == (503, "max_connections")
    assert limit_in_text("Edge Proxy Error: " + refused.message) == "max_connections"
    assert AdmissionState(limits()).connection_opened(10**6) is None


def test_the_glue_asks_the_driver_how_many_connections_are_open() -> None:
    open_now = [5]
    asked = Admission(limits(max_connections=6), EdgeMetrics(), write_line=print,
                      open_connections=lambda: open_now[0])
    assert asked.connection_opened()
    open_now[0] = 6
    assert not asked.connection_opened()


operations = st.lists(st.tuples(st.sampled_from(["open", "close", "conn", "unconn"]),
                                st.integers(0, 5), st.integers(0, 2)), max_size=300)


@settings(max_examples=300, deadline=None)
@given(per_client=st.integers(0, 3), per_origin=st.integers(0, 4),
       max_connections=st.integers(0, 5), ops=operations)
def test_counters_never_negative_never_above_limits_and_match_what_is_held(
        per_client: int, per_origin: int, max_connections: int,
        ops: list[tuple[str, int, int]]) -> None:
    state = AdmissionState(limits(max_websockets_per_client=per_client,
                                  max_websockets_per_origin=per_origin,
                                  max_connections=max_connections))
    held: list[tuple[str, str]] = []  # the admitted sessions, as a driver would track them
    connections = 0
    for op, client_no, origin_no in ops:
        client, origin = f"10.0.0.{client_no}", f"http://127.0.0.1:{9000 + origin_no}"
        if op == "open" and state.open_websocket(client, origin, 0.0) is None:
            held.append((client, origin))
        elif op == "close" and (client, origin) in held:
            held.remove((client, origin))
            state.close_websocket(client, origin)
        elif op == "conn" and state.connection_opened(connections) is None:
            connections += 1
        elif op == "unconn" and connections:
            connections -= 1
        for c in {c for c, _ in held} | {client}:
            count = state.client_websockets.held(c)
            assert count >= 0
            if per_client:
                assert count == sum(1 for h, _ in held if h == c) <= per_client
        for o in {o for _, o in held} | {origin}:
            count = state.origin_websockets.held(o)
            if per_origin:
                assert count == sum(1 for _, h in held if h == o) <= per_origin
        # Only keys that hold a place are kept.
        assert len(state.client_websockets) <= len(held)
        assert len(state.origin_websockets) <= len(held)
        assert connections <= (max_connections or math.inf)


def test_giving_back_more_than_was_taken_never_goes_below_zero() -> None:
    places = Occupancy(2)
    places.give_back("a")
    assert places.held("a") == 0 and len(places) == 0
    assert places.take("a") and places.take("a") and not places.take("a")
    places.give_back("a")
    places.give_back("a")
    places.give_back("a")
    assert places.held("a") == 0 and len(places) == 0


def test_limit_in_text_reads_only_known_limits() -> None:
    assert limit_in_text("admission control: max_websockets_per_origin (3) reached") == \
        "max_websockets_per_origin"
    assert limit_in_text("admission control: max_everything reached") is None
    assert limit_in_text("Edge Proxy Error: connection refused") is None
    assert len(LIMIT_NAMES) == 4


# -- the edge glue: metrics and flood summaries -----------------------------------------

def refusals_metric(metrics: EdgeMetrics, limit: str) -> float:
    value = metrics.registry.get_sample_value("wsgate_edge_admission_refusals_total",
                                              {"limit": limit})
    return value or 0.0


def test_each_refusal_counts_in_the_metric_of_its_limit() -> None:
    metrics = EdgeMetrics()
    open_now = [0]
    admission = Admission(limits(max_connections=1, max_websockets_per_client=1,
                                 max_requests_per_second_per_client=1, burst=2), metrics,
                          open_connections=lambda: open_now[0], write_line=lambda line: None)
    assert admission.enabled
    assert admission.connection_opened()
    open_now[0] = 1  # the driver holds the one it admitted
    assert not admission.connection_opened()
    assert admission.open_websocket("10.0.0.1", ORIGIN, 0.0) is None
    assert admission.open_websocket("10.0.0.1", ORIGIN, 0.0) is not None
    assert admission.check_request("10.0.0.1", 0.0) is not None  # both tokens are spent
    assert {lim: refusals_metric(metrics, lim) for lim in LIMIT_NAMES} == {
        "max_connections": 1.0, "max_requests_per_second_per_client": 1.0,
        "max_websockets_per_client": 1.0, "max_websockets_per_origin": 0.0}
    assert admission.connection_refusal.limit == "max_connections"


def test_a_flood_of_refusals_is_logged_ten_times_then_summarised() -> None:
    lines: list[str] = []
    admission = Admission(limits(max_requests_per_second_per_client=1), EdgeMetrics(),
                          open_connections=lambda: 0, write_line=lines.append,
                          flood_limit=10, flood_window_s=60.0)
    alone = 0
    for i in range(1000):
        refused = admission.check_request("10.0.0.9", 1.0 + i * 0.001)
        if refused is not None:
            alone += admission.log_alone("10.0.0.9", refused, 1.0 + i * 0.001, False)
    assert alone == 10 and lines == []
    other = admission.check_request("10.0.0.8", 61.5)  # an admitted request sweeps
    assert other is None
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert event["errorClass"] == "admission-max_requests_per_second_per_client"
    assert event["refusedCount"] == 999 - 10 and event["source"] == "edge"
    assert event["httpRequest"]["status"] == 429
    assert event["httpRequest"]["remoteIp"] == "10.0.0.9"


def test_pending_summaries_are_written_by_flush() -> None:
    lines: list[str] = []
    admission = Admission(limits(max_websockets_per_client=1), EdgeMetrics(),
                          open_connections=lambda: 0, write_line=lines.append, flood_limit=2)
    assert admission.open_websocket("10.0.0.5", ORIGIN, 0.0) is None
    for _ in range(5):
        refused = admission.open_websocket("10.0.0.5", ORIGIN, 0.0)
        assert refused is not None
        admission.log_alone("10.0.0.5", refused, 0.0, True)
    admission.flush()
    [event] = [json.loads(line) for line in lines]
    assert (event["refusedCount"], event["isWebSocket"], event["httpRequest"]["status"]) == (
        3, True, 429)


def test_every_admission_key_is_documented() -> None:
    import dataclasses

    repo = Path(__file__).resolve().parents[2]
    for doc in ("docs/admission.md", "docs/edge.md", "README.md"):
        text = (repo / doc).read_text()
        for f in dataclasses.fields(AdmissionLimits):
            assert f"`{f.name}`" in text, (doc, f.name)
