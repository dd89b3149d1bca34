"""Findings → diagnoses: the doctor's knowledge, as one table, with no I/O.

The probes record what they saw as `Check`s carrying typed facts (model.py);
`diagnose_checks` walks the `CAUSES` table in order and turns every matching
row into a `Diagnosis` with a stable id, the evidence and the fix. Adding a
cause means adding one row here (and one test).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from wsgate.doctor.model import (
    Check,
    CheckId,
    Diagnosis,
    DnsFacts,
    ErrorFacts,
    Findings,
    ForwardedFacts,
    HttpFacts,
    IdleFacts,
    RedirectFacts,
    RefusalFacts,
    Report,
    SessionFacts,
    Severity,
    TcpFacts,
    UpgradeFacts,
    Where,
)
from wsgate.i18n import N_, _
from wsgate.policy.admission import limit_in_text

EDGE_UNREACHABLE_STATUSES = frozenset({502, 503, 521, 522, 523, 530})
EDGE_TIMEOUT_STATUSES = frozenset({504, 524})
REFUSED_STATUSES = frozenset({401, 403})
ADMISSION_STATUSES = frozenset({429, 503})
PLAIN_CHECKS: tuple[CheckId, ...] = ("http", "health", "host-config")


@dataclass(frozen=True)
class Match:
    """A rule fired: the evidence, and values for the row's templates."""

    evidence: str
    values: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Cause:
    id: str
    severity: Severity
    where: Where
    summary: str  # str.format template over Match.values
    fix: str  # str.format template over Match.values
    detect: Callable[[Findings], Match | None]
    # Why the rule exists, mapped to the seed guide's failure table (docs only).
    guide_row: str = ""


def _status_evidence(f: Findings, check_ids: Sequence[CheckId],
                     statuses: frozenset[int]) -> Match | None:
    for check_id in check_ids:
        status = f.http_status(check_id)
        if status in statuses:
            return Match(f"{check_id}: HTTP {status} ({f.detail(check_id)})", {"status": status})
    return None


def _redirect_loop(f: Findings) -> Match | None:
    redirects = f.get("redirects", RedirectFacts)
    if redirects is None or not redirects.looped:
        return None
    return Match(f"redirects: {f.detail('redirects')}", {"count": len(redirects.chain) - 1})


def _dns(f: Findings) -> Match | None:
    if f.failed("dns"):
        host = facts.host if (facts := f.get("dns", DnsFacts)) else "?"
        return Match(f"dns: {f.detail('dns')}", {"host": host})
    return None


def _tcp(f: Findings) -> Match | None:
    if f.failed("tcp"):
        target = facts.target if (facts := f.get("tcp", TcpFacts)) else "?"
        return Match(f"tcp: {f.detail('tcp')}", {"target": target})
    return None


def _tls(f: Findings) -> Match | None:
    if f.failed("tls"):
        return Match(f"tls: {f.detail('tls')}")
    return None


def _admission_limit(f: Findings, check_id: CheckId, status: int) -> str | None:
    """The `[admission]` limit of a wsgate edge behind a 429/503: the one the answer
    names when the check kept its text; else what the status allows when the edge
    (its marker header) answered: to a plain GET a 429 can only be the request rate; to
    an upgrade, the per-client WebSocket limit or the rate; a 503 to an upgrade while
    plain requests reach the origin, the origin's session limit."""
    named = limit_in_text(f.detail(check_id))
    if named is not None:
        return named
    facts = f.get(check_id, HttpFacts) or f.get(check_id, UpgradeFacts)
    if facts is None or "x-worker-proxy" not in facts.proxies:
        return None
    plain = check_id in PLAIN_CHECKS
    if status == 429:
        return ("max_requests_per_second_per_client" if plain else
                "max_websockets_per_client or max_requests_per_second_per_client")
    if not plain and 200 <= (f.http_status("http") or 0) < 400:
        return "max_websockets_per_origin"
    return None


def _admission_refused(f: Findings) -> Match | None:
    for check_id in (*PLAIN_CHECKS, "upgrade", "upgrade-origin"):
        status = f.http_status(check_id)
        if status in ADMISSION_STATUSES and (limit := _admission_limit(f, check_id, status)):
            return Match(f"{check_id}: {f.detail(check_id)}", {"status": status, "limit": limit})
    return None


def _edge_origin_unreachable(f: Findings) -> Match | None:
    match = _status_evidence(f, ("http", "health", "upgrade"), EDGE_UNREACHABLE_STATUSES)
    if match is None or _admission_refused(f) is not None:
        return None
    origin = f.get("origin-http-no-secret", ErrorFacts)
    if origin is not None:
        return Match(_("{evidence}; origin directly: {error}").format(
            evidence=match.evidence, error=origin.error), match.values)
    return match


def _edge_timeout(f: Findings) -> Match | None:
    return _status_evidence(f, ("http", "health", "upgrade"), EDGE_TIMEOUT_STATUSES)


def _secret_rejected(f: Findings) -> Match | None:
    # A refusal of the plain request or of the upgrade *without* an Origin header:
    # Streamlit's Origin check cannot be the reason, the origin guard is.
    match = _status_evidence(f, ("http", "upgrade"), REFUSED_STATUSES)
    if match is None:
        return None
    evidence = match.evidence
    if f.status("origin-with-secret") == "pass":
        evidence += _("; the origin accepts the doctor's secret directly, so the edge "
                      "sends another")
    return Match(evidence, match.values)


def _origin_check_rejected(f: Findings) -> Match | None:
    plain, browser = f.get("upgrade", UpgradeFacts), f.get("upgrade-origin", UpgradeFacts)
    if plain is None or browser is None:
        return None
    if plain.status == 101 and browser.status in REFUSED_STATUSES:
        origin = browser.origin or "?"
        return Match(
            _("upgrade: 101 without Origin; upgrade-origin: HTTP {status} with "
              "Origin: {origin}").format(status=browser.status, origin=origin),
            {"origin": origin})
    return None


def _upgrade_not_forwarded(f: Findings) -> Match | None:
    upgrade = f.get("upgrade", UpgradeFacts)
    if upgrade is None or upgrade.status == 101:
        return None
    if upgrade.status in EDGE_UNREACHABLE_STATUSES | EDGE_TIMEOUT_STATUSES | REFUSED_STATUSES \
            or _admission_refused(f) is not None:
        return None  # explained by the rows above
    return Match(f"upgrade: {f.detail('upgrade')}", {"status": upgrade.status})


def _accept_invalid(f: Findings) -> Match | None:
    upgrade = f.get("upgrade", UpgradeFacts)
    if upgrade is None or upgrade.status != 101 or not upgrade.handshake_problems:
        return None
    return Match(_("upgrade: 101 but {problems}").format(
        problems="; ".join(upgrade.handshake_problems)))


def _subprotocol_dropped(f: Findings) -> Match | None:
    upgrade = f.get("upgrade", UpgradeFacts)
    if upgrade is None or upgrade.status != 101 or upgrade.handshake_problems:
        return None
    offered, selected = upgrade.offered, upgrade.selected
    if offered and selected not in offered:
        got = _("no Sec-WebSocket-Protocol") if selected is None else f"{selected!r}"
        return Match(_("upgrade: offered {offered}; the answer carried {got}").format(
            offered=", ".join(offered), got=got), {"offered": offered[0]})
    return None


def _session_broke(f: Findings) -> SessionFacts | None:
    """The session upgraded (101) and then failed."""
    session = f.get("session", SessionFacts)
    if f.failed("session") and session is not None and session.status == 101:
        return session
    return None


def _closed_after_open(f: Findings) -> Match | None:
    upgrade = f.get("upgrade", UpgradeFacts)
    if upgrade is not None and upgrade.closed_early:
        return Match(f"upgrade: {f.detail('upgrade')}")
    session = _session_broke(f)
    if session is not None and session.close_code is not None:
        return Match(f"session: {f.detail('session')}")
    return None


def _app_not_rendering(f: Findings) -> Match | None:
    session = _session_broke(f)
    if session is not None and session.close_code is None:
        return Match(f"session: {f.detail('session')}")
    return None


def _affinity_missing(f: Findings) -> Match | None:
    if not f.failed("affinity"):
        return None
    return Match(f"affinity: {f.detail('affinity')}")


# (seconds, tolerance, owner): well-known idle limits on the path, matched by the
# measured drop time.
KNOWN_IDLE_LIMITS: tuple[tuple[float, float, str], ...] = (
    (30.0, 3.0, N_("Google Cloud load balancer backend service timeout (30 s default)")),
    (50.0, 3.0, N_("HAProxy `timeout client`/`timeout server` (50 s in Debian's sample config)")),
    (60.0, 4.0, N_("nginx `proxy_read_timeout` (60 s default) or AWS ALB idle timeout (60 s)")),
    (100.0, 6.0, N_("Cloudflare's proxy idle limit (100 s)")),
    (240.0, 12.0, N_("Azure load balancer idle timeout (4 min)")),
    (300.0, 15.0, N_("Cloud Run's request timeout (300 s default)")),
)


def likely_idle_owner(seconds: float, server: str = "") -> str:
    """Name the hop whose idle limit matches; `server` is the edge's Server header."""
    for limit, tolerance, owner in KNOWN_IDLE_LIMITS:
        if abs(seconds - limit) <= tolerance:
            return _(owner)
    if "nginx" in server.lower():
        return _("nginx `proxy_read_timeout` (the edge answers as nginx, set below the "
                 "default)")
    if "cloudflare" in server.lower():
        return _("Cloudflare or a proxy behind it")
    return _("a proxy idle timeout on the path (nginx `proxy_read_timeout`, HAProxy "
             "`timeout tunnel`/`timeout client`, a cloud load balancer, Cloud Run's request "
             "timeout)")


def suggested_ping_interval(seconds: float) -> int:
    """A ping interval comfortably below the measured limit (half, at least 1 s)."""
    return max(1, int(seconds // 2))


def _idle_timeout(f: Findings) -> Match | None:
    idle = f.get("idle", IdleFacts)
    if not f.failed("idle") or idle is None:
        return None
    seconds = idle.dropped_after_s or 0.0
    http = f.get("http", HttpFacts)
    server = http.proxies.get("server", "") if http else ""
    code = idle.close_code if idle.close_code is not None else 1006
    return Match(
        f"idle: {f.detail('idle')}",
        {"seconds": f"{seconds:.1f}", "owner": likely_idle_owner(seconds, server),
         "ping": suggested_ping_interval(seconds), "code": code})


def _forwarded_proto_missing(f: Findings) -> Match | None:
    forwarded = f.get("forwarded", ForwardedFacts)
    if forwarded is None or forwarded.proto is not None:
        return None
    return Match(_("forwarded: the origin received no X-Forwarded-Proto for a "
                   "{scheme}:// URL").format(scheme=forwarded.public_scheme),
                 {"scheme": forwarded.public_scheme})


def _forwarded_proto_mismatch(f: Findings) -> Match | None:
    forwarded = f.get("forwarded", ForwardedFacts)
    if forwarded is None or forwarded.proto in (None, forwarded.public_scheme):
        return None
    return Match(_("forwarded: the origin received X-Forwarded-Proto: {proto} for a "
                   "{scheme}:// URL").format(proto=forwarded.proto,
                                             scheme=forwarded.public_scheme),
                 {"scheme": forwarded.public_scheme, "proto": forwarded.proto})


def _client_ip_spoofable(f: Findings) -> Match | None:
    forwarded = f.get("forwarded", ForwardedFacts)
    if forwarded is None or not forwarded.spoofed_headers:
        return None
    return Match(_("forwarded: the doctor sent {ip} in {headers} and the origin "
                   "received it").format(ip=forwarded.spoof_ip,
                                         headers=", ".join(forwarded.spoofed_headers)),
                 {"ip": forwarded.spoof_ip})


def _origin_bypass(f: Findings) -> Match | None:
    seen = []
    for check_id in ("origin-http-no-secret", "origin-upgrade-no-secret"):
        refusal = f.get(check_id, RefusalFacts)
        if f.failed(check_id) and refusal is not None and refusal.answered:
            seen.append(f"{check_id}: {f.detail(check_id)}")
    return Match("; ".join(seen)) if seen else None


CAUSES: tuple[Cause, ...] = (
    Cause("redirect-loop", "error", "path",
          N_("The URL redirects in a loop ({count} redirects): browsers give up "
             "(ERR_TOO_MANY_REDIRECTS)."),
          N_("Find the hop that redirects (the chain is in the evidence). A classic: a proxy "
             "redirects http to https while a TLS CDN in front reaches it over http "
             "(Cloudflare SSL mode 'Flexible'); let the CDN reach it over https (SSL mode "
             "'Full'), or redirect on X-Forwarded-Proto instead of the connection's scheme."),
          _redirect_loop),
    Cause("dns-unresolvable", "error", "client-edge",
          N_("The public host name {host} does not resolve."),
          N_("Create the DNS record for the host (for Cloudflare: a proxied record pointing at "
             "the origin), check for typos, and wait for propagation."),
          _dns),
    Cause("tcp-unreachable", "error", "client-edge",
          N_("Nothing accepts connections at {target}."),
          N_("Start the edge or open the port: check the listen address, the firewall and the "
             "load balancer's listener."),
          _tcp),
    Cause("tls-invalid", "error", "client-edge",
          N_("The TLS certificate is not valid for this client."),
          N_("Serve a certificate for this host name from a trusted CA (renew it if expired); "
             "for a private CA install it on clients and give it to the doctor "
             "(`wsgate doctor URL --ca-file CA.pem`)."),
          _tls),
    # Not in the message catalog yet, so English in every language: adding it needs
    # `pybabel extract`, a Japanese translation and a reinstall (tests/i18n).
    Cause("admission-refused", "error", "edge",
          "The edge's admission control refused the doctor ({status}, {limit}): a client "
          "over its share, or an origin or an edge that is full.",
          "Run the doctor again after the answer's Retry-After (it opens several "
          "connections at once, which a tight limit refuses). If visitors are refused too, "
          "raise {limit} in the edge's [admission] table (docs/admission.md): everyone "
          "behind one NAT address is one client, and behind a CDN `client_ip_header` must "
          "name the CDN's client IP header. `wsgate logs edge.log --status {status}` lists "
          "who was refused.",
          _admission_refused),
    Cause("edge-origin-unreachable", "error", "edge-origin",
          N_("The edge answered {status}: it could not reach the origin."),
          N_("Start the origin or fix the edge's origin address/port; the edge's error log "
             "says why (`wsgate logs edge.log --status 5xx`, edge.log being the edge's "
             "`--log-file`; for a Cloudflare Worker: `wrangler tail`)."),
          _edge_origin_unreachable, "502 Bad Gateway"),
    Cause("edge-timeout", "error", "edge-origin",
          N_("The edge answered {status}: the origin accepted but did not answer in time."),
          N_("Find out why the origin is slow or stuck (its logs, CPU, a blocked worker); raise "
             "the edge's upstream read timeout only if the origin is legitimately slow."),
          _edge_timeout, "Connection timeout"),
    Cause("secret-rejected", "error", "edge-origin",
          N_("The origin refused the edge's request ({status}): the shared secret is missing "
             "or differs."),
          N_("Give the edge and the origin the same secret (edge: `wsgate edge --secret-env "
             "NAME` or `--secret-file FILE`; origin: `wsgate run app.py --secret-env NAME`), in "
             "the same header (X-CF-Secret unless both set `--secret-header`), then restart "
             "both."),
          _secret_rejected, "Received HTTP 403"),
    Cause("origin-check-rejected", "error", "origin",
          N_("The app refused a browser's Origin ({origin}): the Host it sees differs."),
          N_("Forward the public Host unchanged (nginx: `proxy_set_header Host $host;`), or "
             "allow the public URL at the origin (`wsgate run app.py --public-url URL`, or "
             "Streamlit's `server.corsAllowedOrigins`)."),
          _origin_check_rejected, "Received HTTP 403"),
    Cause("upgrade-not-forwarded", "error", "edge",
          N_("The WebSocket upgrade came back as a plain HTTP {status}: a proxy dropped "
             "Upgrade/Connection."),
          N_("Forward the upgrade on every hop (nginx: `proxy_http_version 1.1; "
             "proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection \"upgrade\";`; "
             "Cloudflare: enable WebSockets; a worker must return the origin's 101 untouched)."),
          _upgrade_not_forwarded, "WebSocket onerror / closes right after opening"),
    Cause("accept-invalid", "error", "edge",
          N_("The 101 answer is malformed: a browser rejects it."),
          N_("Return the origin's 101 unchanged: do not rebuild it or strip Upgrade, Connection "
             "or Sec-WebSocket-Accept (nginx: no proxy_hide_header for them)."),
          _accept_invalid, "WebSocket onerror / closes right after opening"),
    Cause("subprotocol-dropped", "error", "edge",
          N_("The '{offered}' subprotocol was offered but not echoed: browsers fail the "
             "handshake."),
          N_("Pass Sec-WebSocket-Protocol through in both directions, and make sure the app "
             "behind the path is the one that speaks it."),
          _subprotocol_dropped, "WebSocket onerror / closes right after opening"),
    Cause("closed-after-open", "error", "path",
          N_("The WebSocket opened and was closed right away."),
          N_("Read the edge's and the origin's logs at that time (`wsgate logs edge.log "
             "origin.log --websocket --join`): the app or a proxy closed it; check for "
             "crashes, auth on the stream path, or limits on connections."),
          _closed_after_open, "WebSocket onerror / closes right after opening"),
    Cause("app-not-rendering", "error", "origin",
          N_("The WebSocket works but the app never finished its script (the page stays "
             "\"Please wait...\")."),
          N_("Check the origin's log for errors in the script, and whether it blocks (long "
             "computations at import, waiting on a service); run it locally with `streamlit run`."),
          _app_not_rendering),
    Cause("affinity-missing", "error", "path",
          N_("Requests of one browser session reach different instances: a reconnect lost "
             "its Streamlit session (state reset, reload loops)."),
          N_("Give the replicas session affinity. With `wsgate edge`, name them all in one "
             "route (`origins = [...]`, see docs/origins.md); Cloud Run: `gcloud run services "
             "update SERVICE --session-affinity`; nginx: `ip_hash;` in the upstream; HAProxy: "
             "`cookie SRV insert indirect nocache` with a `cookie` on each server."),
          _affinity_missing, "reconnect loops, lost widget state"),
    Cause("idle-timeout", "error", "path",
          N_("An idle WebSocket is dropped after {seconds} s (close {code}); likely owner: "
             "{owner}."),
          N_("Raise the idle limit on that hop (nginx: `proxy_read_timeout 3600s;`, HAProxy: "
             "`timeout tunnel 1h`, the load balancer's or Cloud Run's timeout), or keep the "
             "socket busy more often than every {seconds} s: Streamlit "
             "`server.websocketPingInterval = {ping}`, or `wsgate edge --ping-interval {ping}`."),
          _idle_timeout, "Connection timeout"),
    Cause("forwarded-proto-missing", "warning", "edge",
          N_("The origin is not told the public scheme: X-Forwarded-Proto is missing (clients "
             "use {scheme})."),
          N_("Make the edge send `X-Forwarded-Proto: {scheme}` (nginx: `proxy_set_header "
             "X-Forwarded-Proto $scheme;`; `wsgate edge` sends it unless a proxy in front strips "
             "it), and make sure the origin trusts it from the edge only."),
          _forwarded_proto_missing, "WebSocket onerror / closes right after opening"),
    Cause("forwarded-proto-mismatch", "warning", "edge",
          N_("The origin is told the wrong public scheme: X-Forwarded-Proto is {proto}, clients "
             "use {scheme}."),
          N_("Make the edge send `X-Forwarded-Proto: {scheme}`, the scheme clients really use "
             "(`wsgate edge --forwarded-proto auto`, the default, sends the scheme it serves; "
             "or `wsgate edge --forwarded-proto {scheme}`; nginx: `proxy_set_header "
             "X-Forwarded-Proto $scheme;`). If clients come through a TLS proxy in front of "
             "this URL, probe the public https URL instead."),
          _forwarded_proto_mismatch, "WebSocket onerror / closes right after opening"),
    Cause("client-ip-spoofable", "warning", "edge",
          N_("A client can forge its IP address: the edge passes a client's X-Forwarded-For."),
          N_("Overwrite, do not append to, forwarding headers at the first trusted hop (nginx: "
             "`proxy_set_header X-Forwarded-For $remote_addr;`, or real_ip from the CDN's "
             "header; `wsgate edge` does this by default, and with `--client-ip-header "
             "CF-Connecting-IP` behind Cloudflare)."),
          _client_ip_spoofable),
    Cause("origin-bypass", "error", "origin",
          N_("The origin answers without the secret: anyone can bypass the edge."),
          N_("Run the origin behind the guard (`wsgate run app.py --secret-env WSGATE_SECRET`), "
             "or keep it off the public network (firewall, Cloud Run ingress "
             "'internal-and-cloud-load-balancing')."),
          _origin_bypass),
)

CAUSES_BY_ID: dict[str, Cause] = {cause.id: cause for cause in CAUSES}

UNEXPLAINED = Cause(
    "check-failed", "error", "path", N_("A check failed for a reason the doctor cannot name."),
    N_("Read the failed check's detail above and the edge and origin logs."),
    lambda f: None)


def diagnose_checks(checks: Sequence[Check]) -> tuple[Diagnosis, ...]:
    """Every matching cause, in table order; a failure nothing explains is still reported."""
    findings = Findings(checks)
    diagnoses = [
        Diagnosis(cause.id, cause.severity, _(cause.summary).format(**match.values),
                  match.evidence, _(cause.fix).format(**match.values), cause.where)
        for cause in CAUSES
        if (match := cause.detect(findings)) is not None
    ]
    if not any(d.severity == "error" for d in diagnoses):
        failed = [c for c in checks if c.status == "fail"]
        if failed:
            diagnoses.append(Diagnosis(
                UNEXPLAINED.id, "error", _(UNEXPLAINED.summary),
                "; ".join(f"{c.id}: {c.detail}" for c in failed), _(UNEXPLAINED.fix), "path"))
    return tuple(diagnoses)


def first_break(report: Report) -> Diagnosis | None:
    """The error that explains the most: the first one in table (path) order."""
    return next((d for d in report.diagnoses if d.severity == "error"), None)
