"""The connections' core: the pure-Python twin (the spec, the test oracle and the fallback) of `fastgw/core/conn.pyx`.

`DeadlineState` holds the fields of an object with one deadline (`fastgw.pipeline.deadline.Deadline`, the client
connection, the upstream connection, a WebSocket tunnel), declared once here so that the compiled core of a
connection can read and write them as C fields while `Deadline`'s methods and the rest of the gateway read them as
plain slots:

- `loop`: the event loop the timer is armed on;
- `deadline`: the loop time by which the object is judged (0.0: none);
- `timer`, `timer_at`: the one timer armed (None: none) and the loop time it fires at (inf: none).

`ClientConn` is the client connection's per-request path (`fastgw.server.protocol.ClientProtocol` is built on it):
the bytes a client sends (`data_received`), the start of the next request in order (`_maybe_start`) and the end of
one (`request_done`), with the fields they read, and the usual case of routing a request (`_dispatch`: simple
paths) and starting its exchange (`start_exchange`, which `fastgw.pipeline.dispatch` calls too). What they call
above the core reaches them through the object: the protocol's own methods (`close`, `arm`, `pause_reading_for`,
`resume_reading_for`, `_upgrade`, `_parse_error`, `_header_deadline`, `_body_deadline_starts`, `_dispatch_failed`)
and the callables it stores at construction: `fastgw.pipeline.dispatch`'s `dispatch(conn, req)`,
`routed(conn, gateway, req, found, t0)` and `refuse(conn, gateway, req, status, message)`, and `new_exchange`
(`fastgw.pipeline.exchange.Exchange`).
"""

from __future__ import annotations

from collections import deque
from time import perf_counter
from typing import TYPE_CHECKING, Any

from httptools import HttpParserError, HttpParserUpgrade

from fastgw.core.phases import new_context, request_phases, strip_headers

if TYPE_CHECKING:
    from fastgw.core.http import Request

__all__ = ["ClientConn", "DeadlineState", "start_exchange"]

# What a client connection's deadline bounds now (`ClientConn.deadline_kind`).
DEADLINE_NONE, DEADLINE_HEADER, DEADLINE_IDLE, DEADLINE_BODY, DEADLINE_SEND = 0, 1, 2, 3, 4
# NOTE: `fastgw.pipeline.leg.PAUSE_PIPELINE` (a lower module cannot import it; tests/property/test_conn_twins.py
# holds the two equal): reading paused while a request is in flight and the next one has begun.
PAUSE_PIPELINE = 1


def start_exchange(
    leg: Any, gw: Any, req: Request, route: Any, params: Any, t0: float, new_exchange: Any, ip: str
) -> None:
    """Make the exchange of `req`, routed to `route` (with `params`), and start it: a route without plugins goes
    straight to its integration, one with plugins to its phases (its one plugin's `front` first). `leg`, `gw`,
    `t0`: as `fastgw.pipeline.dispatch.dispatch` has them; `new_exchange`: `fastgw.pipeline.exchange.Exchange`;
    `ip`: the client's address (read only on a route with plugins: "" on one without)."""
    chain = route.chain
    if chain is None:
        ex = new_exchange(leg, gw, req, route, params, None, t0)
        if gw.strip_names:
            strip_headers(req, gw.strip_names)
        if req.expect_continue:
            ex.integrate()
        else:
            route.start(ex)  # PERF: the common case, one call less
        return
    front = chain.front
    if front is not None:
        # The route's one plugin sees the request first (Plugin.front): a cache hit, one local limit.
        ex = new_exchange(leg, gw, req, route, params, None, t0)
        if front(ex, ip):
            return
        ex.ctx = new_context(req, ip, params, route.info, chain)
        request_phases(ex, 0)  # a chain with a front streams (plugins/chain.py)
        return
    ctx = new_context(req, ip, params, route.info, chain)
    ex = new_exchange(leg, gw, req, route, params, ctx, t0)
    if chain.streams:
        request_phases(ex, 0)  # PERF: the usual chain (nothing to do about the body first): one C call, no frame
    else:
        ex.run(chain)


class DeadlineState:
    """The fields of an object with one deadline (see the module's docstring); `Deadline` gives the behaviour."""

    __slots__ = ("deadline", "timer", "timer_at", "loop")

    deadline: float
    timer: Any
    timer_at: float
    loop: Any


class ClientConn(DeadlineState):
    """The client connection's per-request path and the fields it reads (see the module's docstring). The
    protocol sets every field at construction; the flags hold bools, `deadline_kind` and `_paused` ints.
    NOTE: `_maybe_start` and `_dispatch` are no override points: the compiled twin calls its own C versions
    (tests/property/test_twins.py holds that no subclass in the package overrides them)."""

    __slots__ = (
        "state", "limits", "queue", "sink", "parser", "exchange", "active", "closed", "broken", "write_paused",
        "_paused", "_starting", "deadline_kind", "peer", "dispatch", "routed", "refuse", "new_exchange",
    )  # fmt: skip

    state: Any  # fastgw.pipeline.exchange.Worker
    limits: Any  # fastgw.config.schema.Limits
    queue: deque[Request]
    sink: Any  # fastgw.core.RequestSink
    parser: Any  # httptools.HttpRequestParser
    exchange: Any  # fastgw.pipeline.exchange.Exchange | None: the exchange of the request in flight
    active: bool
    closed: bool
    broken: bool
    write_paused: bool
    _paused: int
    _starting: bool
    deadline_kind: int
    peer: Any  # fastgw.pipeline.leg.Peer
    dispatch: Any  # fastgw.pipeline.dispatch.dispatch
    routed: Any  # fastgw.pipeline.dispatch.routed
    refuse: Any  # fastgw.pipeline.dispatch.refuse
    new_exchange: Any  # fastgw.pipeline.exchange.Exchange

    # The protocol's (fastgw.server.protocol.ClientProtocol), which these methods call.
    if TYPE_CHECKING:

        def close(self) -> None: ...
        def arm(self, at: float, confirm: bool = False) -> None: ...
        def pause_reading_for(self, reason: int) -> None: ...
        def resume_reading_for(self, reason: int) -> None: ...
        def _upgrade(self, data: bytes, offset: int) -> None: ...
        def _parse_error(self, exc: HttpParserError) -> None: ...
        def _header_deadline(self) -> None: ...
        def _body_deadline_starts(self) -> None: ...
        def _dispatch_failed(self, req: Request, exc: Exception) -> None: ...

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
            # The first bytes of the next request after an idle keep-alive wait (_header_deadline, inlined: PERF,
            # once per keep-alive request, ~60 ns).
            self.deadline_kind = DEADLINE_HEADER
            at = self.deadline = self.loop.time() + self.limits.header_timeout
            if at < self.timer_at:
                self.arm(at)
        elif self.deadline_kind == DEADLINE_BODY:
            self.deadline = self.loop.time() + self.limits.body_timeout  # more of the body: later than before
        self._maybe_start()

    def _maybe_start(self) -> None:
        if self._starting or self.closed or not self.queue:
            return
        self._starting = True
        try:
            while not self.active and self.queue and not self.closed:
                req = self.queue[0]
                if req.error is not None:
                    self.active = True
                    status, message = req.error
                    self.refuse(self, self.state.gateway, req, status, message)
                    return
                if not req.headers_done:
                    return
                self.active = True
                if not req.complete and not req.expect_continue:
                    # (An expecting client sends its body once told to: its clock starts then, in continue_sent.)
                    self._body_deadline_starts()
                try:
                    self._dispatch(req)
                except Exception as exc:
                    self._dispatch_failed(req, exc)
                else:
                    ex = self.exchange
                    if ex is not None and ex.req is req and self.sink.parsing is req:
                        # The rest of its body, still arriving, goes to its exchange's body sink from now on (NOTE:
                        # not before: a pipelined request's body is buffered in req.body until its exchange exists).
                        self.sink.exchange = ex
        finally:
            self._starting = False

    def _dispatch(self, req: Request) -> None:
        """`dispatch(self, req)` (fastgw.pipeline.dispatch), its usual case here: simple paths (the target's split,
        the path policy and the match in one core call), then `start_exchange`; the rest is handed to `dispatch`
        (the general way) before routing, or to `routed` after it (a miss, a refused path, a trusted proxy)."""
        state = self.state
        gw = state.gateway
        paths = gw.paths
        if not paths.simple or req.url[:1] != b"/":
            self.dispatch(self, req)
            return
        # The exchange's start, taken before routing (see dispatch).
        t0 = perf_counter() if state.access_log is not None else 0.0
        found = paths.router.route(req, paths.default)
        if found is not None and found is not False and found[0] is not None:
            route = gw.routes[found[0]]
            if route.chain is None:
                start_exchange(self, gw, req, route, found[1], t0, self.new_exchange, "")
                return
            peer = self.peer
            if not peer.trusted:  # (else the client's address is X-Forwarded-For's: dispatch.client_ip)
                start_exchange(self, gw, req, route, found[1], t0, self.new_exchange, peer.ip)
                return
        self.routed(self, gw, req, found, t0)

    def request_done(self, req: Request) -> None:
        """`req` is answered in full (its exchange is done): go on with the next request, or close."""
        queue = self.queue
        if queue and queue[0] is req:
            queue.popleft()
        self.active = False
        self.exchange = None
        if not (req.keep_alive and req.complete) or req.error is not None or self.state.closing:
            self.close()
            return
        if not queue:
            if not self.write_paused:  # (else the send deadline stands: what was sent is still to be taken)
                self.deadline_kind = DEADLINE_IDLE
                at = self.deadline = self.loop.time() + self.limits.keepalive_timeout
                if at < self.timer_at:
                    self.arm(at)
            if self._paused:
                self.resume_reading_for(PAUSE_PIPELINE)
            return
        if len(queue) == 1 and self._paused:
            self.resume_reading_for(PAUSE_PIPELINE)
        if not queue[0].headers_done:
            self._header_deadline()
        if not self._starting:
            self._maybe_start()
