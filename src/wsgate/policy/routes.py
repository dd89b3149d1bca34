"""Route matching: first route whose `host/path*` pattern matches wins."""

from __future__ import annotations

from collections.abc import Sequence

from wsgate.config import Route


def host_without_port(host: str) -> str:
    """'Example.COM:8080' → 'example.com'; '[::1]:80' → '[::1]'."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end != -1 else host
    name, sep, port = host.rpartition(":")
    return name if sep and port.isdigit() else host


def route_matches(route: Route, host: str, path: str) -> bool:
    if route.host:
        if route.host.startswith("*."):
            if not host.endswith(route.host[1:]) or host == route.host[2:]:
                return False
        elif host != route.host:
            return False
    return path.startswith(route.path) if route.prefix else path == route.path


def match_route(routes: Sequence[Route], host: str, path: str) -> Route | None:
    """`host` as sent by the client (port is ignored), `path` without the query."""
    bare = host_without_port(host)
    for route in routes:
        if route_matches(route, bare, path):
            return route
    return None
