from __future__ import annotations

import pytest

from wsgate.config import parse_route
from wsgate.policy.routes import host_without_port, match_route

ROUTES = (
    parse_route("app.example.com/api/*", "http://127.0.0.1:1", "r"),
    parse_route("app.example.com/*", "http://127.0.0.1:2", "r"),
    parse_route("*.example.org/exact", "http://127.0.0.1:3", "r"),
)


@pytest.mark.parametrize(("host", "path", "port"), [
    ("app.example.com", "/api/x", 1),
    ("APP.example.com:443", "/api/", 1),
    ("app.example.com", "/apix", 2),
    ("app.example.com", "/", 2),
    ("a.example.org", "/exact", 3),
    ("a.example.org", "/exact/more", None),
    ("example.org", "/exact", None),
    ("other.com", "/", None),
    ("", "/", None),
])
def test_first_match_wins(host: str, path: str, port: int | None) -> None:
    route = match_route(ROUTES, host, path)
    assert (route.origin.port if route else None) == port


def test_catch_all() -> None:
    route = parse_route("*/*", "http://a", "r")
    assert match_route([route], "", "/anything") is route


@pytest.mark.parametrize(("raw", "bare"), [
    ("Example.COM:8080", "example.com"), ("[::1]:80", "[::1]"), ("host", "host"),
])
def test_host_without_port(raw: str, bare: str) -> None:
    assert host_without_port(raw) == bare
