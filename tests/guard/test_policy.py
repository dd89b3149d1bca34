"""The guard's pure decisions, property-tested."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsgate.guard import policy
from wsgate.guard.secrets import (
    SecretError,
    describe_missing,
    load_secrets,
    split_env_value,
    split_file_text,
)

NAME = b"x-cf-secret"
token = st.text(alphabet=string.ascii_letters + string.digits + "-_.~", min_size=1,
                max_size=40).map(str.encode)
other_header = st.tuples(
    st.sampled_from([b"host", b"x-forwarded-for", b"cookie", b"x-cf-secret-2", b"x-cf"]),
    st.binary(max_size=20))


@given(st.lists(token, min_size=1, max_size=4, unique=True), st.data())
def test_exactly_one_matching_header_passes(secrets: list[bytes], data: st.DataObject) -> None:
    chosen = data.draw(st.sampled_from(secrets))
    others = data.draw(st.lists(other_header, max_size=5))
    position = data.draw(st.integers(0, len(others)))
    headers = [*others[:position], (NAME, chosen), *others[position:]]
    assert policy.check_secret(headers, NAME, secrets) == policy.PASS


@given(st.lists(token, min_size=1, max_size=4, unique=True), token,
       st.lists(other_header, max_size=5))
def test_wrong_value_is_mismatch(secrets: list[bytes], value: bytes,
                                 others: list[tuple[bytes, bytes]]) -> None:
    decision = policy.check_secret([*others, (NAME, value)], NAME, secrets)
    assert decision.passed == (value in secrets)
    if value not in secrets:
        assert decision.reason == "mismatch"


@given(st.lists(token, min_size=1, max_size=3), st.lists(other_header, max_size=5))
def test_missing(secrets: list[bytes], others: list[tuple[bytes, bytes]]) -> None:
    assert policy.check_secret(others, NAME, secrets) == policy.Decision(False, "missing")


@given(st.lists(token, min_size=1, max_size=3, unique=True), st.data())
def test_repeated_fails_even_if_every_copy_matches(secrets: list[bytes],
                                                   data: st.DataObject) -> None:
    copies = data.draw(st.lists(st.sampled_from(secrets), min_size=2, max_size=4))
    headers = [(NAME, value) for value in copies]
    assert policy.check_secret(headers, NAME, secrets) == policy.Decision(False, "repeated")


def test_no_secrets_configured_never_passes() -> None:
    assert not policy.check_secret([(NAME, b"")], NAME, []).passed
    assert not policy.check_secret([(NAME, b"anything")], NAME, []).passed


def test_prefix_of_the_secret_is_a_mismatch() -> None:
    assert policy.check_secret([(NAME, b"abc")], NAME, [b"abcd"]).reason == "mismatch"
    assert policy.check_secret([(NAME, b"abcde")], NAME, [b"abcd"]).reason == "mismatch"


@given(st.lists(other_header, max_size=6), st.lists(token, max_size=3))
def test_without_header_removes_only_that_name(others: list[tuple[bytes, bytes]],
                                               values: list[bytes]) -> None:
    headers = others + [(NAME, v) for v in values]
    stripped = policy.without_header(headers, NAME)
    assert stripped == others


def test_open_paths_follow_base_url_path() -> None:
    assert policy.prefixed_paths(["/_stcore/health"], "") == {"/_stcore/health"}
    for base in ("app", "/app", "/app/", "app/"):
        assert policy.prefixed_paths(["/_stcore/health"], base) == {"/app/_stcore/health"}
    assert policy.prefixed_paths(["/_stcore/health"], "a/b") == {"/a/b/_stcore/health"}


@given(st.ip_addresses().map(str))
def test_forwarded_client_takes_a_valid_address(address: str) -> None:
    assert policy.forwarded_client([(b"x-forwarded-for", address.encode())]) == address
    assert policy.forwarded_client([(b"x-real-ip", address.encode())]) == address


def test_forwarded_client_rules() -> None:
    xff = (b"x-forwarded-for", b"203.0.113.7, 10.0.0.1")
    assert policy.forwarded_client([xff]) == "203.0.113.7"
    assert policy.forwarded_client([xff, (b"x-real-ip", b"198.51.100.1")]) == "198.51.100.1"
    # An unusable X-Real-IP falls back to X-Forwarded-For.
    assert policy.forwarded_client([xff, (b"x-real-ip", b"nonsense")]) == "203.0.113.7"
    assert policy.forwarded_client([(b"x-forwarded-for", b"[2001:db8::1]:443")]) == "2001:db8::1"
    assert policy.forwarded_client([(b"x-forwarded-for", b"203.0.113.7:5000")]) == "203.0.113.7"
    assert policy.forwarded_client([(b"x-forwarded-for", b"unknown")]) is None
    assert policy.forwarded_client([(b"x-forwarded-for", b"")]) is None
    assert policy.forwarded_client([]) is None


@given(st.binary(max_size=30), st.sampled_from(["http", "websocket"]))
def test_forwarded_scheme_is_always_a_known_scheme(value: bytes, kind: str) -> None:
    current = "http" if kind == "http" else "ws"
    scheme = policy.forwarded_scheme([(b"x-forwarded-proto", value)], kind, current)
    allowed = {"http", "https"} if kind == "http" else {"ws", "wss"}
    assert scheme in allowed


def test_forwarded_scheme_maps_http_to_ws() -> None:
    https = [(b"x-forwarded-proto", b"https")]
    assert policy.forwarded_scheme(https, "websocket", "ws") == "wss"
    assert policy.forwarded_scheme(https, "http", "http") == "https"
    assert policy.forwarded_scheme([(b"x-forwarded-proto", b"wss")], "http", "http") == "https"
    assert policy.forwarded_scheme([(b"x-forwarded-proto", b"gopher")], "http", "http") == "http"
    assert policy.forwarded_scheme([], "websocket", "ws") == "ws"


@given(st.binary(max_size=200))
def test_request_id_is_short_and_printable(value: bytes) -> None:
    rid = policy.request_id([(b"x-request-id", value)])
    assert rid is None or (len(rid) <= 128 and rid.isprintable() and " " not in rid)


def test_refusal_text_names_the_public_url() -> None:
    assert "https://app.example.com" in policy.refusal_text("https://app.example.com")
    assert policy.refusal_text(None).startswith("Direct access refused")


@given(st.integers(1, 5), st.integers(0, 40))
def test_limiter_logs_first_n_then_summarises(limit: int, refusals: int) -> None:
    limiter = policy.RefusalLimiter(limit=limit, window_s=60.0)
    logged = 0
    for i in range(refusals):
        log_it, due = limiter.note("192.0.2.1", float(i) * 0.01, "missing", "/", False)
        logged += log_it
        assert due == []
    assert logged == min(limit, refusals)
    summaries = limiter.due(now=1000.0)
    suppressed = max(0, refusals - limit)
    assert [s.count for s in summaries] == ([suppressed] if suppressed else [])
    assert limiter.due(now=2000.0) == []


def test_limiter_windows_are_per_address_and_bounded() -> None:
    limiter = policy.RefusalLimiter(limit=1, window_s=10.0, max_addresses=2)
    assert limiter.note("a", 0.0, "missing", "/", False)[0]
    assert limiter.note("b", 0.0, "missing", "/", False)[0]
    assert not limiter.note("a", 1.0, "missing", "/x", True)[0]
    # A third address evicts the oldest window, reporting what it had suppressed.
    log_it, due = limiter.note("c", 2.0, "missing", "/", False)
    assert log_it
    assert [(s.address, s.count, s.reason, s.path, s.is_websocket) for s in due] == [
        ("a", 1, "missing", "/x", True)]
    # After its window, an address is logged again.
    assert limiter.note("b", 11.0, "missing", "/", False)[0]
    assert limiter.flush() == []


def test_the_first_refusal_of_each_reason_is_logged_and_each_reason_summarised() -> None:
    """Past the limit, a flood of one reason must not hide that another began."""
    limiter = policy.RefusalLimiter(limit=2, window_s=60.0)
    seen = [limiter.note("a", i * 0.1, reason, "/", False)[0]
            for i, reason in enumerate(["missing"] * 5 + ["mismatch"] * 3 + ["missing"])]
    assert seen == [True, True, False, False, False, True, False, False, False]
    summaries = sorted((s.reason, s.count) for s in limiter.due(now=100.0))
    assert summaries == [("mismatch", 2), ("missing", 4)]


def test_secret_sources() -> None:
    assert split_env_value(" new , old,, ") == ["new", "old"]
    assert split_file_text("# rotated 2026\nnew\n\n  old  \n") == ["new", "old"]
    secrets, sources = load_secrets(["A", "B", "C"], {"A": "x1,x2", "B": "x2"}, None)
    assert (secrets, sources) == (["x1", "x2"], ["$A", "$B"])


def test_secret_file(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("# current first\nfile-new\nfile-old\n")
    assert load_secrets([], {}, str(path)) == (["file-new", "file-old"], [str(path)])
    path.write_text("# only a comment\n")
    with pytest.raises(SecretError, match="holds no secret"):
        load_secrets([], {}, str(path))
    with pytest.raises(SecretError, match="cannot read"):
        load_secrets([], {}, str(tmp_path / "absent"))


def test_secret_errors_never_echo_the_value() -> None:
    with pytest.raises(SecretError) as caught:
        load_secrets(["A"], {"A": "bad value\u00e9"}, None)
    assert "bad value" not in str(caught.value) and "$A" in str(caught.value)


def test_refusal_text_tells_a_different_secret_from_none() -> None:
    missing = policy.refusal_text("https://app.example.com", "missing")
    assert missing.startswith("Direct access refused") and "https://app.example.com" in missing
    mismatch = policy.refusal_text("https://app.example.com", "mismatch")
    assert "different secrets" in mismatch and "Direct access refused" not in mismatch
    assert "more than once" in policy.refusal_text(None, "repeated")
    assert policy.refusal_text(None, "missing").startswith("Direct access refused")


def test_describe_missing_tells_empty_from_unset() -> None:
    assert describe_missing(["WSGATE_SECRET"], {"WSGATE_SECRET": ""}) == \
        "$WSGATE_SECRET is empty"
    assert describe_missing(["WSGATE_SECRET"], {"WSGATE_SECRET": " , "}) == \
        "$WSGATE_SECRET is empty"
    assert describe_missing(["A", "B"], {"B": ""}) == "$A is not set, $B is empty"
