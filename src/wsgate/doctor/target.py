"""The URLs the doctor is given: parsed once, with the names to send (no I/O)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from wsgate.i18n import _


class UsageError(ValueError):
    """Bad input from the user: one line, exit status 2."""


@dataclass(frozen=True)
class Target:
    """A parsed URL: where to connect and what to say in Host/Origin/SNI."""

    scheme: str  # "http" | "https"
    host: str  # without IPv6 brackets
    port: int
    base_path: str  # no trailing slash; "" at the root

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.tls else 80
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.authority}"

    @property
    def url(self) -> str:
        return self.origin + self.base_path + "/"

    def path(self, path: str) -> str:
        return self.base_path + (path if path.startswith("/") else "/" + path)

    def ws_url(self, path: str) -> str:
        return f"{'wss' if self.tls else 'ws'}://{self.authority}{self.path(path)}"


def parse_target(url: str, what: str = "URL") -> Target:
    shape = _("{what} must look like https://host[:port][/path], got {url!r}").format(
        what=what, url=url)
    try:
        parts = urlsplit(url.strip())
        hostname = parts.hostname
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        raise UsageError(shape) from exc
    scheme = {"http": "http", "ws": "http", "https": "https", "wss": "https"}.get(
        parts.scheme.lower())
    if scheme is None or not hostname:
        raise UsageError(shape)
    try:
        port = parts.port
    except ValueError as exc:
        raise UsageError(_invalid_port(what, url)) from exc
    if port == 0:
        raise UsageError(_invalid_port(what, url))
    default = 443 if scheme == "https" else 80
    return Target(scheme, hostname, port or default, parts.path.rstrip("/"))


def _invalid_port(what: str, url: str) -> str:
    return _("{what} has an invalid port: {url!r}").format(what=what, url=url)


def _not_host_port(what: str, text: str) -> str:
    return _("{what} must be HOST:PORT with a port 1-65535, got {text!r}").format(
        what=what, text=text)


def parse_host_port(text: str, what: str) -> tuple[str, int]:
    """`HOST:PORT` or `[IPv6]:PORT`, as curl's --connect-to and `wsgate edge --listen`."""
    try:
        parts = urlsplit("//" + text.strip())
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise UsageError(_not_host_port(what, text)) from exc
    if not host or not port or parts.path or parts.query or parts.username:
        raise UsageError(_not_host_port(what, text))
    return host, port


def resolve_location(url: str, location: str) -> str | None:
    """The absolute URL a redirect's Location leads to; None unless http(s)."""
    resolved = urljoin(url, location.strip()).partition("#")[0]
    try:
        parse_target(resolved)
    except UsageError:
        return None
    return resolved


def request_target(url: str) -> str:
    """The request line's target for `url`: its path and query."""
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def page_target(url: str) -> Target:
    """Where a redirect landed, probed under the page's directory (as a browser
    resolves the app's relative URLs: /app/ and /app/index.html both give /app)."""
    target = parse_target(url)
    path = urlsplit(url).path or "/"
    return Target(target.scheme, target.host, target.port, path[: path.rfind("/")])


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
