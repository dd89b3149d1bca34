"""The edge proxy's client side: one h11 connection per client, requests handled in the
phases of design.md (parse and bound → route → upstream request policy → origin →
response policy or tunnel → one log event).

Each client connection is a `StreamProtocol` plus one coroutine that reads requests
in order (keep-alive and pipelining), so a request never needs a task of its own.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from http import HTTPStatus
from typing import Any

import h11

from wsgate.config import EdgeConfig, Route
from wsgate.edge.metrics import EdgeMetrics
from wsgate.edge.stream import PeerGone, StreamProtocol
from wsgate.edge.tunnel import Tunnel
from wsgate.edge.upstream import Upstream, UpstreamError, UpstreamPool
from wsgate.logs.events import HttpRequest, Severity, build_event, emit
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
                 metrics: EdgeMetrics | None = None) -> None:
        self.config = config
        self.logger = logger
        self.metrics = metrics or EdgeMetrics()
        self.request_policy = hp.RequestPolicy.from_config(config)
        self.response_policy = hp.ResponsePolicy.from_config(config)
        lim, tmo = config.limits, config.timeouts
        self.pool = UpstreamPool(connect_timeout=tmo.connect, idle_timeout=tmo.upstream_idle,
                                 keepalive=lim.upstream_keepalive,
                                 high_water=lim.write_buffer_bytes,
                                 ca_file=config.origin_ca_file)
        self.connections: set[ClientConnection] = set()
        self.tunnels: set[Tunnel] = set()
        self.draining = False
        self.listener: asyncio.Server | None = None
        self.scheme = "https" if config.tls_cert else "http"

    async def start(self, sock: socket.socket | None = None) -> asyncio.Server:
        loop = asyncio.get_running_loop()
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

    async def shutdown(self) -> None:
        """Stop accepting, let in-flight HTTP finish, close WebSockets with 1001, and
        force whatever is left closed when the drain timeout ends."""
        self.draining = True
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
    def log_exchange(self, ex: _Exchange) -> None:
        seconds = time.monotonic() - ex.t0
        route = ex.route.pattern if ex.route else None
        severity: Severity
        if ex.error_class and ex.status >= 500:
            severity, message = "ERROR", "Edge Proxy Error"
        elif ex.error_class:
            severity, message = "WARNING", "Request refused"
        else:
            severity, message = ("WARNING" if ex.status >= 500 else "INFO"), "request"
        host = ex.host.decode("latin-1")
        http = HttpRequest(
            method=ex.method.decode("latin-1"),
            url=f"{self.config.forwarded_proto}://{host}{ex.target.decode('latin-1')}",
            status=ex.status, latency_s=seconds, remote_ip=ex.client_ip,
            user_agent=ex.user_agent.decode("latin-1"), request_size=ex.from_client,
            response_size=ex.to_client)
        emit(self.logger, build_event(
            source="edge", message=message, severity=severity, http=http,
            requestId=ex.req_id.decode("ascii") if ex.req_id else None, route=route,
            upstream=ex.route.origin.url if ex.route else None, isWebSocket=ex.websocket,
            bytesFromClient=ex.from_client, bytesToClient=ex.to_client,
            errorClass=ex.error_class, error=ex.error))
        self.metrics.request_done(route or "-", ex.status, seconds, ex.from_client,
                                  ex.to_client)
        if ex.error_class and ex.status >= 500:
            self.metrics.upstream_error(ex.error_class)

    def tunnel_done(self, tunnel: Tunnel, ex: _Exchange) -> None:
        self.tunnels.discard(tunnel)
        duration = time.monotonic() - tunnel.started
        failed = tunnel.error_class is not None
        host = ex.host.decode("latin-1")
        http = HttpRequest(
            method="GET", url=f"{self.config.forwarded_proto}://{host}"
                              f"{ex.target.decode('latin-1')}",
            status=101, latency_s=duration + (tunnel.started - ex.t0),
            remote_ip=ex.client_ip, user_agent=ex.user_agent.decode("latin-1"),
            request_size=tunnel.to_origin, response_size=tunnel.to_client)
        emit(self.logger, build_event(
            source="edge", message="Edge Proxy Error" if failed else "websocket session",
            severity="ERROR" if failed else "INFO", http=http,
            requestId=ex.req_id.decode("ascii"), route=ex.route.pattern if ex.route else None,
            upstream=ex.route.origin.url if ex.route else None, isWebSocket=True,
            wsDurationMs=round(duration * 1000), bytesFromClient=tunnel.to_origin,
            bytesToClient=tunnel.to_client, closeCode=tunnel.close_code,
            closedBy=tunnel.closed_by, errorClass=tunnel.error_class,
            error="origin connection lost" if failed else None))
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


class ClientConnection(StreamProtocol):
    def __init__(self, server: EdgeServer) -> None:
        super().__init__(server.config.limits.write_buffer_bytes)
        self.server = server
        self.peer_ip = "-"
        self.idle = False
        self.handed_off = False
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.peer_ip = str(peer[0])
            if self.peer_ip.startswith("::ffff:"):
                self.peer_ip = self.peer_ip[7:]
        self.server.connections.add(self)
        self.task = asyncio.get_running_loop().create_task(self.run())

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.server.connections.discard(self)

    def stop_idle(self) -> None:
        """Drain: end a connection that waits for its next request. Its reader stops now;
        a TLS close may still finish in the background."""
        self.eof = True
        self._wake()
        self.close()

    async def run(self) -> None:
        server = self.server
        tmo = server.config.timeouts
        conn = h11.Connection(h11.SERVER,
                              max_incomplete_event_size=server.config.limits.max_header_bytes)
        try:
            while not self.lost:
                event: Any
                try:
                    event = conn.next_event()  # a pipelined request may already be parsed
                except h11.RemoteProtocolError as exc:
                    event = exc
                if event is h11.NEED_DATA and not self.chunks and not self.eof:
                    if server.draining:
                        break
                    self.idle = True
                    try:
                        async with asyncio.timeout(tmo.client_idle):
                            await self.wait_data()
                    except TimeoutError:
                        break
                    finally:
                        self.idle = False
                ex = _Exchange(time.monotonic(), self.peer_ip)
                try:
                    if isinstance(event, h11.RemoteProtocolError):
                        raise event
                    if event is h11.NEED_DATA:
                        event = await self.next_event_within(conn, tmo.request_header)
                except TimeoutError:
                    if conn.their_state is h11.IDLE and not self.chunks and self.lost:
                        break
                    self.refuse(ex, ClientError(408, "request-timeout",
                                                "request headers not received in time"))
                    break
                except h11.RemoteProtocolError as exc:
                    status = 431 if exc.error_status_hint == 431 else 400
                    self.refuse(ex, ClientError(
                        status, "headers-too-large" if status == 431 else "bad-request",
                        # h11's message may quote the client's bytes: never echoed.
                        "request headers too large" if status == 431
                        else "malformed request"))
                    break
                if not isinstance(event, h11.Request):
                    break  # ConnectionClosed (client went away between requests)
                keep = await self.handle(conn, event, ex)
                if self.handed_off:
                    return
                if not keep:
                    break
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    break
                conn.start_next_cycle()
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

    async def handle(self, conn: h11.Connection, req: h11.Request, ex: _Exchange) -> bool:
        """One request, start to end. False: the connection must not carry another."""
        server = self.server
        ex.method = req.method
        ex.target = req.target
        headers = list(req.headers)
        try:
            route, websocket, up_headers, key = self.prepare(req, headers, ex)
        except ClientError as err:
            self.refuse(ex, err)
            return False
        ex.route = route
        ex.websocket = websocket
        retry = False
        while True:
            try:
                up = await server.pool.acquire(route.origin)
            except UpstreamError as err:
                self.refuse(ex, err)
                return False
            try:
                return await self.forward(conn, req, ex, up, up_headers, key, resend=retry)
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
            except (PeerGone, ConnectionError, h11.LocalProtocolError) as exc:
                up.close()
                ex.error_class = "client-gone"
                ex.error = f"client connection ended: {exc.__class__.__name__}"
                ex.status = ex.status or 499
                server.log_exchange(ex)
                self.abort()
                return False
        if conn.our_state is h11.SEND_RESPONSE and ex.status == 0:
            self.refuse(ex, error)
        else:
            ex.error_class, ex.error = error.error_class, error.message
            ex.status = ex.status or error.status
            server.log_exchange(ex)
            self.abort()
        return False

    def prepare(self, req: h11.Request, headers: list[tuple[bytes, bytes]], ex: _Exchange
                ) -> tuple[Route, bool, list[tuple[bytes, bytes]], bytes]:
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
        # h11 bounds only an incomplete head; a complete one that arrived in one read
        # is measured here.
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
        names = [n for n, _ in headers]
        chunked = b"transfer-encoding" in names
        if chunked and b"content-length" in names:
            raise ClientError(400, "bad-request",
                              "both Content-Length and Transfer-Encoding were sent")
        if chunked and req.http_version != b"1.1":
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
        if length is not None and int(length) > server.config.limits.max_body_bytes:
            raise ClientError(413, "body-too-large", "request body too large")
        up_headers = hp.upstream_headers(
            server.request_policy, headers, origin_host=route.origin.host_header.encode(),
            client_host=ex.host, client_addr=ex.client_ip, req_id=ex.req_id,
            websocket=websocket)
        if chunked:
            up_headers.append((b"transfer-encoding", b"chunked"))
        elif length is not None:
            up_headers.append((b"content-length", length))
        key = next((v for n, v in headers if n == b"sec-websocket-key"), b"") if websocket else b""
        return route, websocket, up_headers, key

    async def forward(self, conn: h11.Connection, req: h11.Request, ex: _Exchange,
                      up: Upstream, up_headers: list[tuple[bytes, bytes]], key: bytes,
                      resend: bool = False) -> bool:
        """Phases 4-6 for one request on upstream connection `up` (`resend`: the client's
        request was already read once, it had no body)."""
        server = self.server
        tmo = server.config.timeouts
        max_body = server.config.limits.max_body_bytes
        target = req.target
        uproto = up.proto
        received_before = uproto.nbytes
        # `_parsed`: every name and value was validated already (h11 parsed the client's,
        # the edge's own were checked at startup), so h11 skips its regexes.
        uproto.write(up.conn.send(h11.Request(method=req.method, target=target,
                                              headers=up_headers, http_version=b"1.1",
                                              _parsed=True)))
        # Request body, streamed with flow control both ways. Besides the per-read
        # `client_body` timeout the body has a deadline that grows with what arrives
        # (Apache's MinRate model): a trickle of one byte a second is cut, a slow but
        # steady upload is not.
        min_rate = server.config.limits.min_body_rate
        body_start = time.monotonic()
        while not resend:
            if conn.they_are_waiting_for_100_continue:
                self.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
            wait = tmo.client_body
            if min_rate:
                left = body_start + tmo.client_body + ex.from_client / min_rate - time.monotonic()
                wait = min(wait, max(left, 0.0))
            try:
                if wait <= 0:
                    raise TimeoutError
                event = await self.next_event_within(conn, wait)
            except TimeoutError:
                raise ClientError(408, "request-timeout", "request body not received in time"
                                  ) from None
            except h11.RemoteProtocolError:
                raise ClientError(400, "bad-request", "malformed request body") from None
            if isinstance(event, h11.Data):
                ex.from_client += len(event.data)
                if ex.from_client > max_body:
                    raise ClientError(413, "body-too-large", "request body too large")
                uproto.write(up.conn.send(event))
                if uproto.write_paused:
                    try:
                        async with asyncio.timeout(tmo.upstream_response):
                            await uproto.drain()
                    except TimeoutError:
                        raise UpstreamError(504, "upstream-timeout",
                                            "the origin stopped reading the request") from None
            elif isinstance(event, h11.EndOfMessage):
                uproto.write(up.conn.send(h11.EndOfMessage()))
                break
            else:
                raise ClientError(400, "bad-request", "request ended early")
        if resend:
            uproto.write(up.conn.send(h11.EndOfMessage()))
        # Response head.
        try:
            while True:
                resp = await uproto.next_event_within(up.conn, tmo.upstream_response)
                if isinstance(resp, h11.InformationalResponse) and resp.status_code != 101:
                    continue  # 100 Continue and friends: the edge already handled Expect
                break
        except TimeoutError:
            raise UpstreamError(504, "upstream-timeout",
                                "the origin did not answer in time") from None
        except h11.RemoteProtocolError:
            if uproto.nbytes == received_before and uproto.eof:
                raise UpstreamError(502, "upstream-closed",
                                    "the origin closed the connection without answering"
                                    ) from None
            raise UpstreamError(502, "bad-response", "invalid HTTP response from the origin"
                                ) from None
        if isinstance(resp, h11.ConnectionClosed):
            raise UpstreamError(502, "upstream-closed",
                                "the origin closed the connection without answering")
        if key and isinstance(resp, h11.InformationalResponse):
            return self.open_tunnel(conn, ex, up, resp, key)
        assert isinstance(resp, h11.Response)
        ex.status = resp.status_code
        out = hp.response_headers(server.response_policy, list(resp.headers),
                                  path=target.partition(b"?")[0], status=resp.status_code)
        if not any(n == b"x-request-id" for n, _ in out):
            out.append((b"x-request-id", ex.req_id))
        if server.draining or key:
            # A refused upgrade never becomes a tunnel and the connection is not reused:
            # bytes the client sent after its upgrade request are not HTTP.
            out.append((b"connection", b"close"))
        head = conn.send(h11.Response(status_code=resp.status_code, headers=out,
                                      reason=resp.reason or _phrase(resp.status_code),
                                      _parsed=True))
        ex.to_client += len(head)
        # Response body. What is already buffered goes out in one write with the head;
        # the pending bytes are flushed before any wait.
        pending = [head]
        while True:
            try:
                event = up.conn.next_event()
                if event is h11.NEED_DATA:
                    self.write(b"".join(pending))
                    pending = []
                    if self.write_paused:
                        # A client that never reads must not hold the origin forever.
                        try:
                            async with asyncio.timeout(tmo.client_idle):
                                await self.drain()
                        except TimeoutError:
                            raise PeerGone("the client stopped reading the response"
                                           ) from None
                    event = await uproto.next_event_within(up.conn, tmo.upstream_response)
            except TimeoutError:
                raise UpstreamError(504, "upstream-timeout",
                                    "the origin stopped sending the response") from None
            except h11.RemoteProtocolError:
                raise UpstreamError(502, "bad-response",
                                    "the origin ended the response early") from None
            if isinstance(event, h11.Data):
                data = conn.send(event)
                ex.to_client += len(event.data)
                if data is not None:
                    pending.append(data)
            elif isinstance(event, h11.EndOfMessage):
                end = conn.send(h11.EndOfMessage())
                if end:
                    pending.append(end)
                if pending:
                    self.write(b"".join(pending))
                break
            else:
                raise UpstreamError(502, "bad-response", "the origin ended the response early")
        if key:
            up.close()
        else:
            server.pool.release(up)
        server.log_exchange(ex)
        return not server.draining and not key

    def open_tunnel(self, conn: h11.Connection, ex: _Exchange, up: Upstream,
                    resp: h11.InformationalResponse, key: bytes) -> bool:
        """Phase 4-5 for an upgrade: relay the origin's own 101 untouched, then tunnel."""
        server = self.server
        problem = check_switch(list(resp.headers), key)
        if problem:
            up.close()
            self.refuse(ex, UpstreamError(502, "bad-handshake", problem))
            return False
        head = [b"HTTP/1.1 101 " + (resp.reason or b"Switching Protocols")]
        head.extend(name + b": " + value for name, value in resp.headers.raw_items())
        data = b"\r\n".join(head) + b"\r\n\r\n"
        origin_transport = up.proto.transport
        assert self.transport is not None and origin_transport is not None
        client_left = conn.trailing_data[0] + (self.take() if self.chunks else b"")
        origin_left = up.conn.trailing_data[0] + (up.proto.take() if up.proto.chunks else b"")
        self.write(data)
        self.handed_off = True
        server.connections.discard(self)
        handshake = time.monotonic() - ex.t0
        tunnel = Tunnel(self.transport, origin_transport,
                        ping_interval=server.config.timeouts.websocket_ping_interval,
                        on_done=lambda t: server.tunnel_done(t, ex))
        server.tunnels.add(tunnel)
        server.metrics.websocket_opened(ex.route.pattern if ex.route else "-", handshake)
        tunnel.start(client_left, origin_left)
        if self.lost:
            tunnel.client_lost()
        if up.proto.lost:
            tunnel.origin_lost()
        if server.draining:
            tunnel.shutdown(1001)
        return True

