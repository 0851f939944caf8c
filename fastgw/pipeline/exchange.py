"""The exchange: one request's life, from the route match to the log phase.

The dispatcher makes one `Exchange` per request. It runs the route's request phases (collecting the body first
when a plugin judges it whole), starts the route's integration, and ends the request: every response, proxied or
made in the gateway (mock, plugin, function, error), goes through its one filter path (`filter_head`,
`filter_body`) and is ended by `fastgw.core.finish_head`; `done` runs the access log and the log phases and hands
the connection back to its leg.

The integration's surface, the only way an integration talks back:
- `write(data)`: response bytes for the client, as framed by their head (the destination: the client's transport
  today; a collector or a tee for aggregation and caching);
- `respond(status, headers, body)` / `respond_json(...)`: a whole response;
- `fail(status, message, reason)`: no response can come (before the head: a JSON error; after: the connection
  is cut, the only honest signal left);
- `done()`: the response written with `write` is complete;
- `filter_head(head)` / `filter_body(body)`, and `response_filters()` (what a streamed response needs of them):
  the route's response filters;
- `pause_client()` / `resume_client()` / `paused` / `body_drained()`: flow control of the client leg (`paused`:
  the client is not reading as fast as the response comes, so the integration should stop reading too);
- `req` (what the client sent), `params`, `route`, `ctx`, `peer`, `state`, `gone`;
- what the exchange decides, declared once by `fastgw.core.ExchangeState` (its base): `body_sink` (where the
  request body streams), `status`, `response_started`, `retried`, `finished`, `t0`, `reply_lines`/`reply_names`,
  `sent`, `upstream`, `upstream_at`, `upstream_s`, `until`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import orjson

from fastgw.core import ExchangeState, PluginFailed, finish_head, keep_alive, new_context
from fastgw.core import filter_head as _filter_head
from fastgw.core import request_phases as _request_phases
from fastgw.core.http import HTTP_STATUS_LINES, status_line  # a table lookup, the same on both twins
from fastgw.core.observe import check_exchange  # (the spec's check, the same for both twins)
from fastgw.pipeline.background import Discard, request_copy
from fastgw.pipeline.body import BodyCollector
from fastgw.pipeline.head import DATE, encode_lines, gateway_head, without_fields
from fastgw.pipeline.leg import PAUSE_UPSTREAM_BUSY
from fastgw.plugins.base import Response
from fastgw.plugins.run import filter_body, run_log

if TYPE_CHECKING:
    from fastgw.config.schema import Limits
    from fastgw.core import Context, PhaseChain, Request, Router
    from fastgw.pipeline.leg import Peer
    from fastgw.plugins.base import RouteInfo
    from fastgw.routing import RouteTable

log = logging.getLogger("fastgw.pipeline")

# Exchange.response_filters: what a streamed response must go through.
FILTER_HEAD = 1
HOLD_BODY = 2

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_TOO_LARGE = {"message": "Request size limit exceeded"}
_INTERNAL = {"message": "Internal server error"}
_JSON = [("content-type", "application/json")]


class ClientLeg(Protocol):
    """The client connection an exchange answers on. Only the exchange uses it."""

    state: Worker
    peer: Peer
    closed: bool
    write_paused: bool
    exchange: Exchange | None
    transport: Any  # asyncio.Transport; only `hand_over` touches it

    def write(self, data: bytes) -> None: ...
    def abort(self) -> None: ...
    def request_done(self, req: Request) -> None: ...
    def continue_sent(self) -> None: ...
    def body_drained(self, req: Request) -> None: ...
    def pause_reading_for(self, reason: int) -> None: ...
    def resume_reading_for(self, reason: int) -> None: ...


class Served(Protocol):
    """The config one worker serves (`fastgw.gateway.Gateway`), as the pipeline reads it."""

    router: Router
    paths: RouteTable
    routes: tuple[Route, ...]
    strip_names: frozenset[bytes]
    limits: Limits
    server_line: bytes

    def is_trusted(self, peer_ip: str | None) -> bool: ...


class Worker:
    """What all connections of one worker share. `gateway` is swapped whole on reload; an exchange keeps the one
    it started with."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, gateway: Served, access_log: Callable[[Exchange], None] | None
    ) -> None:
        self.loop = loop
        self.gateway = gateway
        self.access_log = access_log
        self.connections: set[Any] = set()  # the client connections (server/protocol.py)
        self.closing = False
        # `fastgw invoke` sets this to see inside the one request it runs (the event, the function's outcome).
        self.inspector: Any = None


class Route:
    """A route as served: its integration (what `start` does), its plugin chain and what plugins may know of it.

    Subclasses are the integration types (mock in fastgw.pipeline.mock, http in fastgw.proxy.route, lambda in
    fastgw.functions.integration). `start(ex)` hands them the exchange once the request phases went on; from then
    on they answer through the exchange's surface only."""

    kind: ClassVar[str] = ""
    # The integration reads a request body still on its way (a client that sent `Expect: 100-continue` is told
    # to go on); one that answers at once does not.
    reads_body: ClassVar[bool] = True
    __slots__ = ("name", "chain", "info")

    def __init__(self, name: str) -> None:
        self.name = name
        self.chain: PhaseChain | None = None
        self.info: RouteInfo | None = None

    def start(self, ex: Exchange) -> None:
        raise NotImplementedError

    def pick(self, req: Request) -> Route | None:
        """The route that takes `req`: itself, but for routes told apart by headers (fastgw.pipeline.switch)."""
        return self


class Exchange(ExchangeState):
    """One request from its route match to its log phase. See the module docstring for the integration's surface.

    Making one attaches it to `leg` (`leg.exchange`), the client connection it answers on.

    What it decides (`status`, `body_sink`, `t0`, ...) are the fields of its base, `fastgw.core.ExchangeState`,
    declared once in the core (C fields in the compiled core, which its sinks, limit front and observer read and
    write as such). `until` (a route's total timeout, fastgw.proxy.route): the upstream connection carrying the
    exchange judges it with its own deadline, no timer of its own."""

    __slots__ = ("leg", "params", "write", "paused")

    gw: Served  # the config this request started on: a reload never changes it mid-exchange
    route: Route | None  # None: nothing matched (the answer is a 404/405/400)
    ctx: Context | None  # the plugins' context, on routes with plugins
    peer: Peer

    def __init__(
        self,
        leg: ClientLeg,
        gw: Served,
        req: Request,
        route: Route | None,
        params: Any,
        ctx: Context | None,
        t0: float = 0.0,
    ) -> None:
        # NOTE: ExchangeState.__init__'s work, not a call to it (PERF: a call through the compiled class's
        # wrapper cost ~800 instructions an exchange, bench/instructions.py --scenario proxy); creation set the
        # decided fields' starting values.
        self.req = req
        self.route = route
        self.gw = gw
        self.peer = leg.peer
        self.ctx = ctx
        self.t0 = t0
        self.leg = leg
        self.params: dict[str, str] = params
        self.write = leg.write  # where response bytes go
        self.paused = leg.write_paused  # the client is not reading as fast as the response comes
        leg.exchange = self

    @property
    def state(self) -> Worker:
        """What all connections of the worker share."""
        return self.leg.state

    # -- the request side -------------------------------------------------------------------------------------

    def integrate(self) -> None:
        """Hand the request to the route's integration."""
        req = self.req
        route = self.route
        assert route is not None
        if req.expect_continue and not req.complete and route.reads_body:
            self.write(_CONTINUE)
            self.leg.continue_sent()  # the client's body clock starts now
        route.start(self)

    def run(self, chain: PhaseChain) -> None:
        """A route with plugins: refuse a body over their limit, collect it when they judge it whole, then run
        the request phases."""
        req = self.req
        ctx = self.ctx
        assert ctx is not None
        if chain.streams:
            self.request_phases(0)
            return
        limit = chain.body_limit  # type: ignore[attr-defined]
        if limit is not None and (req.body_size > limit or (req.content_length or 0) > limit):
            self.respond_json(413, _TOO_LARGE)
            return
        if chain.needs_body or (limit is not None and req.chunked):  # type: ignore[attr-defined]
            if not req.complete:
                # The route's plugins judge the body whole: collect it first (refused as soon as it is too big).
                self.body_sink = BodyCollector(self, self._collected, limit, self._body_too_large)
                self.leg.body_drained(req)
                return
            ctx.request.body = b"".join(req.body)
        self.request_phases(0)

    def _collected(self, chunks: list[bytes]) -> None:
        req = self.req
        req.body = chunks
        req.buffered = req.body_size
        self.ctx.request.body = b"".join(chunks)  # type: ignore[union-attr]
        self.request_phases(0)

    def _body_too_large(self) -> None:
        """Answer now; the rest of the body is never read (the connection closes after the answer)."""
        self.req.keep_alive = False
        self.respond_json(413, _TOO_LARGE)

    def request_phases(self, start: int) -> None:
        """rewrite, then access phases, from `start`; a Response answers, an awaitable continues asynchronously,
        and when every phase went on the integration starts. The core's `request_phases` (one C call on the
        compiled core; dispatch calls it directly), which hands back here what stops the phases: `phase_stopped`,
        `_plugin_failed`."""
        _request_phases(self, start)

    def phase_stopped(self, i: int, result: Any) -> None:
        """Request phase `i` returned `result`, not None: a Response answers, an awaitable continues
        asynchronously, anything else is the plugin's failure."""
        name = self.ctx.chain.request[i][3]  # type: ignore[union-attr]
        if result.__class__ is Response:
            # NOTE: answered before a body still on its way was read: the connection closes after the answer (and
            # 100 Continue was never sent, so an expecting client sends no body).
            self.respond(result.status, result.headers, result.body)
            if result.refresh is not None:
                self.refresh(i, result.refresh)
        elif inspect.isawaitable(result):
            self.state.loop.create_task(self._resume_phases(i, name, result))
        else:
            self._plugin_failed(name, f"returned {type(result).__name__}, not None or a Response")

    async def _resume_phases(self, i: int, name: str, awaitable: Any) -> None:
        try:
            result = await awaitable
        except Exception as exc:
            self._plugin_failed(name, exc=exc)
            return
        if self.gone:
            return
        if result is None:
            self.request_phases(i + 1)
        elif isinstance(result, Response):
            self.respond(result.status, result.headers, result.body)
            if result.refresh is not None:
                self.refresh(i, result.refresh)
        else:
            self._plugin_failed(name, f"returned {type(result).__name__}, not None or a Response")

    def refresh(self, i: int, more_vars: dict[str, Any]) -> None:
        """The phase `i` answered with a Response that asks for a refresh (`Response.refresh`): the phases after
        it and the integration run again for a copy of the request (fastgw.pipeline.background), in the
        background, with this context's consumer, credential, upstream changes and vars (and `more_vars`); the
        response goes through the route's filters (a cache stores it there) and nowhere else. No access log line;
        the log phases run as for any exchange."""
        ctx = self.ctx
        assert ctx is not None
        state = self.state
        worker = Worker(state.loop, state.gateway, None)
        worker.closing = state.closing
        req = request_copy(self.req)
        bg = new_context(req, ctx.request.client_ip, self.params, ctx.route, ctx.chain)
        bg._consumer = ctx._consumer  # NOTE: not `consumer =`: the chain is already the consumer's, if it has one
        bg.credential = ctx.credential
        bg.vars = {**ctx.vars, **more_vars}
        bg._upstream = ctx._upstream  # the answered request is done with it
        bg._upstream_sets = list(ctx._upstream_sets) if ctx._upstream_sets is not None else None
        # NOTE: not the reply headers: they were the answer's (a cache's Age and X-Cache-Status among them).
        ex = Exchange(Discard(worker, self.peer), self.gw, req, self.route, self.params, bg)
        try:
            ex.request_phases(i + 1)
        except Exception:  # noqa: BLE001 - the client has its answer; a refresh that cannot start only is logged
            log.exception("background refresh of %s %s failed to start", req.method, req.path)

    def _plugin_failed(self, name: str, why: str | None = None, exc: BaseException | None = None) -> None:
        req = self.req
        route = self.route.name if self.route is not None else "-"
        if why is None:
            log.error("plugin %s failed on route %s (%s %s)", name, route, req.method, req.path, exc_info=exc)
        else:
            log.error("plugin %s failed on route %s (%s %s): %s", name, route, req.method, req.path, why)
        if self.gone:
            return
        if self.response_started:
            self.finished = True
            self.leg.abort()
            return
        self.ctx = None  # no further phases for a request whose plugins broke
        self.respond_json(500, _INTERNAL)

    # -- the response side: one filter path -------------------------------------------------------------------

    def response_filters(self) -> int:
        """What the route's filters need of a streamed response, decided once it starts: FILTER_HEAD (its head
        goes through `filter_head`: headers set by plugins, or header_filter phases) and HOLD_BODY (body_filter
        phases need the body whole) as bits. One call, not two properties (PERF: ~300 instructions a request)."""
        ctx = self.ctx
        if ctx is None:
            return 0
        chain = ctx.chain
        plan = FILTER_HEAD if ctx.reply_headers is not None or chain.header_filter else 0
        if chain.body_filter and not self.req.head_only:
            plan |= HOLD_BODY
        return plan

    @property
    def max_held(self) -> int:
        """How much of a proxied response is held for the body_filter phases: the global limit, or less when the
        route's body filters ask for less (`Chain.max_held`: a cache that would not store more)."""
        limit = self.gw.limits.max_filtered_response
        ctx = self.ctx
        asked = getattr(ctx.chain, "max_held", None) if ctx is not None else None
        return limit if asked is None or asked > limit else asked

    def filter_head(self, head: bytes) -> bytes:
        """The headers plugins set, then the header_filter phases, over a whole head (status line to blank
        line). Raises PluginFailed."""
        return _filter_head(self.ctx, head)  # type: ignore[arg-type]

    def filter_body(self, body: bytes) -> bytes:
        """The body_filter phases over a whole body (after `filter_head`). Raises PluginFailed."""
        return filter_body(self.ctx, body)  # type: ignore[arg-type]

    def filter_failed(self, exc: PluginFailed) -> None:
        """A filter raised before anything was sent: the filters are off for the rest of this exchange."""
        route = self.route.name if self.route is not None else "-"
        log.error("plugin %s failed filtering the response on route %s", exc.name, route, exc_info=exc.__cause__)
        self.ctx = None

    def respond(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        """Answer with a whole response made in the gateway (a mock's, a function's, a plugin's, an error)."""
        lines, has_server = encode_lines(headers)
        self.send(gateway_head(status, lines, b"" if has_server else self.gw.server_line), body)

    def respond_json(self, status: int, obj: object, headers: list[tuple[str, str]] | None = None) -> None:
        self.respond(status, [*_JSON, *headers] if headers else _JSON, orjson.dumps(obj))

    def send(self, head: bytes, body: bytes) -> None:
        """Send a whole response: `head` as `gateway_head` makes it (no framing yet). The route's filters see it,
        then it is framed, written in one piece, and the exchange is done."""
        req = self.req
        if self.finished or self.leg.closed:
            return
        ctx = self.ctx
        if ctx is not None and (ctx.reply_headers is not None or ctx.chain.header_filter or ctx.chain.body_filter):
            try:
                head = _filter_head(ctx, head)
                if ctx.chain.body_filter:
                    body = filter_body(ctx, body)
            except PluginFailed as exc:
                self.filter_failed(exc)
                head = gateway_head(500, b"content-type: application/json\r\n", self.gw.server_line)
                body = orjson.dumps(_INTERNAL)
        if self.reply_names is not None:
            head = without_fields(head, self.reply_names)  # finish_head writes the gateway's own
        # "HTTP/1.1 200 ...": three digits at 9, whoever wrote the line.
        status = self.status = int(head[9:12])
        keep = keep_alive(req, self.state.closing, True)
        has_body = status != 204 and status != 304
        head = finish_head([head[:-2]], self, b"%d" % len(body) if has_body else None, False, keep)
        self.response_started = True
        data = head + body if has_body and not req.head_only and body else head
        self.sent = len(data)
        self.write(data)
        self.done()

    def send_ready(self, status: int, parts: list[bytes], body: bytes) -> None:
        """Send a whole response whose header lines are ready and that no filter is to see (a cache hit on a route
        whose only plugin is the cache): `parts` go after the status line and Date, then it is framed as `send`
        frames it and written in one piece."""
        req = self.req
        self.status = status
        keep = keep_alive(req, self.leg.state.closing, True)
        has_body = status != 204 and status != 304
        line = HTTP_STATUS_LINES.get(status) or status_line(status)
        head = finish_head([line, DATE.line, *parts], self, b"%d" % len(body) if has_body else None, False, keep)
        self.response_started = True
        data = head + body if has_body and not req.head_only and body else head
        self.sent = len(data)
        self.write(data)
        self.done()

    def fail(self, status: int, message: str, reason: str) -> None:
        """The integration cannot give a response: the client gets `{"message": message}` with `status`, or, if
        the head was already sent, a cut connection. `reason` goes to the log."""
        req = self.req
        if self.finished or self.leg.closed:
            return
        route = self.route.name if self.route is not None else "-"
        log.warning("%s %s route=%s -> %d: %s", req.method, req.path, route, status, reason)
        inspector = self.state.inspector  # `fastgw invoke` shows why, beside the answer
        if inspector is not None and not inspector.reason:
            inspector.reason = reason
        if self.response_started:
            self.finished = True
            self.leg.abort()
            return
        self.respond_json(status, {"message": message})

    def done(self) -> None:
        """The response is complete: the access log, the log phases (off the request path), then the connection
        goes on with its next request. Nothing happens once the exchange is gone."""
        leg = self.leg
        if self.finished or leg.closed:
            return
        self.finished = True
        state = leg.state
        if state.access_log is not None:
            try:
                state.access_log(self)
            except Exception:  # noqa: BLE001 - a log, metrics or span hook must never stall the connection
                log.exception("observing the exchange failed (route %s)", self.route.name if self.route else "-")
        ctx = self.ctx
        if ctx is not None and ctx.chain.log:
            state.loop.call_soon(run_log, ctx, self.status)
        leg.request_done(self.req)

    def hand_over(self, protocol: asyncio.BaseProtocol, keeper: Any) -> Any:
        """The connection leaves HTTP with this exchange (a WebSocket after the upgrade): the client's transport
        now speaks to `protocol`, `keeper` (with `shutdown`, `close`, `transport`) takes the
        connection's place among the worker's connections, and the exchange ends (logged, with `status`).
        Returns the transport."""
        leg = self.leg
        self.finished = True
        state = leg.state
        if state.access_log is not None:
            try:
                state.access_log(self)
            except Exception:  # noqa: BLE001 - as in done()
                log.exception("observing the exchange failed (route %s)", self.route.name if self.route else "-")
        leg.exchange = None
        state.connections.discard(leg)
        state.connections.add(keeper)
        transport = leg.transport
        transport.set_protocol(protocol)
        transport.resume_reading()  # the leg may have paused it (a pipelined request waiting): the tunnel reads
        return transport

    # -- flow control, both legs ------------------------------------------------------------------------------

    @property
    def gone(self) -> bool:
        """Answered already, or the client went away: nothing more is to be sent."""
        return self.finished or self.leg.closed

    def pause_client(self) -> None:
        """Stop reading the request body from the client (the integration is not taking it as fast)."""
        self.leg.pause_reading_for(PAUSE_UPSTREAM_BUSY)

    def resume_client(self) -> None:
        self.leg.resume_reading_for(PAUSE_UPSTREAM_BUSY)

    def body_drained(self) -> None:
        """The integration took the request body buffered so far (it now streams to `body_sink`)."""
        self.leg.body_drained(self.req)

    # -- called by the client leg -----------------------------------------------------------------------------

    def client_slow(self) -> None:
        """The client's transport buffer is full."""
        self.paused = True
        up = self.body_sink
        if up is not None:
            up.pause_reading()

    def client_ready(self) -> None:
        self.paused = False
        up = self.body_sink
        if up is not None:
            up.resume_reading()

    def client_gone(self) -> None:
        """The client connection closed: whatever the integration holds for this request is let go."""
        self.finished = True
        up = self.body_sink
        if up is not None:
            up.abandon()

    def request_broken(self, status: int, message: str) -> None:
        """The request body turned out malformed while it was streaming to the integration: the integration never
        gets a complete request."""
        up = self.body_sink
        if up is not None:
            up.abandon()
        self.fail(status, message, f"request body refused: {message}")


# The observer reads these fields of every exchange (fastgw.core.observe.OBSERVED): the class the pipeline makes is
# checked once, where it is made (the workers' Observer checks the core's own ExchangeState).
check_exchange(Exchange, ExchangeState)
