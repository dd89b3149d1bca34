"""The doctor's probes: one function per check, each returning a `Verdict`.

The network work is here; what the facts mean is in diagnosis.py, and in which
order the probes run (and which are skipped) is in doctor.py. A probe may raise
on network trouble: the runner turns that into a failed check.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from wsgate.doctor.http_client import (
    USER_AGENT,
    Answer,
    Connection,
    Route,
    describe_error,
    open_connection,
    proxies_seen,
    request,
    status_line,
)
from wsgate.doctor.model import (
    AffinityFacts,
    DnsFacts,
    ErrorFacts,
    ForwardedFacts,
    HttpFacts,
    IdleFacts,
    RedirectFacts,
    RefusalFacts,
    SecretFacts,
    SessionFacts,
    TcpFacts,
    TlsFacts,
    UpgradeFacts,
    Verdict,
)
from wsgate.doctor.target import (
    Target,
    is_ip_literal,
    parse_target,
    request_target,
    resolve_location,
)
from wsgate.doctor.ws_client import Handshake, close_websocket, upgrade, wait_for_close
from wsgate.i18n import _, ngettext

# RFC 5737 documentation address: sent as a forged client IP, must never survive the edge.
SPOOF_IP = "198.51.100.77"
# How long an opened WebSocket is watched for a close right after the 101.
EARLY_CLOSE_WINDOW_S = 0.3
ECHO_PATH = "/_wsgate/echo"
CERT_WARN_DAYS = 14
# --follow gives up after this many redirects, as browsers do (Chrome: 20, curl: 50).
MAX_REDIRECTS = 10

# A body check for a plain GET: None when the body is fine, else what is wrong.
BodyJudge = Callable[[bytes], str | None]


def body_is_ok(body: bytes) -> str | None:
    return None if body.strip() == b"ok" else _("body is not 'ok'")


def body_is_json(body: bytes) -> str | None:
    try:
        json.loads(body)
    except ValueError:
        return _("body is not JSON")
    return None


# -- where the URL leads (--follow) -------------------------------------------------

async def probe_redirects(start: Target, dial: Callable[[Target], Route]) -> Verdict:
    """GET the URL and every redirect after it, like a browser opening the page."""
    chain: list[str] = [start.url]
    statuses: list[int] = []
    for _hop in range(MAX_REDIRECTS + 1):
        url = chain[-1]
        try:
            answer = await request(dial(parse_target(url)), request_target(url))
        except Exception as exc:  # the checks that follow probe this URL and say why
            return Verdict("fail", f"{' → '.join(chain)}: {describe_error(exc)}",
                           RedirectFacts(tuple(chain), tuple(statuses), final=url))
        statuses.append(answer.status)
        location = answer.header("location")
        if not (300 <= answer.status < 400 and location):
            return Verdict("pass", _chain_detail(chain, answer.status),
                           RedirectFacts(tuple(chain), tuple(statuses), final=url))
        following = resolve_location(url, location)
        if following is None:
            return Verdict("fail", _("{chain} → {location!r}: not an http(s) URL").format(
                chain=" → ".join(chain), location=location),
                           RedirectFacts(tuple(chain), tuple(statuses)))
        looped = following in chain
        chain.append(following)
        if looped:
            return Verdict("fail", _("redirect loop: {chain}").format(chain=" → ".join(chain)),
                           RedirectFacts(tuple(chain), tuple(statuses), looped=True))
    return Verdict("fail", _("more than {count} redirects: {first} → … → {last}").format(
        count=MAX_REDIRECTS, first=chain[0], last=chain[-1]),
                   RedirectFacts(tuple(chain), tuple(statuses), looped=True))


def _chain_detail(chain: Sequence[str], status: int) -> str:
    if len(chain) == 1:
        return _("no redirect (HTTP {status})").format(status=status)
    hops = len(chain) - 1
    return ngettext("{count} redirect: {chain} (HTTP {status})",
                    "{count} redirects: {chain} (HTTP {status})", hops).format(
        count=hops, chain=" → ".join(chain), status=status)


# -- reaching the edge ---------------------------------------------------------------

async def probe_dns(host: str, port: int) -> Verdict:
    if is_ip_literal(host):
        return Verdict("pass", _("{host} is an address literal (no lookup)").format(host=host),
                       DnsFacts(host, (host,)))
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return Verdict("fail", f"{host}: {describe_error(exc)}", DnsFacts(host))
    except UnicodeError:  # IDNA: a label over 63 characters, an empty label...
        return Verdict("fail", _("{host}: not a valid host name").format(host=host),
                       DnsFacts(host))
    addresses = tuple(dict.fromkeys(str(info[4][0]) for info in infos))
    return Verdict("pass", f"{host} → {', '.join(addresses[:4])}", DnsFacts(host, addresses))


def host_port(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


async def probe_tcp(addresses: Sequence[str], port: int, timeout: float) -> Verdict:  # noqa: ASYNC109
    # Every address in turn, as browsers do; the first that connects is used after.
    failures = []
    for address in addresses:
        target = host_port(address, port)
        try:
            _reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port),
                                                     timeout)
        except (OSError, TimeoutError) as exc:
            failures.append(f"{target}: {describe_error(exc)}")
            continue
        writer.close()
        return Verdict("pass", _("connected to {target}").format(target=target),
                       TcpFacts(target, address))
    tried = ", ".join(host_port(a, port) for a in addresses)
    return Verdict("fail", "; ".join(failures), TcpFacts(tried))


async def probe_tls(route: Route, insecure: bool) -> Verdict:
    try:
        conn = await open_connection(route)
    except ssl.SSLError as exc:
        return Verdict("fail", describe_error(exc), ErrorFacts(describe_error(exc)))
    try:
        return _judge_certificate(conn, route.target.host, insecure)
    finally:
        await conn.close()


def _judge_certificate(conn: Connection, host: str, insecure: bool) -> Verdict:
    ssl_object = conn.writer.get_extra_info("ssl_object")
    version = ssl_object.version() if ssl_object else "?"
    if insecure:
        return Verdict("warn", _("{version}; certificate NOT verified (--insecure)").format(
            version=version),
                       TlsFacts(version))
    cert = ssl_object.getpeercert() if ssl_object else None
    not_after = cert.get("notAfter") if cert else None
    if not isinstance(not_after, str):
        return Verdict("pass", _("{version}; certificate verified").format(version=version),
                       TlsFacts(version, True))
    days = (ssl.cert_time_to_seconds(not_after) - time.time()) / 86400
    detail = _("{version}; certificate verified for {host}, expires in {days:.0f} days").format(
        version=version, host=host, days=days)
    return Verdict("warn" if days < CERT_WARN_DAYS else "pass", detail,
                   TlsFacts(version, True, days))


# -- the app over HTTP and WebSocket -------------------------------------------------

async def probe_get(route: Route, path: str, judge_body: BodyJudge | None = None) -> Verdict:
    answer = await request(route, route.target.path(path))
    facts = HttpFacts(answer.status, proxies_seen(answer))
    detail = status_line(answer)
    if not 200 <= answer.status < 400:
        return Verdict("fail", detail, facts)
    problem = judge_body(answer.body) if judge_body else None
    if problem:
        return Verdict("warn", f"{detail}; {problem}", facts)
    return Verdict("pass", detail, facts)


async def probe_upgrade(route: Route, path: str, offered: Sequence[str],
                        origin: str | None) -> Verdict:
    extra = {"Origin": origin} if origin else {}
    conn, handshake = await upgrade(route, route.target.path(path), offered, extra)
    try:
        return await _judge_upgrade(conn, handshake, origin)
    finally:
        await close_websocket(conn)


async def _judge_upgrade(conn: Connection, handshake: Handshake, origin: str | None,
                         ) -> Verdict:
    answer = handshake.answer
    facts = UpgradeFacts(answer.status, handshake.problems, handshake.offered,
                         handshake.selected, origin, proxies_seen(answer))
    if answer.status != 101:
        return Verdict("fail", _("{answer} instead of 101").format(answer=status_line(answer)),
                       facts)
    if handshake.problems:
        return Verdict("fail", _("101 but {problems}").format(
            problems="; ".join(handshake.problems)), facts)
    if handshake.offered and handshake.selected not in handshake.offered:
        return Verdict("fail", _("101 but Sec-WebSocket-Protocol is {selected!r}; offered "
                                  "{offered}").format(selected=handshake.selected,
                                                      offered=", ".join(handshake.offered)),
                       facts)
    watched = await wait_for_close(conn, EARLY_CLOSE_WINDOW_S)
    if watched.closed:
        after_ms = round(watched.after_s * 1000)
        how = (_("101, then dropped after {ms} ms") if watched.code is None
               else _("101, then closed with code {code} after {ms} ms"))
        return Verdict("fail", how.format(code=watched.code, ms=after_ms),
                       replace(facts, closed_early=True, close_code=watched.code))
    if handshake.selected:
        return Verdict("pass", _("101 Switching Protocols, Accept valid, subprotocol "
                                  "{subprotocol}").format(subprotocol=handshake.selected), facts)
    return Verdict("pass", _("101 Switching Protocols, Accept valid"), facts)


async def probe_session(route: Route, path: str, timeout: float) -> Verdict:  # noqa: ASYNC109
    try:
        from wsgate.doctor.streamlit_session import run_session
    except ImportError as exc:
        return Verdict("skip", _("skipped: needs the streamlit extra ({error})").format(
            error=exc))
    target = route.target
    result = await run_session(
        target.ws_url(path), headers={"User-Agent": USER_AGENT}, origin=target.origin,
        timeout=timeout, ssl_context=route.ssl_context if target.tls else None,
        connect_to=(route.address, route.port))
    facts = SessionFacts(result.status, result.close_code, result.script_finished,
                         result.messages)
    if result.ok:
        return Verdict("pass", _("script finished: {messages} messages in {seconds:.2f} s").format(
            messages=result.messages, seconds=result.elapsed_s), facts)
    why = result.error or _("the script did not finish")
    if result.close_code is not None:
        why = _("closed with code {code} after {messages} messages; {why}").format(
            code=result.close_code, messages=result.messages, why=why)
    return Verdict("fail", _("session: {why}").format(why=why), facts)


AFFINITY_RECONNECTS = 4
HEALTH_PATH = "/_stcore/health"


def remember_cookies(jar: dict[str, str], headers: Sequence[tuple[str, str]]) -> None:
    """Keep `name=value` of each Set-Cookie, as a browser would (attributes ignored:
    the doctor talks to one host and path)."""
    for name, value in headers:
        if name == "set-cookie":
            key, sep, rest = value.partition(";")[0].partition("=")
            if sep and key.strip():
                jar[key.strip()] = rest.strip()


def cookie_header(jar: Mapping[str, str]) -> dict[str, str]:
    return {"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())} if jar else {}


async def probe_affinity(route: Route, path: str, timeout: float,  # noqa: ASYNC109
                         reconnects: int = AFFINITY_RECONNECTS) -> Verdict:
    """Reconnect as the frontend does (health first, then the stream offering the
    previous session id, with the browser's cookies), with other clients' requests in
    between: one before the first reconnect, two before the second, ... so a
    round-robin over any small number of instances is caught. A reconnect that comes
    back with a new session id reached another instance: the session was lost."""
    try:
        from wsgate.doctor.streamlit_session import run_session
    except ImportError as exc:
        return Verdict("skip", _("skipped: needs the streamlit extra ({error})").format(
            error=exc))
    target, jar = route.target, dict[str, str]()
    session_id: str | None = None
    for attempt in range(reconnects + 1):
        try:
            for _other in range(attempt):  # other clients: no cookies
                await request(route, target.path(HEALTH_PATH))
            remember_cookies(jar, (await request(route, target.path(HEALTH_PATH),
                                                 cookie_header(jar))).headers)
        except OSError as exc:
            return Verdict("warn", _("reconnect {attempt}: {why}").format(
                attempt=attempt, why=describe_error(exc)),
                           AffinityFacts(max(attempt - 1, 0), max(attempt - 1, 0)))
        result = await run_session(
            target.ws_url(path), headers={"User-Agent": USER_AGENT, **cookie_header(jar)},
            origin=target.origin, timeout=timeout, resume=session_id,
            ssl_context=route.ssl_context if target.tls else None,
            connect_to=(route.address, route.port))
        remember_cookies(jar, result.response_headers)
        done = max(attempt - 1, 0)
        if not result.ok or not result.session_id:
            why = result.error or _("no session id")
            return Verdict("warn" if attempt else "skip",
                           _("reconnect {attempt}: {why}").format(attempt=attempt, why=why),
                           AffinityFacts(done, done))
        if session_id is not None and result.session_id != session_id:
            return Verdict("fail", _("reconnect {attempt} (after {attempt} other requests) got "
                                      "a new session: {done} of {attempt} resumed").format(
                                          attempt=attempt, done=done),
                           AffinityFacts(attempt, done, attempt))
        session_id = result.session_id
    return Verdict("pass", _("{count} reconnects resumed the same session, with other "
                              "clients' requests in between").format(count=reconnects),
                   AffinityFacts(reconnects, reconnects))


async def probe_idle(route: Route, path: str, offered: Sequence[str], seconds: float,
                     ) -> Verdict:
    conn, handshake = await upgrade(route, route.target.path(path), offered)
    try:
        status = handshake.answer.status
        if status != 101:
            return Verdict("fail", _("upgrade answered {status}").format(status=status),
                           IdleFacts(status))
        watched = await wait_for_close(conn, seconds)
    finally:
        await close_websocket(conn)
    if not watched.closed:
        return Verdict("pass", _("held idle for {seconds:g} s without a drop").format(
            seconds=seconds), IdleFacts())
    how = (_("idle connection dropped without a close frame (1006) after {seconds:.1f} s")
           if watched.code is None
           else _("idle connection closed with {code} after {seconds:.1f} s"))
    return Verdict("fail", how.format(code=watched.code, seconds=watched.after_s),
                   IdleFacts(101, round(watched.after_s, 1), watched.code))


async def probe_forwarded(route: Route) -> Verdict:
    headers = {"X-Forwarded-For": SPOOF_IP, "X-Real-IP": SPOOF_IP,
               "Forwarded": f"for={SPOOF_IP}"}
    answer = await request(route, route.target.path(ECHO_PATH), headers)
    echo = parse_echo(answer)
    if echo is None:
        return Verdict("skip", _("skipped: no wsgate echo endpoint behind the edge "
                                  "(HTTP {status})").format(status=answer.status))
    facts = forwarded_facts(echo, route.target.scheme)
    problems = []
    if facts.proto is None:
        problems.append(_("no X-Forwarded-Proto"))
    elif facts.proto != facts.public_scheme:
        problems.append(_("X-Forwarded-Proto is {proto!r}, the URL's scheme {scheme!r}").format(
            proto=facts.proto, scheme=facts.public_scheme))
    if facts.spoofed_headers:
        problems.append(_("forged {ip} survived in {headers}").format(
            ip=SPOOF_IP, headers=", ".join(facts.spoofed_headers)))
    seen = f"proto={facts.proto}, host={facts.host}, for={facts.client}"
    if problems:
        return Verdict("warn", _("origin saw {seen}; {problems}").format(
            seen=seen, problems="; ".join(problems)), facts)
    return Verdict("pass", _("origin saw {seen}; forged client IP dropped").format(seen=seen),
                   facts)


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


def forwarded_facts(echo: Mapping[str, Any], public_scheme: str) -> ForwardedFacts:
    """What the origin received, read from the echo's raw header list."""
    headers: dict[str, list[str]] = {}
    for item in echo.get("headers", []):
        if isinstance(item, list | tuple) and len(item) == 2:
            headers.setdefault(str(item[0]).lower(), []).append(str(item[1]))

    def first(name: str) -> str | None:
        values = headers.get(name)
        return values[0].split(",")[0].strip() if values else None

    spoofed = tuple(name for name in ("x-forwarded-for", "x-real-ip", "forwarded")
                    if any(SPOOF_IP in value for value in headers.get(name, [])))
    return ForwardedFacts(public_scheme, first("x-forwarded-proto"), first("x-forwarded-host"),
                          first("x-forwarded-for"), spoofed, SPOOF_IP)


# -- the origin, directly ------------------------------------------------------------

def judge_refusal(answer: Answer, what: str) -> Verdict:
    if answer.status in (401, 403):
        return Verdict("pass", _("{what} without the secret: refused ({status})").format(
            what=what, status=answer.status),
                       RefusalFacts(answer.status))
    if answer.status >= 500:
        return Verdict("warn", _("{what} without the secret: HTTP {status}").format(
            what=what, status=answer.status),
                       RefusalFacts(answer.status))
    return Verdict("fail", _("{what} without the secret: HTTP {status} (not refused)").format(
        what=what, status=answer.status),
                   RefusalFacts(answer.status, answered=True))


async def probe_origin_http(route: Route) -> Verdict:
    try:
        answer = await request(route, route.target.path("/"))
    except OSError as exc:
        error = f"{route.target.authority}: {describe_error(exc)}"
        return Verdict("warn", _("not reachable from here ({error})").format(error=error),
                       ErrorFacts(error))
    return judge_refusal(answer, "GET /")


async def probe_origin_upgrade(route: Route, path: str, offered: Sequence[str]) -> Verdict:
    conn, handshake = await upgrade(route, route.target.path(path), offered)
    await close_websocket(conn)
    return judge_refusal(handshake.answer, _("the upgrade"))


async def probe_origin_with_secret(route: Route, path: str, offered: Sequence[str],
                                   secret_header: Mapping[str, str], secret_env: str,
                                   ) -> Verdict:
    answer = await request(route, route.target.path("/"), secret_header)
    conn, handshake = await upgrade(route, route.target.path(path), offered, secret_header)
    await close_websocket(conn)
    facts = SecretFacts(answer.status, handshake.answer.status)
    if 200 <= answer.status < 400 and handshake.answer.status == 101:
        return Verdict("pass", _("with the secret: GET / {status}, upgrade 101").format(
            status=answer.status), facts)
    return Verdict("warn", _("with the secret from ${variable}: GET / {status}, upgrade "
                              "{upgrade} (does the doctor have the origin's secret?)").format(
                                  variable=secret_env, status=answer.status,
                                  upgrade=handshake.answer.status), facts)
