"""A raw HTTP/1.1 client (h11 over asyncio streams) that shows every header.

Ordinary clients hide what the doctor must judge (a 101's headers, the proxy
that answered, a redirect), and follow environment proxies; this one sends
exactly one request to exactly the address it is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

import h11

from wsgate import __version__
from wsgate.doctor.target import Target
from wsgate.i18n import N_, _

USER_AGENT = f"wsgate-doctor/{__version__}"
# The network errors users meet, worded as glibc's strerror/gai_strerror (so English
# output is the system's) and translated; any other error shows as the system says it.
OS_ERRORS: dict[int, str] = {
    errno.EHOSTUNREACH: N_("No route to host"),
    errno.ENETUNREACH: N_("Network is unreachable"),
    errno.EADDRNOTAVAIL: N_("Cannot assign requested address"),
    errno.EPIPE: N_("Broken pipe"),
}
DNS_ERRORS: dict[int, str] = {
    socket.EAI_NONAME: N_("Name or service not known"),
    socket.EAI_AGAIN: N_("Temporary failure in name resolution"),
    socket.EAI_FAIL: N_("Non-recoverable failure in name resolution"),
}
MAX_BODY = 256 * 1024
# Response headers that name the proxies on the path.
PROXY_HEADERS = ("server", "via", "cf-ray", "x-worker-proxy", "x-request-id")


@dataclass(frozen=True)
class Route:
    """Where requests for `target` go: the address and port to dial, and TLS."""

    target: Target
    address: str
    port: int
    ssl_context: ssl.SSLContext | None  # used only when the target is https


@dataclass(frozen=True)
class Answer:
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]  # lowercase names
    body: bytes = b""

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k == name.lower()]
        return ", ".join(values) if values else None


@dataclass
class Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    buffered: bytes = b""  # bytes read past the HTTP head (after a 101)

    async def close(self) -> None:
        self.writer.close()
        # Closing is best effort: the peer may already be gone.
        with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
            await asyncio.wait_for(self.writer.wait_closed(), 1.0)


def make_ssl_context(ca_file: str | None, insecure: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    return context


async def open_connection(route: Route) -> Connection:
    tls = route.target.tls
    reader, writer = await asyncio.open_connection(
        route.address, route.port, ssl=route.ssl_context if tls else None,
        server_hostname=route.target.host if tls else None)
    return Connection(reader, writer)


def _request_bytes(h: h11.Connection, target: Target, method: str, path: str,
                   headers: Mapping[str, str] | None) -> bytes:
    all_headers = [("Host", target.authority), ("User-Agent", USER_AGENT), ("Accept", "*/*")]
    all_headers += list((headers or {}).items())
    if not any(k.lower() == "connection" for k, _ in all_headers):
        all_headers.append(("Connection", "close"))
    return (h.send(h11.Request(method=method, target=path, headers=all_headers))
            + h.send(h11.EndOfMessage()))


async def exchange(conn: Connection, target: Target, method: str, path: str,
                   headers: Mapping[str, str] | None = None) -> Answer:
    """Send one request; read the answer (a 101 leaves the stream open)."""
    h = h11.Connection(h11.CLIENT)
    conn.writer.write(_request_bytes(h, target, method, path, headers))
    await conn.writer.drain()
    head: h11.Response | h11.InformationalResponse | None = None
    body = bytearray()
    while True:
        event = h.next_event()
        if event is h11.NEED_DATA:
            data = await conn.reader.read(65536)
            h.receive_data(data)
            if not data and head is not None:
                break  # EOF ends a body without length
            continue
        if isinstance(event, h11.InformationalResponse) and event.status_code != 101:
            continue  # 100 Continue and friends
        if isinstance(event, h11.InformationalResponse | h11.Response):
            head = event
            if event.status_code == 101:
                conn.buffered = h.trailing_data[0]
                break
        elif isinstance(event, h11.Data):
            body += event.data[: MAX_BODY - len(body)]
            if len(body) >= MAX_BODY:
                break  # enough to judge; never read an endless body
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed) or event is h11.PAUSED:
            break
    if head is None:
        raise EOFError(_("closed before an HTTP answer"))
    return Answer(head.status_code, head.reason.decode("latin-1", "replace"),
                  tuple((k.decode("latin-1").lower(), v.decode("latin-1"))
                        for k, v in head.headers), bytes(body))


async def request(route: Route, path: str, headers: Mapping[str, str] | None = None) -> Answer:
    """GET `path` on a connection of its own."""
    conn = await open_connection(route)
    try:
        return await exchange(conn, route.target, "GET", path, headers)
    finally:
        await conn.close()


def proxies_seen(answer: Answer) -> dict[str, str]:
    return {name: value for name in PROXY_HEADERS if (value := answer.header(name)) is not None}


def status_line(answer: Answer) -> str:
    """`HTTP 301 Moved → https://… · server: nginx`: what a check shows of an answer."""
    line = f"HTTP {answer.status} {answer.reason}".rstrip()
    location = answer.header("location")
    if location and 300 <= answer.status < 400:
        line += f" → {location}"
    seen = proxies_seen(answer)
    if seen:
        line += " · " + ", ".join(f"{k}: {v}" for k, v in seen.items() if k != "x-request-id")
    return line


def describe_error(exc: BaseException) -> str:
    """One line for what went wrong on the network (no traceback, no repr soup)."""
    if isinstance(exc, TimeoutError):
        return _("timed out")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _("certificate rejected: {reason}").format(
            reason=exc.verify_message or exc.reason)
    if isinstance(exc, ssl.SSLError):
        return _("TLS error: {reason}").format(reason=exc.reason or exc)
    if isinstance(exc, ConnectionRefusedError):
        return _("connection refused")
    if isinstance(exc, socket.gaierror):
        known = DNS_ERRORS.get(exc.errno or 0)
        return _("name resolution failed: {reason}").format(
            reason=_(known) if known else exc.strerror or exc)
    if isinstance(exc, EOFError | h11.RemoteProtocolError | ConnectionResetError):
        return _("connection closed without a valid HTTP answer ({error})").format(
            error=type(exc).__name__)
    if isinstance(exc, OSError):
        known = OS_ERRORS.get(exc.errno or 0)
        return _(known) if known else exc.strerror or str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"
