# The plugin runtime's hot part, compiled (part of `fastgw._core`, included by `fastgw/_core.pyx`; declarations:
# phases.pxd): the context, the client's request as plugins read it, the upstream request as they change it, header
# maps kept as the wire's bytes, and the loop over a route's request phases.
#
# Its pure twin `fastgw/core/phases.py` is the specification (tests/property/test_plugin_twins.py).

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.tuple cimport PyTuple_GET_SIZE
from libc.string cimport memchr, memcpy

from urllib.parse import parse_qsl as _parse_qsl, urlencode as _urlencode

from fastgw.core.phases import FRAMING as _FRAMING_SET, PluginFailed

cdef dict _KEYS = {}
cdef dict _VALID_KEYS = {}
cdef frozenset _FRAMING = _FRAMING_SET


cdef inline str _text(bytes b):
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return b.decode("latin-1")


cdef bint _is_token(str name):
    cdef Py_UCS4 c
    if not name:
        return False
    for c in name:
        if not (c == 33 or 35 <= c <= 39 or c == 42 or c == 43 or c == 45 or c == 46 or 48 <= c <= 57
                or 65 <= c <= 90 or 94 <= c <= 122 or c == 124 or c == 126):
            return False
    return True


cdef dict _parse_query(object raw):
    cdef dict out = {}
    if raw:
        for k, v in _parse_qsl((<bytes>raw).decode("latin-1"), keep_blank_values=True):
            if k in out:
                (<list>out[k]).append(v)
            else:
                out[k] = [v]
    return out


cdef inline bytes _lookup_key(str name):
    key = _KEYS.get(name)
    if key is None:
        key = name.lower().encode("latin-1")
        if len(_KEYS) < 10_000:
            _KEYS[name] = key
    return <bytes>key


cdef class Headers:
    """A case-insensitive multi-map of header names to values. See `fastgw.core.phases.Headers`."""

    def __init__(self, items=None, bint frozen=False):
        self._items = [(k.lower().encode("latin-1"), v.encode("utf-8")) for k, v in items or ()]
        self._frozen = frozen

    @classmethod
    def from_raw(cls, list raw, bint frozen=False):
        cdef Headers h = cls.__new__(cls)
        h._items = raw if frozen else list(raw)
        h._frozen = frozen
        return h

    def get(self, str name, default=None):
        cdef bytes key = _lookup_key(name)
        cdef tuple item
        for item in self._items:
            if <bytes>item[0] == key:
                return _text(<bytes>item[1])
        return default

    def get_all(self, str name):
        cdef bytes key = _lookup_key(name)
        cdef tuple item
        return [_text(<bytes>item[1]) for item in self._items if <bytes>item[0] == key]

    def __contains__(self, name):
        if not isinstance(name, str):
            return False
        cdef bytes key = _lookup_key(name)
        cdef tuple item
        for item in self._items:
            if <bytes>item[0] == key:
                return True
        return False

    def __iter__(self):
        cdef tuple item
        return iter([((<bytes>item[0]).decode("latin-1"), _text(<bytes>item[1])) for item in self._items])

    def __len__(self):
        return len(self._items)

    def __repr__(self):
        return f"Headers({list(self)!r})"

    cpdef bytes _key(self, str name, str value=""):
        if self._frozen:
            raise TypeError("these headers are read-only (change ctx.upstream_request.headers instead)")
        if "\r" in value or "\n" in value or "\0" in value:
            raise ValueError(f"invalid header value for {name!r}: {value!r}")
        key = _VALID_KEYS.get(name)
        if key is None:
            if not _is_token(name):
                raise ValueError(f"invalid header name {name!r}")
            key = name.lower().encode("latin-1")
            if len(_VALID_KEYS) < 10_000:
                _VALID_KEYS[name] = key
        return <bytes>key

    def set(self, str name, str value):
        cdef bytes key = self._key(name, value)
        cdef list items = self._items
        cdef tuple item
        for item in items:
            if <bytes>item[0] == key:
                self._items = items = [it for it in items if <bytes>(<tuple>it)[0] != key]
                break
        items.append((key, value.encode("utf-8")))

    def add(self, str name, str value):
        self._items.append((self._key(name, value), value.encode("utf-8")))

    def remove(self, str name):
        cdef bytes key = self._key(name)
        cdef tuple item
        for item in self._items:
            if <bytes>item[0] == key:
                self._items = [it for it in self._items if <bytes>(<tuple>it)[0] != key]
                return

    def rename(self, str old, str new):
        cdef bytes key = old.lower().encode("latin-1")
        cdef bytes new_key = self._key(new)
        cdef tuple item
        self._items = [(new_key if <bytes>item[0] == key else item[0], item[1]) for item in self._items]

    def raw(self):
        return self._items


cdef inline Headers _headers_over(list raw, bint frozen):
    """Headers.from_raw without the Python-level call (PERF: on every header change a plugin makes)."""
    cdef Headers h = Headers.__new__(Headers)
    h._items = raw if frozen else list(raw)
    h._frozen = frozen
    return h


cdef bint _absent_in(bytes block, bytes key):
    """No line of `block` (header lines, CRLF each) has the name `key` (lower-case), in any case.

    PERF: a case-insensitive scan of the line starts, in place: lower-casing the block and searching it cost
    ~0.4 us per call (two allocations), this costs a few ns per line."""
    return _absent_at(<const unsigned char*>PyBytes_AS_STRING(block), 0, PyBytes_GET_SIZE(block), key)


cdef class HeadHeaders(Headers):
    """The headers of a response head the upstream leg built, parsed only when a plugin does more than add.
    See `fastgw.core.phases.HeadHeaders`."""

    def __init__(self, bytes block):
        self._items = []
        self._frozen = False
        self._block = block
        self._framing = []

    cdef bint _absent(self, bytes key):
        return _absent_in(<bytes>self._block, key)

    cdef void _parse(self):
        cdef bytes block = self._block
        cdef bytes line, name, value, lname
        self._block = None
        for line in block.split(b"\r\n"):
            if line:
                name, _, value = line.partition(b":")
                lname = _lower(name)
                if lname in _FRAMING:
                    self._framing.append(line)
                else:
                    self._items.append((lname, value.strip(b" \t")))

    cdef inline void _parsed(self):
        if self._block is not None:
            self._parse()

    cpdef bytes _key(self, str name, str value=""):
        cdef bytes key = Headers._key(self, name, value)
        if key in _FRAMING:
            raise ValueError(f"{name!r} is set by the gateway from the response's framing")
        return key

    def set(self, str name, str value):
        cdef bytes key
        if self._block is not None:
            key = self._key(name, value)
            if self._absent(key):
                self._block = b"".join((self._block, key, b": ", value.encode("utf-8"), b"\r\n"))
                return
            self._parse()
        Headers.set(self, name, value)

    def add(self, str name, str value):
        if self._block is not None:
            self._block = b"".join((self._block, self._key(name, value), b": ", value.encode("utf-8"), b"\r\n"))
            return
        Headers.add(self, name, value)

    cdef void _set_raw(self, bytes key, bytes value):
        """set() for a key and value already checked (Context.set_response_header did)."""
        cdef list items
        if self._block is not None:
            if self._absent(key):
                self._block = b"".join((self._block, key, b": ", value, b"\r\n"))
                return
            self._parse()
        items = [it for it in self._items if <bytes>(<tuple>it)[0] != key]
        items.append((key, value))
        self._items = items

    def get(self, str name, default=None):
        self._parsed()
        return Headers.get(self, name, default)

    def get_all(self, str name):
        self._parsed()
        return Headers.get_all(self, name)

    def __contains__(self, name):
        self._parsed()
        return Headers.__contains__(self, name)

    def __iter__(self):
        self._parsed()
        return Headers.__iter__(self)

    def __len__(self):
        self._parsed()
        return Headers.__len__(self)

    def remove(self, str name):
        self._parsed()
        Headers.remove(self, name)

    def rename(self, str old, str new):
        self._parsed()
        Headers.rename(self, old, new)

    def raw(self):
        self._parsed()
        return self._items

    def block(self):
        if self._block is not None:
            return self._block
        cdef list parts = [b"%s: %s\r\n" % kv for kv in self._items]
        parts += [line + b"\r\n" for line in self._framing]
        return b"".join(parts)


cdef class ClientRequest:
    """The request as the client sent it; read-only. See `fastgw.core.phases.ClientRequest`."""

    def __init__(self, Request req, str client_ip, params):
        self._req = req
        self._raw = req.headers
        self._raw_query = req.query
        self._headers = None
        self._query = None
        self.client_ip = client_ip
        self.params = params
        self.body = None

    @property
    def method(self):
        return self._req.method

    @property
    def path(self):
        return self._req.path

    @property
    def host(self):
        return self._req.host

    @property
    def content_length(self):
        return self._req.content_length

    @property
    def query_string(self):
        q = self._raw_query
        return (<bytes>q).decode("latin-1") if q else ""

    @property
    def query(self):
        if self._query is None:
            self._query = _parse_query(self._raw_query)
        return self._query

    @property
    def headers(self):
        if self._headers is None:
            self._headers = _headers_over(self._raw, True)
        return self._headers

    def header(self, str name):
        cdef bytes key = _lookup_key(name)
        cdef tuple item
        for item in self._raw:
            if <bytes>item[0] == key:
                return _text(<bytes>item[1])
        return None


cdef class UpstreamRequest:
    """What goes to the integration, as plugins change it. See `fastgw.core.phases.UpstreamRequest`."""

    def __init__(self, Request req):
        self._req = req
        self._sets = None
        self._headers = None
        self._query = None
        self.path = None
        self.body = None

    @property
    def headers(self):
        if self._headers is None:
            self._headers = _headers_over(self._req.headers, False)
            if self._sets is not None:
                self._headers._items = _with_sets(self._headers._items, self._sets)
                self._sets = None
        return self._headers

    @property
    def query(self):
        if self._query is None:
            self._query = _parse_query(self._req.query)
        return self._query

    def apply(self, Request req):
        if self._headers is not None:
            req.headers = self._headers._items
        elif self._sets is not None:
            req.headers = _with_sets(req.headers, self._sets)
        if self._query is not None:
            req.query = _urlencode([(k, v) for k, vs in self._query.items() for v in vs]).encode() or None
        if self.path is not None and not self.path.startswith("/"):
            raise ValueError(f"the upstream path must start with '/', got {self.path!r}")
        if self.body is not None:
            if not req.complete:
                raise ValueError("the body can only be replaced on routes whose plugins collect it (needs_body)")
            req.body = [self.body] if self.body else []
            req.buffered = len(self.body)
            req.chunked = False
            req.content_length = len(self.body)


cdef class ResponseHead:
    """The response's status and headers as header_filter phases see them. See `fastgw.core.phases`."""

    def __init__(self, int status, headers):
        self.status = status
        self.headers = headers
        self.body = None


cdef Headers _VALID_HEADERS = Headers()


def header_key(str name, str value=""):
    """See `fastgw.core.phases.header_key`."""
    return _VALID_HEADERS._key(name, value)


cdef class PhaseChain:
    """What the request loop reads of a route's plugin chain. See `fastgw.core.phases.PhaseChain`.

    PERF: a C struct the loop reads directly, where attribute lookups on a Python class cost ~50 ns each, six to
    eight of them per request."""

    def __init__(self):
        self.request = ()
        self.header_filter = ()
        self.body_filter = ()
        self.log = ()
        self.strip = frozenset()
        self.consumer_keys = None
        self.per_consumer = False
        self.streams = True
        self.front = None

    def for_consumer(self, consumer):
        return None


cdef class Context:
    """What the phases of one request share. See `fastgw.core.phases.Context`."""

    def __init__(self, ClientRequest request, route, PhaseChain chain):
        self._request = request
        self._req = request._req
        self._raw = request._raw
        self._raw_query = request._raw_query
        self._client_ip = request.client_ip
        self._params = request.params
        self._upstream = None
        self.response = None
        self._consumer = None
        self._switch = None
        self.credential = None
        self.route = route
        self.vars = {}
        self.chain = chain
        self._reply_headers = None
        self._upstream_sets = None

    @property
    def request(self):
        # PERF: made when a phase first asks: the compiled steps read the request from the context's own fields,
        # so a chain of steps never makes it (callgrind, --scenario chain: 93,798 -> 92,917 instructions an
        # exchange).
        cdef ClientRequest request = self._request
        if request is None:
            request = ClientRequest.__new__(ClientRequest)
            request._req = self._req
            request._raw = self._raw  # the headers as the client sent them, whatever the upstream request became
            request._raw_query = self._raw_query
            request._headers = None
            request._query = None
            request.client_ip = self._client_ip
            request.params = self._params
            request.body = None
            self._request = request
        return request

    @property
    def consumer(self):
        return self._consumer

    @consumer.setter
    def consumer(self, consumer):
        self._consumer = consumer
        if consumer is not None and self.chain.per_consumer:
            self._switch = self.chain.for_consumer(consumer)

    def set_upstream_header(self, str name, str value):
        cdef UpstreamRequest up = self._upstream
        if up is not None and up._headers is not None:
            up._headers.set(name, value)
            return
        cdef bytes key = _VALID_HEADERS._key(name, value)
        if up is not None:
            if up._sets is None:
                up._sets = []
            up._sets.append((key, value.encode("utf-8")))
            return
        if self._upstream_sets is None:
            self._upstream_sets = []
        self._upstream_sets.append((key, value.encode("utf-8")))

    def set_response_header(self, str name, str value):
        cdef bytes key = _VALID_HEADERS._key(name, value)
        if key in _FRAMING:
            raise ValueError(f"{name!r} is set by the gateway from the response's framing")
        if self._reply_headers is None:
            self._reply_headers = []
        self._reply_headers.append((key, value.encode("utf-8")))

    @property
    def upstream_request(self):
        cdef UpstreamRequest up
        if self._upstream is None:
            up = UpstreamRequest.__new__(UpstreamRequest)
            up._req = self._req
            up._headers = None
            up._query = None
            up.path = None
            up.body = None
            up._sets = self._upstream_sets
            self._upstream_sets = None
            self._upstream = up
        return self._upstream


def new_context(Request req, str client_ip, params, route, PhaseChain chain):
    cdef Context ctx = Context.__new__(Context)
    ctx._request = None
    ctx._req = req
    ctx._raw = req.headers
    ctx._raw_query = req.query
    ctx._client_ip = client_ip
    ctx._params = params
    ctx._upstream = None
    ctx.response = None
    ctx._consumer = None
    ctx._switch = None
    ctx.credential = None
    ctx.route = route
    ctx.vars = {}
    ctx.chain = chain
    ctx._reply_headers = None
    ctx._upstream_sets = None
    return ctx


cdef PyMemberDef _PUBLIC_SLOTS[5]
# The plugin API's names for fields plugins read (the twin's properties, docs/plugins.md): read-only plain slots
# beside the private fields the core goes on using. PERF: a slot read (~14 ns in a loop), cheaper than the read of
# the private field through Cython's property it replaces in a plugin (~24 ns); callgrind, --scenario cache-miss
# (proxy-cache's key and header_filter): 232,378 -> 232,114 instructions an exchange.
_as_slots(Context, (("wire_request", "_req", Request.__new__(Request)), ("upstream_request_if_made", "_upstream",
          object()), ("reply_headers", "_reply_headers", [])), _PUBLIC_SLOTS, 3)
_as_slots(ClientRequest, (("raw_query", "_raw_query", object()),), _PUBLIC_SLOTS + 3, 1)
_as_slots(UpstreamRequest, (("query_if_made", "_query", object()),), _PUBLIC_SLOTS + 4, 1)


cdef bint _absent_at(const unsigned char* p, Py_ssize_t i, Py_ssize_t n, bytes key) noexcept:
    """No header line in p[i:n] has the name `key` (lower-case), in any case (see _absent_in)."""
    cdef const char* k = PyBytes_AS_STRING(key)
    cdef Py_ssize_t kn = PyBytes_GET_SIZE(key)
    cdef const void* nl
    while i + kn < n:
        if p[i + kn] == 58 and _ieq(p + i, k, kn):  # 58 = ':'
            return False
        # PERF: memchr to the next line: a byte loop here was ~2.6k instructions a request for the four
        # RateLimit-* fields checked over a proxied head (callgrind), memchr a few hundred.
        nl = memchr(p + i, 10, n - i)
        if nl == NULL:
            break
        i = <const unsigned char*>nl - p + 1
    return True


cdef bytes _splice(bytes head, list extra):
    """`head` with the header lines of `extra` ((name, value) bytes) inserted before its blank line, in one
    allocation (PERF: ~0.1 us where slicing and joining cost ~0.6 us)."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(head), size = n, at
    cdef tuple item
    for item in extra:
        size += PyBytes_GET_SIZE(<bytes>item[0]) + PyBytes_GET_SIZE(<bytes>item[1]) + 4
    out = PyBytes_FromStringAndSize(NULL, size)
    cdef char* q = PyBytes_AS_STRING(out)
    memcpy(q, PyBytes_AS_STRING(head), n - 2)
    at = n - 2
    for item in extra:
        memcpy(q + at, PyBytes_AS_STRING(<bytes>item[0]), PyBytes_GET_SIZE(<bytes>item[0]))
        at += PyBytes_GET_SIZE(<bytes>item[0])
        memcpy(q + at, b": ", 2)
        at += 2
        memcpy(q + at, PyBytes_AS_STRING(<bytes>item[1]), PyBytes_GET_SIZE(<bytes>item[1]))
        at += PyBytes_GET_SIZE(<bytes>item[1])
        memcpy(q + at, b"\r\n", 2)
        at += 2
    memcpy(q + at, b"\r\n", 2)
    return out


def filter_head(Context ctx, bytes head):
    cdef Py_ssize_t n = PyBytes_GET_SIZE(head), end = 0
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(head)
    cdef list extra = ctx._reply_headers
    cdef tuple item
    while end < n and p[end] != 13:  # the status line's CR
        end += 1
    if extra and not ctx.chain.header_filter and not ctx.chain.body_filter:
        # Only headers set with set_response_header, none of them there yet, and no phase to see the response
        # (the usual case): spliced in, without the header map and response objects the filter phases need.
        for item in extra:
            if not _absent_at(p, end + 2, n - 2, <bytes>item[0]):
                break
        else:
            return _splice(head, extra)
    cdef bytes block = head[end + 2 : n - 2]
    # "HTTP/1.1 200 ...": the sink wrote this line, three digits at 9.
    cdef int status = (p[9] - 48) * 100 + (p[10] - 48) * 10 + (p[11] - 48)
    cdef HeadHeaders headers = HeadHeaders.__new__(HeadHeaders)
    headers._items = []
    headers._frozen = False
    headers._block = block
    headers._framing = []
    if extra is not None:
        for item in extra:
            headers._set_raw(<bytes>item[0], <bytes>item[1])
    cdef ResponseHead resp = ResponseHead.__new__(ResponseHead)
    resp.status = status
    resp.headers = headers
    resp.body = None
    ctx.response = resp
    for fn, conf, _, name in ctx.chain.header_filter:
        try:
            fn(ctx, conf)
        except Exception as exc:
            raise PluginFailed(name) from exc
    if resp.status == status and headers._block is block:
        return head  # no plugin changed anything
    first = head[: end + 2] if resp.status == status else _status_line(resp.status)
    return b"".join((first, headers.block(), b"\r\n"))


cdef void _strip_headers(Request req, frozenset names) except *:
    cdef list headers = req.headers
    cdef tuple item
    for item in headers:
        if item[0] in names:
            req.headers = [h for h in headers if (<tuple>h)[0] not in names]
            return


def strip_headers(Request req, frozenset names):
    _strip_headers(req, names)


cdef void _add_consumer_headers(Request req, consumer, user_key, groups_key) except *:
    if user_key:
        req.headers.append((user_key, consumer.name_b))
    if groups_key and consumer.groups_b:
        req.headers.append((groups_key, consumer.groups_b))


def add_consumer_headers(Request req, consumer, user_key, groups_key):
    _add_consumer_headers(req, consumer, user_key, groups_key)


cdef list _with_sets(list items, list sets):
    cdef list out = list(items)
    cdef tuple s, it
    cdef bytes key
    cdef Py_ssize_t i
    for s in sets:
        key = <bytes>s[0]
        for i in range(len(out) - 1, -1, -1):
            it = <tuple>out[i]
            if <bytes>it[0] == key:
                del out[i]
        if s[1] is not None:
            out.append(s)
    return out


cdef void _finish_phases(Context ctx, Request req, frozenset strip, keys) except *:
    """See `finish_phases`. PERF: called from run_phases as a C function, where the Python-level call of the def
    cost ~900 instructions a request (arguments packed and parsed; callgrind)."""
    if ctx._upstream is not None:
        (<UpstreamRequest>ctx._upstream).apply(req)
    elif ctx._upstream_sets is not None:
        req.headers = _with_sets(req.headers, ctx._upstream_sets)
    if strip:
        _strip_headers(req, strip)
        if ctx._consumer is not None and keys is not None:
            if req.headers is ctx._raw:  # the client's own list still: ctx.request keeps what the client sent
                req.headers = list(req.headers)
            _add_consumer_headers(req, ctx._consumer, keys[0], keys[1])


def finish_phases(Context ctx, Request req, frozenset strip, keys):
    _finish_phases(ctx, req, strip, keys)


cdef tuple _ALL_WENT_ON = (-1, None)


def switch_chain(Context ctx, Py_ssize_t i):
    ran = ctx.chain.request[i - 1]
    cdef PhaseChain chain = ctx._switch
    ctx.chain = chain
    ctx._switch = None
    try:
        return chain.request.index(ran) + 1
    except ValueError:
        return i


def run_phases(Context ctx, Py_ssize_t start, Request req):
    return _run_phases(ctx, start, req)


cdef tuple _run_phases(Context ctx, Py_ssize_t start, Request req):
    cdef Py_ssize_t i = start
    if ctx._switch is not None and i > 0:
        i = switch_chain(ctx, i)
    cdef PhaseChain chain = ctx.chain
    cdef tuple phases = chain.request
    cdef tuple phase
    while i < PyTuple_GET_SIZE(phases):
        phase = <tuple>phases[i]
        fn = phase[0]
        try:
            # PERF: a built-in plugin's compiled step is one C call (fastgw/core/steps.pyx), no Python frame.
            if isinstance(fn, Step):
                result = (<Step>fn).run(ctx)
            else:
                result = fn(ctx, phase[1])
        except Exception as exc:
            raise PluginFailed(phase[3]) from exc
        if result is not None:
            return i, result
        i += 1
        if ctx._switch is not None:
            i = switch_chain(ctx, i)
            chain = ctx.chain
            phases = chain.request
    try:
        _finish_phases(ctx, req, chain.strip, chain.consumer_keys)
    except Exception as exc:
        raise PluginFailed("(upstream request changes)") from exc
    return _ALL_WENT_ON


def request_phases(ExchangeState ex, Py_ssize_t start):
    # PERF: the exchange's request phases as one C call from the dispatcher (run_phases and finish_phases as C
    # functions, then the integration's start) where the Exchange method was a Python frame (with the exchange's
    # plugin_path and response_filters inlined in proxy/: -2,045 instructions an exchange of the chain scenario,
    # bench/README.md); only what stops the phases goes back to Python (Exchange.phase_stopped, _plugin_failed).
    # NOTE: `req` and `ctx` as typed locals, never `<Request>ex.req` passed on as an argument (a leaked reference
    # an exchange, found by bench/instructions.py at two exchange counts).
    cdef Request req = <Request?>ex.req
    cdef Context ctx = <Context?>ex.ctx
    cdef tuple out
    try:
        out = _run_phases(ctx, start, req)
    except PluginFailed as exc:
        ex._plugin_failed(exc.name, None, exc.__cause__)
        return
    if out is not _ALL_WENT_ON:
        ex.phase_stopped(out[0], out[1])
    elif req.expect_continue:
        ex.integrate()
    else:
        ex.route.start(ex)
