"""The pure balance core: affinity cookie, health state machine, the choice of origin."""

from __future__ import annotations

import collections

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsgate.config import Health, Route, parse_route
from wsgate.policy.balance import (
    AFFINITY_INFO,
    Balance,
    HealthState,
    OriginHealth,
    cookie_path,
    cookie_value,
    cookie_values,
    derive_key,
    least_loaded,
    next_in_turn,
    origin_id,
)

URLS = ["http://127.0.0.1:9001", "http://127.0.0.1:9002", "http://127.0.0.1:9003"]
SECRET = "balance-test-secret"
THRESHOLDS = Health(unhealthy_threshold=2, healthy_threshold=3)


def route(urls: list[str] | list[object] = URLS, pattern: str = "*/*") -> Route:
    return parse_route(pattern, list(urls), "routes[0]")


def balance(r: Route, **kwargs: object) -> Balance:
    return Balance([r], key=derive_key(SECRET), cookie_name="wsgate_affinity", secure=True,
                   thresholds=THRESHOLDS, **kwargs)  # type: ignore[arg-type]


def cookie_of(set_cookie: bytes | None) -> bytes:
    assert set_cookie is not None
    return set_cookie.partition(b";")[0]


def down(b: Balance, url: str) -> None:
    state = b.find(url)
    assert state is not None
    for _ in range(THRESHOLDS.unhealthy_threshold):
        b.observe(state.origin, False, 0.0, active=True)
    assert not state.up


# --- the cookie ---

def test_key_is_derived_with_hmac_and_differs_from_the_secret() -> None:
    import hashlib
    import hmac

    key = derive_key(SECRET)
    assert key == hmac.new(SECRET.encode(), AFFINITY_INFO, hashlib.sha256).digest()
    assert SECRET.encode() not in key


def test_every_edge_with_the_same_secret_derives_the_same_key() -> None:
    assert derive_key(SECRET) == derive_key(SECRET) != derive_key(SECRET + "x")


def test_set_cookie_attributes() -> None:
    r = route()
    choice = balance(r).choose(r, None)
    assert choice is not None and choice.set_cookie is not None
    name_value, *attrs = choice.set_cookie.split(b"; ")
    assert name_value.startswith(b"wsgate_affinity=" + origin_id(choice.origin).encode() + b".")
    assert attrs == [b"Path=/", b"HttpOnly", b"SameSite=Lax", b"Secure"]
    plain = Balance([r], key=derive_key(SECRET), cookie_name="c", secure=False,
                    thresholds=THRESHOLDS).choose(r, None)
    assert plain is not None and plain.set_cookie is not None
    assert not plain.set_cookie.endswith(b"Secure")


def test_cookie_path_follows_the_route() -> None:
    assert cookie_path(route(pattern="*/*")) == "/"
    assert cookie_path(route(pattern="app.example.com/one/*")) == "/one/"
    assert cookie_path(route(pattern="*/one*")) == "/"
    assert cookie_path(route(pattern="*/exact")) == "/"


def test_valid_cookie_keeps_its_origin_and_sets_no_new_cookie() -> None:
    r = route()
    b = balance(r)
    first = b.choose(r, None)
    assert first is not None
    header = b"theme=dark; " + cookie_of(first.set_cookie) + b"; other=1"
    for _ in range(10):
        again = b.choose(r, header)
        assert again is not None
        assert (again.origin, again.set_cookie) == (first.origin, None)


def test_another_edge_with_the_same_secret_honours_the_cookie() -> None:
    r = route()
    first = balance(r).choose(r, None)
    assert first is not None
    other_edge = balance(r)
    for _ in range(5):
        choice = other_edge.choose(r, cookie_of(first.set_cookie))
        assert choice is not None and choice.origin == first.origin


def test_another_secret_does_not_honour_the_cookie() -> None:
    r = route()
    b = balance(r)
    foreign = cookie_value(derive_key("another secret"), r, r.origins[2])
    assert b.affine(r, b"wsgate_affinity=" + foreign) is None


def test_cookie_is_bound_to_its_route() -> None:
    one, two = route(pattern="*/one/*"), route(pattern="*/two/*")
    b = Balance([one, two], key=derive_key(SECRET), cookie_name="wsgate_affinity",
                secure=False, thresholds=THRESHOLDS)
    value = cookie_value(derive_key(SECRET), one, one.origins[1])
    assert b.affine(one, b"wsgate_affinity=" + value) == one.origins[1]
    assert b.affine(two, b"wsgate_affinity=" + value) is None


def test_of_two_cookies_with_the_name_the_valid_one_counts() -> None:
    r = route()
    b = balance(r)
    value = cookie_value(derive_key(SECRET), r, r.origins[1])
    header = b"wsgate_affinity=junk; wsgate_affinity=" + value
    assert b.affine(r, header) == r.origins[1]


@given(st.binary(max_size=200))
def test_any_cookie_header_is_a_fresh_choice_or_a_valid_origin(header: bytes) -> None:
    r = route()
    b = balance(r)
    choice = b.choose(r, header)
    assert choice is not None and choice.origin in r.origins
    assert choice.set_cookie is not None  # nothing random can carry a valid tag


@given(st.sampled_from(range(3)), st.binary(min_size=1, max_size=30))
def test_a_forged_tag_is_ignored(index: int, tag: bytes) -> None:
    r = route()
    b = balance(r)
    oid = origin_id(r.origins[index]).encode()
    genuine = cookie_value(derive_key(SECRET), r, r.origins[index])
    forged = oid + b"." + tag.replace(b";", b"")
    if forged != genuine:
        assert b.affine(r, b"wsgate_affinity=" + forged) is None


def test_cookie_values_parser() -> None:
    header = b'a=1; wsgate_affinity="x.y" ;b; wsgate_affinity=z.w'
    assert list(cookie_values(header, b"wsgate_affinity")) == [b"x.y", b"z.w"]
    assert list(cookie_values(b"", b"wsgate_affinity")) == []


# --- health ---

def test_consecutive_failures_take_an_origin_down_and_passes_bring_it_back() -> None:
    h = OriginHealth()
    assert not h.observe(False, 1.0, THRESHOLDS, active=True)
    assert not h.observe(True, 2.0, THRESHOLDS, active=True)  # the run is broken
    assert not h.observe(False, 3.0, THRESHOLDS, active=False)
    assert h.observe(False, 4.0, THRESHOLDS, active=True)
    assert (h.state, h.changed_at, h.ejections) == (HealthState.DOWN, 4.0, 1)
    assert not h.observe(True, 5.0, THRESHOLDS, active=True)
    assert not h.observe(True, 6.0, THRESHOLDS, active=True)
    assert not h.observe(False, 7.0, THRESHOLDS, active=True)  # passes start again
    for t in (8.0, 9.0):
        assert not h.observe(True, t, THRESHOLDS, active=True)
    assert h.observe(True, 10.0, THRESHOLDS, active=True)
    assert (h.state, h.changed_at, h.failures) == (HealthState.UP, 10.0, 0)


def test_a_passive_success_never_brings_an_origin_back() -> None:
    h = OriginHealth(state=HealthState.DOWN)
    for _ in range(10):
        assert not h.observe(True, 1.0, THRESHOLDS, active=False)
    assert h.state is HealthState.DOWN


@given(st.lists(st.booleans(), max_size=60))
def test_health_follows_the_runs_of_signals(signals: list[bool]) -> None:
    """Reference model: the state flips exactly when a run of equal signals reaches
    the threshold of the opposite state."""
    h = OriginHealth()
    up, run_ok, run = True, None, 0
    for ok in signals:
        run = run + 1 if ok == run_ok else 1
        run_ok = ok
        changed = h.observe(ok, 0.0, THRESHOLDS, active=True)
        flip = (up and not ok and run == THRESHOLDS.unhealthy_threshold) or \
            (not up and ok and run == THRESHOLDS.healthy_threshold)
        assert changed == flip
        if flip:
            up, run = not up, 0
        assert (h.state is HealthState.UP) == up


# --- the choice ---

def test_one_origin_routes_are_never_balanced() -> None:
    r = parse_route("*/*", "http://127.0.0.1:9001", "routes[0]")
    b = balance(r)
    for _ in range(3):
        b.observe(r.origin, False, 0.0, active=False)
    choice = b.choose(r, None)
    assert choice is not None and (choice.origin, choice.set_cookie) == (r.origin, None)
    assert b.balanced_origins == []


def test_new_sessions_take_turns_when_loads_are_equal() -> None:
    r = route()
    b = balance(r)
    picks = [c.origin.url for c in (b.choose(r, None) for _ in range(6)) if c]
    assert picks == URLS + URLS


def test_fewest_open_websockets_wins() -> None:
    r = route()
    b = balance(r)
    b.states[r.origins[0]].open_websockets = 2
    b.states[r.origins[1]].open_websockets = 1
    b.states[r.origins[2]].open_websockets = 3
    choice = b.choose(r, None)
    assert choice is not None and choice.origin == r.origins[1]


def test_down_and_draining_origins_take_no_new_sessions() -> None:
    r = route()
    b = balance(r, draining=[URLS[1]])
    down(b, URLS[0])
    picks = {c.origin.url for c in (b.choose(r, None) for _ in range(9)) if c}
    assert picks == {URLS[2]}


def test_a_draining_origin_keeps_its_sessions_but_a_down_one_does_not() -> None:
    r = route()
    b = balance(r)
    mine = cookie_of(b.tables[r].set_cookies[r.origins[0]])
    b.drain(r.origins[0], 0.0, None)
    kept = b.choose(r, mine)
    assert kept is not None and (kept.origin, kept.set_cookie) == (r.origins[0], None)
    down(b, URLS[0])
    moved = b.choose(r, mine)
    assert moved is not None and moved.origin != r.origins[0] and moved.set_cookie


def test_when_every_live_origin_drains_they_still_take_sessions() -> None:
    r = route()
    b = balance(r, draining=URLS)
    assert {c.origin for c in (b.choose(r, None) for _ in range(3)) if c} == set(r.origins)


def test_no_origin_up_is_none() -> None:
    r = route()
    b = balance(r)
    for url in URLS:
        down(b, url)
    assert b.choose(r, None) is None


def test_exclude_skips_the_failed_origin_even_when_the_cookie_names_it() -> None:
    r = route(URLS[:2])
    b = balance(r)
    mine = cookie_of(b.tables[r].set_cookies[r.origins[0]])
    retry = b.choose(r, mine, exclude=r.origins[0])
    assert retry is not None and retry.origin == r.origins[1] and retry.set_cookie
    down(b, URLS[1])
    assert b.choose(r, mine, exclude=r.origins[0]) is None


def test_drain_deadline_is_reported_once() -> None:
    r = route()
    b = balance(r)
    b.drain(r.origins[2], 100.0, 5.0)
    assert b.drains_due(104.9) == []
    assert b.drains_due(105.0) == [r.origins[2]]
    assert b.drains_due(200.0) == []
    b.undrain(r.origins[2])
    assert not b.states[r.origins[2]].draining


def test_weights_share_new_sessions_in_proportion() -> None:
    r = route([{"url": URLS[0], "weight": 3}, URLS[1]])
    b = balance(r)
    counts = collections.Counter(c.origin.url for c in (b.choose(r, None) for _ in range(8))
                                 if c)
    assert counts == {URLS[0]: 6, URLS[1]: 2}


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(1, 10)), min_size=1, max_size=8))
def test_least_loaded_is_the_minimum_ratio(loads: list[tuple[int, int]]) -> None:
    from fractions import Fraction

    ratios = [Fraction(o, w) for o, w in loads]
    best = min(ratios)
    assert least_loaded(loads) == [i for i, r in enumerate(ratios) if r == best]


@given(st.lists(st.integers(1, 5), min_size=1, max_size=5), st.integers(1, 4))
def test_weighted_turns_are_exact_over_a_full_cycle(weights: list[int], cycles: int) -> None:
    current = [0] * len(weights)
    tied = list(range(len(weights)))
    picks = collections.Counter(next_in_turn(current, weights, tied)
                                for _ in range(sum(weights) * cycles))
    assert picks == {i: w * cycles for i, w in enumerate(weights)}
    assert current == [0] * len(weights)


# --- the configuration of several origins ---

def load(toml: str, environ: dict[str, str] | None = None) -> object:
    import tempfile

    from wsgate.config import load_config

    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as fh:
        fh.write(toml)
    return load_config(fh.name, environ={"WSGATE_SECRET": SECRET, **(environ or {})})


ROUTES = '[[routes]]\npattern = "*/*"\norigins = ["http://a:1", {url = "http://b:2", weight = 3}]\n'


def test_config_reads_origins_weights_health_and_draining() -> None:
    from wsgate.config import EdgeConfig

    config = load('draining_origins = ["http://b:2/"]\n' + ROUTES + "[health]\ninterval = 1.5\n",
                  {"WSGATE_EDGE_HEALTH_TIMEOUT": "0.5"})
    assert isinstance(config, EdgeConfig)
    (route,) = config.routes
    assert [o.url for o in route.origins] == ["http://a:1", "http://b:2"]
    assert route.origin == route.origins[0] and route.weights == (1, 3)
    assert (config.health.interval, config.health.timeout) == (1.5, 0.5)
    assert config.health.path == "/_stcore/health"
    one = load('[[routes]]\npattern = "*/*"\norigin = "http://a:1"\n')
    assert isinstance(one, EdgeConfig)
    assert one.routes[0].origins == (one.routes[0].origin,) and one.routes[0].weights == (1,)


@pytest.mark.parametrize(("toml", "message"), [
    ('[[routes]]\npattern = "*/*"\norigin = "http://a:1"\norigins = ["http://b:1"]\n',
     "routes[0]: give either origin"),
    ('[[routes]]\npattern = "*/*"\norigins = []\n', "routes[0].origins: expected a non-empty"),
    ('[[routes]]\npattern = "*/*"\norigins = ["http://a:1", "http://A:1/"]\n',
     "routes[0].origins[1]: http://a:1 is listed twice"),
    ('[[routes]]\npattern = "*/*"\norigins = [{url = "http://a:1", weight = 0}]\n',
     "routes[0].origins[0].weight: expected an integer from 1 to 1000"),
    ('[[routes]]\npattern = "*/*"\norigins = [{url = "http://a:1", wieght = 2}]\n',
     "wieght: unknown key in [routes[0].origins[0]]"),
    ('[[routes]]\npattern = "*/*"\norigins = ["ftp://a:1"]\n',
     "routes[0].origins[0]: 'ftp://a:1' must start with http"),
    ('draining_origins = ["http://c:3"]\n' + ROUTES, "draining_origins[0]: 'http://c:3' is not"),
    (ROUTES + "[health]\ntimeout = 9.0\n", "health.timeout: must be greater than 0 and at most"),
    (ROUTES + '[health]\npath = "_stcore/health"\n', "health.path: '_stcore/health' must be"),
    (ROUTES + "[health]\nhealthy_threshold = 0\n", "health.healthy_threshold: must be at least 1"),
    ('affinity_cookie = "a b"\n' + ROUTES, "affinity_cookie: 'a b' is not a valid header name"),
])
def test_config_errors_name_the_key(toml: str, message: str) -> None:
    from wsgate.config import ConfigError

    with pytest.raises(ConfigError) as caught:
        load(toml)
    assert str(caught.value).startswith(message), str(caught.value)
