"""The doctor: which probes run against which hop, in `CHECK_ORDER`, and the report.

A branch stops as soon as a step makes the next meaningless (the rest are
recorded as `skip` with the reason). Library use (the demo's tests call this):

    report = await diagnose("http://127.0.0.1:8080/", DoctorOptions(origin=...))
    report.ok, report.checks, report.diagnoses
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field

from wsgate.doctor import probes
from wsgate.doctor.diagnosis import diagnose_checks
from wsgate.doctor.http_client import Route, describe_error, make_ssl_context
from wsgate.doctor.model import (
    PUBLIC_CHECKS,
    STREAMLIT_ONLY,
    CheckId,
    DnsFacts,
    ErrorFacts,
    HttpFacts,
    RedirectFacts,
    Report,
    TcpFacts,
)
from wsgate.doctor.runner import Recorder
from wsgate.doctor.target import (
    Target,
    UsageError,
    page_target,
    parse_host_port,
    parse_target,
)
from wsgate.i18n import _

STREAMLIT_SUBPROTOCOLS = ("streamlit", "PLACEHOLDER_AUTH_TOKEN")


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
    # HOST:PORT to dial for the URL's own host and port (curl's --connect-to);
    # Host and SNI stay the URL's.
    connect_to: str | None = None
    follow: bool = False  # follow redirects first, then probe where they lead
    # The secret itself; None → read `secret_env` from the environment.
    secret: str | None = field(default=None, repr=False)


def secret_value(options: DoctorOptions) -> str | None:
    if options.secret is not None:
        return options.secret or None
    return os.environ.get(options.secret_env) or None


def _validate(options: DoctorOptions) -> ssl.SSLContext:
    if options.timeout <= 0:
        raise UsageError(_("--timeout must be positive"))
    if options.idle_seconds < 0:
        raise UsageError(_("--idle-seconds must not be negative"))
    if options.ca_file is not None and not os.path.isfile(options.ca_file):
        raise UsageError(_("--ca-file {path!r} is not a readable file").format(
            path=options.ca_file))
    try:
        return make_ssl_context(options.ca_file, options.insecure)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(_("cannot load --ca-file: {error}").format(
            error=describe_error(exc))) from exc


class Doctor:
    def __init__(self, url: str, options: DoctorOptions) -> None:
        self.options = options
        self.target = parse_target(url)
        self.origin_target = (parse_target(options.origin, "--origin")
                              if options.origin else None)
        self.ssl_context = _validate(options)
        self.connect_to = (parse_host_port(options.connect_to, "--connect-to")
                           if options.connect_to else None)
        self.secret = secret_value(options)
        self.rec = Recorder(options.timeout)

    @property
    def streamlit(self) -> bool:
        return not self.options.generic

    @property
    def offered(self) -> tuple[str, ...]:
        return STREAMLIT_SUBPROTOCOLS if self.streamlit else self.options.subprotocols

    def planned(self) -> list[CheckId]:
        """The public checks this run makes, in order."""
        checks = list(PUBLIC_CHECKS)
        if not self.options.follow:
            checks.remove("redirects")
        if not self.streamlit:
            checks = [c for c in checks if c not in STREAMLIT_ONLY]
        if not self.options.idle_seconds:
            checks.remove("idle")
        return checks

    async def run(self) -> Report:
        target = await self.follow() if self.options.follow else self.target
        route = await self.reach(target)
        if route is not None:
            await self.app_checks(route)
        if self.origin_target is not None:
            await self.origin_branch(self.origin_target)
        checks = tuple(self.rec.checks)
        return Report(target.url, checks, diagnose_checks(checks))

    def dial_to(self, target: Target) -> tuple[str, int]:
        """The host and port to connect to for `target` (--connect-to or the URL's)."""
        if self.connect_to and (target.host, target.port) == (self.target.host,
                                                              self.target.port):
            return self.connect_to
        return target.host, target.port

    def route(self, target: Target) -> Route:
        return Route(target, *self.dial_to(target), self.ssl_context)

    # -- public branch -------------------------------------------------------------

    async def follow(self) -> Target:
        """The URL the redirects lead to; the given one when they go nowhere useful."""
        followed = await self.rec.run(
            "redirects", lambda: probes.probe_redirects(self.target, self.route),
            limit=self.options.timeout * 3)
        facts = followed.facts
        if isinstance(facts, RedirectFacts) and len(facts.chain) > 1 and facts.final:
            return page_target(facts.final)
        return self.target

    async def reach(self, target: Target) -> Route | None:
        """dns, tcp, tls: the route to the edge, or None (the rest skipped)."""
        rec, planned = self.rec, self.planned()
        host, port = self.dial_to(target)
        dns = await rec.run("dns", lambda: probes.probe_dns(host, port))
        if not isinstance(dns.facts, DnsFacts) or dns.status == "fail":
            rec.skip_rest("dns", planned, _("skipped: the name does not resolve"))
            return None
        addresses = dns.facts.addresses
        tcp = await rec.run("tcp", lambda: probes.probe_tcp(addresses, port,
                                                            self.options.timeout))
        if not isinstance(tcp.facts, TcpFacts) or tcp.facts.address is None:
            rec.skip_rest("tcp", planned, _("skipped: no TCP connection"))
            return None
        route = Route(target, tcp.facts.address, port, self.ssl_context)
        if not target.tls:
            rec.skip(["tls"], _("skipped: plain http URL"))
            return route
        tls = await rec.run("tls", lambda: probes.probe_tls(route, self.options.insecure))
        if tls.status == "fail":
            rec.skip_rest("tls", planned, _("skipped: TLS failed"))
            return None
        return route

    async def app_checks(self, route: Route) -> None:
        rec, planned = self.rec, self.planned()
        http = await rec.run("http", lambda: probes.probe_get(route, "/"))
        status = http.facts.status if isinstance(http.facts, HttpFacts) else None
        if status is None or status >= 500:
            why = (_("skipped: no HTTP answer") if status is None
                   else _("skipped: the edge answered {status}").format(status=status))
            return rec.skip_rest("http", planned, why)
        if self.streamlit:
            await rec.run("health", lambda: probes.probe_get(
                route, "/_stcore/health", probes.body_is_ok))
            await rec.run("host-config", lambda: probes.probe_get(
                route, "/_stcore/host-config", probes.body_is_json))
        await self.websocket_checks(route)
        await rec.run("forwarded", lambda: probes.probe_forwarded(route))

    async def websocket_checks(self, route: Route) -> None:
        rec, path, options = self.rec, self.options.path, self.options
        up = await rec.run("upgrade", lambda: probes.probe_upgrade(
            route, path, self.offered, None))
        if up.status == "fail":
            rest = [c for c in self.planned() if c != "forwarded"]
            return rec.skip_rest("upgrade", rest, _("skipped: the upgrade failed"))
        with_origin = await rec.run("upgrade-origin", lambda: probes.probe_upgrade(
            route, path, self.offered, route.target.origin))
        if self.streamlit and with_origin.status == "fail":
            rec.skip(["session", "affinity"], _("skipped: the browser-like upgrade failed"))
        elif self.streamlit:
            session = await rec.run("session", lambda: probes.probe_session(
                route, path, options.timeout * 2), limit=options.timeout * 2 + 1)
            await self.affinity_check(route, session.status == "pass")
        if options.idle_seconds:
            await rec.run("idle", lambda: probes.probe_idle(
                route, path, self.offered, options.idle_seconds),
                limit=options.idle_seconds + options.timeout + 1)

    async def affinity_check(self, route: Route, session_ran: bool) -> None:
        if not session_ran:
            return self.rec.skip(["affinity"], _("skipped: no Streamlit session to resume"))
        rounds = probes.AFFINITY_RECONNECTS + 1
        await self.rec.run("affinity", lambda: probes.probe_affinity(
            route, self.options.path, self.options.timeout * 2),
            limit=rounds * (self.options.timeout * 3) + 1)

    # -- origin branch -------------------------------------------------------------

    async def origin_branch(self, origin: Target) -> None:
        rec, options = self.rec, self.options
        route = Route(origin, origin.host, origin.port, self.ssl_context)
        http = await rec.run("origin-http-no-secret", lambda: probes.probe_origin_http(route))
        if isinstance(http.facts, ErrorFacts):
            rec.skip(["origin-upgrade-no-secret", "origin-with-secret"],
                     _("skipped: the origin is not reachable from here"))
            return
        await rec.run("origin-upgrade-no-secret", lambda: probes.probe_origin_upgrade(
            route, options.path, self.offered))
        if self.secret is None:
            rec.skip(["origin-with-secret"],
                     _("skipped: set ${variable} to test the origin with the secret").format(
                         variable=options.secret_env))
            return
        secret_header = {options.secret_header: self.secret}
        await rec.run("origin-with-secret", lambda: probes.probe_origin_with_secret(
            route, options.path, self.offered, secret_header, options.secret_env))


async def diagnose(url: str, options: DoctorOptions | None = None) -> Report:
    """Probe `url` (and `options.origin`) and explain what is wrong.

    Raises UsageError for bad input; everything the network does ends up in the
    report, never as an exception.
    """
    return await Doctor(url, options or DoctorOptions()).run()
