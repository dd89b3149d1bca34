"""Run a Streamlit script exactly as `streamlit run` does, with OriginGuard in front.

How: Streamlit's own click CLI runs in this process (so `--server.*` flags,
`STREAMLIT_*` environment variables and `.streamlit/config.toml` are applied by
Streamlit itself), after three hooks in Streamlit 1.67's Starlette server module
(`streamlit.web.server.starlette.starlette_server`):

- `create_starlette_app` (plain scripts) and `UvicornRunner.__init__` (scripts that
  define an `st.App` or another ASGI app) are wrapped so the ASGI app handed to
  uvicorn is `OriginGuard(app)`: the guard is the outermost layer, in front of
  every route (static mount, media, upload, stream WebSocket) and also in front of
  any middleware an `st.App(middleware=[...])` adds. (Patching
  `starlette_app.create_streamlit_middleware` instead would put an `st.App`'s own
  middleware in front of the guard, and would miss plain ASGI apps entirely.)
- `_get_uvicorn_config_kwargs` gains `proxy_headers=False`: uvicorn's
  ProxyHeadersMiddleware would otherwise rewrite scheme and client from
  X-Forwarded-* for loopback peers *before* the guard has checked anything.

The guard's settings that depend on Streamlit's config (`server.baseUrlPath`,
`server.corsAllowedOrigins`) are read when the app is built, i.e. after Streamlit
has loaded its config.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from wsgate.guard.asgi import DEFAULT_ECHO_PATH, DEFAULT_OPEN_PATHS, ASGIApp, OriginGuard
from wsgate.i18n import _

STARLETTE_SERVER = "streamlit.web.server.starlette.starlette_server"


class LaunchError(Exception):
    """A problem reported to the user as one line, before Streamlit starts."""


@dataclass(frozen=True)
class GuardSettings:
    secrets: tuple[str, ...]
    secret_header: str
    public_url: str | None = None
    open_paths: tuple[str, ...] = DEFAULT_OPEN_PATHS
    echo_path: str | None = DEFAULT_ECHO_PATH
    insecure_no_secret: bool = False
    flood_limit: int = 10
    flood_window_s: float = 60.0
    access_log: bool = True
    logger: logging.Logger | None = field(default=None, compare=False)


def public_origin(url: str) -> str:
    """`https://app.example.com/some/path` → `https://app.example.com`."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LaunchError(_("--public-url must be an http(s) URL with a host, got {url!r}").format(
            url=url))
    return f"{parts.scheme}://{parts.netloc}"


def starlette_server_module() -> Any:
    """Streamlit's Starlette server module, or a LaunchError naming what is missing."""
    import importlib

    try:
        import streamlit
    except ImportError as exc:
        raise LaunchError(_("Streamlit is not installed: pip install 'wsgate[streamlit]'")) \
            from exc
    try:
        module = importlib.import_module(STARLETTE_SERVER)
    except ImportError as exc:
        raise LaunchError(_(
            "Streamlit {version} has no Starlette server (st.App); wsgate run needs "
            "streamlit>=1.67").format(version=streamlit.__version__)) from exc
    needed = ("create_starlette_app", "UvicornRunner", "_get_uvicorn_config_kwargs")
    missing = [name for name in needed if not hasattr(module, name)]
    if missing or not hasattr(streamlit, "App"):
        raise LaunchError(_(
            "Streamlit {version} lacks {missing}; wsgate run supports the Starlette server of "
            "streamlit>=1.67").format(version=streamlit.__version__,
                                      missing=", ".join(missing) or "st.App"))
    return module


def guard_factory(settings: GuardSettings) -> Callable[[ASGIApp], ASGIApp]:
    """Wrap an app in OriginGuard, reading Streamlit's config at that moment."""

    def wrap(app: ASGIApp) -> ASGIApp:
        from streamlit import config

        if settings.public_url:
            allow_public_origin(public_origin(settings.public_url))
        return OriginGuard(
            app,
            secrets=settings.secrets,
            secret_header=settings.secret_header,
            open_paths=settings.open_paths,
            public_url=settings.public_url,
            base_url_path=str(config.get_option("server.baseUrlPath") or ""),
            echo_path=settings.echo_path,
            insecure_no_secret=settings.insecure_no_secret,
            logger=settings.logger,
            flood_limit=settings.flood_limit,
            flood_window_s=settings.flood_window_s,
            access_log=settings.access_log,
        )

    return wrap


def allow_public_origin(origin: str) -> None:
    """Add `origin` to `server.corsAllowedOrigins`, keeping what is configured.

    Streamlit's stream endpoint accepts an Origin whose host equals Host, or whose
    host is in this list (or local); an edge that rewrites Host to the origin's
    own therefore needs the public origin here. The check stays on.
    """
    from streamlit import config

    current = list(config.get_option("server.corsAllowedOrigins") or [])
    if origin not in current:
        config.set_option("server.corsAllowedOrigins", [*current, origin],
                          "wsgate run --public-url")
    if not config.get_option("server.enableCORS"):
        logging.getLogger("wsgate.guard").warning(
            "server.enableCORS is false: Streamlit's WebSocket Origin check is off "
            "for every origin, not only %s", origin)


def install(settings: GuardSettings) -> None:
    """Hook OriginGuard into Streamlit's server (see the module docstring)."""
    module = starlette_server_module()
    wrap = guard_factory(settings)

    original_create = module.create_starlette_app

    def create_guarded_app(runtime: Any) -> ASGIApp:
        return wrap(original_create(runtime))

    original_kwargs = module._get_uvicorn_config_kwargs

    def uvicorn_kwargs() -> dict[str, Any]:
        kwargs: dict[str, Any] = dict(original_kwargs())
        kwargs["proxy_headers"] = False
        return kwargs

    runner = module.UvicornRunner
    original_init = runner.__init__

    def runner_init(self: Any, app: Any) -> None:
        if isinstance(app, str):
            from uvicorn.importer import import_from_string

            app = import_from_string(app)
        original_init(self, wrap(app))

    module.create_starlette_app = create_guarded_app
    module._get_uvicorn_config_kwargs = uvicorn_kwargs
    runner.__init__ = runner_init
    disable_external_ip_lookup()
    if hasattr(module, "_bind_server_socket") and hasattr(module, "_is_port_manually_set"):
        _explain_port_in_use(module)
    _replace_banner(settings)
    _stop_on_signals_despite_pipes()


def disable_external_ip_lookup() -> None:
    """Stop Streamlit asking checkip.amazonaws.com for this machine's public IP.

    Behind an edge the origin's public identity is the edge's URL (`--public-url`),
    never the origin machine's own address. Streamlit does not cache a failed
    lookup, so on an origin without internet access every WebSocket whose Origin
    is not local (the public URL included) waited up to 2 s for two 1 s timeouts
    before its allow-list was even consulted.
    """
    from streamlit import net_util

    net_util.get_external_ip = lambda: None


def _explain_port_in_use(module: Any) -> None:
    """One clear line when a port the user chose is taken (Streamlit then exits 1;
    an unset port still moves on to the next free one, as with `streamlit run`)."""
    import errno
    import sys

    original_bind = module._bind_server_socket

    def bind(server_address: str, bind_address: str, port: int, backlog: int) -> Any:
        try:
            return original_bind(server_address, bind_address, port, backlog)
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES) and module._is_port_manually_set():
                why = (_("port {port} on {address} is already in use")
                       if exc.errno == errno.EADDRINUSE
                       else _("port {port} on {address} is not permitted"))
                print("wsgate run: " + why.format(port=port, address=server_address) + " "
                      + _("(set by --server.port / STREAMLIT_SERVER_PORT / config.toml)"),
                      file=sys.stderr, flush=True)
            raise

    module._bind_server_socket = bind


def listening_url(address: str, port: int, base_url_path: str = "") -> str:
    """The origin's own URL as bound: a wildcard or unset address shows as localhost."""
    host = address.strip() or "localhost"
    if host in ("0.0.0.0", "::"):
        host = "localhost"
    if ":" in host:
        host = f"[{host}]"
    base = base_url_path.strip("/")
    return f"http://{host}:{port}" + (f"/{base}" if base else "")


def banner(url: str, settings: GuardSettings) -> str:
    """The line printed instead of Streamlit's "You can now view your app" banner,
    which would advertise a URL that, guarded, only ever answers 403."""
    # "origin listening on URL" stays as it is in every language: `wsgate demo` (and
    # scripts) read the port from it; the explanation after it is translated.
    if settings.insecure_no_secret:
        return (f"wsgate run: origin listening on {url} "
                + _("(guard OFF: open it directly)"))
    where = (_("open the app at {url}").format(url=settings.public_url) if settings.public_url
             else _("open the app through your edge (e.g. wsgate edge --origin {url})").format(
                 url=url))
    return (f"wsgate run: origin listening on {url} "
            + _("(guarded: answers 403 without the secret; {where})").format(where=where))


def _replace_banner(settings: GuardSettings) -> None:
    """Both launch paths (plain script, st.App) print through `bootstrap._print_url`
    once the final port is bound, so the line is also the origin's own report of the
    port it really listens on (`wsgate demo` waits for it)."""
    import sys

    from streamlit import config
    from streamlit.web import bootstrap

    def print_url(is_running_hello: bool) -> None:
        url = listening_url(str(config.get_option("server.address") or ""),
                            int(config.get_option("server.port")),
                            str(config.get_option("server.baseUrlPath") or ""))
        print(banner(url, settings), file=sys.stderr, flush=True)

    bootstrap._print_url = print_url


def _stop_on_signals_despite_pipes() -> None:
    """Keep Streamlit's handlers (SIGQUIT...) but make SIGINT/SIGTERM always stop
    the server, see wsgate.guard.signals."""
    from streamlit.web import bootstrap

    from wsgate.guard.signals import install_stop_handlers

    original = bootstrap._set_up_signal_handler
    install_stop_handlers(None)

    def set_up(server: Any) -> None:
        original(server)
        install_stop_handlers(server.stop)

    bootstrap._set_up_signal_handler = set_up


def run_streamlit(script: str, streamlit_args: Sequence[str]) -> int:
    """Streamlit's own `streamlit run SCRIPT ARGS...`, in this process."""
    from streamlit.web import cli as streamlit_cli

    result = streamlit_cli.main.main(args=["run", script, *streamlit_args],
                                     prog_name="streamlit", standalone_mode=False)
    return int(result) if isinstance(result, int) else 0
