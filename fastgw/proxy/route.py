"""The `http` integration as a route: the path rewrite rules resolved into a small plan, the target chosen, the
request head built, and the exchange handed to an upstream connection (fastgw.proxy.upstream), which carries it
from there (the response, retries, timeouts). The common way of `HttpRoute.start` is the core's
(`fastgw.core.upstream.start_route`)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from fastgw.config.checks import TEMPLATE_REF
from fastgw.core import route_head, start_route
from fastgw.pipeline.deadline import INF
from fastgw.pipeline.exchange import Route
from fastgw.proxy.retry import Attempt, RetryPolicy
from fastgw.proxy.upstream import CHECK, arm_until, connect_and_start

if TYPE_CHECKING:
    from fastgw.config.schema import HttpIntegration
    from fastgw.pipeline.exchange import Exchange
    from fastgw.proxy.pool import Target, Upstream


class HttpRoute(Route):
    """The `http` integration: proxy to an upstream, with the path rewrite rules resolved into a small plan."""

    kind = "http"
    __slots__ = ("upstream", "strip_prefix", "path_pieces", "rewrites", "preserve_host", "host", "server_line", "via",
                 "retry", "timeout", "head_checks", "guarded", "guard_all")  # fmt: skip

    def __init__(self, name: str, integ: HttpIntegration, upstream: Upstream, server_line: bytes, via: bool) -> None:
        super().__init__(name)
        self.upstream = upstream
        prefix = integ.strip_prefix
        self.strip_prefix = prefix.rstrip("/") if prefix and prefix != "/" else None
        # "/v1/{id}/x" -> ["/v1/", "id", "/x"]: literal pieces at even indices, parameter names at odd ones.
        self.path_pieces: list[str] | None = TEMPLATE_REF.split(integ.path) if integ.path else None
        self.rewrites = self.path_pieces is not None or self.strip_prefix is not None
        self.preserve_host = integ.preserve_host
        self.host = integ.host.encode("latin-1") if integ.host else None
        self.server_line = server_line  # the gateway's Server line, when the upstream sends none
        self.via = via  # append the gateway to Via, both ways
        conf = upstream.config.retries
        # Retries need another target to go to; with one target (or `attempts: 1`) there is no retry to plan.
        self.retry: RetryPolicy | None = None
        # (A DNS name may stand for several targets once resolved.)
        targets = len(upstream.targets) if not upstream.named else conf.attempts
        if conf.attempts > 1 and targets > 1:
            self.retry = RetryPolicy(conf, integ.retry_non_idempotent, upstream.budget, targets)
        self.head_checks = CHECK if self.retry is not None and self.retry.statuses else 0
        self.timeout = integ.timeout  # the whole exchange until the response head, retries included
        # PERF: one flag read on the plain route instead of the checks `_start_guarded` makes; with retries, a
        # request without a body (nothing to keep) still takes the plain way unless the route needs more.
        self.guard_all = self.timeout is not None or self.head_checks != 0
        self.guarded = self.guard_all or self.retry is not None

    def upstream_path(self, path: str, params: dict[str, str]) -> str:
        pieces = self.path_pieces
        if pieces is not None:
            return "".join(params[p] if i % 2 else p for i, p in enumerate(pieces))
        prefix = self.strip_prefix
        if prefix is not None and path.startswith(prefix):
            rest = path[len(prefix) :]
            if not rest:
                return "/"
            if rest[0] == "/":
                return rest
        return path

    def head_for(self, ex: Exchange, target: Target) -> bytes:
        """The request head for `target` (a retry's, a WebSocket's): the core's `route_head`, which `start` makes
        its first try's with."""
        return route_head(self, ex, target)

    # Send the request to the next target of the upstream; the response streams back through `ex`. PERF: the core's
    # (fastgw.core.upstream.start_route, compiled on the compiled core), which hands back what is not the common way:
    # `upstream_path`, `_start_guarded`, `_connect`.
    start = start_route

    def _connect(self, ex: Exchange, target: Target, head: bytes) -> None:
        """No live pooled connection: a new one carries the exchange once it is open."""
        target.connecting += 1
        ex.state.loop.create_task(connect_and_start(ex, target, head, None))

    def _start_guarded(self, ex: Exchange, target: Target, head: bytes) -> None:
        """`start` on a route with a total timeout or retries: the clock started, a body kept for a retry."""
        req = ex.req
        timeout = self.timeout
        if timeout is not None:
            if not ex.t0:
                ex.t0 = time.perf_counter()  # the total timeout's start (dispatch sets it when the access log is on)
            if ex.until == INF:
                # PERF: the upstream connection carrying the exchange judges this with its own deadline
                # (UpstreamConnection.due); a timer handle of its own, per request, cost 8,782 instructions an
                # exchange (callgrind, bench/instructions.py --scenario timeout: 85,668 with it, 76,886 without;
                # the plain route in the same loop: 72,311).
                ex.until = ex.state.loop.time() + ex.t0 + timeout - time.perf_counter()
        retry = self.retry
        attempt = None
        if retry is not None and (req.content_length or req.chunked) and req.method in retry.methods:
            attempt = Attempt(ex, target, retry.max_replay)  # a request without a body needs nothing kept
        conn = target.acquire()
        if conn is not None:
            if attempt is not None:
                attempt.begin(conn, req)
            conn.start(ex, head)
            conn.filtering |= self.head_checks  # PERF: set here, not in `start`: the plain route never pays for it
            arm_until(conn, ex)
        else:
            target.connecting += 1
            ex.state.loop.create_task(connect_and_start(ex, target, head, attempt))
