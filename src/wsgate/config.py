"""Edge settings: TOML file + environment + command-line flags → frozen, validated dataclasses.

Precedence (highest first): CLI flags, `WSGATE_EDGE_*` environment variables, the TOML
file, built-in defaults. Every error names the key and the problem (`ConfigError`);
unknown keys are rejected so a typo never silently falls back to a default.

The secret VALUE is never read from TOML or argv: only from the environment variable
named by `secret_env` or from `secret_file`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from wsgate.i18n import _

ENV_PREFIX: Final = "WSGATE_EDGE_"
MAX_WORKERS: Final = 256
DEFAULT_SECRET_ENV: Final = "WSGATE_SECRET"  # noqa: S105 - a variable name
DEFAULT_CACHE_EXTENSIONS: Final = (
    ".js", ".css", ".png", ".jpg", ".jpeg", ".gif", ".svg", ".woff", ".woff2", ".ico",
)
# RFC 9110 token characters: what a header name may contain.
_TOKEN_RE: Final = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# host[:port] or [IPv6][:port]: what X-Forwarded-Host may be set to.
_PUBLIC_HOST_RE: Final = re.compile(r"[A-Za-z0-9.\-]+(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?")
# Visible ASCII plus space/tab, no leading/trailing whitespace: a safe header value.
_VALUE_RE: Final = re.compile(r"^[\x21-\x7e]([\x20-\x7e\t]*[\x21-\x7e])?$")


class ConfigError(ValueError):
    """A configuration problem, phrased for the user: `key: problem`."""


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str  # "http" | "https"
    host: str  # hostname or IP literal, without brackets
    port: int
    url: str  # normalised "scheme://host[:port]" for logs

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def host_header(self) -> str:
        """Host header value for the origin: its host, with the port when not default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.tls else 80
        return host if self.port == default else f"{host}:{self.port}"

    def __hash__(self) -> int:
        # Origins key dicts on every request (the pool, Host headers, the balancer):
        # the normalised URL's cached str hash, not a tuple of every field each time.
        # Equal origins have equal URLs, so this agrees with the generated __eq__.
        return hash(self.url)


@dataclass(frozen=True, slots=True)
class Route:
    pattern: str  # as written, used as the route label in logs and metrics
    host: str  # "" = any host; "*.example.com" = subdomains; else exact (lowercase)
    path: str  # path prefix when `prefix`, else the exact path
    prefix: bool
    origin: Origin  # the first of `origins`: the one-origin form's only origin
    # Several origins share the route's sessions (wsgate.policy.balance); weights run
    # parallel to origins. Both default to the one-origin form.
    origins: tuple[Origin, ...] = ()
    weights: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.origins:
            object.__setattr__(self, "origins", (self.origin,))
        if not self.weights:
            object.__setattr__(self, "weights", (1,) * len(self.origins))

    def __hash__(self) -> int:
        # As Origin's: a route keys the balancer's tables on every request, and the
        # generated hash would hash every origin in turn. Equal routes have equal patterns.
        return hash(self.pattern)


@dataclass(frozen=True, slots=True)
class CacheRule:
    extensions: tuple[str, ...] = DEFAULT_CACHE_EXTENSIONS
    value: str = "public, max-age=86400"


@dataclass(frozen=True, slots=True)
class Limits:
    max_header_bytes: int = 16384
    max_header_count: int = 100
    max_body_bytes: int = 200 * 1024 * 1024
    # Write-buffer high-water mark per socket: bounds memory per connection.
    write_buffer_bytes: int = 65536
    upstream_keepalive: int = 32
    # A request body's deadline grows by one second per `min_body_rate` bytes received
    # (0 = per-read timeout only).
    min_body_rate: int = 500


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    """[admission]: how much one client, one origin and the whole edge may hold
    (docs/admission.md). Every limit is off while it is 0."""

    max_connections: int = 0
    max_websockets_per_client: int = 0
    max_websockets_per_origin: int = 0
    max_requests_per_second_per_client: int = 0
    burst: int = 0  # the token bucket's size; 0 = one second's worth of requests
    # Size cap of the per-client bucket table: bounds memory under a flood of addresses.
    max_tracked_clients: int = 100_000


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 5.0
    upstream_response: float = 60.0
    client_idle: float = 75.0
    request_header: float = 10.0
    client_body: float = 30.0
    upstream_idle: float = 4.0
    websocket_ping_interval: float = 0.0
    drain: float = 10.0
    # On a reload (SIGHUP), how long the old generation keeps its WebSockets open
    # before closing them with 1001 (0 = no limit: until they close by themselves).
    reload_websockets: float = 0.0


@dataclass(frozen=True, slots=True)
class Health:
    """Active health checks of each origin of a route with several origins."""

    path: str = "/_stcore/health"
    interval: float = 5.0
    timeout: float = 2.0
    unhealthy_threshold: int = 2  # consecutive failures (checks or connects) → down
    healthy_threshold: int = 2  # consecutive passed checks → up again


@dataclass(frozen=True, slots=True)
class EdgeConfig:
    routes: tuple[Route, ...]
    secret: str = field(repr=False, default="")
    listen: str = "127.0.0.1:8080"
    admin_listen: str = ""
    public_host: str = ""
    forwarded_proto: str = "auto"  # the client's scheme; see policy.headers.forwarded_proto
    client_ip_header: str = ""
    secret_header: str = "X-CF-Secret"  # noqa: S105 - a header name
    secret_env: str = DEFAULT_SECRET_ENV
    secret_file: str = ""
    insecure_no_secret: bool = False
    log_file: str = ""
    marker_header: str = "X-Worker-Proxy: Active"
    strip_response_headers: tuple[str, ...] = ("X-Cloud-Trace-Context",)
    tls_cert: str = ""
    tls_key: str = ""
    origin_ca_file: str = ""
    cache: CacheRule = CacheRule()
    limits: Limits = Limits()
    timeouts: Timeouts = Timeouts()
    admission: AdmissionLimits = AdmissionLimits()
    health: Health = Health()
    # Origins (URLs as in routes) that take no new sessions; their sessions run on.
    draining_origins: tuple[str, ...] = ()
    affinity_cookie: str = "wsgate_affinity"
    # Worker processes sharing the listening socket ("auto" in TOML/env: one per core);
    # 1 = the single-process edge, no supervisor.
    workers: int = 1

    @property
    def listen_addr(self) -> tuple[str, int]:
        return parse_hostport(self.listen, "listen")

    @property
    def admin_addr(self) -> tuple[str, int] | None:
        return parse_hostport(self.admin_listen, "admin_listen") if self.admin_listen else None

    @property
    def marker(self) -> tuple[str, str] | None:
        return parse_marker(self.marker_header)


# Keys accepted at each level of the TOML document (and in the environment).
_TOP_SCALARS: Final = {f.name for f in dataclasses.fields(EdgeConfig)} - {
    "routes", "secret", "cache", "limits", "timeouts", "health", "admission"}
_SECTIONS: Final[dict[str, type[Any]]] = {
    "cache": CacheRule, "limits": Limits, "timeouts": Timeouts, "health": Health,
    "admission": AdmissionLimits}
_ROUTE_KEYS: Final = {"pattern", "origin", "origins"}
MAX_WEIGHT: Final = 1000


def parse_hostport(text: str, key: str) -> tuple[str, int]:
    """"host:port" or "[v6]:port" → (host, port)."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ConfigError(_("{key}: {text!r} is not [IPv6]:PORT").format(key=key, text=text))
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or ":" in host:
            raise ConfigError(_("{key}: {text!r} is not HOST:PORT (IPv6 needs [brackets])").format(
                                  key=key, text=text))
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(_("{key}: port {port!r} is not a number in 0-65535").format(
                              key=key, port=port_text))
    return host or "0.0.0.0", int(port_text)


def parse_marker(text: str) -> tuple[str, str] | None:
    """`marker_header` ("Name: value", or "" for none) → (name, value)."""
    if not text:
        return None
    name, sep, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not sep:
        raise ConfigError(_("marker_header: {text!r} must be 'Name: value'").format(text=text))
    _check_header_name(name, "marker_header")
    if not _VALUE_RE.match(value):
        raise ConfigError(_("marker_header: value {value!r} is not a valid header value").format(
                              value=value))
    return name, value


def parse_origin(url: str, key: str) -> Origin:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(_("{key}: {url!r} is not a valid URL ({error})").format(
                              key=key, url=url, error=exc)) from None
    if parts.scheme not in ("http", "https"):
        raise ConfigError(_("{key}: {url!r} must start with http:// or https://").format(
                              key=key, url=url))
    if not parts.hostname:
        raise ConfigError(_("{key}: {url!r} has no host").format(key=key, url=url))
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ConfigError(_("{key}: {url!r} must be scheme://host[:port] only (the client's path "
                            "and query are forwarded unchanged)").format(key=key, url=url))
    port = port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname.lower()
    shown = f"[{host}]" if ":" in host else host
    return Origin(parts.scheme, host, port, f"{parts.scheme}://{shown}:{port}")


def parse_origins(entries: Any, key: str) -> tuple[tuple[Origin, ...], tuple[int, ...]]:
    """`origins = ["http://a:8501", {url = "http://b:8501", weight = 2}]` → origins, weights."""
    if not isinstance(entries, list) or not entries:
        raise ConfigError(_("{key}: expected a non-empty list of origin URLs").format(key=key))
    origins: list[Origin] = []
    weights: list[int] = []
    for i, entry in enumerate(entries):
        where = f"{key}[{i}]"
        weight: Any = 1
        if isinstance(entry, Mapping):
            _reject_unknown(entry, {"url", "weight"}, where)
            url, weight = entry.get("url"), entry.get("weight", 1)
        else:
            url = entry
        if not isinstance(url, str):
            raise ConfigError(_("{where}: expected a URL string or "
                                "{{url = ..., weight = N}}").format(where=where))
        if isinstance(weight, bool) or not isinstance(weight, int) or \
                not 1 <= weight <= MAX_WEIGHT:
            raise ConfigError(_("{where}.weight: expected an integer from 1 to {max}").format(
                                  where=where, max=MAX_WEIGHT))
        origin = parse_origin(url, where)
        if origin in origins:
            raise ConfigError(_("{where}: {url} is listed twice").format(
                                  where=where, url=origin.url))
        origins.append(origin)
        weights.append(weight)
    return tuple(origins), tuple(weights)


def parse_route(pattern: str, origin: str | list[Any], key: str) -> Route:
    """`host/path*`: host "" or "*" = any, "*.example.com" = subdomains; a trailing
    `*` on the path makes it a prefix; no path means "/*". `origin` is one URL, or the
    `origins` list of a route with several."""
    if not pattern or any(c.isspace() for c in pattern):
        raise ConfigError(_("{key}.pattern: {pattern!r} must be non-empty, without spaces").format(
                              key=key, pattern=pattern))
    host, slash, path = pattern.partition("/")
    path = slash + path if slash else "/*"
    host = host.lower()
    if host == "*":
        host = ""
    if host and not re.fullmatch(r"(\*\.)?[a-z0-9.\-\[\]:]+", host):
        raise ConfigError(_("{key}.pattern: host part {host!r} is not a host name").format(
                              key=key, host=host))
    prefix = path.endswith("*")
    path = path.rstrip("*") if prefix else path
    if "*" in path:
        raise ConfigError(_("{key}.pattern: '*' is allowed only at the end of the path").format(
                              key=key))
    if isinstance(origin, str):
        only = parse_origin(origin, f"{key}.origin")
        return Route(pattern, host, path, prefix, only)
    origins, weights = parse_origins(origin, f"{key}.origins")
    return Route(pattern, host, path, prefix, origins[0], origins, weights)


def _check_header_name(value: str, key: str) -> None:
    if not _TOKEN_RE.match(value):
        raise ConfigError(_("{key}: {value!r} is not a valid header name").format(
                              key=key, value=value))


def _coerce(value: Any, kind: Any, key: str) -> Any:
    """Check/convert one value to the dataclass field type; env values arrive as str."""
    if kind is bool:
        if isinstance(value, str):
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off", ""):
                return False
        if isinstance(value, bool):
            return value
        raise ConfigError(_("{key}: expected true or false, got {value!r}").format(
                              key=key, value=value))
    if kind is int:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(_("{key}: expected an integer, got {value!r}").format(
                                  key=key, value=value))
        if value < 0:
            raise ConfigError(_("{key}: must not be negative, got {value}").format(
                                  key=key, value=value))
        return value
    if kind is float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(_("{key}: expected a number of seconds, got {value!r}").format(
                                      key=key, value=value)) from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(_("{key}: expected a number of seconds, got {value!r}").format(
                                  key=key, value=value))
        if value < 0 or value != value or value == float("inf"):
            raise ConfigError(_("{key}: must be a finite number >= 0, got {value}").format(
                                  key=key, value=value))
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(_("{key}: expected a string, got {value!r}").format(
                                  key=key, value=value))
        return value
    # tuple[str, ...]
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ConfigError(_("{key}: expected a list of strings, got {value!r}").format(
                              key=key, value=value))
    return tuple(value)


def _build(cls: type[Any], raw: Mapping[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in raw.items():
        kind = hints[name]
        if isinstance(kind, types.GenericAlias):
            kind = tuple
        kwargs[name] = _coerce(value, kind, prefix + name)
    return cls(**kwargs)


def _reject_unknown(raw: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        known = ", ".join(sorted(allowed))
        message = (_("{key}: unknown key in [{section}] (known: {known})") if where
                   else _("{key}: unknown key (known: {known})"))
        raise ConfigError(message.format(key=unknown[0], section=where, known=known))


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """WSGATE_EDGE_LISTEN, WSGATE_EDGE_TIMEOUTS_CONNECT, ... → nested raw dict."""
    out: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        key = name[len(ENV_PREFIX):].lower()
        if key in _TOP_SCALARS:
            out[key] = value
            continue
        section, _sep, sub = key.partition("_")
        if section in _SECTIONS and sub in {f.name for f in dataclasses.fields(_SECTIONS[section])}:
            out.setdefault(section, {})[sub] = value
        elif key == "origin":
            out["origin"] = value
        else:
            raise ConfigError(_("{name}: unknown wsgate edge environment variable").format(
                                  name=name))
    return out


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def read_secret(secret_env: str, secret_file: str, environ: Mapping[str, str]) -> str:
    if secret_file:
        try:
            secret = Path(secret_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(_("secret_file: cannot read {path!r}: {error}").format(
                                  error=exc.strerror, path=secret_file)) from None
        where = _("secret_file {path!r}").format(path=secret_file)
    else:
        secret = environ.get(secret_env, "").strip()
        where = _("environment variable {name}").format(name=secret_env)
    if secret and not _VALUE_RE.match(secret):
        # Never echo the value itself.
        raise ConfigError(_("secret: the value in {where} is not a valid header value (printable "
                            "ASCII only)").format(where=where))
    return secret


def load_config(path: str | os.PathLike[str] | None = None,
                cli: Mapping[str, Any] | None = None,
                environ: Mapping[str, str] | None = None) -> EdgeConfig:
    """Build the edge settings. `cli` holds flag values already named like TOML keys
    (`origin` for the catch-all route, nested dicts for sections); None values are ignored."""
    environ = os.environ if environ is None else environ
    raw = _read_toml(path) if path is not None else {}
    raw = _merge(raw, _env_overrides(environ))
    raw = _merge(raw, {k: v for k, v in (cli or {}).items() if v is not None})
    routes = _routes(raw.pop("origin", None), raw.pop("routes", None))
    sections = {}
    for name, cls in _SECTIONS.items():
        sub = raw.pop(name, {})
        if not isinstance(sub, Mapping):
            raise ConfigError(_("{name}: must be a table ([{name}])").format(name=name))
        _reject_unknown(sub, {f.name for f in dataclasses.fields(cls)}, name)
        sections[name] = _build(cls, sub, f"{name}.")
    hints = typing.get_type_hints(EdgeConfig)
    if isinstance(raw.get("workers"), str) and raw["workers"].strip().lower() == "auto":
        raw["workers"] = usable_cpus()
    values = {name: _coerce(value, tuple if name == "strip_response_headers" else hints[name],
                            name) for name, value in raw.items()}
    secret = read_secret(values.get("secret_env", DEFAULT_SECRET_ENV),
                         values.get("secret_file", ""), environ)
    config = EdgeConfig(routes=routes, secret=secret, **sections, **values)
    validate(config, environ)
    return config


def _read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(_("config: cannot read {path!r}: {error}").format(
                              path=str(path), error=exc.strerror)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(_("config: {path!r} is not valid TOML: {error}").format(
                              path=str(path), error=exc)) from None
    _reject_unknown(raw, _TOP_SCALARS | set(_SECTIONS) | {"routes"}, "")
    return raw


def _routes(origin: object, routes_raw: object) -> tuple[Route, ...]:
    """[[routes]] from the file, or one catch-all from `origin` (flag or env)."""
    if origin is not None:
        if not isinstance(origin, str):
            raise ConfigError(_("origin: expected a URL string, got {origin!r}").format(
                                  origin=origin))
        routes_raw = [{"pattern": "*/*", "origin": origin}]
    if not routes_raw:
        raise ConfigError(_("routes: no route configured (add [[routes]] to the config or pass "
                            "--origin URL)"))
    if not isinstance(routes_raw, list):
        raise ConfigError(_("routes: must be an array of tables ([[routes]])"))
    return tuple(_route(entry, f"routes[{i}]") for i, entry in enumerate(routes_raw))


def _route(entry: object, key: str) -> Route:
    if not isinstance(entry, Mapping):
        raise ConfigError(_("{key}: must be a table with pattern and origin").format(key=key))
    _reject_unknown(entry, _ROUTE_KEYS, "routes")
    if "origin" not in entry and "origins" not in entry:
        raise ConfigError(_("{key}.origin: missing (origin = URL, or origins = [URL, ...])").format(
                              key=key))
    if "origin" in entry and "origins" in entry:
        raise ConfigError(_("{key}: give either origin (one URL) or origins (a list)").format(
                              key=key))
    if not isinstance(entry.get("pattern"), str):
        raise ConfigError(_("{key}.pattern: missing or not a string").format(key=key))
    if "origin" in entry and not isinstance(entry["origin"], str):
        raise ConfigError(_("{key}.origin: missing or not a string").format(key=key))
    return parse_route(entry["pattern"], entry.get("origin", entry.get("origins")), key)


def usable_cpus() -> int:
    """CPUs this process may run on (a cpuset or `taskset` counts), for workers = "auto"."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def validate(c: EdgeConfig, environ: Mapping[str, str] | None = None) -> None:
    """Cross-field and value checks, each naming its key (`environ`: where the secret
    was looked up, to tell an empty variable from a missing one)."""
    parse_hostport(c.listen, "listen")
    if c.admin_listen:
        parse_hostport(c.admin_listen, "admin_listen")
    if c.public_host and not _PUBLIC_HOST_RE.fullmatch(c.public_host):
        raise ConfigError(_("public_host: {value!r} is not host[:port]").format(
                              value=c.public_host))
    if c.forwarded_proto not in ("auto", "http", "https"):
        raise ConfigError(
            _("forwarded_proto: must be auto, http or https, got {value!r}").format(
                value=c.forwarded_proto))
    _validate_secret(c, os.environ if environ is None else environ)
    _validate_headers(c)
    _validate_files(c)
    _validate_limits(c)
    _validate_admission(c.admission)
    if not 1 <= c.workers <= MAX_WORKERS:
        raise ConfigError(_("workers: must be \"auto\" or 1-{max}, got {value}").format(
                              value=c.workers, max=MAX_WORKERS))
    _validate_balance(c)


def _validate_secret(c: EdgeConfig, environ: Mapping[str, str]) -> None:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", c.secret_env):
        raise ConfigError(_("secret_env: {name!r} is not an environment variable name").format(
                              name=c.secret_env))
    if c.secret or c.insecure_no_secret:
        return
    if c.secret_file:
        where = _("secret_file {path!r} is empty").format(path=c.secret_file)
    elif c.secret_env in environ:
        where = _("environment variable {name} is empty").format(name=c.secret_env)
    else:
        where = _("environment variable {name} is not set").format(name=c.secret_env)
    raise ConfigError(_("secret: {where}; set it (or choose another with --secret-env / "
                        "--secret-file), or pass --insecure-no-secret to run without one").format(
                          where=where))


def _validate_headers(c: EdgeConfig) -> None:
    _check_header_name(c.secret_header, "secret_header")
    if c.client_ip_header:
        _check_header_name(c.client_ip_header, "client_ip_header")
        if c.client_ip_header.lower() == c.secret_header.lower():
            raise ConfigError(_("client_ip_header: must differ from secret_header"))
    parse_marker(c.marker_header)
    for name in c.strip_response_headers:
        _check_header_name(name, "strip_response_headers")
    for ext in c.cache.extensions:
        if not re.fullmatch(r"\.[A-Za-z0-9]+", ext):
            raise ConfigError(_("cache.extensions: {ext!r} must look like '.js'").format(ext=ext))
    if c.cache.value and not _VALUE_RE.match(c.cache.value):
        raise ConfigError(_("cache.value: {value!r} is not a valid header value").format(
                              value=c.cache.value))


def _validate_files(c: EdgeConfig) -> None:
    if bool(c.tls_cert) != bool(c.tls_key):
        raise ConfigError(_("tls_cert: tls_cert and tls_key must be given together"))
    for key in ("tls_cert", "tls_key", "origin_ca_file"):
        value = getattr(c, key)
        if value and not Path(value).is_file():
            raise ConfigError(_("{key}: file {value!r} does not exist").format(
                                  key=key, value=value))


def _validate_limits(c: EdgeConfig) -> None:
    lim = c.limits
    if lim.max_header_bytes < 1024:
        raise ConfigError(_("limits.max_header_bytes: must be at least 1024"))
    if lim.max_header_count < 8:
        raise ConfigError(_("limits.max_header_count: must be at least 8"))
    if lim.write_buffer_bytes < 4096:
        raise ConfigError(_("limits.write_buffer_bytes: must be at least 4096"))
    t = c.timeouts
    for name in ("connect", "upstream_response", "client_idle", "request_header",
                 "client_body", "drain"):
        if getattr(t, name) <= 0:
            raise ConfigError(_("timeouts.{name}: must be greater than 0").format(name=name))
    if 0 < t.websocket_ping_interval < 1:
        raise ConfigError(_("timeouts.websocket_ping_interval: use 0 (off) or at least 1 second"))


def _validate_balance(c: EdgeConfig) -> None:
    """The settings of routes with several origins: health checks, draining, cookie."""
    h = c.health
    if not h.path.startswith("/") or not _VALUE_RE.match(h.path):
        raise ConfigError(_("health.path: {path!r} must be a path starting with /").format(
                              path=h.path))
    if h.interval < 0.1:
        raise ConfigError(_("health.interval: must be at least 0.1 seconds"))
    if not 0 < h.timeout <= h.interval:
        raise ConfigError(_("health.timeout: must be greater than 0 and at most health.interval"))
    for name in ("unhealthy_threshold", "healthy_threshold"):
        if getattr(h, name) < 1:
            raise ConfigError(_("health.{name}: must be at least 1").format(name=name))
    _check_header_name(c.affinity_cookie, "affinity_cookie")
    known = {o.url for r in c.routes for o in r.origins}
    for i, url in enumerate(c.draining_origins):
        if parse_origin(url, f"draining_origins[{i}]").url not in known:
            raise ConfigError(_("draining_origins[{i}]: {url!r} is not an origin of any "
                                "route").format(i=i, url=url))


def _validate_admission(a: AdmissionLimits) -> None:
    if a.burst and not a.max_requests_per_second_per_client:
        raise ConfigError(_("admission.burst: set admission.max_requests_per_second_per_client "
                            "too (burst is the size of that token bucket)"))
    if a.max_tracked_clients < 1000:
        raise ConfigError(_("admission.max_tracked_clients: must be at least 1000"))


def ip_literal(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
