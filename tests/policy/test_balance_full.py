"""Admission's per-origin session limit steers new sessions through the balancer's choice:
an origin at its limit (`full`) takes no new session while another has room, and an
affine session stays where its state lives."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tests.policy.test_balance import URLS, balance, cookie_of, route


def test_a_full_origin_takes_no_new_session_while_another_has_room() -> None:
    r = route()
    b = balance(r)
    full = frozenset(r.origins[:2])
    for _ in range(6):
        choice = b.choose(r, None, full=full)
        assert choice is not None and choice.origin == r.origins[2]


def test_when_every_origin_is_full_the_choice_still_goes_on() -> None:
    """Admission then refuses it (503): the balancer never invents 'no healthy origin'."""
    r = route()
    b = balance(r)
    choice = b.choose(r, None, full=frozenset(r.origins))
    assert choice is not None and choice.origin in r.origins


def test_an_affine_session_stays_on_its_full_origin() -> None:
    r = route()
    b = balance(r)
    first = b.choose(r, None)
    assert first is not None
    again = b.choose(r, cookie_of(first.set_cookie), full=frozenset([first.origin]))
    assert again is not None and again.origin == first.origin


@given(full=st.sets(st.sampled_from(range(len(URLS))), max_size=len(URLS) - 1))
def test_new_sessions_avoid_every_full_origin(full: set[int]) -> None:
    r = route()
    b = balance(r)
    full_origins = frozenset(r.origins[i] for i in full)
    for _ in range(4):
        choice = b.choose(r, None, full=full_origins)
        assert choice is not None and choice.origin not in full_origins
