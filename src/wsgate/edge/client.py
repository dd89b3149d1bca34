"""The edge's driver for one client connection: bytes between transports, the rules
from `edge/exchange.py`.

Each client connection is a `StreamProtocol` plus one coroutine that reads its
requests in order (keep-alive and pipelining), so a request needs no task of its
own; an await happens only where bytes are really missing. After a verified 101
the connection is handed to a `Tunnel` and this coroutine ends.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from wsgate.config import Origin
from wsgate.edge import exchange as xc
from wsgate.edge.admission import Refusal
from wsgate.edge.exchange import Exchange, ProxyError, RequestPlan, ResponsePlan
from wsgate.edge.http1 import (
    LAST_CHUNK,
    BadMessage,
    RequestHead,
    ResponseHead,
    chunk,
    decoder_for,
    parse_request_head,
    parse_response_head,
)
from wsgate.edge.stream import PeerGone, StreamProtocol
from wsgate.edge.tunnel import Tunnel
from wsgate.edge.upstream import Upstream
from wsgate.policy.websocket import check_switch

if TYPE_CHECKING:
    import asyncio

    from wsgate.edge.server import EdgeServer

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class ClientConnection(StreamProtocol):
    def __init__(self, server: EdgeServer) -> None:
        super().__init__(server.config.limits.write_buffer_bytes, server.loop)
        self.server = server
        self.peer_ip = "-"
        self.idle = False
        self.served = 0  # exchanges finished on this connection
        self.handed_off = False
        self.upstream: StreamProtocol | None = None  # while an exchange uses one
        # Held so the reader's task cannot be collected while it waits (asyncio keeps
        # only weak references to tasks).
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            ip = str(peer[0])
            self.peer_ip = ip[7:] if ip.startswith("::ffff:") else ip
        if not self.server.admission.connection_opened():
            # Over max_connections: answered at once, no request read, so a flood of
            # connections holds no descriptor longer than this.
            self.refuse_admission(Exchange(time.monotonic(), self.peer_ip),
                                  self.server.admission.connection_refusal)
            self.close()
            return
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
        try:
            while await self.next_request():
                ex = Exchange(time.monotonic(), self.peer_ip)
                if not await self.serve(ex) or self.handed_off:
                    break
                self.served += 1
        except (PeerGone, ConnectionError):
            pass
        except Exception:  # a bug must cost one connection, never the edge
            self.server.logger.exception("edge: unexpected error on a client connection")
            self.abort()
        finally:
            if not self.handed_off:
                self.server.connections.discard(self)
                self.close()

    async def next_request(self) -> bool:
        """Until the first byte of the next request: False when the connection ends
        first (client closed, idle timeout, drain)."""
        if not self.chunks and not self.eof:
            # A draining edge takes no further request on a kept-alive connection; one
            # it accepted before the drain still gets its first (else that is a drop).
            if self.server.draining and self.served:
                return False
            self.idle = self.served > 0
            try:
                await self.wait_data(self.server.config.timeouts.client_idle)
            except TimeoutError:
                return False
            finally:
                self.idle = False
        return bool(self.chunks) and not self.lost

    async def serve(self, ex: Exchange) -> bool:
        """One exchange, logged exactly once. True: the connection carries another."""
        try:
            req = await self.read_head()
        except ProxyError as err:
            self.refuse(ex, err)
            return False
        xc.describe(req, ex, self.server.rules, self.peer_ip)
        try:
            plan = xc.check_request(req, ex, self.server.rules)
        except ProxyError as err:
            self.refuse(ex, err)
            return False
        ex.route, ex.websocket = plan.route, plan.websocket
        admission = self.server.admission
        if admission.enabled and not plan.websocket:  # an upgrade is admitted at its origin
            refusal = admission.check_request(ex.client_ip, ex.t0)
            if refusal is not None:
                return self.refuse_admission(ex, refusal)
        try:
            return await self.proxy(req, ex, plan)
        finally:
            if ex.admitted is not None and not self.handed_off:
                self.server.release_session(ex)  # no tunnel: the place is free again

    async def read_head(self) -> RequestHead:
        """The next request head (phase 1), within `request_header` seconds of its first
        byte. Bytes after it stay queued: its body, or the next pipelined request."""
        server = self.server
        limit = server.rules.max_header_bytes  # one limit, also what check_request relies on
        deadline = self.loop.time() + server.config.timeouts.request_header
        buf = b""
        while True:
            if self.chunks:
                buf = buf + self.take() if buf else self.take()
            try:
                end = xc.find_head(buf, limit)
                if end >= 0:
                    if end + 4 < len(buf):
                        self.unread(buf[end + 4:])
                    return parse_request_head(buf[:end])
                if self.eof:
                    raise BadMessage("malformed request: incomplete head")
            except BadMessage as exc:
                raise xc.bad_message_error(exc) from None
            left = deadline - self.loop.time()
            try:
                if left <= 0:
                    raise TimeoutError
                await self.wait_data(left)
            except TimeoutError:
                raise xc.client_timeout("request headers not received in time") from None

    def refuse(self, ex: Exchange, err: ProxyError, extra: list[tuple[bytes, bytes]] | None = None,
               *, quiet: bool = False) -> None:
        """Answer with an edge-made error (the connection then closes) and log it."""
        ex.fail(err)
        ex.status = err.status
        data = xc.error_response(err, ex, self.server.rules, extra)
        ex.to_client += len(data)
        self.write(data)
        self.server.log_exchange(ex, quiet=quiet)

    def refuse_admission(self, ex: Exchange, refusal: Refusal) -> bool:
        """Admission control said no (docs/admission.md): its status with Retry-After;
        under a flood from one client the event joins a summary instead."""
        alone = self.server.admission.log_alone(ex.client_ip, refusal, ex.t0, ex.websocket)
        self.refuse(ex, ProxyError(refusal.status, f"admission-{refusal.limit}", refusal.message),
                    [(b"retry-after", b"%d" % refusal.retry_after)], quiet=not alone)
        return False

    def give_up(self, ex: Exchange, exc: BaseException) -> bool:
        """The client went away mid-exchange: log it and drop the connection."""
        ex.error_class = "client-gone"
        ex.error = f"client connection ended: {exc.__class__.__name__}"
        ex.status = ex.status or 499
        self.server.log_exchange(ex)
        self.abort()
        return False

    async def proxy(self, req: RequestHead, ex: Exchange, plan: RequestPlan) -> bool:
        """Phases 4-6 with the retry hook: a failure that says nothing was processed
        sends a safe bodiless request once more on a fresh connection."""
        server = self.server
        retried = False
        if not self.choose_origin(req, ex, plan):
            return False
        balanced = len(plan.route.origins) > 1
        while True:
            try:
                up = await server.pool.acquire(plan.origin, self.loop)
            except ProxyError as err:
                if balanced:
                    server.balancer.connect_failed(plan.origin)
                    # Nothing was sent: a safe bodiless request tries another origin once.
                    if xc.may_retry(err, method=req.method, body_sent=ex.from_client,
                                    answered=False, reused=False, retried=retried) and \
                            self.choose_origin(req, ex, plan, exclude=plan.origin):
                        retried = True
                        continue
                self.refuse(ex, err)
                return False
            if balanced and not up.reused:
                server.balancer.connect_ok(plan.origin)
            self.upstream = up.proto
            try:
                return await self.forward(req, ex, plan, up, resend=retried)
            except ProxyError as err:
                up.close()
                if xc.may_retry(err, method=req.method, body_sent=ex.from_client,
                                answered=ex.status != 0, reused=up.reused, retried=retried):
                    retried = True
                    continue
                return self.failed(ex, err)
            except (PeerGone, ConnectionError) as exc:
                up.close()
                return self.give_up(ex, exc)
            finally:
                self.upstream = None

    def choose_origin(self, req: RequestHead, ex: Exchange, plan: RequestPlan,
                      exclude: Origin | None = None) -> bool:
        """The origin for this exchange. Several: the balancer's choice (the affinity
        cookie's origin while it is up, else a fresh one with a new cookie). False: no
        origin (a first choice is then answered 502 "no healthy origin")."""
        route, admission = plan.route, self.server.admission
        origin, set_cookie = route.origin, None
        if len(route.origins) > 1:
            cookies = [v for n, v in req.headers if n == b"cookie"]
            full = (admission.full_origins(route.origins)
                    if plan.websocket and admission.enabled else ())
            choice = self.server.balancer.choose(
                route, b"; ".join(cookies) if cookies else None, exclude, full)
            if choice is None:
                if exclude is None:
                    self.refuse(ex, ProxyError(502, "no-healthy-origin", "no healthy origin"))
                return False
            origin, set_cookie = choice.origin, choice.set_cookie
        if plan.websocket and admission.enabled and not self.admit_session(ex, origin,
                                                                           exclude is None):
            return False
        ex.origin = plan.origin = origin
        plan.set_cookie = set_cookie
        return True

    def admit_session(self, ex: Exchange, origin: Origin, answer: bool) -> bool:
        """An upgrade holds a place for its client and at its origin until its tunnel
        ends; on a retry elsewhere the place moves with it. A refusal is answered only
        on the first choice (`answer`): on a retry the connect error is the answer."""
        if ex.admitted is not None:
            self.server.release_session(ex)
        refusal = self.server.admission.open_websocket(ex.client_ip, origin.url, ex.t0)
        if refusal is not None:
            if answer:
                self.refuse_admission(ex, refusal)
            return False
        ex.admitted = origin
        return True


    def failed(self, ex: Exchange, err: ProxyError) -> bool:
        if err.status < 500 or ex.status == 0:  # nothing of the answer was sent yet
            self.refuse(ex, err)
        else:  # mid-response: the client sees the connection end early
            ex.fail(err)
            self.server.log_exchange(ex)
            self.abort()
        return False

    async def forward(self, req: RequestHead, ex: Exchange, plan: RequestPlan,
                      up: Upstream, *, resend: bool) -> bool:
        if self.lost:
            raise PeerGone("the client went away")
        uproto = up.proto
        received_before = uproto.nbytes
        uproto.writelines(xc.upstream_head(plan, self.server.rules))
        if resend:  # the first try read the body: there was none (see may_retry)
            if plan.framing == "chunked":
                uproto.write(LAST_CHUNK)
        elif plan.framing != "none":
            await self.send_request_body(req, ex, uproto)
        resp, head, rest = await self.response_head(uproto, req.method, received_before)
        if resp.status == 101:
            if not plan.key:
                raise xc.bad_response("the origin switched protocols unasked")
            return self.open_tunnel(ex, up, resp, head, rest, plan.key)
        ex.status = resp.status
        rp = xc.plan_response(resp, req, ex, self.server.rules, upgrade_refused=plan.websocket,
                              draining=self.server.draining, set_cookie=plan.set_cookie)
        ex.to_client += len(rp.head)
        await self.send_response_body(uproto, rp, resp, rest, ex)
        if rp.keep_upstream:
            up.done = True
            self.server.pool.release(up)
        else:
            up.close()
        self.server.log_exchange(ex)
        return rp.keep_client

    async def response_head(self, uproto: StreamProtocol, method: bytes, received_before: int
                            ) -> tuple[ResponseHead, bytes, bytes]:
        """The origin's final response head (1xx other than 101 skipped: the edge
        answered Expect itself), its raw bytes, and the bytes after it."""
        wait = self.server.config.timeouts.upstream_response
        buf = b""
        while True:
            end = xc.find_response_head(buf)
            if end < 0:
                if not uproto.chunks:
                    if uproto.eof:
                        if uproto.nbytes == received_before:
                            raise xc.upstream_closed()
                        raise xc.bad_response()
                    try:
                        await uproto.wait_data(wait)
                    except TimeoutError:
                        raise xc.upstream_timeout("the origin did not answer in time") from None
                buf = buf + uproto.take() if buf else uproto.take()
                continue
            try:
                resp = parse_response_head(buf[:end], method)
            except BadMessage:
                raise xc.bad_response() from None
            if resp.status == 101 or resp.status >= 200:
                return resp, buf[:end + 4], buf[end + 4:]
            buf = buf[end + 4:]

    async def send_request_body(self, req: RequestHead, ex: Exchange,
                                uproto: StreamProtocol) -> None:
        """The request body, client → origin, streamed with flow control both ways.
        Besides the per-read `client_body` timeout the body has a deadline that grows
        with what arrives (Apache's MinRate model): a trickle of one byte a second is
        cut, a slow but steady upload is not."""
        limits = self.server.config.limits
        chunked = req.framing == "chunked"
        decoder = decoder_for(req.framing, req.length)
        body_start = self.loop.time()
        expect = req.expect_continue
        while not decoder.done:
            if not self.chunks:
                if self.eof:
                    raise ProxyError(400, "bad-request", "request ended early")
                if expect:
                    self.write(_CONTINUE)
                    expect = False
                await self.wait_body(body_start, ex.from_client)
                continue
            expect = False  # the client sent body bytes without waiting for 100
            pieces: list[bytes] = []
            try:
                extra = decoder.feed(self.take(), pieces)
            except BadMessage:
                raise ProxyError(400, "bad-request", "malformed request body") from None
            if extra:
                self.unread(extra)  # the next pipelined request
            ex.from_client += sum(map(len, pieces))
            if ex.from_client > limits.max_body_bytes:
                raise ProxyError(413, "body-too-large", "request body too large")
            if pieces:
                uproto.writelines([chunk(p) for p in pieces] if chunked else pieces)
            await self.upstream_drain(uproto)
        if chunked:
            uproto.write(LAST_CHUNK)

    async def wait_body(self, body_start: float, received: int) -> None:
        tmo, min_rate = self.server.config.timeouts, self.server.config.limits.min_body_rate
        wait = tmo.client_body
        if min_rate:
            wait = min(wait, body_start + tmo.client_body + received / min_rate - self.loop.time())
        try:
            if wait <= 0:
                raise TimeoutError
            await self.wait_data(wait)
        except TimeoutError:
            raise xc.client_timeout("request body not received in time") from None

    async def upstream_drain(self, uproto: StreamProtocol) -> None:
        if uproto.write_paused:
            try:
                await uproto.drain(self.server.config.timeouts.upstream_response)
            except TimeoutError:
                raise xc.upstream_timeout("the origin stopped reading the request") from None

    async def send_response_body(self, uproto: StreamProtocol, rp: ResponsePlan,
                                 resp: ResponseHead, data: bytes, ex: Exchange) -> None:
        """Phase 6: the response body, origin → client, as it arrives. The head goes out
        with the first body bytes in one write. Flow control: while the client's
        buffer is full the origin is not read (its own buffer then pauses its socket)."""
        decoder = decoder_for(rp.framing, resp.length)
        pending = [rp.head]
        while not decoder.done:
            if data:
                pieces: list[bytes] = []
                try:
                    extra = decoder.feed(data, pieces)
                except BadMessage:
                    raise xc.bad_response("the origin sent an invalid chunked body") from None
                if extra:
                    uproto.unread(extra)  # not ours: the upstream will not be reused
                for piece in pieces:
                    ex.to_client += len(piece)
                    pending.append(chunk(piece) if rp.reframe else piece)
                if decoder.done:
                    break
            self.flush(pending)
            pending = []
            await self.client_drain()
            data = await self.next_from_origin(uproto, decoder.ends_at_eof)
            if not data:
                break
        if rp.reframe:
            pending.append(LAST_CHUNK)
        self.flush(pending)

    def flush(self, pending: list[bytes]) -> None:
        if self.lost:
            raise PeerGone("the client went away mid-response")
        if pending:
            self.writelines(pending)

    async def client_drain(self) -> None:
        if self.write_paused:
            # A client that never reads must not hold the origin forever.
            try:
                await self.drain(self.server.config.timeouts.client_idle)
            except TimeoutError:
                raise PeerGone("the client stopped reading the response") from None

    async def next_from_origin(self, uproto: StreamProtocol, ends_at_eof: bool) -> bytes:
        """The origin's next body bytes; b"" when its close ends the body."""
        while not uproto.chunks:
            if uproto.eof:
                if ends_at_eof:
                    return b""
                raise xc.bad_response("the origin ended the response early")
            try:
                await uproto.wait_data(self.server.config.timeouts.upstream_response)
            except TimeoutError:
                raise xc.upstream_timeout("the origin stopped sending the response") from None
        return uproto.take()

    def open_tunnel(self, ex: Exchange, up: Upstream, resp: ResponseHead, head: bytes,
                    origin_left: bytes, key: bytes) -> bool:
        """Phases 4-5 for an upgrade: relay the origin's own 101 byte for byte, then tunnel."""
        server = self.server
        problem = check_switch(resp.headers, key)
        if problem:
            up.close()
            self.refuse(ex, ProxyError(502, "bad-handshake", problem))
            return False
        origin_transport = up.proto.transport
        assert self.transport is not None and origin_transport is not None
        client_left = self.take() if self.chunks else b""
        if up.proto.chunks:
            origin_left += up.proto.take()
        self.write(head)
        self.handed_off = True
        server.connections.discard(self)
        tunnel = Tunnel(self.transport, origin_transport,
                        ping_interval=server.config.timeouts.websocket_ping_interval,
                        on_done=server.tunnel_done, context=ex)
        server.tunnel_opened(tunnel, ex)
        tunnel.start(client_left, origin_left, self.loop)
        if self.lost:
            tunnel.client_lost()
        if up.proto.lost:
            tunnel.origin_lost()
        if server.draining and not server.retiring:
            tunnel.shutdown(1001)
        return True
