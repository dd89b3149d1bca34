"""The edge configuration as Worker rules: pure data rendered from wsgate's own policy.

`worker_rules` turns an `EdgeConfig` into the JSON the Worker's mechanism reads. Every
header list comes from `wsgate.policy.headers` (the same objects `wsgate edge` uses), so
a rule changed there changes both targets. `platform_notes` names each setting that
Cloudflare cannot honour and what replaces it; `check_platform` refuses the settings
that would silently change behaviour, naming the key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Final

from wsgate.config import ConfigError, EdgeConfig, ip_literal
from wsgate.i18n import N_, _
from wsgate.policy import headers as hp

# On Cloudflare the client address is the header Cloudflare sets on every request.
CLOUDFLARE_CLIENT_IP_HEADER: Final = "CF-Connecting-IP"
# `upstream_headers` drops every client header with this prefix (X-Forwarded-*).
REFUSED_METHODS: Final = ("CONNECT", "TRACE")


@dataclass(frozen=True, slots=True)
class Notice:
    """A setting the Worker does not apply, and what does that job on Cloudflare."""

    key: str
    replacement: str

    def __str__(self) -> str:
        return _("{key}: not applied by the Worker; {replacement}").format(
            key=self.key, replacement=_(self.replacement))


def _names(values: frozenset[bytes] | set[bytes]) -> list[str]:
    return sorted(v.decode("ascii") for v in values)


def worker_rules(config: EdgeConfig) -> dict[str, Any]:
    """The rules JSON for worker.js. It never holds the secret, only its binding name."""
    # The policies are built from a copy without the secret, so no value can leak in.
    policy_config = dataclasses.replace(
        config, secret="", client_ip_header=CLOUDFLARE_CLIENT_IP_HEADER)
    request = hp.RequestPolicy.from_config(policy_config)
    response = hp.ResponsePolicy.from_config(policy_config)
    marker = response.marker
    return {
        "routes": [
            {"pattern": r.pattern, "host": r.host, "path": r.path, "prefix": r.prefix,
             "origin": f"{r.origin.scheme}://{r.origin.host_header}",
             "originUrl": r.origin.url}
            for r in config.routes
        ],
        "hopByHop": _names(hp.HOP_BY_HOP),
        "requestDrop": _names(request.drop),
        "requestDropPrefixes": [hp.FORWARDED_PREFIX.decode("ascii")],
        "responseDrop": _names(response.drop),
        "refusedMethods": list(REFUSED_METHODS),
        # The pattern `wsgate edge` accepts a client's X-Request-Id with (bytes there).
        "requestIdPattern": hp.REQUEST_ID_RE.pattern.decode("ascii"),
        "clientIpHeader": CLOUDFLARE_CLIENT_IP_HEADER.lower(),
        "secretHeader": request.secret_header.decode("ascii"),
        "secretBinding": config.secret_env,
        "requireSecret": not config.insecure_no_secret,
        # "" = the scheme the client used (the edge's "auto"; on Cloudflare the URL's).
        "forwardedProto": "" if config.forwarded_proto == "auto" else config.forwarded_proto,
        "publicHost": config.public_host,
        "marker": [marker[0].decode("ascii"), marker[1].decode("ascii")] if marker else None,
        "cacheExtensions": [e.lower() for e in config.cache.extensions],
        "cacheValue": config.cache.value,
        "maxBodyBytes": config.limits.max_body_bytes,
        "upstreamResponseMs": round(config.timeouts.upstream_response * 1000),
    }


# How the Worker treats each edge setting, by its TOML key. A key that is in neither
# table and differs from its default is refused at build: a new edge setting is never
# silently ignored by the Worker.
APPLIED: Final = frozenset({
    "listen",  # `wsgate worker dev` only; on Cloudflare the routes decide
    "public_host", "forwarded_proto", "client_ip_header", "secret_header", "secret_env",
    "secret_file", "insecure_no_secret", "marker_header", "strip_response_headers",
    "cache.extensions", "cache.value", "limits.max_body_bytes", "timeouts.upstream_response",
    # Only used by routes with several origins, which are refused below.
    "affinity_cookie", "health.",
})
REPLACED: Final[dict[str, str]] = {
    "admin_listen": N_("no /metrics, /healthz or /readyz: use the Workers dashboard (Metrics) "
                       "and `wsgate doctor URL`"),
    "log_file": N_("the Worker writes its JSON lines with console.log: read them with "
                   "`wrangler tail --format json` (into `wsgate logs`) or in Workers Logs"),
    "tls_cert": N_("Cloudflare terminates TLS with the zone's edge certificate"),
    "tls_key": N_("Cloudflare terminates TLS with the zone's edge certificate"),
    "origin_ca_file": N_("the Worker verifies https origins against public CAs: give the "
                         "origin a publicly trusted certificate"),
    "workers": N_("Cloudflare runs the Worker in every location; there are no processes to set"),
    "timeouts.websocket_ping_interval": N_("the Worker returns the origin's 101 untouched and "
        "cannot inject pings; Cloudflare closes WebSockets idle for 100 s, so keep the "
        "origin's pings below that (Streamlit server.websocketPingInterval)"),
    "limits.max_header_bytes": N_("Cloudflare limits request headers itself (32 KiB, answered "
                                  "with 431 before the Worker runs)"),
    "limits.max_header_count": N_("Cloudflare bounds request headers itself"),
    "limits.write_buffer_bytes": N_("the Workers runtime applies its own flow control"),
    "limits.upstream_keepalive": N_("Cloudflare pools origin connections itself"),
    "limits.min_body_rate": N_("Cloudflare bounds slow uploads itself"),
    "timeouts.connect": N_("Cloudflare gives up on an unreachable origin itself (the Worker "
                           "answers 502)"),
    "timeouts.client_idle": N_("Cloudflare closes idle client connections itself"),
    "timeouts.request_header": N_("Cloudflare bounds slow request heads itself"),
    "timeouts.client_body": N_("Cloudflare bounds slow uploads itself"),
    "timeouts.upstream_idle": N_("Cloudflare pools origin connections itself"),
    "timeouts.drain": N_("`wrangler deploy` lets in-flight requests finish"),
    "timeouts.reload_websockets": N_("`wrangler deploy` lets open WebSockets run on the old "
                                     "version"),
    "admission.": N_("per-client limits on Cloudflare are rate limiting rules (Security > WAF), "
                     "set on the zone rather than in the Worker"),
}


def _listed(key: str, table: frozenset[str] | dict[str, str]) -> str | None:
    """The table entry for `key`: itself, or its section prefix ("health.")."""
    if key in table:
        return key
    section = key.partition(".")[0] + "."
    return section if "." in key and section in table else None


def changed_settings(config: EdgeConfig) -> list[str]:
    """TOML keys whose value differs from the default (routes and secret aside)."""
    changed = []
    for f in dataclasses.fields(config):
        if f.name in ("routes", "secret"):
            continue
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            default = type(value)()
            changed += [f"{f.name}.{sub.name}" for sub in dataclasses.fields(value)
                        if getattr(value, sub.name) != getattr(default, sub.name)]
        elif f.default is not dataclasses.MISSING and value != f.default:
            changed.append(f.name)
    return changed


def check_platform(config: EdgeConfig) -> None:
    """Refuse what the Worker would do differently without saying so, naming the key."""
    trusted = config.client_ip_header
    if trusted and trusted.lower() != CLOUDFLARE_CLIENT_IP_HEADER.lower():
        raise ConfigError(
            f"client_ip_header: the Worker takes the client address from "
            f"{CLOUDFLARE_CLIENT_IP_HEADER} (set by Cloudflare); {trusted} would be a header "
            f"clients can forge there. Remove the key or set it to {CLOUDFLARE_CLIENT_IP_HEADER}")
    for i, route in enumerate(config.routes):
        if len(getattr(route, "origins", (route.origin,))) > 1:
            raise ConfigError(f"routes[{i}].origins: the Worker sends a route to one origin; "
                              "several origins (affinity, health checks) would silently "
                              "become the first one. Use Cloudflare Load Balancing as the "
                              "route's origin host instead")
    for key in changed_settings(config):
        if _listed(key, APPLIED) is None and _listed(key, REPLACED) is None:
            raise ConfigError(f"{key}: the Worker has no equivalent of this setting and would "
                              "silently behave as if it were not set; remove it from the "
                              "configuration you build the Worker from")


def platform_notes(config: EdgeConfig) -> list[Notice]:
    """Each setting in `config` that the Worker cannot honour, with its replacement."""
    notes = []
    for key in changed_settings(config):
        entry = _listed(key, REPLACED)
        if entry is not None:
            notes.append(Notice(key, REPLACED[entry]))
    for i, route in enumerate(config.routes):
        if ip_literal(route.origin.host):
            notes.append(Notice(f"routes[{i}].origin", N_(
                "Cloudflare refuses fetch() to an IP address (error 1003): give the origin a "
                "host name before deploying (fine for `wsgate worker dev`)")))
    return notes
