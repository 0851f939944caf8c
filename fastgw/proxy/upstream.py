"""The upstream leg of the `http` integration: one protocol per upstream TCP connection.

An `UpstreamConnection` carries one exchange at a time: it writes the request head (and the body as the client
sends it), parses the response with httptools and streams it straight into the client's transport. Flow control
is coupled both ways: a client that reads slowly pauses reading from the upstream, an upstream that reads slowly
pauses reading from the client, so memory per connection stays bounded by the transports' high-water marks.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from httptools import HttpParserError, HttpResponseParser

from fastgw.server.http import DATE, HOP_BY_HOP, connection_tokens, status_line

if TYPE_CHECKING:
    from fastgw.gateway import HttpRoute
    from fastgw.proxy.pool import Target
    from fastgw.server.protocol import ClientProtocol, Request

log = logging.getLogger("fastgw.proxy")

HIGH_WATER = 64 * 1024
PAUSE_UPSTREAM_BUSY = 4  # the client-read pause reason this leg owns (see ClientProtocol)

# Request headers never copied as they are: hop-by-hop ones, and those the gateway writes itself.
_REQ_SKIP = HOP_BY_HOP | {
    b"host",
    b"content-length",
    b"expect",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"via",
}
_RESP_SKIP = HOP_BY_HOP | {b"content-length", b"date", b"server", b"via"}
_VIA = b"1.1 fastgw"
_PLAIN_CONNECTION = frozenset({b"keep-alive", b"close"})


def build_request_head(
    client: ClientProtocol, req: Request, route: HttpRoute, target: Target, params: dict[str, str]
) -> bytes:
    """The request head sent upstream: path rewritten, Host chosen, X-Forwarded-* set, hop-by-hop dropped."""
    path = req.path
    if route.path_pieces is not None or route.strip_prefix is not None:
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
    parts = [req.method_b, b" ", target_uri, b" HTTP/1.1\r\nhost: ", host, b"\r\n"]
    trusted = client.trusted
    skip_named = req.conn_tokens
    xff = xfp = xfh = via = None
    for name, value in req.headers:
        if name in _REQ_SKIP:
            if name == b"via":
                via = value
            elif trusted:
                if name == b"x-forwarded-for":
                    xff = value if xff is None else xff + b", " + value
                elif name == b"x-forwarded-proto":
                    xfp = value
                elif name == b"x-forwarded-host":
                    xfh = value
            continue
        if skip_named is not None and name in skip_named:
            continue
        parts += (name, b": ", value, b"\r\n")
    peer = client.peer_ip_b
    parts += (b"x-forwarded-for: ", xff + b", " + peer if xff else peer, b"\r\n")
    parts += (b"x-forwarded-proto: ", xfp or b"http", b"\r\n")
    xfh = xfh or req.host_raw
    if xfh:
        parts += (b"x-forwarded-host: ", xfh, b"\r\n")
    if client.via:
        parts += (b"via: ", via + b", " + _VIA if via else _VIA, b"\r\n")
    elif via:
        parts += (b"via: ", via, b"\r\n")
    if req.chunked:
        parts.append(b"transfer-encoding: chunked\r\n")
    elif req.content_length is not None:
        parts.append(b"content-length: %d\r\n" % req.content_length)
    parts.append(b"\r\n")
    return b"".join(parts)


def proxy(client: ClientProtocol, req: Request, route: HttpRoute, params: dict[str, str]) -> None:
    """Send `req` to the next target of the route's upstream; the response streams back to `client`."""
    target = route.upstream.pick()
    head = build_request_head(client, req, route, target, params)
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
        "target", "state", "loop", "transport", "parser", "client", "req", "head", "idle_since", "deadline",
        "served", "closed", "_headers", "_out", "_chunk_out", "_done", "_informational", "_until_close",
        "_new_parser", "_req_done", "_keep", "_reading_paused", "_write_paused",
    )  # fmt: skip

    def __init__(self, target: Target, state: object) -> None:
        self.target = target
        self.state = state
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = HttpResponseParser(self)
        self.client: ClientProtocol | None = None
        self.req: Request | None = None
        self.head = b""
        self.idle_since = 0.0
        self.deadline = 0.0
        self.served = 0
        self.closed = False
        self._reading_paused = False
        self._write_paused = False
        self._reset()

    def _reset(self) -> None:
        self._headers: list[tuple[bytes, bytes]] = []
        self._out: list[bytes] = []
        self._chunk_out = False
        self._done = False
        self._informational = False
        self._until_close = False
        self._new_parser = False
        self._req_done = False
        self._keep = False

    # -- asyncio.Protocol -------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # NOTE: uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = t = transport  # type: ignore[assignment]
        t.set_write_buffer_limits(high=HIGH_WATER)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        client, req = self.client, self.req
        if client is None or req is None:
            self.target.forget(self)
            return
        if self._until_close and req.response_started:
            # A close-delimited response ends with the connection.
            if self._chunk_out:
                self._out.append(b"0\r\n\r\n")
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
            self._fail(502, "Bad Gateway", f"invalid response from upstream {self.target.url}: {exc}")
            return
        if self._out:
            self._flush(client)
        if self._done:
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

    def usable(self) -> bool:
        t = self.transport
        return not self.closed and self.client is None and t is not None and not t.is_closing()

    def start(self, client: ClientProtocol, req: Request, head: bytes) -> None:
        self.client = client
        self.req = req
        self.head = head
        self.served += 1
        req.upstream = self
        self._reset()
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

    # -- httptools callbacks ----------------------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:
            if status == 101:
                raise HttpParserError("101 Switching Protocols to a request that asked for no upgrade")
            self._headers = []
            self._informational = True  # 100 Continue and friends are the gateway's business, not the client's
            return
        self._keep = self.parser.should_keep_alive()
        client, req = self.client, self.req
        assert client is not None and req is not None
        parts = [status_line(status)]
        length, te, via, has_date, has_server, named = _copy_headers(self._headers, parts, None)
        if named:
            # Headers the upstream named in Connection are hop-by-hop too (rare): copy again without them.
            parts = [parts[0]]
            _copy_headers(self._headers, parts, named)
        if not has_date:
            parts.append(DATE.line)
        if not has_server:
            parts.append(client.server_line)
        if client.via:
            parts += (b"via: ", via + b", " + _VIA if via else _VIA, b"\r\n")
        elif via:
            parts += (b"via: ", via, b"\r\n")
        keep = req.keep_alive and not client.state.closing
        if req.head_only or status == 204 or status == 304:
            if length is not None and status != 204:
                parts += (b"content-length: ", length, b"\r\n")
            self._done = True
            self._new_parser = req.head_only  # httptools cannot be told a HEAD response has no body
        elif length is not None:
            parts += (b"content-length: ", length, b"\r\n")
        else:
            self._until_close = te is None
            if req.http10:
                keep = False  # an HTTP/1.0 client reads until close
            else:
                parts.append(b"transfer-encoding: chunked\r\n")
                self._chunk_out = True
        if not keep:
            parts.append(b"connection: close\r\n")
            req.keep_alive = False
        elif req.http10:
            parts.append(b"connection: keep-alive\r\n")
        parts.append(b"\r\n")
        self._out.append(b"".join(parts))
        req.status = status
        req.response_started = True

    def on_body(self, body: bytes) -> None:
        if self._chunk_out:
            self._out.append(b"%x\r\n%b\r\n" % (len(body), body))
        else:
            self._out.append(body)

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        if self._chunk_out and not self._done:
            self._out.append(b"0\r\n\r\n")
        self._done = True

    # -- endings ----------------------------------------------------------------------------------------------

    def _flush(self, client: ClientProtocol) -> None:
        out = self._out
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
        reusable = self._keep and self._req_done and not self._until_close and not self.closed
        if self._new_parser:
            self.parser = HttpResponseParser(self)
        client, req = self._detach()
        if self._reading_paused:
            self.resume_reading()
        if reusable:
            self.target.release(self, self.loop.time())
        else:
            self.close()
        if client is not None and req is not None:
            client.exchange_done(req)

    def _fail(self, status: int, message: str, reason: str) -> None:
        client, req = self._detach()
        self.close()
        if client is not None and req is not None:
            client.upstream_failed(req, status, message, reason)


def _copy_headers(
    headers: list[tuple[bytes, bytes]], parts: list[bytes], drop: set[bytes] | None
) -> tuple[bytes | None, bytes | None, bytes | None, bool, bool, set[bytes] | None]:
    """Copy the end-to-end response headers into `parts`; return what the framing and Via logic need."""
    length = te = via = None
    named: set[bytes] | None = None
    has_date = has_server = False
    for name, value in headers:
        if drop is not None and name in drop:
            continue
        if name in _RESP_SKIP:
            if name == b"connection":
                # PERF: nearly every upstream says just "keep-alive" (or "close"); skip the token split then.
                if value.lower() not in _PLAIN_CONNECTION:
                    named = connection_tokens(value) - _PLAIN_CONNECTION
            elif name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                te = value
            elif name == b"via":
                via = value
            elif name == b"date" or name == b"server":  # the upstream's own are kept
                has_date = has_date or name == b"date"
                has_server = has_server or name == b"server"
                parts += (name, b": ", value, b"\r\n")
            continue
        parts += (name, b": ", value, b"\r\n")
    return length, te, via, has_date, has_server, named
