"""The client leg: one asyncio Protocol per client connection, parsing HTTP/1.1 with httptools.

The parser's callbacks go to a `RequestSink` (in the compiled core), which only records and validates. Work
starts after `feed_data` returns, so a request found malformed anywhere in the bytes received so far never
reaches an upstream. Requests are answered in order (pipelining): while one is in flight, reading pauses and
the next ones wait in `queue`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import deque
from typing import TYPE_CHECKING

import orjson
from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser, parse_url

from fastgw.core import (
    PluginFailed,
    Reject,
    Request,
    RequestSink,
    new_context,
    run_phases,
    strip_headers,
)
from fastgw.functions.integration import KIND_LAMBDA, lambda_call
from fastgw.gateway import KIND_HTTP, KIND_MOCK
from fastgw.plugins.base import Context, Response
from fastgw.plugins.run import filter_body, filter_headers, run_log
from fastgw.proxy.upstream import HIGH_WATER, proxy
from fastgw.server.body import BodyCollector
from fastgw.server.http import DATE, error_response, status_line

if TYPE_CHECKING:
    from fastgw.functions.integration import LambdaRoute
    from fastgw.gateway import Gateway, HttpRoute, MockRoute
    from fastgw.plugins.chain import Chain

    Route = MockRoute | HttpRoute | LambdaRoute
    from fastgw.server.server import ServerState

log = logging.getLogger("fastgw.server")

# Why reading from the client is paused; reading resumes when no reason is left.
PAUSE_PIPELINE = 1  # a request is in flight and the next one has begun
PAUSE_BUFFER = 2  # request body buffered while the upstream connection is being made
# PAUSE_UPSTREAM_BUSY = 4 belongs to the upstream leg (the upstream is not taking the body as fast)

DEADLINE_NONE, DEADLINE_HEADER, DEADLINE_IDLE = 0, 1, 2

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_TOO_LARGE = {"message": "Request size limit exceeded"}
_PLUGIN_ERROR = {"message": "Internal server error"}


class ClientProtocol(asyncio.Protocol):
    __slots__ = (
        "state", "loop", "transport", "sink", "parser", "queue", "active", "closed", "broken", "write_paused",
        "_paused", "_starting", "deadline", "deadline_kind", "peer_ip", "peer_ip_b", "trusted", "limits",
        "server_line", "via", "ctx",
    )  # fmt: skip

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.loop = state.loop
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        gw = state.gateway
        limits = self.limits = gw.limits
        self.queue: deque[Request] = deque()
        # The parser's callbacks go to the sink (compiled): it records and validates every request into `queue`.
        self.sink = RequestSink(
            self,
            self.queue,
            limits.max_url_length,
            limits.max_header_size,
            limits.max_headers,
            limits.max_body_size,
            HIGH_WATER,
            max_field_size=limits.max_header_field_size,  # issue 11: one header field's limit
        )
        self.parser = self.sink.parser = HttpRequestParser(self.sink)
        self.active = False
        self.closed = False
        self.broken = False
        self.write_paused = False
        self._paused = 0
        self._starting = False
        self.deadline = 0.0
        self.deadline_kind = DEADLINE_NONE
        self.server_line = gw.server_line
        self.via = gw.via
        self.peer_ip = ""
        self.peer_ip_b = b""
        self.trusted = False
        self.ctx: Context | None = None  # the plugins' context of the request in flight, on routes with plugins

    # -- asyncio.Protocol -------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.set_write_buffer_limits(high=HIGH_WATER)
        peer = transport.get_extra_info("peername")
        self.peer_ip = peer[0] if isinstance(peer, tuple) else ""
        self.peer_ip_b = self.peer_ip.encode("latin-1")
        self.trusted = self.state.gateway.is_trusted(self.peer_ip)
        self.state.connections.add(self)
        self._header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.state.connections.discard(self)
        for req in self.queue:
            req.finished = True
            if req.upstream is not None:
                req.upstream.abandon()  # type: ignore[attr-defined]
        self.queue.clear()
        self.sink.parser = None  # break the parser <-> sink cycle

    def data_received(self, data: bytes) -> None:
        if self.broken or self.closed:
            return
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade as exc:
            self._upgrade(data, int(exc.args[0]))
        except HttpParserError as exc:
            self._parse_error(exc)
        queue = self.queue
        if not queue:
            return
        if len(queue) > 1:
            self.pause_reading_for(PAUSE_PIPELINE)  # answered in order: the next one waits its turn
        elif self.deadline_kind == DEADLINE_IDLE:
            self._header_deadline()  # the first bytes of the next request after an idle keep-alive wait
        self._maybe_start()

    def pause_writing(self) -> None:
        self.write_paused = True
        up = self.queue[0].upstream if self.queue else None
        if up is not None:
            up.pause_reading()  # type: ignore[attr-defined]

    def resume_writing(self) -> None:
        self.write_paused = False
        up = self.queue[0].upstream if self.queue else None
        if up is not None:
            up.resume_reading()  # type: ignore[attr-defined]

    def buffer_full(self) -> None:
        """Called by the sink: a request body is buffering faster than the upstream connection is made."""
        self.pause_reading_for(PAUSE_BUFFER)

    # -- answering --------------------------------------------------------------------------------------------

    def _maybe_start(self) -> None:
        if self._starting or self.closed or not self.queue:
            return
        self._starting = True
        try:
            while not self.active and self.queue and not self.closed:
                req = self.queue[0]
                if req.error is not None:
                    status, message = req.error
                    req.status = status
                    req.keep_alive = False
                    self._answer(req, error_response(status, message, server=self.server_line, keep_alive=False))
                    return
                if not req.headers_done:
                    return
                self.active = True
                if self.state.access_log is not None:
                    req.t0 = time.perf_counter()
                try:
                    self._dispatch(req)
                except Exception:
                    log.exception("internal error while dispatching %s %r", req.method, req.url)
                    self.upstream_failed(req, 500, "Internal server error", "internal error (logged above)")
        finally:
            self._starting = False

    def _dispatch(self, req: Request) -> None:
        gw: Gateway = self.state.gateway
        url = req.url
        if url[:1] == b"/":
            q = url.find(b"?")
            if q < 0:
                raw = url
            else:
                raw, req.query = url[:q], url[q + 1 :]
        elif url[:7].lower() == b"http://" or url[:8].lower() == b"https://":
            parsed = parse_url(url)  # absolute-form: its authority replaces Host (RFC 9112 3.2.2)
            raw, req.query = parsed.path or b"/", parsed.query
            if parsed.host:
                req.host_raw = parsed.host + (b":%d" % parsed.port if parsed.port else b"")
                req.host = parsed.host.decode("latin-1").lower()
        else:
            self._answer_error(req, 400, "Bad Request: request target must be a path", close=True)
            return
        h = raw.find(b"#")
        if h >= 0:
            raw = raw[:h]
        path, found = gw.paths.route(req.method, req.host, raw)  # issue 11: the path policy, then the router
        if path is None:
            self._answer_error(req, 400, "Bad Request", close=True)
            return
        req.path = path
        if found is not None and found[0] is None and req.method == "OPTIONS":
            found = self._preflight_route(req, path) or found
        if found is None or found[0] is None:
            self.respond(req, *gw.paths.miss(req.host, path, found))  # issue 11: 404/405/403 as API Gateway says
            return
        index, params = found
        route: Route = gw.routes[index]  # type: ignore[call-overload]
        req.route_name = route.name
        chain = route.chain
        if chain is not None:
            ip = self.peer_ip if not self.trusted else self._client_ip(req)
            ctx = self.ctx = new_context(req, ip, params, route.info, chain)  # type: ignore[arg-type]
            if chain.streams:
                self._request_phases(req, route, params, ctx, 0)  # type: ignore[arg-type]
            else:
                self._body_then_phases(req, route, params, ctx, chain)  # type: ignore[arg-type]
            return
        if gw.strip_names:
            strip_headers(req, gw.strip_names)
        if route.kind == KIND_HTTP and not req.expect_continue:
            proxy(self, req, route, params)  # type: ignore[arg-type]  # PERF: the common case, one call less
            return
        self._integrate(req, route, params)  # type: ignore[arg-type]

    def _integrate(self, req: Request, route: Route, params: dict[str, str]) -> None:
        """Hand `req` to the route's integration (mock, lambda, http)."""
        kind = route.kind
        if kind == KIND_MOCK:
            if self.ctx is not None:
                self.respond(req, route.status, route.headers, route.body)  # type: ignore[union-attr]
                return
            keep = self._can_keep(req)
            req.status = route.status  # type: ignore[union-attr]
            self._answer(req, route.render(keep, req.http10, req.head_only))  # type: ignore[union-attr]
            return
        if req.expect_continue and not req.complete:
            self.transport.write(_CONTINUE)
        if kind == KIND_LAMBDA:
            lambda_call(self, req, route, params)  # type: ignore[arg-type]
            return
        proxy(self, req, route, params)  # type: ignore[arg-type]

    def _preflight_route(self, req: Request, path: str) -> tuple[int, dict[str, str]] | None:
        """A CORS preflight for a path whose routes do not take OPTIONS: it belongs to the route of the method it
        asks about, if that route has the cors plugin (which answers it before any auth runs)."""
        gw: Gateway = self.state.gateway
        asked = next((v for k, v in req.headers if k == b"access-control-request-method"), None)
        if asked is None:
            return None
        found = gw.router.match(asked.decode("latin-1").strip().upper(), req.host, path)
        if found is None or found[0] is None:
            return None
        chain = gw.routes[found[0]].chain  # type: ignore[call-overload]
        return found if chain is not None and "cors" in chain.names else None  # type: ignore[return-value]

    # -- plugins ----------------------------------------------------------------------------------------------

    def _client_ip(self, req: Request) -> str:
        """The client's address: the peer, or behind a trusted proxy the right-most X-Forwarded-For address
        that is not itself a trusted proxy."""
        if not self.trusted:
            return self.peer_ip
        gw: Gateway = self.state.gateway
        hops = [h.strip() for k, v in req.headers if k == b"x-forwarded-for" for h in v.decode("latin-1").split(",")]
        for hop in reversed(hops):
            if hop and not gw.is_trusted(hop):
                return hop
        return hops[0] if hops and hops[0] else self.peer_ip

    def _body_then_phases(self, req: Request, route: Route, params: dict[str, str], ctx: Context, chain: Chain) -> None:
        """A route whose plugins judge or change the body: refuse it if it is too big, collect it, then run the
        phases."""
        limit = chain.body_limit
        if limit is not None and (req.body_size > limit or (req.content_length or 0) > limit):
            self.respond_json(req, 413, _TOO_LARGE)
            return
        if chain.needs_body or (limit is not None and req.chunked):
            if not req.complete:
                # The route's plugins judge the body whole: collect it first (refused as soon as it is too big).
                req.upstream = BodyCollector(
                    req,
                    lambda chunks: self._collected(req, route, params, ctx, chunks),
                    limit,
                    lambda: self._body_too_large(req),
                )
                self.body_drained(req)
                return
            ctx.request.body = b"".join(req.body)
        self._request_phases(req, route, params, ctx, 0)

    def _collected(self, req: Request, route: Route, params: dict[str, str], ctx: Context, chunks: list[bytes]) -> None:
        req.body = chunks
        req.buffered = req.body_size
        ctx.request.body = b"".join(chunks)
        self._request_phases(req, route, params, ctx, 0)

    def _body_too_large(self, req: Request) -> None:
        """Answer now; the rest of the body is never read (the connection closes after the answer)."""
        req.keep_alive = False
        self.respond_json(req, 413, _TOO_LARGE)

    def _request_phases(self, req: Request, route: Route, params: dict[str, str], ctx: Context, start: int) -> None:
        """rewrite, then access phases, from `start`; a Response answers, an awaitable continues asynchronously."""
        try:
            i, result = run_phases(ctx, start, req)
        except PluginFailed as exc:
            self._plugin_failed(req, route, exc.name, exc=exc.__cause__)
            return
        if i >= 0:
            self._phase_result(req, route, params, ctx, i, result)
            return
        if route.kind == KIND_HTTP and not req.expect_continue:
            proxy(self, req, route, params)  # type: ignore[arg-type]  # PERF: the common case, one call less
            return
        self._integrate(req, route, params)

    def _phase_result(
        self, req: Request, route: Route, params: dict[str, str], ctx: Context, i: int, result: object
    ) -> None:
        """Phase i returned something: a Response answers, an awaitable continues asynchronously."""
        name = ctx.chain.request[i][3]
        if result.__class__ is Response:
            self._plugin_response(req, result)
        elif inspect.isawaitable(result):
            self.loop.create_task(self._resume_phases(req, route, params, ctx, i, name, result))
        else:
            self._plugin_failed(req, route, name, f"returned {type(result).__name__}, not None or a Response")

    async def _resume_phases(
        self, req: Request, route: Route, params: dict[str, str], ctx: Context, i: int, name: str, awaitable: object
    ) -> None:
        try:
            result = await awaitable  # type: ignore[misc]
        except Exception as exc:
            self._plugin_failed(req, route, name, exc=exc)
            return
        if self.closed or req.finished:
            return
        if result is None:
            self._request_phases(req, route, params, ctx, i + 1)
        elif isinstance(result, Response):
            self._plugin_response(req, result)
        else:
            self._plugin_failed(req, route, name, f"returned {type(result).__name__}, not None or a Response")

    def _plugin_response(self, req: Request, resp: Response) -> None:
        # NOTE: answered before a body still on its way was read: request_done closes the connection then, as
        # for any early answer (and 100 Continue was never sent, so an expecting client sends no body).
        self.respond(req, resp.status, resp.headers, resp.body)

    def _plugin_failed(
        self, req: Request, route: Route, name: str, why: str | None = None, exc: BaseException | None = None
    ) -> None:
        if why is None:
            log.error("plugin %s failed on route %s (%s %s)", name, route.name, req.method, req.path, exc_info=exc)
        else:
            log.error("plugin %s failed on route %s (%s %s): %s", name, route.name, req.method, req.path, why)
        if req.finished or self.closed:
            return
        if req.response_started:
            req.finished = True
            self.transport.abort()
            return
        self.ctx = None  # no further phases for a request whose plugins broke
        self.respond_json(req, 500, _PLUGIN_ERROR)

    def _can_keep(self, req: Request) -> bool:
        return req.keep_alive and req.complete and not self.state.closing

    def _answer_error(self, req: Request, status: int, message: str, extra: bytes = b"", close: bool = False) -> None:
        if self.ctx is not None and not extra:
            # On a route with plugins the error is a response like any other (CORS headers, request id...).
            if close:
                req.keep_alive = False
            self.respond_json(req, status, {"message": message})
            return
        req.status = status
        keep = not close and self._can_keep(req)
        data = error_response(
            status, message, server=self.server_line, keep_alive=keep, extra=extra, head_only=req.head_only
        )
        req.keep_alive = keep
        self._answer(req, data)

    def respond(self, req: Request, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        """Answer `req` with a whole response made inside the gateway (a function's, a plugin's, an error): one
        write. On a route with plugins, their header_filter and body_filter phases see it first."""
        ctx = self.ctx
        if ctx is not None and (ctx.chain.header_filter or ctx.chain.body_filter or ctx._reply_headers):
            try:
                status, headers = filter_headers(ctx, status, headers)
                if ctx.chain.body_filter:
                    body = filter_body(ctx, body)
            except PluginFailed as exc:
                log.error("plugin %s failed filtering the response on route %s", exc.name, req.route_name,
                          exc_info=exc.__cause__)  # fmt: skip
                self.ctx = None
                status, headers, body = 500, [("content-type", "application/json")], orjson.dumps(_PLUGIN_ERROR)
        req.status = status
        keep = req.keep_alive = self._can_keep(req)
        parts = [status_line(status), DATE.line]
        server = self.server_line
        for name, value in headers:
            if server and name.lower() == "server":
                server = b""
            parts.append(b"%s: %s\r\n" % (name.encode("latin-1"), value.encode("utf-8")))
        if server:
            parts.append(server)
        has_body = status not in (204, 304)
        if has_body:
            parts.append(b"content-length: %d\r\n" % len(body))
        if not keep:
            parts.append(b"connection: close\r\n")
        elif req.http10:
            parts.append(b"connection: keep-alive\r\n")
        parts.append(b"\r\n")
        if has_body and not req.head_only:
            parts.append(body)
        self._answer(req, b"".join(parts))

    def respond_json(
        self, req: Request, status: int, obj: object, headers: list[tuple[str, str]] | None = None
    ) -> None:
        self.respond(req, status, [("content-type", "application/json"), *(headers or ())], orjson.dumps(obj))

    def _answer(self, req: Request, data: bytes) -> None:
        req.response_started = True
        self.transport.write(data)
        self.request_done(req)

    def request_done(self, req: Request) -> None:
        """`req` is answered in full (by the gateway, or by the upstream leg for a proxied request)."""
        req.finished = True
        queue = self.queue
        if queue and queue[0] is req:
            queue.popleft()
        self.active = False
        state = self.state
        if state.access_log is not None:
            state.access_log(self, req)
        ctx = self.ctx
        if ctx is not None:
            self.ctx = None
            if ctx.chain.log:
                self.loop.call_soon(run_log, ctx, req.status)
        if not (req.keep_alive and req.complete) or req.error is not None or state.closing:
            self.close()
            return
        if not queue:
            self.deadline_kind = DEADLINE_IDLE
            self.deadline = self.loop.time() + self.limits.keepalive_timeout
            if self._paused:
                self.resume_reading_for(PAUSE_PIPELINE)
            return
        if len(queue) == 1 and self._paused:
            self.resume_reading_for(PAUSE_PIPELINE)
        if not queue[0].headers_done:
            self._header_deadline()
        if not self._starting:
            self._maybe_start()

    # -- called by the upstream leg ---------------------------------------------------------------------------

    def upstream_failed(self, req: Request, status: int, message: str, reason: str) -> None:
        if req.finished or self.closed:
            return
        log.warning("%s %s route=%s -> %d: %s", req.method, req.path, req.route_name or "-", status, reason)
        if req.response_started:
            # The head is out: the only honest signal left is to cut the connection.
            req.finished = True
            self.transport.abort()
            return
        self._answer_error(req, status, message)

    def body_drained(self, req: Request) -> None:
        req.body = []
        req.buffered = 0
        self.resume_reading_for(PAUSE_BUFFER)

    def pause_reading_for(self, reason: int) -> None:
        if not self._paused and not self.closed:
            self.transport.pause_reading()
        self._paused |= reason

    def resume_reading_for(self, reason: int) -> None:
        if self._paused & reason:
            self._paused &= ~reason
            if not self._paused and not self.closed and not self.broken:
                self.transport.resume_reading()

    # -- errors, timeouts, shutdown ---------------------------------------------------------------------------

    def _parse_error(self, exc: HttpParserError) -> None:
        cause = exc.__context__
        if isinstance(cause, Reject):
            status, message = cause.status, cause.message
        elif cause is not None and not isinstance(cause, HttpParserError):
            log.error("internal error while parsing a request", exc_info=cause)
            status, message = 500, "Internal server error"
        else:
            status, message = 400, "Bad Request"
            log.debug("malformed request from %s: %s", self.peer_ip, exc)
        self.broken = True
        self.transport.pause_reading()
        req = self.sink.parsing
        if req is None:
            req = Request()
            self.queue.append(req)
        req.error = (status, message)
        req.keep_alive = False
        if self.active and self.queue[0] is req:
            # Broken while its body was already streaming upstream: the upstream never gets a complete request.
            if req.upstream is not None:
                req.upstream.abandon()  # type: ignore[attr-defined]
            self.upstream_failed(req, status, message, f"request body refused: {message}")

    def _upgrade(self, data: bytes, offset: int) -> None:
        """httptools stops at a request asking for an Upgrade (h2c, websocket). The gateway does not switch
        protocols: a body-less request is served as plain HTTP/1.1 (the Upgrade headers are hop-by-hop and
        dropped), and parsing goes on with a fresh parser after it."""
        # httptools has already reported the message complete (without a body) when it stops here.
        req = self.sink.parsing or (self.queue[-1] if self.queue else None)
        self.parser = self.sink.parser = HttpRequestParser(self.sink)
        if req is None or req.method_b == b"CONNECT" or req.chunked or req.content_length:
            if req is not None:
                req.error = (405, "Method Not Allowed") if req.method_b == b"CONNECT" else (400, "Bad Request")
                req.keep_alive = False
            self.broken = True
            self.transport.pause_reading()
            return
        if not req.complete:
            self.sink.on_message_complete()
        rest = data[offset:]
        if rest:
            self.data_received(rest)

    def _header_deadline(self) -> None:
        """From now on, the next request has `header_timeout` to arrive whole (or it gets a 408)."""
        self.deadline_kind = DEADLINE_HEADER
        self.deadline = self.loop.time() + self.limits.header_timeout

    def check_deadline(self, now: float) -> None:
        if not self.deadline or now <= self.deadline or self.closed or self.active:
            return  # NOTE: a request in flight is bounded by its upstream's timeouts, not by these
        if self.deadline_kind == DEADLINE_HEADER:
            self.broken = True
            self.transport.write(error_response(408, "Request Timeout", server=self.server_line, keep_alive=False))
        self.close()

    def shutdown(self) -> None:
        """Graceful stop: close now if idle; a request in flight finishes and its response says close."""
        if not self.active and not self.queue:
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.state.connections.discard(self)
            self.transport.close()
