"""The pure diagnosis table: findings in, causes out (no I/O)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsgate.doctor.diagnosis import (
    CAUSES,
    diagnose_checks,
    first_break,
    likely_idle_owner,
    suggested_ping_interval,
)
from wsgate.doctor.model import (
    CHECK_ORDER,
    FACTS_TYPE,
    Check,
    CheckId,
    ForwardedFacts,
    HttpFacts,
    IdleFacts,
    RefusalFacts,
    Report,
    SessionFacts,
    Status,
    UpgradeFacts,
)

ISSUE_IDS = {
    "dns-unresolvable", "tcp-unreachable", "tls-invalid", "edge-origin-unreachable",
    "edge-timeout", "upgrade-not-forwarded", "secret-rejected", "origin-check-rejected",
    "accept-invalid", "subprotocol-dropped", "closed-after-open", "app-not-rendering",
    "idle-timeout", "forwarded-proto-missing", "client-ip-spoofable", "origin-bypass",
}


def check(check_id: CheckId, state: Status = "pass", detail: str = "", **facts: Any) -> Check:
    """A check with facts of its own type, built from keyword fields."""
    typed = FACTS_TYPE[check_id](**facts) if facts else None
    return Check(check_id, state, detail or f"{check_id} {state}", 1.0, typed)


def ids(*checks: Check) -> list[str]:
    return [d.id for d in diagnose_checks(checks)]


UPGRADE_OK = check("upgrade", status=101, handshake_problems=(),
                   offered=("streamlit", "x"), selected="streamlit")


def test_table_has_every_id_the_issue_names_once() -> None:
    table_ids = [c.id for c in CAUSES]
    assert len(table_ids) == len(set(table_ids))
    assert set(table_ids) >= ISSUE_IDS
    for cause in CAUSES:
        assert cause.summary and cause.fix
        assert cause.severity in ("error", "warning")


def test_a_healthy_run_has_no_diagnosis() -> None:
    checks = [check(i) for i in ("dns", "tcp", "http", "health")] + [UPGRADE_OK]
    assert diagnose_checks(checks) == ()
    assert Report("u", tuple(checks), ()).ok


@pytest.mark.parametrize(("checks", "expected"), [
    ([check("dns", "fail", host="x.invalid")], ["dns-unresolvable"]),
    ([check("tcp", "fail", target="127.0.0.1:1")], ["tcp-unreachable"]),
    ([check("tls", "fail", "certificate rejected")], ["tls-invalid"]),
    ([check("http", "fail", status=502)], ["edge-origin-unreachable"]),
    ([check("http", "fail", status=523)], ["edge-origin-unreachable"]),
    ([check("http", "fail", status=521)], ["edge-origin-unreachable"]),
    ([check("http", "fail", status=504)], ["edge-timeout"]),
    ([check("http", "fail", status=524)], ["edge-timeout"]),
    ([check("http", "fail", status=403), check("upgrade", "fail", status=403)],
     ["secret-rejected"]),
    ([check("http", status=200), check("upgrade", "fail", status=200)],
     ["upgrade-not-forwarded"]),
    ([check("upgrade", "fail", status=426)], ["upgrade-not-forwarded"]),
    ([check("upgrade", "fail", status=101, handshake_problems=("Accept is missing",))],
     ["accept-invalid"]),
    ([check("upgrade", "fail", status=101, handshake_problems=(), offered=("streamlit",),
            selected=None)], ["subprotocol-dropped"]),
    ([check("upgrade", "fail", status=101, handshake_problems=(), offered=("streamlit",),
            selected="streamlit", closed_early=True, close_code=1011)], ["closed-after-open"]),
    ([UPGRADE_OK, check("upgrade-origin", "fail", status=403, origin="https://app")],
     ["origin-check-rejected"]),
    ([UPGRADE_OK, check("session", "fail", status=101, close_code=1008)],
     ["closed-after-open"]),
    ([UPGRADE_OK, check("session", "fail", status=101, close_code=None)],
     ["app-not-rendering"]),
    ([UPGRADE_OK, check("idle", "fail", dropped_after_s=60.2, close_code=None)],
     ["idle-timeout"]),
    ([check("forwarded", "warn", public_scheme="https", proto=None, spoofed_headers=[])],
     ["forwarded-proto-missing"]),
    ([check("forwarded", "warn", public_scheme="http", proto="https", spoofed_headers=[])],
     ["forwarded-proto-mismatch"]),
    ([check("forwarded", "warn", public_scheme="http", proto="http",
            spoofed_headers=["x-forwarded-for"], spoof_ip="198.51.100.77")],
     ["client-ip-spoofable"]),
    ([check("origin-http-no-secret", "fail", status=200, answered=True)], ["origin-bypass"]),
])
def test_each_cause_fires_on_its_evidence(checks: list[Check], expected: list[str]) -> None:
    assert ids(*checks) == expected


def test_refusal_with_origin_header_only_is_not_a_secret_problem() -> None:
    found = ids(check("http", status=200), UPGRADE_OK,
                check("upgrade-origin", "fail", status=403, origin="https://app"))
    assert found == ["origin-check-rejected"]


def test_secret_rejected_says_when_the_origin_accepts_the_doctors_secret() -> None:
    (diagnosis,) = diagnose_checks([check("http", "fail", status=403),
                                    check("origin-with-secret", "pass")])
    assert "the edge sends another" in diagnosis.evidence


@pytest.mark.parametrize(("scheme", "proto"), [("http", "https"), ("https", "http")])
def test_forwarded_proto_mismatch_names_the_value_clients_use(scheme: str, proto: str) -> None:
    (diagnosis,) = diagnose_checks([check("forwarded", "warn", public_scheme=scheme,
                                          proto=proto)])
    assert diagnosis.id == "forwarded-proto-mismatch"
    assert f"X-Forwarded-Proto is {proto}, clients use {scheme}" in diagnosis.summary
    assert f"`X-Forwarded-Proto: {scheme}`" in diagnosis.fix
    assert f"`wsgate edge --forwarded-proto {scheme}`" in diagnosis.fix
    assert f"--forwarded-proto {proto}`" not in diagnosis.fix


def test_forwarded_proto_missing_is_told_apart_from_a_wrong_value() -> None:
    (diagnosis,) = diagnose_checks([check("forwarded", "warn", public_scheme="https",
                                          proto=None)])
    assert diagnosis.id == "forwarded-proto-missing"
    assert "missing" in diagnosis.summary
    assert "`X-Forwarded-Proto: https`" in diagnosis.fix


def test_idle_timeout_names_the_owner_and_a_ping_below_the_limit() -> None:
    (diagnosis,) = diagnose_checks([UPGRADE_OK, check("idle", "fail", dropped_after_s=100.3,
                                                      close_code=None)])
    assert "100.3 s" in diagnosis.summary
    assert "Cloudflare" in diagnosis.summary
    assert "server.websocketPingInterval = 50" in diagnosis.fix
    assert "close 1006" in diagnosis.summary


@pytest.mark.parametrize(("seconds", "owner"), [
    (60.0, "nginx"), (58.5, "nginx"), (100.0, "Cloudflare"), (300.0, "Cloud Run"),
    (30.1, "Google Cloud load balancer"), (7.0, "a proxy idle timeout"),
])
def test_likely_idle_owner(seconds: float, owner: str) -> None:
    assert owner in likely_idle_owner(seconds)


def test_idle_owner_from_the_edges_server_header() -> None:
    assert "nginx `proxy_read_timeout`" in likely_idle_owner(7.0, "nginx/1.22.1")
    assert "Cloudflare" in likely_idle_owner(7.0, "cloudflare")
    (diagnosis,) = diagnose_checks([
        check("http", status=200, proxies={"server": "nginx"}), UPGRADE_OK,
        check("idle", "fail", dropped_after_s=2.0, close_code=None)])
    assert "nginx" in diagnosis.summary


def test_suggested_ping_interval_stays_below_the_limit() -> None:
    assert suggested_ping_interval(2.0) == 1
    assert suggested_ping_interval(0.4) == 1
    assert suggested_ping_interval(60.0) == 30


def test_an_unexplained_failure_is_still_an_error() -> None:
    diagnoses = diagnose_checks([check("health", "fail", "HTTP 404", status=404)])
    assert [d.id for d in diagnoses] == ["check-failed"]
    assert "HTTP 404" in diagnoses[0].evidence
    assert not Report("u", (), diagnoses).ok


def test_warnings_alone_keep_the_report_ok() -> None:
    checks = (check("forwarded", "warn", public_scheme="https", proto="http",
                    spoofed_headers=[]),)
    report = Report("u", checks, diagnose_checks(checks))
    assert report.ok
    assert first_break(report) is None


def test_first_break_is_the_earliest_cause_on_the_path() -> None:
    checks = (check("http", "fail", status=403), check("origin-http-no-secret", "fail",
                                                          status=200, answered=True))
    report = Report("u", checks, diagnose_checks(checks))
    assert [d.id for d in report.diagnoses] == ["secret-rejected", "origin-bypass"]
    broken = first_break(report)
    assert broken is not None and broken.id == "secret-rejected"


# Facts shaped as the probes produce them, in any combination.
STATUS = st.integers(100, 599)
CLOSE_CODE = st.one_of(st.none(), st.integers(1000, 4999))
SUBPROTOCOLS = st.lists(st.sampled_from(["streamlit", "chat"]), max_size=2).map(tuple)
SPOOFED = st.lists(st.sampled_from(["x-forwarded-for", "x-real-ip"]), max_size=2).map(tuple)
FACTS: dict[type, st.SearchStrategy[Any]] = {
    HttpFacts: st.builds(HttpFacts, status=STATUS),
    UpgradeFacts: st.builds(
        UpgradeFacts, status=STATUS, close_code=CLOSE_CODE, closed_early=st.booleans(),
        handshake_problems=st.lists(st.text(max_size=5), max_size=2).map(tuple),
        offered=SUBPROTOCOLS, selected=st.one_of(st.none(), st.sampled_from(["streamlit",
                                                                             "chat"]))),
    SessionFacts: st.builds(SessionFacts, status=st.one_of(st.none(), STATUS),
                            close_code=CLOSE_CODE),
    IdleFacts: st.builds(IdleFacts, dropped_after_s=st.one_of(st.none(), st.floats(0, 1000)),
                         close_code=CLOSE_CODE),
    ForwardedFacts: st.builds(
        ForwardedFacts, public_scheme=st.sampled_from(["http", "https"]),
        proto=st.one_of(st.none(), st.sampled_from(["http", "https"])), spoofed_headers=SPOOFED),
    RefusalFacts: st.builds(RefusalFacts, status=STATUS, answered=st.booleans()),
}


@st.composite
def any_check(draw: st.DrawFn) -> Check:
    check_id = draw(st.sampled_from(CHECK_ORDER))
    status: Status = draw(st.sampled_from(["pass", "fail", "warn", "skip"]))
    kind = FACTS_TYPE[check_id]
    facts = draw(st.one_of(st.none(), FACTS.get(kind, st.builds(kind))))
    return Check(check_id, status, "d", 0.0, facts)


@given(st.lists(any_check(), max_size=8))
def test_any_findings_give_a_consistent_answer(checks: list[Check]) -> None:
    diagnoses = diagnose_checks(checks)
    if any(c.status == "fail" for c in checks):
        assert any(d.severity == "error" for d in diagnoses)
    assert len({d.id for d in diagnoses}) == len(diagnoses)


# -- admission control (docs/admission.md) ----------------------------------------------

EDGE = {"x-worker-proxy": "Active"}  # the edge's marker header, as the probes record it


@pytest.mark.parametrize(("checks", "limit"), [
    # The answer's text names the limit (kept in the check's detail).
    ([check("http", "fail", "HTTP 503 Service Unavailable · admission control: "
            "max_connections (4000) reached", status=503)], "max_connections"),
    ([check("http", status=200), check("upgrade", "fail", "HTTP 429 Too Many Requests · "
            "admission control: max_websockets_per_client (3) reached", status=429)],
     "max_websockets_per_client"),
    # Only the status and the edge's marker: what that status can mean.
    ([check("http", "fail", status=429, proxies=EDGE)], "max_requests_per_second_per_client"),
    ([check("http", status=200, proxies=EDGE), check("upgrade", "fail", status=429,
                                                     proxies=EDGE)],
     "max_websockets_per_client or max_requests_per_second_per_client"),
    ([check("http", status=200, proxies=EDGE), check("upgrade", "fail", status=503,
                                                     proxies=EDGE)],
     "max_websockets_per_origin"),
])
def test_a_check_refused_by_admission_control_names_the_limit(checks: list[Check],
                                                              limit: str) -> None:
    [diagnosis] = diagnose_checks(checks)
    assert diagnosis.id == "admission-refused"
    assert limit in diagnosis.summary and limit in diagnosis.fix
    assert "docs/admission.md" in diagnosis.fix


@pytest.mark.parametrize("checks", [
    # A 503 to everything: the origin is down (or the edge full; without the text the
    # doctor cannot tell, and an unreachable origin is the common cause).
    [check("http", "fail", status=503, proxies=EDGE),
     check("upgrade", "fail", status=503, proxies=EDGE)],
    # A 503 to the upgrade without the edge's marker: not wsgate's admission control.
    [check("http", status=200), check("upgrade", "fail", status=503)],
])
def test_other_503s_are_not_admission(checks: list[Check]) -> None:
    assert "admission-refused" not in ids(*checks)
