"""The HTTP/1.1 work's pure-Python twin (the spec, the test oracle and the fallback) of `fastgw/core/http.pyx`: the
client request (`Request`), the httptools sinks of both legs, the response head's end (`finish_head`), the status
lines, and path normalization with its policy.

The compiled part follows it line for line (tests/property/test_http_twins.py, test_path_policy.py run both on the
same inputs); `FASTGW_NO_EXTENSIONS=1` serves this one.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

__all__ = [
    "PATH_BACKSLASH_SEPARATOR",
    "PATH_SLASHES_DECODE",
    "PATH_SLASHES_KEEP",
    "PATH_SLASHES_REJECT",
    "Reject",
    "ExchangeState",
    "Request",
    "RequestSink",
    "ResponseSink",
    "UpstreamProtocolError",
    "finish_head",
    "keep_alive",
    "normalize_path",
]

# HTTP/1.1 message helpers: the per-header and per-byte work of both legs of a proxied exchange.
#
# httptools calls a "sink" for every piece of a message. `RequestSink` records and validates client requests,
# `ResponseSink` turns an upstream response into the client's response head and framed body, and
# `Request.upstream_head` writes the request head sent upstream. The protocols in fastgw/server and
# fastgw/proxy only look at the results after each `feed_data`.

HTTP_STATUS_LINES: dict[int, bytes] = {}


def status_line(status: int) -> bytes:
    """`HTTP/1.1 <status> <reason>\\r\\n`; a status unknown to the standard still gets a valid line."""
    line = HTTP_STATUS_LINES.get(status)
    if line is None:
        line = HTTP_STATUS_LINES[status] = f"HTTP/1.1 {status} Unknown\r\n".encode("latin-1")
    return line


def _init_status_lines() -> None:
    for s in HTTPStatus:
        HTTP_STATUS_LINES[s.value] = f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode("latin-1")


_init_status_lines()

# Hop-by-hop headers (RFC 9110 7.6.1) and the proxy ones: never forwarded in either direction. The framing
# headers (content-length, transfer-encoding) are dropped too and written again by whoever frames the message.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# Request headers never copied as they are: hop-by-hop ones, and those the gateway writes itself.
REQUEST_SKIP = HOP_BY_HOP | {
    b"host",
    b"content-length",
    b"expect",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"via",
    # NOTE: a backend may read the client's address from these too: kept only from a trusted proxy.
    b"x-real-ip",
    b"forwarded",
}
RESPONSE_SKIP = HOP_BY_HOP | {b"content-length", b"date", b"server", b"via"}
VIA = b"1.1 fastgw"
_PLAIN_CONNECTION = frozenset({b"keep-alive", b"close"})
_REQUEST_SPECIAL = frozenset({b"content-length", b"transfer-encoding", b"host", b"connection", b"expect"})
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")}


def keep_alive(req: Request, closing: bool, whole: bool) -> bool:
    """Whether the client connection stays open after the response to `req`: the one rule for every response.
    `whole` is true for a response made in the gateway, sent at once: a request body still on its way is then
    never read, so the connection cannot be reused."""
    return req.keep_alive and not closing and (req.complete or not whole)


def finish_head(parts: list[bytes], ex: ExchangeState | None, length: bytes | None, chunked: bool, keep: bool) -> bytes:
    """End a response head begun in `parts` (status line and header lines) for the exchange `ex`: its framing
    (`content-length: length`, or chunked), Connection as `keep` says (an HTTP/1.0 client is told keep-alive; a
    close clears `ex.req.keep_alive`), the blank line, after the lines the gateway adds to this response
    (`ex.reply_lines`). Every response head, proxied or made in the gateway, ends here."""
    req = ex.req if ex is not None else None
    if ex is not None and ex.reply_lines is not None:
        parts.append(ex.reply_lines)
    if length is not None:
        parts += (b"content-length: ", length, b"\r\n")
    elif chunked:
        parts.append(b"transfer-encoding: chunked\r\n")
    if not keep:
        parts.append(b"connection: close\r\n")
        if req is not None:
            req.keep_alive = False
    elif req is not None and req.http10:
        parts.append(b"connection: keep-alive\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def connection_tokens(value: bytes) -> set[bytes]:
    """Header names listed in a Connection header (they are hop-by-hop too)."""
    return {t.strip().lower() for t in value.split(b",") if t.strip()}


class Reject(Exception):
    """Raised inside a parser callback: the request is refused with `status` and the connection closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Request:
    """What the client sent: one request as parsed (its head, its body as received, the flags of its connection),
    from its first byte until its response is written. What is decided about it (where its body goes, the status,
    timings) lives on its exchange (`ExchangeState`)."""

    __slots__ = (
        "method_b", "method", "url", "headers", "header_bytes", "content_length", "chunked", "expect_continue",
        "host_raw", "host", "conn_tokens", "keep_alive", "http10", "head_only", "headers_done", "complete",
        "error", "body", "buffered", "body_size", "path", "query",
    )  # fmt: skip

    def __init__(self) -> None:
        self.method_b = b""
        self.method = ""
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []  # names lower-cased, in arrival order
        self.header_bytes = 0
        self.content_length: int | None = None
        self.chunked = False
        self.expect_continue = False
        self.host_raw = b""
        self.host = ""
        self.conn_tokens: set[bytes] | None = None
        self.keep_alive = True
        self.http10 = False
        self.head_only = False
        self.headers_done = False
        self.complete = False
        self.error: tuple[int, str] | None = None
        self.body: list[bytes] = []
        self.buffered = 0
        self.body_size = 0
        self.path = ""
        self.query: bytes | None = None

    def replayable(self) -> bool:
        """Safe to send again on another connection: idempotent, and no body that may be gone already."""
        return self.method in _IDEMPOTENT and not self.chunked and not self.content_length

    def upstream_head(
        self, target_uri: bytes, host: bytes, trusted: bool, peer_ip: bytes, via: bool, proto: bytes = b"http"
    ) -> bytes:
        """The request head sent upstream: `target_uri` and `host` as the route decided, X-Forwarded-* set
        (incoming ones kept only from a `trusted` peer; X-Forwarded-Proto is otherwise `proto`, the scheme of the
        client's connection), hop-by-hop headers and those named in Connection
        dropped, Via appended when `via`, the body framed as it arrived. X-Real-IP and Forwarded are kept only from
        a `trusted` peer; from anyone else X-Real-IP (when sent) carries the peer's address and Forwarded is
        dropped."""
        parts = [self.method_b, b" ", target_uri, b" HTTP/1.1\r\nhost: ", host, b"\r\n"]
        skip_named = self.conn_tokens
        xff = xfp = xfh = via_in = None
        real_ip = False
        for name, value in self.headers:
            if name in REQUEST_SKIP:
                if name == b"via":
                    via_in = value
                elif trusted:
                    if name == b"x-forwarded-for":
                        xff = value if xff is None else xff + b", " + value
                    elif name == b"x-forwarded-proto":
                        xfp = value
                    elif name == b"x-forwarded-host":
                        xfh = value
                    elif name == b"x-real-ip" or name == b"forwarded":
                        parts += (name, b": ", value, b"\r\n")
                elif name == b"x-real-ip" and not real_ip:
                    real_ip = True
                    parts += (b"x-real-ip: ", peer_ip, b"\r\n")
                continue
            if skip_named is not None and name in skip_named:
                continue
            parts += (name, b": ", value, b"\r\n")
        parts += (b"x-forwarded-for: ", xff + b", " + peer_ip if xff else peer_ip, b"\r\n")
        parts += (b"x-forwarded-proto: ", xfp or proto, b"\r\n")
        xfh = xfh or self.host_raw
        if xfh:
            parts += (b"x-forwarded-host: ", xfh, b"\r\n")
        if via:
            parts += (b"via: ", via_in + b", " + VIA if via_in else VIA, b"\r\n")
        elif via_in:
            parts += (b"via: ", via_in, b"\r\n")
        if self.chunked:
            parts.append(b"transfer-encoding: chunked\r\n")
        elif self.content_length is not None:
            parts.append(b"content-length: %d\r\n" % self.content_length)
        parts.append(b"\r\n")
        return b"".join(parts)


_INF = float("inf")


class ExchangeState:
    """What the exchange of one request decides, declared once: `fastgw.pipeline.exchange.Exchange` is this class
    with the exchange's behaviour; the sinks, the limit front and the observer read and write these fields (as C
    fields in the compiled core, so a renamed one fails to build there; `fastgw.core.observe.OBSERVED` names the
    ones the observer reads, checked against `__slots__` when an observer is built).

    - `req`: the client's request (what it sent); `route` (None: nothing matched), `gw` (the config it started
      on), `peer` (the client connection's address), `ctx` (the plugins' context, on routes with plugins);
    - `body_sink`: what takes the request body as it arrives (`send_body`, `end_body`; `pause_reading`,
      `resume_reading`, `abandon`): the integration's upstream connection, a collector, an aggregate run. None:
      the client's chunks are buffered in `req.body` (the sink of the client connection routes them here only
      once this exchange exists);
    - `status`, `response_started` (the response head is on its way to the client), `retried` (sent again on a
      fresh connection once), `finished` (answered, or the client went away);
    - `t0`: the exchange's start (perf_counter), taken only when the worker observes its exchanges (0.0: not);
    - `reply_lines`: header lines the gateway adds to the response head, whoever makes it (`finish_head`), in place
      of the response's own fields named in `reply_names` (lower-case): one local limit's RateLimit-* fields,
      decided before any plugin context exists (fastgw.plugins.rate_limit);
    - `sent`, `upstream`, `upstream_at`, `upstream_s`: what observability reads once it is done (bytes written to
      the client; the target or `function:NAME` that answered, when the request went to it (perf_counter) and how
      long its answer took to come, in seconds; the last two mean something only with `upstream`);
    - `until`: the loop time by which the response must have begun (a route's total timeout; inf: none)."""

    __slots__ = ("req", "route", "gw", "peer", "ctx", "body_sink", "status", "response_started", "retried",
                 "finished", "t0", "reply_lines", "reply_names", "sent", "upstream", "upstream_at", "upstream_s",
                 "until")  # fmt: skip

    req: Request
    route: Any
    gw: Any
    peer: Any
    ctx: Any
    body_sink: Any
    status: int
    response_started: bool
    retried: bool
    finished: bool
    t0: float
    reply_lines: bytes | None
    reply_names: tuple[bytes, ...] | None
    sent: int
    upstream: Any
    upstream_at: float
    upstream_s: float
    until: float

    def __new__(cls, *args: Any, **kwargs: Any) -> ExchangeState:  # noqa: ARG004
        # The decided fields' starting values, on creation: a subclass's __init__ (the pipeline's Exchange) sets
        # only the given ones, without a call to this class's.
        self = object.__new__(cls)
        self.body_sink = self.upstream = self.reply_lines = self.reply_names = None
        self.req = self.route = self.gw = self.peer = self.ctx = None  # type: ignore[assignment]
        self.status = 0
        self.response_started = self.retried = self.finished = False
        self.t0 = self.upstream_at = self.upstream_s = 0.0
        self.sent = 0
        self.until = _INF
        return self

    def __init__(self, req: Request, route: Any, gw: Any, peer: Any, ctx: Any, t0: float = 0.0) -> None:
        self.req = req
        self.route = route
        self.gw = gw
        self.peer = peer
        self.ctx = ctx
        self.t0 = t0


def _special_header(req: Request, name: bytes, value: bytes) -> None:
    if name == b"content-length":
        if req.content_length is not None:
            raise Reject(400, "duplicate Content-Length")
        if not value.isdigit():
            raise Reject(400, "invalid Content-Length")
        req.content_length = int(value)
    elif name == b"transfer-encoding":
        # Only exactly "chunked", once: anything else is how request smuggling starts.
        if req.chunked or value.strip().lower() != b"chunked":
            raise Reject(400, "unsupported Transfer-Encoding")
        req.chunked = True
    elif name == b"host":
        if req.host_raw:
            raise Reject(400, "duplicate Host header")
        host = value.strip()
        if not host or b" " in host or b"/" in host or b"@" in host:
            raise Reject(400, "invalid Host header")
        req.host_raw = host
        if host[:1] == b"[":
            end = host.find(b"]")
            req.host = host[: end + 1].decode("latin-1").lower()
        else:
            req.host = host.split(b":", 1)[0].decode("latin-1").lower()
    elif name == b"connection":
        tokens = connection_tokens(value)
        req.conn_tokens = tokens if req.conn_tokens is None else req.conn_tokens | tokens
    elif name == b"expect":
        if value.strip().lower() != b"100-continue":
            raise Reject(417, "Expectation Failed")
        req.expect_continue = True


class RequestSink:
    """The httptools callbacks of one client connection: record and validate each request, nothing more.

    Each new request is appended to `queue`. The body of the request being parsed goes to its exchange's
    `body_sink` once the owner has told the sink that exchange (`exchange`, set when it starts; a pipelined request
    waits in the queue with none) and it has a body sink; until then it is buffered in `req.body` (dropped once the
    exchange is finished); past `high_water` buffered bytes `owner.buffer_full()` is called (it pauses reading).
    Anything refused raises `Reject`, which httptools turns into its parser error.
    """

    __slots__ = ("owner", "queue", "parser", "parsing", "exchange", "max_url", "max_header_size", "max_headers",
                 "max_body", "high_water", "max_field", "proxy_conn")  # fmt: skip

    def __init__(
        self,
        owner: object,
        queue: object,
        max_url_length: int,
        max_header_size: int,
        max_headers: int,
        max_body_size: int,
        high_water: int,
        max_field_size: int = 8192,
    ) -> None:
        self.owner = owner
        self.queue = queue
        self.parser: object = None  # the HttpRequestParser fed with this sink; set by the owner
        self.parsing: Request | None = None
        self.exchange: ExchangeState | None = None  # the exchange of `parsing`, once it has one
        self.max_url = max_url_length
        self.max_header_size = max_header_size
        self.max_headers = max_headers
        self.max_body = max_body_size
        self.high_water = high_water
        self.max_field = max_field_size  # one header field: name and value together
        self.proxy_conn = False

    def on_message_begin(self) -> None:
        req = Request()
        self.parsing = req
        self.exchange = None
        self.proxy_conn = False  # the request sent a Proxy-Connection header
        self.queue.append(req)  # type: ignore[attr-defined]

    def on_url(self, url: bytes) -> None:
        req = self.parsing
        assert req is not None
        req.url = req.url + url if req.url else url
        if len(req.url) > self.max_url:
            raise Reject(414, "URI Too Long")

    def on_header(self, name: bytes, value: bytes) -> None:
        req = self.parsing
        assert req is not None
        n = len(name) + len(value)
        req.header_bytes += n + 4
        if req.header_bytes > self.max_header_size or n > self.max_field or len(req.headers) >= self.max_headers:
            raise Reject(431, "Request Header Fields Too Large")
        name = name.lower()
        # NOTE: httptools drops a value's leading whitespace and keeps its trailing; RFC 9110 §5.5 makes neither
        # part of the value.
        if value[-1:] in (b" ", b"\t"):
            value = value.rstrip(b" \t")
        req.headers.append((name, value))
        if name in _REQUEST_SPECIAL:
            _special_header(req, name, value)
        elif name == b"proxy-connection":
            self.proxy_conn = True  # (as Connection, to llhttp's keep-alive rule: see on_headers_complete)

    def on_headers_complete(self) -> None:
        req = self.parsing
        assert req is not None
        p = self.parser
        keep = p.should_keep_alive()  # type: ignore[attr-defined]
        # NOTE: llhttp takes the versions 0.9, 1.0, 1.1 and 2.0, and keeps any but 1.1 alive only when a Connection
        # or Proxy-Connection header names keep-alive: so a keep-alive request that sent neither header is HTTP/1.1,
        # known without get_http_version (a str.format per call in httptools: PERF, ~2,400 instructions a request
        # on the plain proxy, callgrind; tests/property/test_http_twins.py holds the rule over the versions).
        if not keep or req.conn_tokens is not None or self.proxy_conn:
            version = p.get_http_version()  # type: ignore[attr-defined]
            if version == "1.0":
                req.http10 = True
            elif version != "1.1":
                raise Reject(505, "HTTP Version Not Supported")
        method_b = p.get_method()  # type: ignore[attr-defined]
        req.method_b = method_b
        req.method = _METHODS.get(method_b) or method_b.decode("latin-1")
        req.keep_alive = keep
        req.head_only = req.method == "HEAD"
        if req.chunked:
            if req.content_length is not None:
                raise Reject(400, "Content-Length and Transfer-Encoding together")
            if req.http10:
                raise Reject(400, "Transfer-Encoding in an HTTP/1.0 request")
        if not req.host_raw and not req.http10:
            raise Reject(400, "missing Host header")
        if self.max_body and req.content_length is not None and req.content_length > self.max_body:
            raise Reject(413, "Payload Too Large")
        req.headers_done = True

    def on_body(self, body: bytes) -> None:
        req = self.parsing
        assert req is not None
        req.body_size += len(body)
        if self.max_body and req.body_size > self.max_body:
            raise Reject(413, "Payload Too Large")
        ex = self.exchange
        if ex is not None and ex.body_sink is not None:
            ex.body_sink.send_body(body)
        elif ex is None or not ex.finished:
            req.body.append(body)
            req.buffered += len(body)
            if req.buffered > self.high_water:
                self.owner.buffer_full()  # type: ignore[attr-defined]

    def on_message_complete(self) -> None:
        req = self.parsing
        assert req is not None
        self.parsing = None
        req.complete = True
        ex = self.exchange
        if ex is not None:
            self.exchange = None
            if ex.body_sink is not None:
                ex.body_sink.end_body()


class UpstreamProtocolError(Exception):
    """The upstream answered something a proxy must not pass on (raised inside a parser callback)."""


class ResponseSink:
    """The httptools callbacks of one upstream connection: turn the response into what the client receives.

    `begin` starts the upstream leg of the exchange `ex`. The client's response head (end-to-end headers kept as
    the upstream spelled them, hop-by-hop ones dropped, Date/Server/Via settled, framing chosen for the client)
    and the framed body accumulate in `out`; `done` says the response is complete. 1xx responses are swallowed.
    The flags after `done`: `keep` (the upstream allows reuse), `until_close` (a close-delimited body: complete
    only when the connection ends), `new_parser` (after a HEAD response, whose body httptools cannot be told to
    skip).
    `collect`, set after `begin`, keeps the body as it came (not chunk-framed) for body_filter phases to see whole.
    """

    __slots__ = ("parser", "ex", "server_line", "via", "date_line", "state", "head", "length", "te", "via_in",
                 "named", "has_date", "has_server", "out", "chunk_out", "done", "informational", "until_close",
                 "new_parser", "keep", "collect")  # fmt: skip

    def __init__(self) -> None:
        self.parser: object = None  # the HttpResponseParser fed with this sink; set by the owner
        self.ex: ExchangeState | None = None
        self.server_line = b""
        self.via = False
        self.date_line = b""
        self.state: object = None
        self.out: list[bytes] = []
        self._start_head()
        self.chunk_out = self.done = self.informational = self.until_close = self.new_parser = self.keep = False
        self.collect = False

    def _start_head(self) -> None:
        # End-to-end header lines as they arrive, four pieces each (name, ": ", value, CRLF), and what the
        # framing, Via and Date/Server logic needs from the others.
        self.head: list[bytes] = []
        self.length: bytes | None = None
        self.te: bytes | None = None
        self.via_in: bytes | None = None
        self.named: set[bytes] | None = None  # header names listed in Connection: hop-by-hop too
        self.has_date = self.has_server = False

    def begin(self, ex: ExchangeState, server_line: bytes, via: bool, date_line: bytes, state: object) -> None:
        """Start the upstream leg of `ex`; `state.closing` is read when the head is written (a draining server says
        close)."""
        self.ex = ex
        self.server_line = server_line
        self.via = via
        self.date_line = date_line
        self.state = state
        self.out = []
        self._start_head()
        self.chunk_out = self.done = self.informational = self.until_close = self.new_parser = self.keep = False
        self.collect = False

    def on_header(self, name: bytes, value: bytes) -> None:
        lname = name.lower()
        if lname == b"date":
            self.has_date = True
        elif lname == b"server":
            self.has_server = True
        elif lname in RESPONSE_SKIP:
            if lname == b"connection":
                # PERF: nearly every upstream says just "keep-alive" (or "close"); skip the token split then.
                if value.lower() not in _PLAIN_CONNECTION:
                    tokens = connection_tokens(value) - _PLAIN_CONNECTION
                    self.named = tokens if self.named is None else self.named | tokens
            elif lname == b"content-length":
                self.length = value
            elif lname == b"transfer-encoding":
                self.te = value
            elif lname == b"via":
                self.via_in = value
            return  # hop-by-hop or rewritten by the gateway: not copied
        names = self.ex.reply_names if self.ex is not None else None
        if names is not None and lname in names:
            return  # the gateway writes its own (finish_head)
        # End-to-end, and the upstream's own Date and Server: copied as they are.
        self.head += (name, b": ", value, b"\r\n")

    def on_headers_complete(self) -> None:
        p = self.parser
        status = p.get_status_code()  # type: ignore[attr-defined]
        if status < 200:
            if status == 101:
                raise UpstreamProtocolError("101 Switching Protocols to a request that asked for no upgrade")
            self._start_head()
            self.informational = True  # 100 Continue and friends are the gateway's business, not the client's
            return
        self.keep = p.should_keep_alive()  # type: ignore[attr-defined]
        ex = self.ex
        assert ex is not None
        req = ex.req
        parts = [status_line(status)]
        has_date, has_server = self.has_date, self.has_server
        if self.named:
            # Headers the upstream named in Connection are hop-by-hop too (rare): drop them now.
            has_date = has_server = False
            head = self.head
            for i in range(0, len(head), 4):
                lname = head[i].lower()
                if lname not in self.named:
                    parts += head[i : i + 4]
                    has_date = has_date or lname == b"date"
                    has_server = has_server or lname == b"server"
        else:
            parts += self.head
        if not has_date:
            parts.append(self.date_line)
        if not has_server:
            parts.append(self.server_line)
        via, length = self.via_in, self.length
        if self.via:
            parts += (b"via: ", via + b", " + VIA if via else VIA, b"\r\n")
        elif via:
            parts += (b"via: ", via, b"\r\n")
        keep = keep_alive(req, self.state.closing, False)  # type: ignore[attr-defined]
        chunked = False
        if req.head_only or status == 204 or status == 304:
            if status == 204:
                length = None
            self.done = True
            self.new_parser = req.head_only
        elif length is None:
            self.until_close = self.te is None
            if req.http10:
                keep = False  # an HTTP/1.0 client reads until close
            else:
                chunked = True
                self.chunk_out = not self.collect
        self.out.append(finish_head(parts, ex, length, chunked, keep))
        ex.status = status
        ex.response_started = True

    def on_body(self, body: bytes) -> None:
        if self.chunk_out:
            self.out.append(b"%x\r\n%b\r\n" % (len(body), body))
        else:
            self.out.append(body)

    def on_message_complete(self) -> None:
        if self.informational:
            self.informational = False
            return
        if self.chunk_out and not self.done:
            self.out.append(b"0\r\n\r\n")
        self.done = True

    def connection_ended(self) -> None:
        """The upstream closed: this ends a close-delimited body."""
        if self.chunk_out:
            self.out.append(b"0\r\n\r\n")
        self.done = True


# ----------------------------------------------------------------------------------------------------------------
# Path normalization and the path policy: done once, before routing, and the result is what goes upstream, so the
# gateway and the service can never disagree about which path was asked for (no `/public/../admin` past a route's
# plugins). The policy covers what RFC 3986 leaves to each server, and which backends read differently: encoded
# separators (`%2F`, `%5C`), a backslash, `;` path parameters on dot-segments (Tomcat, Spring), double encoding.

_HEX = frozenset("0123456789abcdefABCDEF")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

# The policy is one int: the escaped-slash action in the low two bits, flags above. Envoy's names in brackets.
PATH_SLASHES_REJECT = 0  # `%2F` / `%5C` refused with 400 [REJECT_REQUEST]; the default
PATH_SLASHES_KEEP = 1  # kept encoded inside their segment and forwarded so [KEEP_UNCHANGED]
PATH_SLASHES_DECODE = 2  # decoded, then normalized as separators; the normalized form goes on [UNESCAPE_AND_FORWARD]
PATH_BACKSLASH_SEPARATOR = 4  # `\` (raw, or `%5C` decoded) is a separator, as IIS and some frameworks read it
# A backend that decodes twice reads these as `.`, `/`, `\` or `;`: refused under every policy.
_DOUBLE_ENCODED = re.compile(r"%25(2e|2f|5c|3b)", re.I)


def _param_on_dot(piece: str) -> bool:
    """`..;x`, `.;x`, `;x`: a path parameter (`;` or `%3B`) on a dot-segment or an empty one. Tomcat and Spring
    drop the parameter before resolving dot-segments, so `/public/..;/admin` is `/admin` to them."""
    i = piece.find(";")
    j = piece.find("%3B")
    if i < 0 and j < 0:
        return False
    cut = i if j < 0 or (0 <= i < j) else j
    return piece[:cut] in ("", ".", "..")


def normalize_path(raw: bytes, policy: int = PATH_SLASHES_REJECT) -> str | None:
    """RFC 3986 normalization of an origin-form path under a path `policy`; None when it must be refused (400).

    Percent-encoded unreserved characters are decoded (so `%2e%2e` is `..`), other escapes kept with upper-case
    hex, empty segments merged, `.` and `..` resolved; `..` above the root, a broken escape or an encoded NUL is
    refused. Under every policy a double-encoded dot, separator or `;` (`%252e`, `%252F`, `%255C`, `%253B`) and a
    `;` parameter on a dot-segment are refused. The policy decides `%2F` / `%5C` (refuse, keep inside the segment,
    or decode to separators) and a backslash (refuse, or read as `/`). With escaped slashes kept, a segment that a
    decoding backend would split into a dot-segment (`..%2Fadmin`) is refused too.
    """
    if b"%" not in raw and b"/." not in raw and b"//" not in raw and b"\\" not in raw:
        return raw.decode("latin-1")  # the common case: nothing to normalize
    s = raw.decode("latin-1")
    slashes = policy & 3
    kept = False  # an encoded separator was kept inside a segment
    if "%" in s:
        pieces = s.split("%")
        out = [pieces[0]]
        for piece in pieces[1:]:
            if len(piece) < 2 or piece[0] not in _HEX or piece[1] not in _HEX:
                return None
            code = int(piece[:2], 16)
            if code == 0:
                return None
            ch = chr(code)
            if ch in _UNRESERVED:
                out.append(ch + piece[2:])
            elif ch == "/" or ch == "\\":
                if slashes == PATH_SLASHES_REJECT:
                    return None
                if slashes == PATH_SLASHES_DECODE:
                    out.append(ch + piece[2:])
                else:
                    kept = True
                    out.append("%" + piece[:2].upper() + piece[2:])
            else:
                out.append("%" + piece[:2].upper() + piece[2:])
        s = "".join(out)
        if "%25" in s and _DOUBLE_ENCODED.search(s):
            return None
    if "\\" in s:
        if not policy & PATH_BACKSLASH_SEPARATOR:
            return None
        s = s.replace("\\", "/")
    raw_segs = s.split("/")
    segs: list[str] = []
    for seg in raw_segs[1:]:
        if seg == "" or seg == ".":
            continue
        if seg == "..":
            if not segs:
                return None
            segs.pop()
            continue
        if _param_on_dot(seg):
            return None
        if kept and "%" in seg:
            # NOTE: what a backend that decodes `%2F`/`%5C` into separators would see: no dot-segment may appear.
            for part in seg.replace("%5C", "%2F").split("%2F"):
                if part == "." or part == ".." or _param_on_dot(part):
                    return None
        segs.append(seg)
    path = "/" + "/".join(segs)
    if segs and raw_segs[-1] in ("", ".", ".."):
        path += "/"
    return path
