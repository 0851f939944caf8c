"""The upstream leg of the `http` integration: one protocol per upstream TCP connection.

An `UpstreamConnection` carries one exchange at a time: it writes the request head (and the body as the client
sends it), parses the response with httptools and streams it straight into the client's transport. Flow control
is coupled both ways: a client that reads slowly pauses reading from the upstream, an upstream that reads slowly
pauses reading from the client, so memory per connection stays bounded by the transports' high-water marks.

On a route whose plugins have body_filter phases the response is held instead (up to
`limits.max_filtered_response`): its header_filter and body_filter phases run over the whole of it, and it goes
out at once with its new length. A bigger response streams unchanged from the point it outgrew the limit.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING
from urllib.parse import quote

from httptools import HttpParserError, HttpResponseParser

from fastgw.core import PluginFailed, ResponseSink, filter_head
from fastgw.plugins.run import filter_body
from fastgw.server.http import DATE

if TYPE_CHECKING:
    from fastgw.gateway import HttpRoute
    from fastgw.proxy.pool import Target
    from fastgw.server.protocol import ClientProtocol, Request

log = logging.getLogger("fastgw.proxy")

HIGH_WATER = 64 * 1024
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
PAUSE_UPSTREAM_BUSY = 4  # the client-read pause reason this leg owns (see ClientProtocol)


def proxy(client: ClientProtocol, req: Request, route: HttpRoute, params: dict[str, str]) -> None:
    """Send `req` to the next target of the route's upstream; the response streams back to `client`."""
    upstream = route.upstream
    target = upstream.only or upstream.pick()
    path = req.path
    ctx = client.ctx
    if ctx is not None and ctx._upstream is not None and ctx._upstream.path is not None:
        path = quote(ctx._upstream.path, safe=_PATH_SAFE)  # a plugin chose the upstream path
    elif route.rewrites:
        path = route.upstream_path(path, params)
    target_uri = path.encode("latin-1")
    if req.query is not None:
        target_uri += b"?" + req.query
    if route.host is not None:
        host = route.host
    elif route.preserve_host and req.host_raw:
        host = req.host_raw
    else:
        host = target.host_header
    head = req.upstream_head(target_uri, host, client.trusted, client.peer_ip_b, client.via)
    conn = target.acquire()
    if conn is not None:
        conn.start(client, req, head)
    else:
        client.loop.create_task(_connect_and_start(client, req, target, head))


async def _connect_and_start(client: ClientProtocol, req: Request, target: Target, head: bytes) -> None:
    loop = client.loop
    try:
        _, conn = await asyncio.wait_for(
            loop.create_connection(lambda: UpstreamConnection(target, client.state), target.host, target.port),
            target.connect_timeout,
        )
    except asyncio.TimeoutError:
        client.upstream_failed(
            req, 504, "Gateway Timeout", f"connect to {target.url} timed out after {target.connect_timeout}s"
        )
        return
    except OSError as exc:
        client.upstream_failed(req, 502, "Bad Gateway", f"connect to {target.url} failed: {exc.strerror or exc}")
        return
    if client.closed or req.finished:
        target.release(conn, loop.time())  # fresh and clean: worth keeping
        return
    conn.start(client, req, head)


class UpstreamConnection(asyncio.Protocol):
    __slots__ = (
        "target", "state", "loop", "transport", "sink", "parser", "client", "req", "head", "idle_since",
        "deadline", "served", "closed", "_req_done", "_reading_paused", "_write_paused", "filtering", "held",
    )  # fmt: skip

    def __init__(self, target: Target, state: object) -> None:
        self.target = target
        self.state = state
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        # The parser's callbacks go to the sink (compiled): it writes the client's response into `sink.out`.
        self.sink = ResponseSink()
        self.parser = self.sink.parser = HttpResponseParser(self.sink)
        self.client: ClientProtocol | None = None
        self.req: Request | None = None
        self.head = b""
        self.idle_since = 0.0
        self.deadline = 0.0
        self.served = 0
        self.closed = False
        self._req_done = False
        self._reading_paused = False
        self._write_paused = False
        self.filtering = False  # the response head must go through the route's plugins first
        self.held = -1  # body bytes held for body_filter phases; -1: the response streams

    # -- asyncio.Protocol -------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # NOTE: uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = t = transport  # type: ignore[assignment]
        t.set_write_buffer_limits(high=HIGH_WATER)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.sink.parser = None  # break the parser <-> sink cycle
        client, req = self.client, self.req
        if client is None or req is None:
            self.target.forget(self)
            return
        if self.sink.until_close and req.response_started:
            self.sink.connection_ended()  # a close-delimited response ends with the connection
            if self.held >= 0:
                self._deliver_held(client, req)
                return
            self._flush(client)
            self._finish()
            return
        if not req.response_started and self.served > 1 and not req.retried and req.replayable():
            # NOTE: a pooled connection the upstream closed while we reused it; nothing was answered, so an
            # idempotent request without a body is sent again once, on a new connection.
            self._detach()
            req.retried = True
            client.loop.create_task(_connect_and_start(client, req, self.target, self.head))
            return
        reason = f"upstream {self.target.url} closed the connection"
        if exc is not None:
            reason += f": {exc}"
        self._fail(502, "Bad Gateway", reason)

    def data_received(self, data: bytes) -> None:
        client = self.client
        if client is None:
            self.close()  # bytes on an idle connection: it cannot be trusted for the next request
            return
        try:
            self.parser.feed_data(data)
        except HttpParserError as exc:
            cause = exc.__context__ if isinstance(exc.__context__, Exception) else exc
            self._fail(502, "Bad Gateway", f"invalid response from upstream {self.target.url}: {cause}")
            return
        sink = self.sink
        out = sink.out
        if self.held >= 0:
            if not self._hold(client, out):
                return
        elif self.filtering and self.req.response_started:  # type: ignore[union-attr]
            # The head was built by this feed (it is out[0]): the route's plugins see it before the client.
            self.filtering = False
            try:
                out[0] = filter_head(client.ctx, out[0])  # type: ignore[arg-type]
            except PluginFailed as exc:
                self._filter_failed(client, self.req, out, exc)  # type: ignore[arg-type]
                return
        if out:
            client.transport.write(b"".join(out) if len(out) > 1 else out[0])
            out.clear()
        if sink.done:
            self._finish()
        else:
            self.deadline = self.loop.time() + self.target.read_timeout

    def pause_writing(self) -> None:
        self._write_paused = True
        self.deadline = self.loop.time() + self.target.send_timeout
        if self.client is not None:
            self.client.pause_reading_for(PAUSE_UPSTREAM_BUSY)

    def resume_writing(self) -> None:
        self._write_paused = False
        if self.client is not None:
            self.client.resume_reading_for(PAUSE_UPSTREAM_BUSY)

    # -- driven by the client leg -----------------------------------------------------------------------------

    def start(self, client: ClientProtocol, req: Request, head: bytes) -> None:
        self.client = client
        self.req = req
        self.head = head
        self.served += 1
        req.upstream = self
        ctx = client.ctx
        self.filtering = ctx is not None and (ctx._reply_headers is not None or len(ctx.chain.header_filter) > 0)
        self.sink.begin(req, client.server_line, client.via, DATE.line, client.state)
        if ctx is not None and ctx.chain.body_filter and not req.head_only:
            self.held = 0
            self.sink.collect = True  # the body as it comes, unframed: it is sent again with its new length
        else:
            self.held = -1
        if req.body or (req.complete and req.chunked):
            chunks = [head]
            framed = req.chunked
            for c in req.body:
                chunks.append(b"%x\r\n%b\r\n" % (len(c), c) if framed else c)
            client.body_drained(req)
            if req.complete and framed:
                chunks.append(b"0\r\n\r\n")
            head = b"".join(chunks)
        self._req_done = req.complete
        assert self.transport is not None
        self.transport.write(head)
        if not self._write_paused:
            self.deadline = self.loop.time() + self.target.read_timeout
        client.state.active_upstreams.add(self)
        if client.write_paused:
            self.pause_reading()

    def send_body(self, chunk: bytes) -> None:
        assert self.transport is not None
        if self.req is not None and self.req.chunked:
            self.transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        else:
            self.transport.write(chunk)

    def end_body(self) -> None:
        if self.req is not None and self.req.chunked and self.transport is not None:
            self.transport.write(b"0\r\n\r\n")
        self._req_done = True

    def pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()

    def abandon(self) -> None:
        """The client went away mid-exchange: this connection is in an unknown state, close it."""
        self._detach()
        self.close()

    def check_deadline(self, now: float) -> None:
        if self.deadline and now > self.deadline and self.client is not None:
            what = "accept the request" if self._write_paused else "respond"
            timeout = self.target.send_timeout if self._write_paused else self.target.read_timeout
            self._fail(504, "Gateway Timeout", f"upstream {self.target.url} did not {what} within {timeout}s")

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _filter_failed(self, client: ClientProtocol, req: Request, out: list[bytes], exc: PluginFailed) -> None:
        """A header_filter phase raised on the head the sink just built: nothing was sent yet, so the exchange
        ends and the client gets a clean 500."""
        log.error("plugin %s failed filtering the response on route %s", exc.name, req.route_name,
                  exc_info=exc.__cause__)  # fmt: skip
        out.clear()
        req.response_started = False
        client.ctx = None
        self._fail(500, "Internal server error", f"plugin {exc.name} failed")

    # -- responses held for body_filter phases -----------------------------------------------------------------

    def _hold(self, client: ClientProtocol, out: list[bytes]) -> bool:
        """After a feed, on a held response: deliver it when complete, keep holding while it fits, or let it
        stream on once it outgrew the limit. True: `out` is to be written as usual."""
        req = self.req
        assert req is not None
        if not req.response_started:
            self.deadline = self.loop.time() + self.target.read_timeout  # still the head (or a 1xx)
            return False
        if self.sink.done:
            self._deliver_held(client, req)
            return False
        self.held = sum(len(part) for part in out) - len(out[0])
        limit = client.limits.max_filtered_response
        if self.held <= limit:
            self.deadline = self.loop.time() + self.target.read_timeout
            return False
        log.warning("response on route %s is over %d bytes: sent unchanged, its body_filter phases skipped",
                    req.route_name, limit)  # fmt: skip
        self.held = -1
        head = out[0]
        if self.filtering:
            try:
                head = filter_head(client.ctx, head)  # type: ignore[arg-type]
            except PluginFailed as exc:
                self._filter_failed(client, req, out, exc)
                return False
        body = b"".join(out[1:])
        if b"\r\ntransfer-encoding: chunked\r\n" in head:
            self.sink.chunk_out = True  # the rest is framed by the sink as it streams
            body = b"%x\r\n%b\r\n" % (len(body), body)
        out[:] = [head, body]
        return True

    def _deliver_held(self, client: ClientProtocol, req: Request) -> None:
        """The held response is complete: its header_filter and body_filter phases run, then it goes out whole."""
        out = self.sink.out
        ctx = client.ctx
        assert ctx is not None
        try:
            head = filter_head(ctx, out[0])
            if req.status not in (204, 304):
                body = filter_body(ctx, b"".join(out[1:]))
                head = _with_length(head, len(body))
                out[:] = [head, body]
            else:
                out[:] = [head]
        except PluginFailed as exc:
            self._filter_failed(client, req, out, exc)
            return
        self.held = -1
        self._flush(client)
        self._finish()

    # -- endings ----------------------------------------------------------------------------------------------

    def _flush(self, client: ClientProtocol) -> None:
        out = self.sink.out
        if out:
            client.transport.write(b"".join(out) if len(out) > 1 else out[0])
            out.clear()

    def _detach(self) -> tuple[ClientProtocol | None, Request | None]:
        client, req = self.client, self.req
        self.client = self.req = None
        self.deadline = 0.0
        self.state.active_upstreams.discard(self)  # type: ignore[attr-defined]
        if req is not None:
            req.upstream = None
        return client, req

    def _finish(self) -> None:
        sink = self.sink
        reusable = sink.keep and self._req_done and not sink.until_close and not self.closed
        if sink.new_parser:
            self.parser = sink.parser = HttpResponseParser(sink)  # httptools cannot skip a HEAD response's body
        # PERF: _detach() inlined; this runs once per proxied request.
        client, req = self.client, self.req
        self.client = self.req = None
        self.deadline = 0.0
        self.state.active_upstreams.discard(self)  # type: ignore[attr-defined]
        if self._reading_paused:
            self.resume_reading()
        if reusable:
            self.target.release(self, self.loop.time())
        else:
            self.close()
        if req is not None:
            req.upstream = None
            if client is not None and not req.finished and not client.closed:
                client.request_done(req)

    def _fail(self, status: int, message: str, reason: str) -> None:
        if self.held >= 0 and self.req is not None:
            self.held = -1
            self.sink.out.clear()
            self.req.response_started = False  # nothing of a held response was sent: the client gets a clean error
        client, req = self._detach()
        self.close()
        if client is not None and req is not None:
            client.upstream_failed(req, status, message, reason)


def _with_length(head: bytes, length: int) -> bytes:
    """A response head the sink built, its framing (content-length or chunked) replaced by `length`."""
    lines = head.split(b"\r\n")
    kept = [line for line in lines[1:-2] if not line.lower().startswith((b"content-length:", b"transfer-encoding:"))]
    return b"\r\n".join([lines[0], *kept, b"content-length: %d" % length, b"", b""])
