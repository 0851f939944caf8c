"""The plugin runtime's hot part: the pure-Python twin (the spec, the test oracle and the fallback) of
`fastgw/core/phases.pyx`.

What every request on a route with plugins goes through: the context, the client's request as plugins read it,
the upstream request as they change it, and header maps kept as the wire's bytes inside (names lower-cased, values
converted only when a plugin reads them). `fastgw.core` picks these or the compiled ones; `fastgw.plugins.base`
exposes them to plugin authors. Property tests hold the two implementations to the same answers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastgw.core.http import Request
from fastgw.core.http import status_line as _status_line

# Set by the gateway from a response's framing: header_filter phases never see or change these.
__all__ = [
    "ClientRequest",
    "Context",
    "HeadHeaders",
    "Headers",
    "PhaseChain",
    "PluginFailed",
    "ResponseHead",
    "UpstreamRequest",
    "add_consumer_headers",
    "filter_head",
    "header_key",
    "finish_phases",
    "new_context",
    "request_phases",
    "run_phases",
    "strip_headers",
]

FRAMING = frozenset({b"content-length", b"transfer-encoding", b"connection", b"keep-alive", b"date"})


class PluginFailed(Exception):
    """A response-side phase raised: `name` is the plugin, the cause is chained."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class Headers:
    """A case-insensitive multi-map of header names to values, in order, as plugins see it: names and values
    are str at the API, kept as the bytes the wire uses inside (names lower-cased), so a plugin that reads or
    sets one header costs one scan, not a conversion of them all."""

    __slots__ = ("_items", "_frozen")

    def __init__(self, items: list[tuple[str, str]] | None = None, frozen: bool = False) -> None:
        self._items: list[tuple[bytes, bytes]] = [
            (k.lower().encode("latin-1"), v.encode("utf-8")) for k, v in items or ()
        ]
        self._frozen = frozen

    @classmethod
    def from_raw(cls, raw: list[tuple[bytes, bytes]], frozen: bool = False) -> Headers:
        """Over wire headers with lower-cased names; copied on the first change (the original stays as it was)."""
        h = cls.__new__(cls)
        h._items = raw if frozen else list(raw)
        h._frozen = frozen
        return h

    def get(self, name: str, default: str | None = None) -> str | None:
        key = name.lower().encode("latin-1")
        for k, v in self._items:
            if k == key:
                return _text(v)
        return default

    def get_all(self, name: str) -> list[str]:
        key = name.lower().encode("latin-1")
        return [_text(v) for k, v in self._items if k == key]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = name.lower().encode("latin-1")
        return any(k == key for k, _ in self._items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter([(k.decode("latin-1"), _text(v)) for k, v in self._items])

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"

    def _key(self, name: str, value: str = "") -> bytes:
        if self._frozen:
            raise TypeError("these headers are read-only (change ctx.upstream_request.headers instead)")
        # PERF: three `in` tests and a dict hit (~100 ns) where a generator over the forbidden characters and
        # a lower() + encode() cost ~1 us; this runs for every header a plugin sets.
        if "\r" in value or "\n" in value or "\0" in value:
            raise ValueError(f"invalid header value for {name!r}: {value!r}")
        key = _VALID_KEYS.get(name)
        if key is None:
            if not _TOKEN.match(name):
                raise ValueError(f"invalid header name {name!r}")
            key = name.lower().encode("latin-1")
            if len(_VALID_KEYS) < 10_000:
                _VALID_KEYS[name] = key
        return key

    def set(self, name: str, value: str) -> None:
        """Replace every value of `name` with `value`."""
        key = self._key(name, value)
        items = self._items
        for k, _ in items:
            if k == key:
                self._items = items = [it for it in items if it[0] != key]
                break
        items.append((key, value.encode("utf-8")))

    def add(self, name: str, value: str) -> None:
        self._items.append((self._key(name, value), value.encode("utf-8")))

    def remove(self, name: str) -> None:
        key = self._key(name)
        if any(k == key for k, _ in self._items):
            self._items = [it for it in self._items if it[0] != key]

    def rename(self, old: str, new: str) -> None:
        key, new_key = old.lower().encode("latin-1"), self._key(new)
        self._items = [(new_key if k == key else k, v) for k, v in self._items]

    def raw(self) -> list[tuple[bytes, bytes]]:
        """The wire form: (lower-cased name, value) byte pairs."""
        return self._items


# Header names as plugins spell them -> the wire key (PERF: a dict hit instead of lower() + encode() per lookup).
_KEYS: dict[str, bytes] = {}
_VALID_KEYS: dict[str, bytes] = {}  # the same, for names checked to be valid header names


def _text(b: bytes) -> str:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return b.decode("latin-1")


def _parse_query(raw: bytes | None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if raw:
        for k, v in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
            out.setdefault(k, []).append(v)
    return out


_VALID_HEADERS = Headers()  # validates names and values for Context.set_response_header


def header_key(name: str, value: str = "") -> bytes:
    """The wire name of the header `name` (lower-case Latin-1 bytes), checked as `Headers.set` checks a header: a
    ValueError for a name that is not an HTTP token, or a `value` with CR, LF or NUL. For a plugin that checks the
    headers of its configuration once, when it is prepared (request-transformer's compiled step)."""
    return _VALID_HEADERS._key(name, value)


class ClientRequest:
    """The request as the client sent it (after path normalization); read-only."""

    __slots__ = ("_req", "_raw", "_raw_query", "_headers", "_query", "client_ip", "params", "body")

    def __init__(self, req: Request, client_ip: str, params: dict[str, str]) -> None:
        self._req = req
        # NOTE: the client's header list and query as they arrived; changes made for the upstream replace
        # req.headers / req.query with new objects, so these stay what the client sent.
        self._raw: list[tuple[bytes, bytes]] = req.headers
        self._raw_query: bytes | None = req.query
        self._headers: Headers | None = None
        self._query: dict[str, list[str]] | None = None
        self.client_ip = client_ip
        self.params = params  # the route's path parameters
        # The whole body, on routes where a plugin asked for it (`needs_body`); None elsewhere (it streams).
        self.body: bytes | None = None

    @property
    def method(self) -> str:
        return self._req.method

    @property
    def path(self) -> str:
        return self._req.path

    @property
    def host(self) -> str:
        return self._req.host

    @property
    def content_length(self) -> int | None:
        return self._req.content_length

    @property
    def query_string(self) -> str:
        q = self._raw_query
        return q.decode("latin-1") if q else ""

    @property
    def raw_query(self) -> bytes | None:
        """The query byte for byte as the client sent it: None without a `?`, b"" after a bare `?`."""
        return self._raw_query

    @property
    def query(self) -> dict[str, list[str]]:
        if self._query is None:
            self._query = _parse_query(self._raw_query)
        return self._query

    @property
    def headers(self) -> Headers:
        if self._headers is None:
            self._headers = Headers.from_raw(self._raw, frozen=True)
        return self._headers

    def header(self, name: str) -> str | None:
        """One header's first value, without building `headers` (the fast way for a single lookup)."""
        key = _KEYS.get(name)
        if key is None:
            key = name.lower().encode("latin-1")
            if len(_KEYS) < 10_000:  # bounded: names come from code and config, but never trust that blindly
                _KEYS[name] = key
        for k, v in self._raw:
            if k == key:
                return _text(v)
        return None


class UpstreamRequest:
    """What goes to the integration; starts as the client's request and is changed by rewrite/access phases.

    Only what a plugin touched is rebuilt: `headers` is copied on first access, `query` parsed on first access."""

    __slots__ = ("_req", "_headers", "_query", "path", "body", "_sets")

    def __init__(self, req: Request) -> None:
        self._req = req
        self._sets: list[tuple[bytes, bytes | None]] | None = None
        self._headers: Headers | None = None
        self._query: dict[str, list[str]] | None = None
        self.path: str | None = None  # another path for the upstream: replaces the route's own rewrite
        # Another body for the integration (only on routes where a plugin collected it: `needs_body`).
        self.body: bytes | None = None

    @property
    def headers(self) -> Headers:
        if self._headers is None:
            self._headers = Headers.from_raw(self._req.headers)  # a copy: the client's list stays intact
            if self._sets is not None:
                self._headers._items = _with_sets(self._headers._items, self._sets)
                self._sets = None
        return self._headers

    @property
    def query(self) -> dict[str, list[str]]:
        if self._query is None:
            self._query = _parse_query(self._req.query)
        return self._query

    @property
    def query_if_made(self) -> dict[str, list[str]] | None:
        """`query` when a phase has read it (and may have changed it), else None (the query goes as it came);
        reading this never parses the query."""
        return self._query

    def apply(self, req: Request) -> None:
        """Write the changes into the request the integration sends."""
        if self._headers is not None:
            req.headers = self._headers.raw()
        elif self._sets is not None:
            req.headers = _with_sets(req.headers, self._sets)
        if self._query is not None:
            req.query = urlencode([(k, v) for k, vs in self._query.items() for v in vs]).encode() or None
        if self.path is not None and not self.path.startswith("/"):
            raise ValueError(f"the upstream path must start with '/', got {self.path!r}")
        if self.body is not None:
            if not req.complete:
                raise ValueError("the body can only be replaced on routes whose plugins collect it (needs_body)")
            req.body = [self.body] if self.body else []
            req.buffered = len(self.body)
            req.chunked = False
            req.content_length = len(self.body)


class ResponseHead:
    """The response's status and headers, as `header_filter` phases see and change them."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: Headers) -> None:
        self.status = status
        self.headers = headers
        # The whole body, for body_filter phases (responses made in the gateway); None while it streams.
        self.body: bytes | None = None


class PhaseChain:
    """What the request loop reads of a route's plugin chain (`fastgw.plugins.chain.Chain` builds it): the phase
    tuples, the consumer header settings, and whether some consumer has plugins of its own."""

    __slots__ = ("request", "header_filter", "body_filter", "log", "strip", "consumer_keys", "per_consumer",
                 "streams", "front")  # fmt: skip

    def __init__(self) -> None:
        self.request: tuple[Any, ...] = ()  # rewrite phases, then access phases: (callable, conf, is_async, name)
        self.header_filter: tuple[Any, ...] = ()
        self.body_filter: tuple[Any, ...] = ()
        self.log: tuple[Any, ...] = ()
        self.strip: frozenset[bytes] = frozenset()
        self.consumer_keys: tuple[bytes | None, bytes | None] | None = None
        self.per_consumer = False
        self.streams = True
        self.front: Any = None  # the route's one plugin's `front(ex, client_ip)`, or None (see Plugin.front)

    def for_consumer(self, consumer: Any) -> PhaseChain | None:
        """The chain for `consumer`'s requests, None when it is this one (see Chain)."""
        return None


class Context:
    """What the phases of one request share. `vars` is free for plugins to pass values along."""

    __slots__ = (
        "_request",
        "_req",
        "_raw",
        "_raw_query",
        "_client_ip",
        "_params",
        "_upstream",
        "response",
        "_consumer",
        "_switch",
        "credential",
        "route",
        "vars",
        "chain",
        "_reply_headers",
        "_upstream_sets",
    )

    def __init__(self, request: ClientRequest, route: Any, chain: Any) -> None:
        self._request: ClientRequest | None = request
        # The client's request as the steps read it (fastgw.core.steps), without the ClientRequest (`request`,
        # made when first asked for): the request, its header list and query as they arrived, the client's
        # address and the route's path parameters.
        self._req = request._req
        self._raw = request._raw
        self._raw_query = request._raw_query
        self._client_ip = request.client_ip
        self._params = request.params
        self._setup(route, chain)

    def _setup(self, route: Any, chain: Any) -> None:
        self._upstream: UpstreamRequest | None = None
        self.response: ResponseHead | None = None
        self._consumer: Any = None
        self._switch: Any = None  # the chain of the consumer just named, taken by the phase loop
        self.credential: Any = None  # the credential the consumer authenticated with
        self.route = route
        self.vars: dict[str, Any] = {}
        self.chain = chain
        self._reply_headers: list[tuple[bytes, bytes]] | None = None
        self._upstream_sets: list[tuple[bytes, bytes | None]] | None = None

    @property
    def request(self) -> ClientRequest:
        """The request as the client sent it (read-only)."""
        request = self._request
        if request is None:
            request = self._request = ClientRequest.__new__(ClientRequest)
            request._req = self._req
            request._raw = self._raw  # as the client sent them, whatever the upstream request became since
            request._raw_query = self._raw_query
            request._headers = None
            request._query = None
            request.client_ip = self._client_ip
            request.params = self._params
            request.body = None
        return request

    @property
    def upstream_request_if_made(self) -> UpstreamRequest | None:
        """`upstream_request` when a phase has asked for it (and may have changed it), else None: reading this
        never makes one (what proxy-cache reads to see whether the upstream's path or query were changed)."""
        return self._upstream

    @property
    def reply_headers(self) -> list[tuple[bytes, bytes]] | None:
        """The headers `set_response_header` has set so far, in order, as wire pairs (lower-case name, value) of
        bytes; None when it has set none. The gateway's own list: read it, never change it."""
        return self._reply_headers

    @property
    def wire_request(self) -> Request:
        """(advanced) The request the integration sends (`fastgw.core.Request`, what `front` sees as `ex.req`):
        `headers` a list of (lower-case name, value) byte pairs, `query` bytes or None. The changes made through
        `upstream_request` are written into it after the last request phase. Replace its `headers` with a new list,
        never change the list in place: until a phase replaced it, it is the client's, which `request` shows."""
        return self._req

    @property
    def consumer(self) -> Any:
        """Who authenticated (set by an authentication plugin), or None."""
        return self._consumer

    @consumer.setter
    def consumer(self, consumer: Any) -> None:
        self._consumer = consumer
        if consumer is not None and self.chain.per_consumer:
            # Plugins configured for this consumer: the phases after this one come from its chain.
            self._switch = self.chain.for_consumer(consumer)

    def set_upstream_header(self, name: str, value: str) -> None:
        """`ctx.upstream_request.headers.set(name, value)`, without building the header map when nothing else
        needs it (PERF: the common change a plugin makes, e.g. a request id or a header from a template)."""
        up = self._upstream
        if up is not None and up._headers is not None:
            up._headers.set(name, value)
            return
        key = _VALID_HEADERS._key(name, value)
        if up is not None:
            # NOTE: the upstream request exists (a plugin read its query or path) but not its header map: the set
            # joins the ones it took over, which `apply` writes (kept on the context, it was lost).
            if up._sets is None:
                up._sets = []
            up._sets.append((key, value.encode("utf-8")))
            return
        if self._upstream_sets is None:
            self._upstream_sets = []
        self._upstream_sets.append((key, value.encode("utf-8")))

    def set_response_header(self, name: str, value: str) -> None:
        """Set a header on whatever response this request gets (proxied, a function's, a plugin's, an error),
        before any header_filter phase runs. PERF: cheaper than a header_filter phase for a fixed header."""
        key = _VALID_HEADERS._key(name, value)
        if key in FRAMING:
            raise ValueError(f"{name!r} is set by the gateway from the response's framing")
        if self._reply_headers is None:
            self._reply_headers = []
        self._reply_headers.append((key, value.encode("utf-8")))

    @property
    def upstream_request(self) -> UpstreamRequest:
        if self._upstream is None:
            self._upstream = UpstreamRequest(self._req)
            self._upstream._sets = self._upstream_sets  # set_upstream_header's, applied when headers are built
            self._upstream_sets = None
        return self._upstream


class HeadHeaders(Headers):
    """The headers of a response head the upstream leg built, parsed only if a plugin needs more than adding.

    PERF: most response filters only add or set a header that is not there (a request id, CORS headers); that
    costs one search of the head's bytes and an append here, where parsing and rebuilding the head cost ~4 us."""

    __slots__ = ("_block", "_lower", "_framing")

    def __init__(self, block: bytes) -> None:
        self._items = []
        self._frozen = False
        self._block: bytes | None = block  # header lines, each with its CRLF, as the upstream leg wrote them
        self._lower: bytes | None = None
        self._framing: list[bytes] = []

    def _absent(self, key: bytes) -> bool:
        if self._lower is None:
            self._lower = self._block.lower()  # type: ignore[union-attr]
        lower = self._lower
        line = key + b":"
        return not lower.startswith(line) and b"\n" + line not in lower

    def _parse(self) -> None:
        block, self._block, self._lower = self._block, None, None
        items = self._items
        for line in block.split(b"\r\n"):  # type: ignore[union-attr]
            if line:
                name, _, value = line.partition(b":")
                lname = name.lower()
                if lname in FRAMING:
                    self._framing.append(line)
                else:
                    items.append((lname, value.strip(b" \t")))

    def _key(self, name: str, value: str = "") -> bytes:
        key = super()._key(name, value)
        if key in FRAMING:
            raise ValueError(f"{name!r} is set by the gateway from the response's framing")
        return key

    def set(self, name: str, value: str) -> None:
        if self._block is not None:
            key = self._key(name, value)
            if self._absent(key):
                self._block += b"%s: %s\r\n" % (key, value.encode("utf-8"))
                self._lower = None
                return
            self._parse()
        super().set(name, value)

    def add(self, name: str, value: str) -> None:
        if self._block is not None:
            self._block += b"%s: %s\r\n" % (self._key(name, value), value.encode("utf-8"))
            self._lower = None
            return
        super().add(name, value)

    # Anything but adding needs the lines parsed first.
    def get(self, name: str, default: str | None = None) -> str | None:
        self._parsed()
        return super().get(name, default)

    def get_all(self, name: str) -> list[str]:
        self._parsed()
        return super().get_all(name)

    def __contains__(self, name: object) -> bool:
        self._parsed()
        return super().__contains__(name)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        self._parsed()
        return super().__iter__()

    def __len__(self) -> int:
        self._parsed()
        return super().__len__()

    def remove(self, name: str) -> None:
        self._parsed()
        super().remove(name)

    def rename(self, old: str, new: str) -> None:
        self._parsed()
        super().rename(old, new)

    def raw(self) -> list[tuple[bytes, bytes]]:
        self._parsed()
        return self._items

    def _parsed(self) -> None:
        if self._block is not None:
            self._parse()

    def block(self) -> bytes:
        """The header lines to send, framing lines included."""
        if self._block is not None:
            return self._block
        parts = [b"%s: %s\r\n" % kv for kv in self._items]
        parts += [line + b"\r\n" for line in self._framing]
        return b"".join(parts)


def filter_head(ctx: Context, head: bytes) -> bytes:
    """Apply the headers set with `set_response_header`, then run the route's header_filter phases, over a
    response head the upstream leg built (status line, header lines, CRLF CRLF); return the head to send. Raises
    PluginFailed."""
    end = head.index(b"\r\n")
    status = int(head[9:12])
    headers = HeadHeaders(head[end + 2 : -2])
    for key, value in ctx._reply_headers or ():
        headers.set(key.decode("latin-1"), value.decode("utf-8"))
    resp = ctx.response = ResponseHead(status, headers)
    for fn, conf, _, name in ctx.chain.header_filter:
        try:
            fn(ctx, conf)
        except Exception as exc:
            raise PluginFailed(name) from exc
    first = head[: end + 2] if resp.status == status else _status_line(resp.status)
    return b"".join((first, headers.block(), b"\r\n"))


def strip_headers(req: Request, names: frozenset[bytes]) -> None:
    """Drop the client's copies of headers only the gateway may set (the consumer headers)."""
    headers = req.headers
    for k, _ in headers:
        if k in names:
            req.headers = [h for h in headers if h[0] not in names]
            return


def run_phases(ctx: Context, start: int, req: Request) -> tuple[int, Any]:
    """Run the route's rewrite and access phases from index `start`. Returns (i, what phase i returned) when one
    returned something (a Response, an awaitable...); or, when every phase went on, writes their changes into
    `req` (`finish_phases`, with the chain's consumer settings) and returns (-1, None). Raises PluginFailed (the
    cause chained) when a phase raised, or the changes could not be written."""
    i = start
    if ctx._switch is not None and i > 0:
        i = switch_chain(ctx, i)  # an async phase named a consumer with plugins of its own
    chain = ctx.chain
    phases = chain.request
    while i < len(phases):
        fn, conf, _, name = phases[i]
        try:
            result = fn(ctx, conf)
        except Exception as exc:
            raise PluginFailed(name) from exc
        if result is not None:
            return i, result
        i += 1
        if ctx._switch is not None:
            i = switch_chain(ctx, i)
            chain = ctx.chain
            phases = chain.request
    try:
        finish_phases(ctx, req, chain.strip, chain.consumer_keys)
    except Exception as exc:
        raise PluginFailed("(upstream request changes)") from exc
    return -1, None


def request_phases(ex: Any, start: int) -> None:
    """An exchange's request phases from index `start` (`run_phases` over `ex.ctx` and `ex.req`), then, when every
    phase went on, the route's integration: `ex.integrate()` for a request that expects 100-continue, else
    `ex.route.start(ex)`. What stops the phases goes back to the exchange: `ex.phase_stopped(i, result)` (a
    Response, an awaitable or a bad return of phase i), `ex._plugin_failed(name, None, cause)` (a phase raised).
    `ex` is a `fastgw.pipeline.exchange.Exchange` (this layer does not import it)."""
    req = ex.req
    try:
        i, result = run_phases(ex.ctx, start, req)
    except PluginFailed as exc:
        ex._plugin_failed(exc.name, None, exc.__cause__)
        return
    if i >= 0:
        ex.phase_stopped(i, result)
    elif req.expect_continue:
        ex.integrate()
    else:
        ex.route.start(ex)


def switch_chain(ctx: Context, i: int) -> int:
    """Go on with the chain of the consumer a phase just named (`ctx._switch`): the request phases resume after
    the one that ran last (`i - 1` of the old chain), found in the new chain; return the index to go on from."""
    ran = ctx.chain.request[i - 1]
    chain = ctx.chain = ctx._switch
    ctx._switch = None
    try:
        return chain.request.index(ran) + 1
    except ValueError:
        return i


def _with_sets(items: list[tuple[bytes, bytes]], sets: list[tuple[bytes, bytes | None]]) -> list[tuple[bytes, bytes]]:
    """`items` (a new list) after each (key, value) of `sets` replaced every value of its key, in order (a value
    None removes them: a step's `remove`)."""
    out = list(items)
    for key, value in sets:
        out = [it for it in out if it[0] != key]
        if value is not None:
            out.append((key, value))
    return out


def finish_phases(
    ctx: Context, req: Request, strip: frozenset[bytes], keys: tuple[bytes | None, bytes | None] | None
) -> None:
    """After the request phases went on: write the upstream request's changes into `req`, and where consumers are
    configured (`strip`: their header names) drop the client's copies and name the consumer that authenticated."""
    up = ctx._upstream
    if up is not None:
        up.apply(req)
    elif ctx._upstream_sets is not None:
        req.headers = _with_sets(req.headers, ctx._upstream_sets)
    if strip:
        strip_headers(req, strip)
        if ctx._consumer is not None and keys is not None:
            if req.headers is ctx._raw:  # the client's own list still: ctx.request keeps what the client sent
                req.headers = list(req.headers)
            add_consumer_headers(req, ctx._consumer, keys[0], keys[1])


def new_context(req: Request, client_ip: str, params: dict[str, str], route: Any, chain: Any) -> Context:
    """The context of one request on a route with plugins (its ClientRequest made when a phase asks for it)."""
    ctx = Context.__new__(Context)
    ctx._request = None
    ctx._req = req
    ctx._raw = req.headers
    ctx._raw_query = req.query
    ctx._client_ip = client_ip
    ctx._params = params
    ctx._setup(route, chain)
    return ctx


def add_consumer_headers(req: Request, consumer: Any, user_key: bytes | None, groups_key: bytes | None) -> None:
    """Tell the upstream who authenticated: the consumer's name and groups (`name_b`, `groups_b`: their wire
    form, made once per consumer), in the configured headers."""
    if user_key:
        req.headers.append((user_key, consumer.name_b))
    if groups_key and consumer.groups_b:
        req.headers.append((groups_key, consumer.groups_b))
