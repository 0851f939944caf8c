"""The upstream leg of the `http` integration: one protocol per upstream TCP connection.

`HttpRoute.start(ex)` (fastgw.proxy.route) picks a target and hands the exchange to an `UpstreamConnection`, which
carries one exchange at a time: it writes the request head (and the body as the client sends it), parses the
response with httptools and streams it to the exchange's destination (`ex.write`: the client's transport). Flow
control is coupled both ways: a client that reads slowly pauses reading from the upstream, an upstream that reads
slowly pauses reading from the client, so memory per connection stays bounded by the transports' high-water marks.

On a route whose plugins have body_filter phases the response is held instead (up to
`limits.max_filtered_response`): the exchange's filters run over the whole of it, and it goes out at once with its
new length. A bigger response streams unchanged from the point it outgrew the limit.

A try that fails before any response byte reached the client goes to another target when the route's retry
policy allows (fastgw.proxy.retry); every failure and, on targets with passive checks or a breaker, every answer
is told to the target's watch (fastgw.proxy.health). Timeouts (connect, send, read, the route's total) answer 504
`{"message": "Endpoint request timed out"}` before the response started, and cut the connection after.

The connection's fields and its per-request path (`start`, `data_received`, `_finish`) are the core's
(`fastgw.core.upstream.UpstreamConn`, compiled on the compiled core): what that path hands on (a held response,
a retry status, a failed filter, a failed try) it reaches as methods of `UpstreamConnection`, defined here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

from httptools import HttpResponseParser

from fastgw.core import PluginFailed, ResponseSink, UpstreamConn
from fastgw.core.upstream import CHECK, FILTER
from fastgw.pipeline.deadline import INF, Deadline
from fastgw.pipeline.head import DATE
from fastgw.pipeline.leg import HIGH_WATER
from fastgw.proxy.retry import Attempt, Retrying, next_try

if TYPE_CHECKING:
    from fastgw.core import Request
    from fastgw.pipeline.exchange import Exchange, Worker
    from fastgw.proxy.pool import Target

log = logging.getLogger("fastgw.proxy")

TIMED_OUT = "Endpoint request timed out"  # API Gateway's words for an integration timeout (504)


class Proxied(Retrying, Protocol):
    """What the upstream leg reads of its route (`fastgw.proxy.route.HttpRoute`)."""

    server_line: bytes  # the gateway's Server line, when the upstream sends none
    via: bool
    head_checks: int  # CHECK when the route retries on statuses

    def head_for(self, ex: Exchange, target: Target) -> bytes: ...


async def connect_and_start(ex: Exchange, target: Target, head: bytes, attempt: Attempt | None) -> None:
    loop = ex.state.loop
    timeout = target.connect_timeout
    route: Proxied = ex.route  # type: ignore[assignment]
    if route.timeout is not None:
        timeout = max(0.0, min(timeout, ex.t0 + route.timeout - time.perf_counter()))
    try:
        _, conn = await asyncio.wait_for(
            loop.create_connection(
                lambda: UpstreamConnection(target, ex.state),
                target.host,
                target.port,
                ssl=target.ssl,
                server_hostname=target.server_hostname,
            ),
            timeout,
        )
    except asyncio.TimeoutError:
        target.connecting -= 1
        reason = f"connect to {target.url} timed out after {timeout:g}s"
        try_failed(ex, target, attempt, "timeout", 504, TIMED_OUT, reason, unsent=True)
        return
    except OSError as exc:
        target.connecting -= 1
        reason = f"connect to {target.url} failed: {exc.strerror or exc}"
        try_failed(ex, target, attempt, "error", 502, "Bad Gateway", reason, unsent=True)
        return
    target.connecting -= 1
    if ex.gone:
        target.release(conn, loop.time())  # fresh and clean: worth keeping
        return
    if attempt is not None:
        attempt.begin(conn, ex.req)
    conn.start(ex, head)
    conn.filtering |= route.head_checks
    arm_until(conn, ex)


def arm_until(conn: Any, ex: Exchange) -> None:
    """`conn` (an UpstreamConnection; the pool's type of it knows no timer) just started `ex`, which has a total
    deadline (`ex.until`, a route's timeout): its timer goes off by then (UpstreamConnection.due judges it)."""
    if ex.until < conn.timer_at:
        conn.arm(ex.until)


def try_failed(
    ex: Exchange,
    target: Target,
    attempt: Attempt | None,
    kind: str,
    status: int,
    message: str,
    reason: str,
    unsent: bool = False,
) -> None:
    """A try failed before any response byte reached the client: the target's watch hears of it, and the request
    goes to another target if the route's retry policy allows; else the client gets `status`. `unsent`: the
    connection never opened, so no byte of the request left (any method may go to another target)."""
    watch = target.watch
    if watch is not None:
        watch.failed(reason, kind)
    nxt = next_try(ex, ex.route, target, attempt, kind, reason, unsent)  # type: ignore[arg-type]
    if nxt is None:
        ex.fail(status, message, reason)
    else:
        _launch(ex, *nxt)


def _launch(ex: Exchange, target: Target, attempt: Attempt) -> None:
    """Send the request again, to `target`: the kept body first, then what the client sends on."""
    req = ex.req
    if attempt.replay:
        req.body = attempt.replay + req.body  # what arrived meanwhile waits in req.body, after what was sent
    route: Proxied = ex.route  # type: ignore[assignment]
    head = route.head_for(ex, target)
    conn = target.acquire()
    if conn is not None:
        attempt.begin(conn, req)
        conn.start(ex, head)
        conn.filtering |= route.head_checks
        arm_until(conn, ex)
    else:
        target.connecting += 1
        ex.state.loop.create_task(connect_and_start(ex, target, head, attempt))


class UpstreamConnection(UpstreamConn, Deadline, asyncio.Protocol):
    """One upstream TCP connection; in an exchange (`ex`) or idle in its target's pool. Its deadline
    (fastgw.pipeline.deadline) is the try's: the response head's, the next response bytes', or the wait for the
    upstream to take request bytes.

    Its fields and its per-request path (`start`, `data_received`, `_finish`) are the core's
    (`fastgw.core.upstream.UpstreamConn`, compiled on the compiled core); the rest of the leg is here, reached
    from that path through `self`."""

    __slots__ = ()

    def __init__(self, target: Target, state: Worker) -> None:
        self.target = target
        self.state = state
        Deadline.__init__(self, asyncio.get_running_loop())
        self.transport: asyncio.Transport | None = None
        # The parser's callbacks go to the sink (compiled): it writes the client's response into `sink.out`.
        self.sink = ResponseSink()
        self.parser = self.sink.parser = HttpResponseParser(self.sink)
        self.ex: Exchange | None = None
        self.req: Request | None = None
        self.head = b""
        self.idle_since = 0.0
        self.served = 0
        self.closed = False
        self._req_done = False
        self._reading_paused = False
        self._write_paused = False
        self.filtering = 0  # FILTER | CHECK: what the response head goes through first
        self.held = -1  # body bytes held for body_filter phases; -1: the response streams
        self.attempt: Attempt | None = None  # the tries of the exchange, when it may be retried (see Attempt.ex)
        # Observability is on (access log, metrics or spans): what answered, how long it took and the bytes sent
        # are recorded on the exchange (PERF: off, the plain proxy pays one flag test per write: 70.4k -> 70.8k
        # instructions an exchange, callgrind).
        self.observed = state.access_log is not None
        self.sent_at = 0.0  # perf_counter when the request head was written (upstream latency)
        self.date = DATE  # its `line`: the Date header a response without one gets

    # -- asyncio.Protocol -------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # NOTE: uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = t = transport  # type: ignore[assignment]
        t.set_write_buffer_limits(high=HIGH_WATER)  # type: ignore[attr-defined]
        self.target.open += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.cancel_deadline()
        self.target.open -= 1
        self.sink.parser = None  # break the parser <-> sink cycle
        ex, req = self.ex, self.req
        if ex is None or req is None:
            self.target.forget(self)
            return
        if self.sink.until_close and ex.response_started:
            self.sink.connection_ended()  # a close-delimited response ends with the connection
            if self.held >= 0:
                self._deliver_held(ex, req)
                return
            self._flush(ex)
            self._finish()
            return
        if not ex.response_started and self.served > 1 and not ex.retried and req.replayable():
            # NOTE: a pooled connection the upstream closed while we reused it; nothing was answered, so an
            # idempotent request without a body is sent again once, on a new connection.
            self._detach()
            ex.retried = True
            self.target.connecting += 1
            self.loop.create_task(connect_and_start(ex, self.target, self.head, self._live_attempt(ex)))
            return
        reason = f"upstream {self.target.url} closed the connection"
        if exc is not None:
            reason += f": {exc}"
        self._try_failed("error", 502, "Bad Gateway", reason)

    def pause_writing(self) -> None:
        self._write_paused = True
        self.set_deadline(self._until(self.loop.time() + self.target.send_timeout))
        if self.ex is not None:
            self.ex.pause_client()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self.ex is not None:
            self.ex.resume_client()

    # -- driven by the exchange -------------------------------------------------------------------------------

    def send_body(self, chunk: bytes) -> None:
        assert self.transport is not None
        attempt = self.attempt
        if attempt is not None and attempt.ex is self.ex:
            attempt.keep(chunk)
        if self.req is not None and self.req.chunked:
            self.transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        else:
            self.transport.write(chunk)

    def end_body(self) -> None:
        req = self.req
        if req is not None and req.chunked and self.transport is not None:
            self.transport.write(b"0\r\n\r\n")
        self._req_done = True
        if req is not None and not self.ex.response_started and not self._write_paused:  # type: ignore[union-attr]
            # The wait for the response head starts when the request is whole (the client's pace is not the
            # target's: until now the body timeout bounded it).
            self.set_deadline(self._until(self.loop.time() + self.target.head_timeout))

    def pause_reading(self) -> None:
        """The client is not taking the response as fast as it comes (Exchange.client_slow): stop reading, and
        suspend this try's deadline, which would blame the target for the client's pace (the client's own bound is
        limits.send_timeout, on its connection)."""
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.deadline = 0.0
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()
            if self.ex is not None:
                self._deadline_again()

    def _deadline_again(self) -> None:
        """Reading resumes mid-exchange: the deadline suspended while the client was slow runs again, whole."""
        ex = self.ex
        target = self.target
        if self._write_paused:
            timeout = target.send_timeout
        elif ex is not None and ex.response_started:
            timeout = target.read_timeout
        else:
            timeout = target.head_timeout  # (a request still on its way is the client's: check_deadline knows)
        self.set_deadline(self._until(self.loop.time() + timeout))

    # -- the route's total timeout (`ex.until`): a second deadline, judged by this one's timer ------------------

    def due(self) -> float:
        at = self.deadline
        ex = self.ex
        if ex is not None and ex.until < (at or INF) and not self._reading_paused and not ex.response_started:
            return ex.until
        return at

    def _until(self, at: float) -> float:
        """`at`, or the route's total deadline if that comes first (until the response begins)."""
        ex = self.ex
        if ex is None or ex.until >= at or ex.response_started:
            return at
        return ex.until

    def abandon(self) -> None:
        """The client went away mid-exchange: this connection is in an unknown state, close it."""
        self._detach()
        self.close()

    def check_deadline(self, now: float) -> None:
        ex = self.ex
        req = self.req
        if ex is None or req is None:
            return
        if self._reading_paused:
            # NOTE: suspended, not passed: reading waits for a slow client (a deadline set since, by the feed that
            # filled the client's buffer, is not the target's). resume_reading sets it again.
            return
        if now >= ex.until and not ex.response_started:
            route: Proxied = ex.route  # type: ignore[assignment]
            self.time_out(f"route {ex.route.name} timed out after {route.timeout:g}s")  # type: ignore[union-attr]
            return
        target = self.target
        if not self._req_done and not self._write_paused and not ex.response_started:
            # The target has taken all the body the client sent so far and waits for the rest: that wait is the
            # client's, bounded by limits.body_timeout (which lets this connection go without blaming the target).
            self.set_deadline(self._until(now + target.head_timeout))
            return
        if self._write_paused:
            what, timeout = "accept the request", target.send_timeout
        elif ex.response_started:
            what, timeout = "send more of its response", target.read_timeout
        else:
            what, timeout = "respond", target.head_timeout
        self._try_failed("timeout", 504, TIMED_OUT, f"upstream {target.url} did not {what} within {timeout:g}s")

    def time_out(self, reason: str) -> None:
        """The route's total timeout (`ex.until`) passed before the response head: not the target's fault alone,
        so its watch does not hear of it."""
        self._fail(504, TIMED_OUT, reason)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _filter_failed(self, ex: Exchange, out: list[bytes], exc: PluginFailed) -> None:
        """A filter raised on the head the sink just built: nothing was sent yet, so the exchange ends and the
        client gets a clean 500."""
        out.clear()
        ex.response_started = False
        ex.filter_failed(exc)
        self._fail(500, "Internal server error", f"plugin {exc.name} failed")

    # -- responses held for body_filter phases -----------------------------------------------------------------

    def _hold(self, ex: Exchange, out: list[bytes]) -> bool:
        """After a feed, on a held response: deliver it when complete, keep holding while it fits, or let it
        stream on once it outgrew the limit. True: `out` is to be written as usual."""
        req = self.req
        assert req is not None
        if not ex.response_started:
            self.set_deadline(self._until(self.loop.time() + self.target.read_timeout))  # still the head (or a 1xx)
            return False
        if self.filtering & CHECK:
            self.filtering &= ~CHECK
            if self._retry_status(ex):
                return False
        if self.sink.done:
            self._deliver_held(ex, req)
            return False
        self.held = sum(len(part) for part in out) - len(out[0])
        limit = ex.max_held
        if self.held <= limit:
            self.set_deadline(self.loop.time() + self.target.read_timeout)
            return False
        log.warning("response on route %s is over %d bytes: sent unchanged, its body_filter phases skipped",
                    ex.route.name, limit)  # type: ignore[union-attr]  # fmt: skip
        self.held = -1
        head = out[0]
        if self.filtering & FILTER:
            try:
                head = ex.filter_head(head)
            except PluginFailed as exc:
                self._filter_failed(ex, out, exc)
                return False
        body = b"".join(out[1:])
        if b"\r\ntransfer-encoding: chunked\r\n" in head:
            self.sink.chunk_out = True  # the rest is framed by the sink as it streams
            body = b"%x\r\n%b\r\n" % (len(body), body)
        out[:] = [head, body]
        return True

    def _deliver_held(self, ex: Exchange, req: Request) -> None:
        """The held response is complete: its filters run, then it goes out whole with its new length."""
        out = self.sink.out
        try:
            head = ex.filter_head(out[0])
            if ex.status not in (204, 304):
                body = ex.filter_body(b"".join(out[1:]))
                head = _with_length(head, len(body))
                out[:] = [head, body]
            else:
                out[:] = [head]
        except PluginFailed as exc:
            self._filter_failed(ex, out, exc)
            return
        self.held = -1
        self._flush(ex)
        self._finish()

    # -- endings ----------------------------------------------------------------------------------------------

    def _detach(self) -> tuple[Exchange | None, Request | None]:
        ex, req = self.ex, self.req
        self.ex = self.req = None
        self.deadline = 0.0
        if ex is not None:
            ex.body_sink = None
        return ex, req

    # -- retries ----------------------------------------------------------------------------------------------

    def _live_attempt(self, ex: Exchange) -> Attempt | None:
        attempt = self.attempt
        return attempt if attempt is not None and attempt.ex is ex else None

    def _try_failed(self, kind: str, status: int, message: str, reason: str) -> None:
        """This try failed: the connection is closed, and the request goes to another target or fails."""
        if self.held >= 0 and self.ex is not None:
            self.held = -1
            self.sink.out.clear()
            self.ex.response_started = False  # nothing of a held response was sent
        ex, _ = self._detach()
        self.close()
        if ex is not None:
            try_failed(ex, self.target, self._live_attempt(ex), kind, status, message, reason)

    def _retry_status(self, ex: Exchange) -> bool:
        """The head just parsed has a status the route retries on: if another try can go, this answer is dropped
        (nothing of it was sent) and True; else it goes to the client as it is."""
        status = ex.status
        route: Proxied = ex.route  # type: ignore[assignment]
        if route.retry is None or status not in route.retry.statuses:
            return False
        reason = f"upstream {self.target.url} answered {status}"
        ex.response_started = False
        nxt = next_try(ex, route, self.target, self._live_attempt(ex), f"http_{status}", reason)
        if nxt is None:
            ex.response_started = True
            return False
        self.sink.out.clear()
        self.held = -1
        watch = self.target.watch
        if watch is not None:
            watch.answered(status)
        self._detach()
        self.close()  # the rest of its answer is not wanted
        _launch(ex, *nxt)
        return True

    def _fail(self, status: int, message: str, reason: str) -> None:
        if self.held >= 0 and self.ex is not None:
            self.held = -1
            self.sink.out.clear()
            self.ex.response_started = False  # nothing of a held response was sent: the client gets a clean error
        ex, _ = self._detach()
        self.close()
        if ex is not None:
            ex.fail(status, message, reason)


def _with_length(head: bytes, length: int) -> bytes:
    """A response head the sink built, its framing (content-length or chunked) replaced by `length`."""
    lines = head.split(b"\r\n")
    kept = [line for line in lines[1:-2] if not line.lower().startswith((b"content-length:", b"transfer-encoding:"))]
    return b"\r\n".join([lines[0], *kept, b"content-length: %d" % length, b"", b""])
