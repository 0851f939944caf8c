"""The upstream connection's core: the pure-Python twin (the spec, the test oracle and the fallback) of
`fastgw/core/upstream.pyx`.

`UpstreamConn` is the base of `fastgw.proxy.upstream.UpstreamConnection`: the fields its per-request path reads,
declared once here, and that path itself, run on every proxied exchange:

- `start(ex, head)`: the exchange `ex` goes out on this connection (the request head, and what of the body
  arrived), the response sink begins it, and the head's deadline is set;
- `data_received(data)`: response bytes are parsed (into the compiled `ResponseSink`), held, checked or filtered
  as the route asks, and written to the exchange;
- `_finish()`: the response is whole: the connection goes back to its target's pool (or is closed), the target's
  watch hears the answer, and the exchange is done.

`start_route(route, ex)` is `HttpRoute.start` (fastgw.proxy.route): the target chosen, the upstream request head
built, and the exchange started on a pooled connection; what is not the common way (a rewritten path, a route with
a total timeout or retries, a new connection) it hands back to the route's methods.

What those steps hand on to the rest of the upstream leg (retries, held responses, failures, timers) are methods
of the subclass, reached through `self` (`_try_failed`, `_hold`, `_retry_status`, `_filter_failed`, `close`,
`resume_reading`, `pause_reading`, `arm`), and of the exchange (`write`, `done`, `body_drained`): this layer
imports nothing of the pipeline or the proxy. `date` is the object whose `line` is the current Date header
(`fastgw.pipeline.head.DATE`), set by the subclass.

The fields: `target` (the pool's `Target`), `state` (the worker's), `transport`, `sink` (`ResponseSink`) and
`parser` (httptools, feeding the sink), `ex` and `req` (the exchange carried, and its request; None when idle),
`head` (the request head sent, for a retry), `idle_since` (loop time it went idle), `served` (exchanges carried),
`closed`, `_req_done` (the whole request was written), `_reading_paused`, `_write_paused`, `filtering` (`FILTER` |
`CHECK`: what the response head goes through first), `held` (body bytes held for body_filter phases; -1: the
response streams), `attempt` (the tries of the exchange, when it may be retried), `sent_at` (perf_counter when the
request head went out), `observed` (the access log, metrics or spans are on: timings and bytes are recorded on the
exchange), `date`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from httptools import HttpParserError, HttpResponseParser

from fastgw.core.conn import DeadlineState
from fastgw.core.phases import PluginFailed, filter_head

if TYPE_CHECKING:
    from fastgw.core.http import Request, ResponseSink

__all__ = ["UpstreamConn", "route_head", "start_route"]

_perf = time.perf_counter

# UpstreamConn.filtering: what happens when the response head arrives.
FILTER = 1  # the route's filters see it first
CHECK = 2  # its status may send the request to another target (retries `when: [http_5xx]`)
PATH_SAFE = "/%:@!$&'()*+,;=-._~"  # what a path a plugin chose keeps unquoted


class UpstreamConn(DeadlineState):
    """The fields and the per-request path of an upstream connection (see the module's docstring).
    NOTE: `start`, `_finish` and `_flush` are no override points: the compiled twin calls its own C versions from
    `data_received` and `start_route` (tests/property/test_twins.py holds that no subclass overrides them)."""

    __slots__ = (
        "target", "state", "transport", "sink", "parser", "ex", "req", "head", "idle_since", "served", "closed",
        "_req_done", "_reading_paused", "_write_paused", "filtering", "held", "attempt", "sent_at", "observed", "date",
    )  # fmt: skip

    target: Any
    state: Any
    transport: Any
    sink: ResponseSink
    parser: Any
    ex: Any  # the pipeline's Exchange (an ExchangeState), or None
    req: Request | None
    head: bytes
    idle_since: float
    served: int
    closed: bool
    _req_done: bool
    _reading_paused: bool
    _write_paused: bool
    filtering: int
    held: int
    attempt: Any
    sent_at: float
    observed: bool
    date: Any

    if TYPE_CHECKING:  # the subclass's (fastgw.proxy.upstream.UpstreamConnection) and Deadline's

        def arm(self, at: float, confirm: bool = False) -> None: ...
        def close(self) -> None: ...
        def pause_reading(self) -> None: ...
        def resume_reading(self) -> None: ...
        def _try_failed(self, kind: str, status: int, message: str, reason: str) -> None: ...
        def _hold(self, ex: Any, out: list[bytes]) -> bool: ...
        def _retry_status(self, ex: Any) -> bool: ...
        def _filter_failed(self, ex: Any, out: list[bytes], exc: PluginFailed) -> None: ...

    def start(self, ex: Any, head: bytes) -> None:
        """`ex` (the pipeline's Exchange) goes out on this connection: its request head (`head`, made for this
        target) and what of the body arrived, and the response sink begins it."""
        req = self.req = ex.req
        self.ex = ex
        self.head = head
        self.served += 1
        ex.body_sink = self
        route = ex.route
        self.sink.begin(ex, route.server_line, route.via, self.date.line, self.state)
        ctx = ex.ctx
        if ctx is not None:
            # PERF: Exchange.response_filters inline (no frame): the head goes through the filters when plugins
            # set response headers or a header_filter phase runs; body_filter phases hold the body whole.
            chain = ctx.chain
            self.filtering = FILTER if ctx._reply_headers is not None or chain.header_filter else 0
            if chain.body_filter and not req.head_only:
                self.held = 0
                self.sink.collect = True  # the body as it comes, unframed: it is sent again with its new length
            else:
                self.held = -1
        else:
            self.filtering = 0
            self.held = -1
        if req.body or (req.complete and req.chunked):
            chunks = [head]
            framed = req.chunked
            for c in req.body:
                chunks.append(b"%x\r\n%b\r\n" % (len(c), c) if framed else c)
            ex.body_drained()
            if req.complete and framed:
                chunks.append(b"0\r\n\r\n")
            head = b"".join(chunks)
        self._req_done = req.complete
        assert self.transport is not None
        if self.observed:
            self.sent_at = _perf()
        self.transport.write(head)
        if not self._write_paused:
            at = self.deadline = self.loop.time() + self.target.head_timeout
            if at < self.timer_at:
                self.arm(at)
        if ex.paused:
            self.pause_reading()

    def data_received(self, data: bytes) -> None:
        ex = self.ex
        if ex is None:
            self.close()  # bytes on an idle connection: it cannot be trusted for the next request
            return
        try:
            self.parser.feed_data(data)
        except HttpParserError as exc:
            cause = exc.__context__ if isinstance(exc.__context__, Exception) else exc
            self._try_failed("error", 502, "Bad Gateway", f"invalid response from upstream {self.target.url}: {cause}")
            return
        sink = self.sink
        out = sink.out
        if self.held >= 0:
            if not self._hold(ex, out):
                return
        elif self.filtering and ex.response_started:
            # The head was built by this feed (it is out[0]): checked, then the route's filters see it.
            flags, self.filtering = self.filtering, 0
            if flags & CHECK and self._retry_status(ex):
                return
            if flags & FILTER:
                try:
                    # PERF: the core's filter_head itself, which ex.filter_head wraps: one Python frame less a request.
                    out[0] = filter_head(ex.ctx, out[0])
                except PluginFailed as exc:
                    self._filter_failed(ex, out, exc)
                    return
        if out:
            self._flush(ex)
        if sink.done:
            self._finish()
        else:
            at = self.deadline = self.loop.time() + self.target.read_timeout
            if at < self.timer_at:
                self.arm(at)

    def _flush(self, ex: Any) -> None:
        """What the sink made of the response so far goes to the client (and, observed, its head's timings: who
        answered, when it was asked, how long the answer took; a held response's head goes out with it)."""
        out = self.sink.out
        if out:
            data = b"".join(out) if len(out) > 1 else out[0]
            if self.observed:
                if ex.upstream is None:
                    ex.upstream = self.target
                    ex.upstream_at = self.sent_at
                    ex.upstream_s = _perf() - self.sent_at
                ex.sent += len(data)
            ex.write(data)
            out.clear()

    def _finish(self) -> None:
        """The response is whole: the connection goes back to its pool (or closes), and the exchange is done."""
        sink = self.sink
        reusable = sink.keep and self._req_done and not sink.until_close and not self.closed
        if sink.new_parser:
            self.parser = sink.parser = HttpResponseParser(sink)  # httptools cannot skip a HEAD response's body
        # PERF: _detach() inlined; this runs once per proxied request.
        ex = self.ex
        self.ex = self.req = None
        self.deadline = 0.0
        if self._reading_paused:
            self.resume_reading()
        target = self.target
        if reusable and not target.closed and len(target.idle) < target.max_idle:
            # PERF: Target.release inlined (this connection is known open), ~70 ns per request.
            self.idle_since = self.loop.time()
            target.idle.append(self)
        else:
            self.close()
        if ex is not None:
            ex.body_sink = None
            watch = target.watch
            if watch is not None:
                if watch.quiet and ex.status < watch.bad:
                    watch.outlier.in_row = 0  # PERF: TargetWatch.answered's whole work here
                else:
                    watch.answered(ex.status)
            ex.done()  # nothing happens if the client went away meanwhile


def route_head(route: Any, ex: Any, target: Any) -> bytes:
    """The request head `route` (an `HttpRoute`) sends `target` for `ex`: the path a plugin chose or the route's
    rewrite, the query, the Host the route says, the forwarding fields. The one way to make it: the first try's
    (`start_route`) and a retry's or a WebSocket's (`HttpRoute.head_for`)."""
    req = ex.req
    path = req.path
    ctx = ex.ctx
    # The upstream path a plugin chose (`ctx.upstream_request.path`), read without making the upstream request.
    if ctx is not None and (up := ctx._upstream) is not None and (chosen := up.path) is not None:
        path = quote(chosen, safe=PATH_SAFE)  # a plugin chose the upstream path
    elif route.rewrites:
        path = route.upstream_path(path, ex.params)
    target_uri = path.encode("latin-1")
    if req.query is not None:
        target_uri += b"?" + req.query
    host = route.host
    if host is None:
        host = req.host_raw if route.preserve_host and req.host_raw else target.host_header
    peer = ex.peer
    return req.upstream_head(target_uri, host, peer.trusted, peer.ip_b, route.via, peer.proto)


def start_route(route: Any, ex: Any) -> None:
    """`HttpRoute.start` (fastgw.proxy.route; `route` is one): send the request to the next target of the route's
    upstream, on a pooled connection when there is one; the response streams back through `ex`. What is not the
    common way it hands back to the route: a rewritten path (`upstream_path`), a route with a total timeout or
    retries (`_start_guarded`), a new connection (`_connect`)."""
    req = ex.req
    upstream = route.upstream
    target = upstream.only
    if target is None:  # PERF: a choice to make; the single-target upstream pays one test, as before
        target = upstream.pick(ex)
        if target is None:
            ex.fail(503, "Service Unavailable", f"upstream {upstream.name} has no target in rotation")
            return
    head = route_head(route, ex, target)
    if route.guarded and (route.guard_all or req.content_length or req.chunked):
        route._start_guarded(ex, target, head)
        return
    # PERF: the usual case of Target.acquire inlined (a live pooled connection on top), ~70 ns per request.
    idle = target.idle
    conn = idle.pop() if idle else None
    if conn is not None and (conn.closed or conn.transport.is_closing()):
        conn = target.acquire()
    if conn is not None:
        conn.start(ex, head)
    else:
        route._connect(ex, target, head)
