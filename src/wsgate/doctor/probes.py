"""The doctor's probes: every hop of a deployment, tested from outside.

I/O lives here; what the results mean lives in diagnosis.py. Each probe is
bounded by `DoctorOptions.timeout`, returns a `Check` (never raises), and a
branch stops as soon as a step makes the next meaningless (the rest are
recorded as `skip` with the reason).

Library use (the demo calls this):

    report = await diagnose("http://127.0.0.1:8080/", DoctorOptions(origin=...))
    report.ok, report.checks, report.diagnoses
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import ipaddress
import json
import os
import secrets as secrets_module
import socket
import ssl
import struct
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import h11

from wsgate import __version__
from wsgate.doctor.diagnosis import Check, Report, Status, diagnose_checks

USER_AGENT = f"wsgate-doctor/{__version__}"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
STREAMLIT_SUBPROTOCOLS = ("streamlit", "PLACEHOLDER_AUTH_TOKEN")
# RFC 5737 documentation address: sent as a forged client IP, must never survive the edge.
SPOOF_IP = "198.51.100.77"
MAX_BODY = 256 * 1024
EARLY_CLOSE_WINDOW_S = 0.3
ECHO_PATH = "/_wsgate/echo"


class UsageError(ValueError):
    """Bad input from the user: one line, exit status 2."""


@dataclass(frozen=True)
class DoctorOptions:
    origin: str | None = None
    secret_env: str = "WSGATE_SECRET"  # noqa: S105 - a variable name, not a secret
    secret_header: str = "X-CF-Secret"  # noqa: S105 - a header name
    path: str = "/_stcore/stream"
    generic: bool = False
    subprotocols: tuple[str, ...] = ()  # offered in --generic mode
    idle_seconds: float = 0.0
    timeout: float = 5.0
    insecure: bool = False
    ca_file: str | None = None
    # The secret itself; None → read `secret_env` from the environment.
    secret: str | None = field(default=None, repr=False)


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

    def path(self, path: str) -> str:
        return self.base_path + (path if path.startswith("/") else "/" + path)

    def ws_url(self, path: str) -> str:
        return f"{'wss' if self.tls else 'ws'}://{self.authority}{self.path(path)}"


def parse_target(url: str, what: str = "URL") -> Target:
    parts = urlsplit(url.strip())
    scheme = {"http": "http", "ws": "http", "https": "https", "wss": "https"}.get(
        parts.scheme.lower())
    if scheme is None or not parts.hostname:
        raise UsageError(f"{what} must look like https://host[:port][/path], got {url!r}")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError as exc:
        raise UsageError(f"{what} has an invalid port: {url!r}") from exc
    return Target(scheme, parts.hostname, port, parts.path.rstrip("/"))


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------- raw HTTP/1.1 client

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


def make_ssl_context(options: DoctorOptions) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=options.ca_file)
    if options.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    return context


async def open_connection(target: Target, address: str,
                          ssl_context: ssl.SSLContext | None) -> Connection:
    reader, writer = await asyncio.open_connection(
        address, target.port, ssl=ssl_context if target.tls else None,
        server_hostname=target.host if target.tls else None)
    return Connection(reader, writer)


async def exchange(conn: Connection, target: Target, method: str, path: str,
                   headers: Mapping[str, str] | None = None) -> Answer:
    """Send one request; read the answer (a 101 leaves the stream open)."""
    h = h11.Connection(h11.CLIENT)
    all_headers = [("Host", target.authority), ("User-Agent", USER_AGENT), ("Accept", "*/*")]
    all_headers += list((headers or {}).items())
    if not any(k.lower() == "connection" for k, _ in all_headers):
        all_headers.append(("Connection", "close"))
    conn.writer.write(h.send(h11.Request(method=method, target=path, headers=all_headers)))
    conn.writer.write(h.send(h11.EndOfMessage()))
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
        raise EOFError("closed before an HTTP answer")
    return Answer(head.status_code, head.reason.decode("latin-1", "replace"),
                  tuple((k.decode("latin-1").lower(), v.decode("latin-1"))
                        for k, v in head.headers), bytes(body))


async def request(target: Target, address: str, ssl_context: ssl.SSLContext | None,
                  path: str, headers: Mapping[str, str] | None = None) -> Answer:
    conn = await open_connection(target, address, ssl_context)
    try:
        return await exchange(conn, target, "GET", path, headers)
    finally:
        await conn.close()


# --------------------------------------------------------------------- WebSocket, by hand

def accept_for(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()  # noqa: S324


def handshake_problems(answer: Answer, key: str) -> list[str]:
    """What a browser would reject in a 101 (RFC 6455 §4.1), empty when fine."""
    problems = []
    if (answer.header("upgrade") or "").strip().lower() != "websocket":
        problems.append(f"Upgrade is {answer.header('upgrade')!r}, not 'websocket'")
    tokens = {t.strip().lower() for t in (answer.header("connection") or "").split(",")}
    if "upgrade" not in tokens:
        problems.append(f"Connection is {answer.header('connection')!r}, without 'Upgrade'")
    accept = answer.header("sec-websocket-accept")
    if accept is None:
        problems.append("Sec-WebSocket-Accept is missing")
    elif accept.strip() != accept_for(key):
        problems.append("Sec-WebSocket-Accept does not match the key")
    return problems


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """A client frame (clients must mask), payload < 126 bytes."""
    mask = secrets_module.token_bytes(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked


async def read_exact(conn: Connection, n: int) -> bytes:
    while len(conn.buffered) < n:
        data = await conn.reader.read(65536)
        if not data:
            raise EOFError
        conn.buffered += data
    chunk, conn.buffered = conn.buffered[:n], conn.buffered[n:]
    return chunk


async def read_frame(conn: Connection) -> tuple[int, bytes]:
    first, second = await read_exact(conn, 2)
    length = second & 0x7F
    if length == 126:
        length = struct.unpack("!H", await read_exact(conn, 2))[0]
    elif length == 127:
        length = struct.unpack("!Q", await read_exact(conn, 8))[0]
    mask = await read_exact(conn, 4) if second & 0x80 else b""
    payload = await read_exact(conn, length)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return first & 0x0F, payload


async def wait_for_close(conn: Connection, seconds: float) -> tuple[bool, int | None, float]:
    """Read frames like a passive browser for `seconds`, answering pings.

    Returns (closed, close code or None for a drop without close frame, elapsed).
    """
    start = time.monotonic()
    deadline = start + seconds
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False, None, time.monotonic() - start
        try:
            opcode, payload = await asyncio.wait_for(read_frame(conn), remaining)
        except TimeoutError:
            return False, None, time.monotonic() - start
        except (EOFError, OSError, ssl.SSLError):
            return True, None, time.monotonic() - start
        if opcode == 0x8:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            return True, code, time.monotonic() - start
        if opcode == 0x9:
            conn.writer.write(masked_frame(0xA, payload[:125]))
            await conn.writer.drain()


async def close_websocket(conn: Connection) -> None:
    try:
        conn.writer.write(masked_frame(0x8, struct.pack("!H", 1000)))
        await conn.writer.drain()
    except (OSError, ssl.SSLError):
        pass  # the peer is gone: nothing to close politely
    await conn.close()


@dataclass(frozen=True)
class UpgradeResult:
    answer: Answer
    problems: tuple[str, ...]
    offered: tuple[str, ...]
    selected: str | None


async def upgrade(target: Target, address: str, ssl_context: ssl.SSLContext | None,
                  path: str, offered: Sequence[str], extra: Mapping[str, str] | None = None,
                  ) -> tuple[Connection, UpgradeResult]:
    """Open a WebSocket by hand so that every header of the answer can be judged."""
    key = base64.b64encode(secrets_module.token_bytes(16)).decode()
    headers = {"Connection": "Upgrade", "Upgrade": "websocket",
               "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": key}
    if offered:
        headers["Sec-WebSocket-Protocol"] = ", ".join(offered)
    headers.update(extra or {})
    conn = await open_connection(target, address, ssl_context)
    try:
        answer = await exchange(conn, target, "GET", path, headers)
    except BaseException:
        await conn.close()
        raise
    problems = tuple(handshake_problems(answer, key)) if answer.status == 101 else ()
    selected = answer.header("sec-websocket-protocol")
    return conn, UpgradeResult(answer, problems, tuple(offered),
                               selected.strip() if selected else None)


# --------------------------------------------------------------------- the probe runner

def describe_error(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate rejected: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return f"name resolution failed: {exc.strerror or exc}"
    if isinstance(exc, EOFError | h11.RemoteProtocolError | ConnectionResetError):
        return f"connection closed without a valid HTTP answer ({type(exc).__name__})"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


def proxies_seen(answer: Answer) -> dict[str, str]:
    names = ("server", "via", "cf-ray", "x-worker-proxy", "x-request-id")
    return {name: value for name in names if (value := answer.header(name)) is not None}


def secret_value(options: DoctorOptions) -> str | None:
    if options.secret is not None:
        return options.secret or None
    return os.environ.get(options.secret_env) or None


class Recorder:
    """Collects checks in order; a failed step can skip the rest of its branch."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.checks: list[Check] = []

    async def run(self, check_id: str,
                  probe: Callable[[], Awaitable[tuple[Status, str, dict[str, Any]]]],
                  limit: float | None = None) -> Check:
        start = time.monotonic()
        try:
            async with asyncio.timeout(limit or self.timeout):
                status, detail, facts = await probe()
        except Exception as exc:  # a probe reports; it never takes the doctor down
            status, detail, facts = "fail", describe_error(exc), {"error": describe_error(exc)}
        check = Check(check_id, status, detail, round((time.monotonic() - start) * 1000, 1),
                      facts)
        self.checks.append(check)
        return check

    def skip(self, check_ids: Sequence[str], reason: str) -> None:
        self.checks.extend(Check(i, "skip", reason) for i in check_ids)


def _status_line(answer: Answer) -> str:
    line = f"HTTP {answer.status} {answer.reason}".rstrip()
    location = answer.header("location")
    if location and 300 <= answer.status < 400:
        line += f" → {location}"
    seen = proxies_seen(answer)
    if seen:
        line += " · " + ", ".join(f"{k}: {v}" for k, v in seen.items() if k != "x-request-id")
    return line


class Doctor:
    def __init__(self, url: str, options: DoctorOptions) -> None:
        self.options = options
        self.target = parse_target(url)
        self.origin_target = (parse_target(options.origin, "--origin")
                              if options.origin else None)
        if options.timeout <= 0:
            raise UsageError("--timeout must be positive")
        if options.idle_seconds < 0:
            raise UsageError("--idle-seconds must not be negative")
        if options.ca_file is not None and not os.path.isfile(options.ca_file):
            raise UsageError(f"--ca-file {options.ca_file!r} is not a readable file")
        self.secret = secret_value(options)
        try:
            self.ssl_context = make_ssl_context(options)
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"cannot load --ca-file: {describe_error(exc)}") from exc
        self.rec = Recorder(options.timeout)
        self.address = self.target.host
        self.addresses = [self.target.host]

    @property
    def streamlit(self) -> bool:
        return not self.options.generic

    @property
    def offered(self) -> tuple[str, ...]:
        return STREAMLIT_SUBPROTOCOLS if self.streamlit else self.options.subprotocols

    # -- public branch -------------------------------------------------------------

    async def run(self) -> Report:
        await self.public_branch()
        if self.origin_target is not None:
            await self.origin_branch(self.origin_target)
        checks = tuple(self.rec.checks)
        return Report(self.target.origin + self.target.base_path + "/", checks,
                      diagnose_checks(checks))

    def _remaining_public(self, after: str) -> list[str]:
        order = ["dns", "tcp", "tls", "http", "health", "host-config", "upgrade",
                 "upgrade-origin", "session", "idle", "forwarded"]
        rest = order[order.index(after) + 1:]
        if not self.streamlit:
            rest = [c for c in rest if c not in ("health", "host-config", "session")]
        if not self.options.idle_seconds:
            rest = [c for c in rest if c != "idle"]
        return rest

    async def public_branch(self) -> None:
        rec = self.rec
        dns = await rec.run("dns", self.probe_dns)
        if dns.status == "fail":
            return rec.skip(self._remaining_public("dns"), "skipped: the name does not resolve")
        tcp = await rec.run("tcp", self.probe_tcp)
        if tcp.status == "fail":
            return rec.skip(self._remaining_public("tcp"), "skipped: no TCP connection")
        if self.target.tls:
            tls = await rec.run("tls", self.probe_tls)
            if tls.status == "fail":
                return rec.skip(self._remaining_public("tls"), "skipped: TLS failed")
        else:
            rec.skip(["tls"], "skipped: plain http URL")
        http = await rec.run("http", lambda: self.probe_get("/", "http"))
        status = http.facts.get("status")
        if status is None or status >= 500:
            why = "no HTTP answer" if status is None else f"the edge answered {status}"
            return rec.skip(self._remaining_public("http"), f"skipped: {why}")
        if self.streamlit:
            await rec.run("health", lambda: self.probe_get("/_stcore/health", "health"))
            await rec.run("host-config", lambda: self.probe_get("/_stcore/host-config",
                                                                "host-config"))
        up = await rec.run("upgrade", lambda: self.probe_upgrade(None))
        if up.status == "fail":
            rest = [c for c in self._remaining_public("upgrade") if c != "forwarded"]
            rec.skip(rest, "skipped: the upgrade failed")
        else:
            origin_check = await rec.run("upgrade-origin",
                                         lambda: self.probe_upgrade(self.target.origin))
            if self.streamlit:
                if origin_check.status == "fail":
                    rec.skip(["session"], "skipped: the browser-like upgrade failed")
                else:
                    await rec.run("session", self.probe_session,
                                  limit=self.options.timeout * 2 + 1)
            if self.options.idle_seconds:
                await rec.run("idle", self.probe_idle,
                              limit=self.options.idle_seconds + self.options.timeout + 1)
        await rec.run("forwarded", self.probe_forwarded)

    async def probe_dns(self) -> tuple[Status, str, dict[str, Any]]:
        host = self.target.host
        if is_ip_literal(host):
            return "pass", f"{host} is an address literal (no lookup)", {"host": host}
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, self.target.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            return "fail", f"{host}: {describe_error(exc)}", {"host": host}
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        self.addresses = addresses
        return "pass", f"{host} → {', '.join(addresses[:4])}", {"host": host,
                                                                 "addresses": addresses}

    async def probe_tcp(self) -> tuple[Status, str, dict[str, Any]]:
        # Every address in turn, as browsers do; the first that connects is used after.
        failures = []
        for address in self.addresses:
            target = f"[{address}]:{self.target.port}" if ":" in address \
                else f"{address}:{self.target.port}"
            try:
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(address, self.target.port), self.options.timeout)
            except (OSError, TimeoutError) as exc:
                failures.append(f"{target}: {describe_error(exc)}")
                continue
            writer.close()
            self.address = address
            return "pass", f"connected to {target}", {"target": target}
        return "fail", "; ".join(failures), {"target": ", ".join(self.addresses)}

    async def probe_tls(self) -> tuple[Status, str, dict[str, Any]]:
        try:
            conn = await open_connection(self.target, self.address, self.ssl_context)
        except ssl.SSLError as exc:
            return "fail", describe_error(exc), {"error": describe_error(exc)}
        try:
            ssl_object = conn.writer.get_extra_info("ssl_object")
            version = ssl_object.version() if ssl_object else "?"
            if self.options.insecure:
                return "warn", f"{version}; certificate NOT verified (--insecure)", {}
            cert = ssl_object.getpeercert() if ssl_object else None
            not_after = cert.get("notAfter") if cert else None
            if not isinstance(not_after, str):
                return "pass", f"{version}; certificate verified", {}
            days = (ssl.cert_time_to_seconds(not_after) - time.time()) / 86400
            detail = (f"{version}; certificate verified for {self.target.host}, "
                      f"expires in {days:.0f} days")
            return ("warn" if days < 14 else "pass"), detail, {"expires_in_days": days}
        finally:
            await conn.close()

    async def probe_get(self, path: str, check_id: str) -> tuple[Status, str, dict[str, Any]]:
        answer = await request(self.target, self.address, self.ssl_context,
                               self.target.path(path))
        facts: dict[str, Any] = {"status": answer.status, "proxies": proxies_seen(answer)}
        detail = _status_line(answer)
        ok = 200 <= answer.status < 400
        if ok and check_id == "health" and answer.body.strip() != b"ok":
            return "warn", f"{detail}; body is not 'ok'", facts
        if ok and check_id == "host-config":
            try:
                json.loads(answer.body)
            except ValueError:
                return "warn", f"{detail}; body is not JSON", facts
        return ("pass" if ok else "fail"), detail, facts

    async def probe_upgrade(self, origin: str | None) -> tuple[Status, str, dict[str, Any]]:
        extra = {"Origin": origin} if origin else {}
        conn, result = await upgrade(self.target, self.address, self.ssl_context,
                                     self.target.path(self.options.path), self.offered, extra)
        try:
            return await self._judge_upgrade(conn, result, origin)
        finally:
            await close_websocket(conn)

    async def _judge_upgrade(self, conn: Connection, result: UpgradeResult,
                             origin: str | None) -> tuple[Status, str, dict[str, Any]]:
        answer = result.answer
        facts: dict[str, Any] = {
            "status": answer.status, "handshake_problems": result.problems,
            "offered": result.offered, "selected": result.selected, "origin": origin,
            "proxies": proxies_seen(answer)}
        if answer.status != 101:
            return "fail", f"{_status_line(answer)} instead of 101", facts
        if result.problems:
            return "fail", "101 but " + "; ".join(result.problems), facts
        if result.offered and result.selected not in result.offered:
            return "fail", (f"101 but Sec-WebSocket-Protocol is {result.selected!r}; offered "
                            f"{', '.join(result.offered)}"), facts
        closed, code, after = await wait_for_close(conn, EARLY_CLOSE_WINDOW_S)
        if closed:
            facts.update(closed_early=True, close_code=code)
            how = "dropped" if code is None else f"closed with code {code}"
            return "fail", f"101, then {how} after {after * 1000:.0f} ms", facts
        chosen = f", subprotocol {result.selected}" if result.selected else ""
        return "pass", f"101 Switching Protocols, Accept valid{chosen}", facts

    async def probe_session(self) -> tuple[Status, str, dict[str, Any]]:
        try:
            from wsgate.doctor.streamlit_session import run_session
        except ImportError as exc:
            return "skip", f"skipped: needs the streamlit extra ({exc})", {}
        headers = {"User-Agent": USER_AGENT}
        result = await run_session(
            self.target.ws_url(self.options.path), headers=headers, origin=self.target.origin,
            timeout=self.options.timeout * 2,
            ssl_context=self.ssl_context if self.target.tls else None)
        facts: dict[str, Any] = {
            "status": result.status, "close_code": result.close_code,
            "script_finished": result.script_finished, "messages": result.messages}
        if result.ok:
            return "pass", (f"script finished: {result.messages} messages in "
                            f"{result.elapsed_s:.2f} s"), facts
        why = result.error or "the script did not finish"
        if result.close_code is not None:
            why = f"closed with code {result.close_code} after {result.messages} messages; {why}"
        return "fail", f"session: {why}", facts

    async def probe_idle(self) -> tuple[Status, str, dict[str, Any]]:
        seconds = self.options.idle_seconds
        conn, result = await upgrade(self.target, self.address, self.ssl_context,
                                     self.target.path(self.options.path), self.offered)
        try:
            if result.answer.status != 101:
                return "fail", f"upgrade answered {result.answer.status}", {
                    "status": result.answer.status}
            closed, code, after = await wait_for_close(conn, seconds)
        finally:
            await close_websocket(conn)
        if not closed:
            return "pass", f"held idle for {seconds:g} s without a drop", {}
        how = "dropped without a close frame (1006)" if code is None else f"closed with {code}"
        return "fail", f"idle connection {how} after {after:.1f} s", {
            "dropped_after_s": round(after, 1), "close_code": code}

    async def probe_forwarded(self) -> tuple[Status, str, dict[str, Any]]:
        headers = {"X-Forwarded-For": SPOOF_IP, "X-Real-IP": SPOOF_IP,
                   "Forwarded": f"for={SPOOF_IP}"}
        answer = await request(self.target, self.address, self.ssl_context,
                               self.target.path(ECHO_PATH), headers)
        echo = parse_echo(answer)
        if echo is None:
            return "skip", (f"skipped: no wsgate echo endpoint behind the edge "
                            f"(HTTP {answer.status})"), {}
        forwarded = forwarded_facts(echo, self.target.scheme)
        problems = []
        if forwarded["proto"] != self.target.scheme:
            problems.append(f"X-Forwarded-Proto is {forwarded['proto']!r}")
        if forwarded["spoofed_headers"]:
            problems.append(f"forged {SPOOF_IP} survived in "
                            f"{', '.join(forwarded['spoofed_headers'])}")
        seen = f"proto={forwarded['proto']}, host={forwarded['host']}, for={forwarded['for']}"
        if problems:
            return "warn", f"origin saw {seen}; " + "; ".join(problems), forwarded
        return "pass", f"origin saw {seen}; forged client IP dropped", forwarded

    # -- origin branch -------------------------------------------------------------

    async def origin_branch(self, origin: Target) -> None:
        rec = self.rec
        context = self.ssl_context if origin.tls else None
        http = await rec.run("origin-http-no-secret",
                             lambda: self.probe_origin_http(origin, context))
        if http.facts.get("error"):
            rec.skip(["origin-upgrade-no-secret", "origin-with-secret"],
                     "skipped: the origin is not reachable from here")
            return
        await rec.run("origin-upgrade-no-secret",
                      lambda: self.probe_origin_upgrade(origin, context))
        if self.secret is None:
            rec.skip(["origin-with-secret"],
                     f"skipped: set ${self.options.secret_env} to test the origin with the "
                     f"secret")
        else:
            await rec.run("origin-with-secret",
                          lambda: self.probe_origin_with_secret(origin, context))

    async def probe_origin_http(self, origin: Target, context: ssl.SSLContext | None,
                                ) -> tuple[Status, str, dict[str, Any]]:
        try:
            answer = await request(origin, origin.host, context, origin.path("/"))
        except OSError as exc:
            error = f"{origin.authority}: {describe_error(exc)}"
            return "warn", f"not reachable from here ({error})", {"error": error}
        return judge_refusal(answer, "GET /")

    async def probe_origin_upgrade(self, origin: Target, context: ssl.SSLContext | None,
                                   ) -> tuple[Status, str, dict[str, Any]]:
        conn, result = await upgrade(origin, origin.host, context,
                                     origin.path(self.options.path), self.offered)
        await close_websocket(conn)
        return judge_refusal(result.answer, "the upgrade")

    async def probe_origin_with_secret(self, origin: Target, context: ssl.SSLContext | None,
                                       ) -> tuple[Status, str, dict[str, Any]]:
        assert self.secret is not None
        secret = {self.options.secret_header: self.secret}
        answer = await request(origin, origin.host, context, origin.path("/"), secret)
        conn, result = await upgrade(origin, origin.host, context,
                                     origin.path(self.options.path), self.offered, secret)
        await close_websocket(conn)
        facts = {"http_status": answer.status, "upgrade_status": result.answer.status}
        if 200 <= answer.status < 400 and result.answer.status == 101:
            return "pass", f"with the secret: GET / {answer.status}, upgrade 101", facts
        return "warn", (f"with the secret from ${self.options.secret_env}: GET / "
                        f"{answer.status}, upgrade {result.answer.status} (does the doctor "
                        f"have the origin's secret?)"), facts


def judge_refusal(answer: Answer, what: str) -> tuple[Status, str, dict[str, Any]]:
    facts: dict[str, Any] = {"status": answer.status}
    if answer.status in (401, 403):
        return "pass", f"{what} without the secret: refused ({answer.status})", facts
    if answer.status >= 500:
        return "warn", f"{what} without the secret: HTTP {answer.status}", facts
    facts["answered"] = True
    return "fail", f"{what} without the secret: HTTP {answer.status} (not refused)", facts


def parse_echo(answer: Answer) -> dict[str, Any] | None:
    if answer.status != 200 or "json" not in (answer.header("content-type") or ""):
        return None
    try:
        echo = json.loads(answer.body)
    except ValueError:
        return None
    if not isinstance(echo, dict) or not isinstance(echo.get("headers"), list):
        return None
    return echo


def forwarded_facts(echo: Mapping[str, Any], public_scheme: str) -> dict[str, Any]:
    """What the origin received, read from the echo's raw header list."""
    headers: dict[str, list[str]] = {}
    for item in echo.get("headers", []):
        if isinstance(item, list | tuple) and len(item) == 2:
            headers.setdefault(str(item[0]).lower(), []).append(str(item[1]))

    def first(name: str) -> str | None:
        values = headers.get(name)
        return values[0].split(",")[0].strip() if values else None

    spoofed = [name for name in ("x-forwarded-for", "x-real-ip", "forwarded")
               if any(SPOOF_IP in value for value in headers.get(name, []))]
    return {"public_scheme": public_scheme, "proto": first("x-forwarded-proto"),
            "host": first("x-forwarded-host"), "for": first("x-forwarded-for"),
            "spoofed_headers": spoofed, "spoof_ip": SPOOF_IP}


async def diagnose(url: str, options: DoctorOptions | None = None) -> Report:
    """Probe `url` (and `options.origin`) and explain what is wrong.

    Raises UsageError for bad input; everything the network does ends up in the
    report, never as an exception.
    """
    return await Doctor(url, options or DoctorOptions()).run()
