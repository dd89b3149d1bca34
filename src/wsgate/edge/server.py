"""The edge proxy's client side: requests parsed by `wsgate.edge.http1`, handled in the
phases of design.md (parse and bound → route → upstream request policy → origin →
response policy or tunnel → one log event).

Each client connection is a `StreamProtocol` plus one coroutine that reads requests
in order (keep-alive and pipelining), so a request never needs a task of its own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import time
from collections.abc import Callable
from http import HTTPStatus
from json.encoder import encode_basestring as _q  # the encoder's own string quoting

from wsgate.config import EdgeConfig, Route
from wsgate.edge.http1 import (
    LAST_CHUNK,
    BadMessage,
    ChunkedDecoder,
    RequestHead,
    ResponseHead,
    chunk,
    parse_request_head,
    parse_response_head,
    request_head,
)
from wsgate.edge.metrics import EdgeMetrics
from wsgate.edge.stream import PeerGone, StreamProtocol
from wsgate.edge.tunnel import Tunnel
from wsgate.edge.upstream import MAX_RESPONSE_HEAD, Upstream, UpstreamError, UpstreamPool
from wsgate.logs.events import EventWriter, Severity, emit, utc_timestamp
from wsgate.policy import headers as hp
from wsgate.policy.routes import match_route
from wsgate.policy.websocket import check_switch, classify_upgrade

_REASONS = {400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed",
            408: b"Request Timeout", 413: b"Content Too Large",
            431: b"Request Header Fields Too Large", 502: b"Bad Gateway",
            503: b"Service Unavailable", 504: b"Gateway Timeout"}


_SAFE = frozenset({b"GET", b"HEAD", b"OPTIONS"})


def _phrase(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


class ClientError(Exception):
    """The client's request is refused by the edge with `status` (never reaches the origin)."""

    def __init__(self, status: int, error_class: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_class = error_class
        self.message = message


class _Exchange:
    """What one request did, for its log event."""

    __slots__ = (
        "client_ip",
        "error",
        "error_class",
        "from_client",
        "host",
        "method",
        "req_id",
        "route",
        "status",
        "t0",
        "target",
        "to_client",
        "user_agent",
        "websocket",
    )

    def __init__(self, t0: float, client_ip: str) -> None:
        self.t0 = t0
        self.client_ip = client_ip
        self.method = b"-"
        self.target = b"/"
        self.host = b""
        self.user_agent = b""
        self.route: Route | None = None
        self.req_id = b""
        self.status = 0
        self.from_client = 0
        self.to_client = 0
        self.websocket = False
        self.error_class: str | None = None
        self.error: str | None = None


class EdgeServer:
    def __init__(self, config: EdgeConfig, logger: logging.Logger,
                 metrics: EdgeMetrics | None = None, writer: EventWriter | None = None) -> None:
        self.config = config
        self.logger = logger
        # Event lines go straight to the writer (a batched write); through `logging`
        # only when no writer is given.
        self.write_line: Callable[[str], None] = (
            writer.write_line if writer is not None
            else lambda line: emit(logger, json.loads(line)))
        self.metrics = metrics or EdgeMetrics()
        self.request_policy = hp.RequestPolicy.from_config(config)
        # Each origin's Host header, computed once (a property that formats per call).
        self.origin_hosts = {r.origin: r.origin.host_header.encode() for r in config.routes}
        self.response_policy = hp.ResponsePolicy.from_config(config)
        lim, tmo = config.limits, config.timeouts
        self.pool = UpstreamPool(connect_timeout=tmo.connect, idle_timeout=tmo.upstream_idle,
                                 keepalive=lim.upstream_keepalive,
                                 high_water=lim.write_buffer_bytes,
                                 ca_file=config.origin_ca_file)
        self.connections: set[ClientConnection] = set()
        self.tunnels: set[Tunnel] = set()
        self.draining = False
        self.retiring = False  # a reload: draining, but WebSockets stay open
        self.listener: asyncio.Server | None = None
        self.scheme = "https" if config.tls_cert else "http"
        self.loop: asyncio.AbstractEventLoop | None = None  # set by start()

    async def start(self, sock: socket.socket | None = None) -> asyncio.Server:
        loop = self.loop = asyncio.get_running_loop()
        tls = None
        if self.config.tls_cert:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(self.config.tls_cert, self.config.tls_key)
        if sock is not None:
            self.listener = await loop.create_server(
                lambda: ClientConnection(self), sock=sock, ssl=tls, backlog=4096)
        else:
            host, port = self.config.listen_addr
            self.listener = await loop.create_server(
                lambda: ClientConnection(self), host, port, ssl=tls, backlog=4096,
                reuse_address=True)
        return self.listener

    @property
    def bound(self) -> tuple[str, int]:
        assert self.listener is not None
        addr = self.listener.sockets[0].getsockname()
        return str(addr[0]), int(addr[1])

    def open_websockets(self) -> int:
        return len(self.tunnels)

    async def retire(self, limit: float | None) -> None:
        """For a reload: stop accepting now, let in-flight HTTP finish and idle keep-alive
        connections end, but leave WebSockets open until they close by themselves or
        `limit` seconds pass (None: no limit); then shut down as `shutdown` does."""
        self.draining = self.retiring = True
        if self.listener is not None:
            self.listener.close()
        for conn in list(self.connections):
            if conn.idle:
                conn.stop_idle()
        deadline = None if limit is None else time.monotonic() + limit
        while self.connections or self.tunnels:  # noqa: ASYNC110
            if deadline is not None and time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.05)
        await self.shutdown()

    async def shutdown(self) -> None:
        """Stop accepting, let in-flight HTTP finish, close WebSockets with 1001, and
        force whatever is left closed when the drain timeout ends."""
        self.draining = True
        self.retiring = False
        if self.listener is not None:
            self.listener.close()
        for conn in list(self.connections):
            if conn.idle:
                conn.stop_idle()
        for tunnel in list(self.tunnels):
            tunnel.shutdown(1001)
        deadline = time.monotonic() + self.config.timeouts.drain
        # Polling keeps the per-connection paths free of shutdown bookkeeping.
        while (self.connections or self.tunnels) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            conn.abort()
        for tunnel in list(self.tunnels):
            tunnel.abort()
        self.pool.close_all()
        await asyncio.sleep(0)

    # logging, once per request / session
    def _line(self, ex: _Exchange, message: str, severity: Severity, *, status: int,
              latency_s: float, from_client: int, to_client: int, tail: str) -> str:
        """The JSON line `dumps(build_event(source="edge", http=HttpRequest(...), ...))`
        writes, built by one template: this runs once per request, where a dict and
        the encoder cost more than the rest of the line. Every string that can come
        from a client or the config goes through `_q`, the encoder's own quoting;
        `tail` is the already-encoded fields after isWebSocket."""
        route = ex.route
        rid = f',"requestId":{_q(ex.req_id.decode("ascii"))}' if ex.req_id else ""
        where = (f',"route":{_q(route.pattern)},"upstream":{_q(route.origin.url)}'
                 if route is not None else "")
        url = (f"{self.config.forwarded_proto}://{ex.host.decode('latin-1')}"
               f"{ex.target.decode('latin-1')}")
        return (f'{{"timestamp":"{utc_timestamp()}","severity":"{severity}",'
                f'"message":{_q(message)},"source":"edge","httpRequest":{{'
                f'"requestMethod":{_q(ex.method.decode("latin-1"))},"requestUrl":{_q(url)},'
                f'"status":{status},"latency":"{latency_s:.6f}s",'
                f'"remoteIp":{_q(ex.client_ip)},"userAgent":{_q(ex.user_agent.decode("latin-1"))},'
                f'"requestSize":"{from_client}","responseSize":"{to_client}",'
                f'"protocol":"HTTP/1.1"}}{rid}{where},'
                f'"isWebSocket":{"true" if ex.websocket else "false"}{tail}}}')

    def log_exchange(self, ex: _Exchange) -> None:
        seconds = time.monotonic() - ex.t0
        severity: Severity
        if ex.error_class and ex.status >= 500:
            severity, message = "ERROR", "Edge Proxy Error"
        elif ex.error_class:
            severity, message = "WARNING", "Request refused"
        else:
            severity, message = ("WARNING" if ex.status >= 500 else "INFO"), "request"
        tail = f',"bytesFromClient":{ex.from_client},"bytesToClient":{ex.to_client}'
        if ex.error_class is not None:
            tail += f',"errorClass":{_q(ex.error_class)}'
        if ex.error is not None:
            tail += f',"error":{_q(ex.error)}'
        self.write_line(self._line(ex, message, severity, status=ex.status, latency_s=seconds,
                                   from_client=ex.from_client, to_client=ex.to_client,
                                   tail=tail))
        self.metrics.request_done(ex.route.pattern if ex.route else "-", ex.status, seconds,
                                  ex.from_client, ex.to_client)
        if ex.error_class and ex.status >= 500:
            self.metrics.upstream_error(ex.error_class)

    def tunnel_done(self, tunnel: Tunnel, ex: _Exchange) -> None:
        self.tunnels.discard(tunnel)
        duration = time.monotonic() - tunnel.started
        failed = tunnel.error_class is not None
        ex.method = b"GET"
        tail = (f',"wsDurationMs":{round(duration * 1000)},'
                f'"bytesFromClient":{tunnel.to_origin},"bytesToClient":{tunnel.to_client}')
        if tunnel.close_code is not None:
            tail += f',"closeCode":{tunnel.close_code}'
        tail += f',"closedBy":{_q(tunnel.closed_by)}'
        if failed:
            tail += (f',"errorClass":{_q(tunnel.error_class or "origin-lost")}'
                     ',"error":"origin connection lost"')
        self.write_line(self._line(
            ex, "Edge Proxy Error" if failed else "websocket session",
            "ERROR" if failed else "INFO", status=101,
            latency_s=duration + (tunnel.started - ex.t0),
            from_client=tunnel.to_origin, to_client=tunnel.to_client, tail=tail))
        self.metrics.websocket_closed(tunnel.close_code, tunnel.to_origin, tunnel.to_client)
        if failed:
            self.metrics.upstream_error(tunnel.error_class or "origin-lost")


def _raw_response(status: int, message: str, *, marker: tuple[bytes, bytes] | None,
                  req_id: bytes, head_only: bool = False,
                  extra: list[tuple[bytes, bytes]] | None = None) -> bytes:
    """An edge-made error response; always `Connection: close`."""
    body = message.encode("utf-8", "replace") + b"\n"
    lines = [b"HTTP/1.1 %d %s" % (status, _REASONS.get(status, b"Error")),
             b"content-type: text/plain; charset=utf-8",
             b"content-length: %d" % len(body), b"connection: close"]
    if req_id:
        lines.append(b"x-request-id: " + req_id)
    if marker is not None:
        lines.append(marker[0] + b": " + marker[1])
    for name, value in extra or ():
        lines.append(name + b": " + value)
    return b"\r\n".join(lines) + b"\r\n\r\n" + (b"" if head_only else body)


def response_head(status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    parts = [b"HTTP/1.1 %d %b\r\n" % (status, reason)]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


class ClientConnection(StreamProtocol):
    def __init__(self, server: EdgeServer) -> None:
        super().__init__(server.config.limits.write_buffer_bytes, server.loop)
        self.server = server
        self.peer_ip = "-"
        self.idle = False
        self.handed_off = False
        self.task: asyncio.Task[None] | None = None
        self.upstream: StreamProtocol | None = None  # while an exchange uses one

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.peer_ip = str(peer[0])
            if self.peer_ip.startswith("::ffff:"):
                self.peer_ip = self.peer_ip[7:]
        self.server.connections.add(self)
        self.task = self.loop.create_task(self.run())

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.server.connections.discard(self)
        if self.upstream is not None:
            # The client vanished while the origin thinks: stop waiting for an answer
            # nobody will read, and let the upstream connection go now.
            self.upstream.interrupt(PeerGone("the client went away"))

    def stop_idle(self) -> None:
        """Drain: end a connection that waits for its next request. Its reader stops now;
        a TLS close may still finish in the background."""
        self.eof = True
        self._wake()
        self.close()

    async def run(self) -> None:
        server = self.server
        tmo = server.config.timeouts
        try:
            while not self.lost:
                if not self.chunks and not self.eof:
                    if server.draining:
                        break
                    self.idle = True
                    try:
                        await self.wait_data(tmo.client_idle)
                    except TimeoutError:
                        break
                    finally:
                        self.idle = False
                if not self.chunks:
                    break  # the client closed between requests
                ex = _Exchange(time.monotonic(), self.peer_ip)
                try:
                    req = await self.read_head(tmo.request_header)
                except TimeoutError:
                    if self.lost:
                        break
                    self.refuse(ex, ClientError(408, "request-timeout",
                                                "request headers not received in time"))
                    break
                except BadMessage as exc:
                    # The parser's message never quotes the client's bytes.
                    self.refuse(ex, ClientError(
                        exc.status, "headers-too-large" if exc.status == 431 else "bad-request",
                        str(exc)))
                    break
                keep = await self.handle(req, ex)
                if self.handed_off:
                    return
                if not keep:
                    break
        except (PeerGone, ConnectionError):
            pass
        except Exception:  # a bug must cost one connection, never the edge
            server.logger.exception("edge: unexpected error on a client connection")
            self.abort()
            return
        finally:
            if not self.handed_off:
                server.connections.discard(self)
        self.close()

    async def read_head(self, within: float) -> RequestHead:
        """The next request head (phase 1), within `within` seconds of its first byte.
        Bytes after it stay queued: they are its body or the next pipelined request."""
        limit = self.server.config.limits.max_header_bytes
        deadline = -1.0
        buf = b""
        while True:
            if self.chunks:
                buf = buf + self.take() if buf else self.take()
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                if end + 4 < len(buf):
                    self.unread(buf[end + 4:])
                if end > limit:
                    raise BadMessage("request headers too large", 431)
                return parse_request_head(buf[:end])
            if len(buf) > limit:
                raise BadMessage("request headers too large", 431)
            if buf.count(b"\n") != buf.count(b"\r\n") or buf.startswith(b"\r\n"):
                raise BadMessage("malformed request: bare LF or empty line")
            if self.eof:
                raise BadMessage("malformed request: incomplete head")
            loop = self.loop
            if deadline < 0:
                deadline = loop.time() + within
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError
            await self.wait_data(left)

    def refuse(self, ex: _Exchange, err: ClientError | UpstreamError,
               extra: list[tuple[bytes, bytes]] | None = None) -> None:
        """Answer with an edge-made error (connection closes) and log it."""
        ex.status = err.status
        ex.error_class = err.error_class
        ex.error = err.message
        text = f"Edge Proxy Error: {err.message}" if err.status >= 500 else err.message
        data = _raw_response(err.status, text, marker=self.server.response_policy.marker,
                             req_id=ex.req_id, head_only=ex.method == b"HEAD", extra=extra)
        ex.to_client += len(data)
        self.write(data)
        self.server.log_exchange(ex)

    async def handle(self, req: RequestHead, ex: _Exchange) -> bool:
        """One request, start to end. False: the connection must not carry another."""
        server = self.server
        ex.method = req.method
        ex.target = req.target
        headers = req.headers
        try:
            route, websocket, up_headers, key, chunked = self.prepare(req, headers, ex)
        except ClientError as err:
            self.refuse(ex, err)
            return False
        ex.route = route
        ex.websocket = websocket
        retry = False
        while True:
            try:
                up = await server.pool.acquire(route.origin, self.loop)
            except UpstreamError as err:
                self.refuse(ex, err)
                return False
            self.upstream = up.proto
            try:
                return await self.forward(req, ex, up, up_headers, key, chunked,
                                          resend=retry)
            except UpstreamError as err:
                up.close()
                # A pooled connection the origin closed just before our request arrived
                # (keep-alive race): nothing was processed, so a bodiless safe request is
                # sent once more on a fresh connection.
                if (not retry and up.reused and err.error_class == "upstream-closed"
                        and ex.from_client == 0 and ex.status == 0 and req.method in _SAFE):
                    retry = True
                    continue
                error = err
                break
            except ClientError as err:
                up.close()
                self.refuse(ex, err)
                return False
            except (PeerGone, ConnectionError) as exc:
                up.close()
                ex.error_class = "client-gone"
                ex.error = f"client connection ended: {exc.__class__.__name__}"
                ex.status = ex.status or 499
                server.log_exchange(ex)
                self.abort()
                return False
        if ex.status == 0:  # nothing of the response was sent yet
            self.refuse(ex, error)
        else:
            ex.error_class, ex.error = error.error_class, error.message
            ex.status = ex.status or error.status
            server.log_exchange(ex)
            self.abort()
        return False

    def prepare(self, req: RequestHead, headers: list[tuple[bytes, bytes]], ex: _Exchange
                ) -> tuple[Route, bool, list[tuple[bytes, bytes]], bytes, bool]:
        """Phases 1-3: bound the request, match a route, build the upstream headers."""
        server = self.server
        hosts = [v for n, v in headers if n == b"host"]
        ex.host = hosts[0] if hosts else b""
        ex.user_agent = next((v for n, v in headers if n == b"user-agent"), b"")
        ex.client_ip = hp.client_ip(headers, server.request_policy.trusted_ip_header,
                                    self.peer_ip)
        ex.req_id = hp.request_id(headers)
        limits = server.config.limits
        if len(headers) > limits.max_header_count:
            raise ClientError(431, "headers-too-large", "too many request headers")
        # Also counted as parsed (names and values without the line's punctuation).
        if len(req.target) + sum(len(n) + len(v) + 4 for n, v in headers) > \
                limits.max_header_bytes:
            raise ClientError(431, "headers-too-large", "request headers too large")
        if req.method in (b"CONNECT", b"TRACE"):
            # TRACE would make the origin echo the request, secret included.
            raise ClientError(405, "bad-request",
                              f"{req.method.decode('ascii', 'replace')} is not supported")
        if not req.target.startswith(b"/"):
            raise ClientError(400, "bad-request", "the request target must be a path")
        if len(hosts) > 1:
            raise ClientError(400, "bad-request", "more than one Host header")
        chunked = req.framing == "chunked"
        if chunked and any(n == b"content-length" for n, _ in headers):
            raise ClientError(400, "bad-request",
                              "both Content-Length and Transfer-Encoding were sent")
        if chunked and req.http_version < b"1.1":
            # RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means faulty framing.
            raise ClientError(400, "bad-request", "Transfer-Encoding in an HTTP/1.0 request")
        path = req.target.partition(b"?")[0]
        route = match_route(server.config.routes, ex.host.decode("latin-1"),
                            path.decode("latin-1"))
        if route is None:
            raise ClientError(404, "no-route",
                              f"no route for {ex.host.decode('latin-1')}{path.decode('latin-1')}")
        kind, problem = classify_upgrade(req.method, req.http_version, headers)
        if problem:
            raise ClientError(400, "bad-handshake", f"invalid WebSocket handshake: {problem}")
        websocket = kind == "websocket"
        length = next((v for n, v in headers if n == b"content-length"), None)
        if length is not None and req.length > server.config.limits.max_body_bytes:
            raise ClientError(413, "body-too-large", "request body too large")
        up_headers = hp.upstream_headers(
            server.request_policy, headers, origin_host=server.origin_hosts[route.origin],
            client_host=ex.host, client_addr=ex.client_ip, req_id=ex.req_id,
            websocket=websocket)
        if chunked:
            up_headers.append((b"transfer-encoding", b"chunked"))
        elif length is not None:
            up_headers.append((b"content-length", length))
        key = next((v for n, v in headers if n == b"sec-websocket-key"), b"") if websocket else b""
        return route, websocket, up_headers, key, chunked

    async def forward(self, req: RequestHead, ex: _Exchange,
                      up: Upstream, up_headers: list[tuple[bytes, bytes]], key: bytes,
                      chunked: bool, resend: bool = False) -> bool:
        """Phases 4-6 for one request on upstream connection `up` (`resend`: the client's
        request was already read once, it had no body)."""
        if self.lost:
            raise PeerGone("the client went away")
        try:
            return await self._forward(req, ex, up, up_headers, key, chunked, resend)
        finally:
            self.upstream = None

    async def _forward(self, req: RequestHead, ex: _Exchange,
                       up: Upstream, up_headers: list[tuple[bytes, bytes]], key: bytes,
                       chunked: bool, resend: bool) -> bool:
        server = self.server
        tmo = server.config.timeouts
        target = req.target
        uproto = up.proto
        received_before = uproto.nbytes
        # One join of headers that are all validated already (the client's by
        # parse_request_head, the edge's own at startup).
        uproto.write(request_head(req.method, target, up_headers))
        if not resend and req.framing != "none":
            await self.relay_request_body(req, ex, uproto)
        if chunked:
            uproto.write(LAST_CHUNK)
        # Response head (1xx other than 101 skipped: the edge already handled Expect).
        buf = b""
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_RESPONSE_HEAD:
                    raise UpstreamError(502, "bad-response", "the origin's response head is "
                                        "too large")
                if not uproto.chunks:
                    if uproto.eof:
                        if uproto.nbytes == received_before:
                            raise UpstreamError(502, "upstream-closed", "the origin closed the "
                                                "connection without answering")
                        raise UpstreamError(502, "bad-response",
                                            "invalid HTTP response from the origin")
                    try:
                        await uproto.wait_data(tmo.upstream_response)
                    except TimeoutError:
                        raise UpstreamError(504, "upstream-timeout",
                                            "the origin did not answer in time") from None
                buf = buf + uproto.take() if buf else uproto.take()
                continue
            try:
                resp = parse_response_head(buf[:end], req.method)
            except BadMessage:
                raise UpstreamError(502, "bad-response", "invalid HTTP response from the origin"
                                    ) from None
            if resp.status == 101:
                if not key:
                    raise UpstreamError(502, "bad-response",
                                        "the origin switched protocols unasked")
                return self.open_tunnel(ex, up, resp, buf[:end + 4], buf[end + 4:], key)
            buf = buf[end + 4:]
            if resp.status >= 200:
                break
        ex.status = resp.status
        out = hp.response_headers(server.response_policy, resp.headers,
                                  path=target.partition(b"?")[0], status=resp.status)
        if not any(n == b"x-request-id" for n, _ in out):
            out.append((b"x-request-id", ex.req_id))
        keep = not server.draining and not key and req.keep_alive
        # The client's framing (the rules h11 applied): an unknown length becomes chunked for an
        # HTTP/1.1 client, or ends with the connection for an HTTP/1.0 one.
        reframe = resp.framing in ("chunked", "close") and req.method != b"HEAD"
        if resp.framing in ("chunked", "close"):
            out = [(n, v) for n, v in out if n != b"content-length"]
            if req.http_version >= b"1.1":
                out.append((b"transfer-encoding", b"chunked"))
            else:
                reframe, keep = False, False
        if not keep:
            # A refused upgrade never becomes a tunnel and the connection is not reused:
            # bytes the client sent after its upgrade request are not HTTP.
            out.append((b"connection", b"close"))
        head = response_head(resp.status, resp.reason or _phrase(resp.status), out)
        ex.to_client += len(head)
        pending = [head]
        await self.relay_body(up, resp, buf, pending, ex, reframe)
        if key or not resp.keep_alive:
            up.close()
        else:
            up.done = True
            server.pool.release(up)
        server.log_exchange(ex)
        return keep

    async def relay_request_body(self, req: RequestHead, ex: _Exchange,
                                 uproto: StreamProtocol) -> None:
        """The request body, client → origin, streamed with flow control both ways.
        Besides the per-read `client_body` timeout the body has a deadline that grows
        with what arrives (Apache's MinRate model): a trickle of one byte a second is
        cut, a slow but steady upload is not."""
        server = self.server
        tmo = server.config.timeouts
        max_body = server.config.limits.max_body_bytes
        min_rate = server.config.limits.min_body_rate
        body_start = time.monotonic()
        decoder = ChunkedDecoder() if req.framing == "chunked" else None
        remaining = req.length
        expect = req.expect_continue
        while decoder is not None or remaining:
            if not self.chunks:
                if self.eof:
                    raise ClientError(400, "bad-request", "request ended early")
                if expect:
                    self.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    expect = False
                wait = tmo.client_body
                if min_rate:
                    left = (body_start + tmo.client_body + ex.from_client / min_rate
                            - time.monotonic())
                    wait = min(wait, left)
                try:
                    if wait <= 0:
                        raise TimeoutError
                    await self.wait_data(wait)
                except TimeoutError:
                    raise ClientError(408, "request-timeout",
                                      "request body not received in time") from None
                continue
            data = self.take()
            expect = False  # the client sent body bytes without waiting for 100
            if decoder is not None:
                pieces: list[bytes] = []
                try:
                    extra = decoder.feed(data, pieces)
                except BadMessage:
                    raise ClientError(400, "bad-request", "malformed request body") from None
                if extra:
                    self.unread(extra)
                size = sum(map(len, pieces))
                ex.from_client += size
                if ex.from_client > max_body:
                    raise ClientError(413, "body-too-large", "request body too large")
                if pieces:
                    uproto.writelines([chunk(piece) for piece in pieces])
                if decoder.done:
                    break
            else:
                if len(data) > remaining:
                    self.unread(data[remaining:])  # the next pipelined request
                    data = data[:remaining]
                remaining -= len(data)
                ex.from_client += len(data)
                uproto.write(data)
            if uproto.write_paused:
                try:
                    await uproto.drain(tmo.upstream_response)
                except TimeoutError:
                    raise UpstreamError(504, "upstream-timeout",
                                        "the origin stopped reading the request") from None

    async def relay_body(self, up: Upstream, resp: ResponseHead, data: bytes,
                         pending: list[bytes], ex: _Exchange, reframe: bool) -> None:
        """Phase 6: the response body, origin → client, as it arrives. `pending` holds
        what is not written yet (the head): it goes out with the first body bytes in
        one write. Flow control: while the client's buffer is full the origin is not
        read (its own buffer then pauses its socket)."""
        tmo = self.server.config.timeouts
        uproto = up.proto
        framing = resp.framing
        remaining = resp.length if framing == "length" else 0
        if framing == "length" and remaining == 0:
            framing = "none"  # Content-Length: 0: nothing to wait for
        decoder = ChunkedDecoder() if framing == "chunked" else None
        while framing != "none":
            if data:
                if decoder is not None:
                    pieces: list[bytes] = []
                    try:
                        extra = decoder.feed(data, pieces)
                    except BadMessage:
                        raise UpstreamError(502, "bad-response",
                                            "the origin sent an invalid chunked body") from None
                    if extra:
                        uproto.chunks.insert(0, extra)  # not ours: the upstream is not reused
                    for piece in pieces:
                        ex.to_client += len(piece)
                        pending.append(chunk(piece) if reframe else piece)
                    if decoder.done:
                        break
                elif framing == "length":
                    if len(data) >= remaining:
                        if len(data) > remaining:
                            uproto.chunks.insert(0, data[remaining:])
                            data = data[:remaining]
                        pending.append(data)
                        ex.to_client += remaining
                        break
                    remaining -= len(data)
                    ex.to_client += len(data)
                    pending.append(data)
                else:  # until the origin closes
                    ex.to_client += len(data)
                    pending.append(chunk(data) if reframe else data)
            if self.lost:
                raise PeerGone("the client went away mid-response")
            if pending:
                self.writelines(pending)
                pending = []
            if self.write_paused:
                # A client that never reads must not hold the origin forever.
                try:
                    await self.drain(tmo.client_idle)
                except TimeoutError:
                    raise PeerGone("the client stopped reading the response") from None
            if not uproto.chunks:
                if uproto.eof:
                    if framing == "close":
                        break
                    raise UpstreamError(502, "bad-response", "the origin ended the response early")
                try:
                    await uproto.wait_data(tmo.upstream_response)
                except TimeoutError:
                    raise UpstreamError(504, "upstream-timeout",
                                        "the origin stopped sending the response") from None
            data = uproto.take() if uproto.chunks else b""
        if reframe:
            pending.append(LAST_CHUNK)
        if pending:
            self.writelines(pending)

    def open_tunnel(self, ex: _Exchange, up: Upstream,
                    resp: ResponseHead, head: bytes, origin_left: bytes, key: bytes) -> bool:
        """Phase 4-5 for an upgrade: relay the origin's own 101 byte for byte, then tunnel."""
        server = self.server
        problem = check_switch(resp.headers, key)
        if problem:
            up.close()
            self.refuse(ex, UpstreamError(502, "bad-handshake", problem))
            return False
        origin_transport = up.proto.transport
        assert self.transport is not None and origin_transport is not None
        client_left = self.take() if self.chunks else b""
        if up.proto.chunks:
            origin_left += up.proto.take()
        self.write(head)
        self.handed_off = True
        server.connections.discard(self)
        handshake = time.monotonic() - ex.t0
        tunnel = Tunnel(self.transport, origin_transport,
                        ping_interval=server.config.timeouts.websocket_ping_interval,
                        on_done=server.tunnel_done, context=ex)
        server.tunnels.add(tunnel)
        server.metrics.websocket_opened(ex.route.pattern if ex.route else "-", handshake)
        tunnel.start(client_left, origin_left, self.loop)
        if self.lost:
            tunnel.client_lost()
        if up.proto.lost:
            tunnel.origin_lost()
        if server.draining and not server.retiring:
            tunnel.shutdown(1001)
        return True
