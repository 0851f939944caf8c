# The HTTP/1.1 work of both legs, compiled (part of `fastgw._core`, included by `fastgw/_core.pyx`; declarations:
# http.pxd): the client request, the httptools sinks, the end of every response head, path normalization.
#
# Its pure twin `fastgw/core/http.py` is the specification, section by section (tests/property/test_http_twins.py,
# tests/property/test_path_policy.py).

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.list cimport PyList_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeLatin1
from cpython.dict cimport PyDict_GetItem
from cpython.ref cimport PyObject
from libc.string cimport memcmp, memcpy

from fastgw.core.http import (
    PATH_BACKSLASH_SEPARATOR,
    PATH_SLASHES_DECODE,
    PATH_SLASHES_KEEP,
    PATH_SLASHES_REJECT,
    _IDEMPOTENT,
    _METHODS,
    _PLAIN_CONNECTION,
    HTTP_STATUS_LINES,
    VIA,
    Reject,
    UpstreamProtocolError,
    connection_tokens,
    normalize_path as _normalize_path_spec,
    ExchangeState as _SpecExchangeState,
    status_line as _status_line_spec,
)


cdef inline bytes _lower(bytes b):
    """ASCII lower-case, as bytes.lower(); returns `b` itself when it has no upper-case letter."""
    cdef Py_ssize_t i, n = PyBytes_GET_SIZE(b)
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(b)
    cdef unsigned char c
    cdef char* q
    for i in range(n):
        if 65 <= p[i] <= 90:
            break
    else:
        return b
    out = PyBytes_FromStringAndSize(NULL, n)
    q = PyBytes_AS_STRING(out)
    for i in range(n):
        c = p[i]
        q[i] = c + 32 if 65 <= c <= 90 else c
    return out


cdef dict _METHODS_T = _METHODS
cdef tuple _SPEC_EXCHANGE_SLOTS = _SpecExchangeState.__slots__
cdef dict _STATUS_LINES = HTTP_STATUS_LINES  # (the twin's table itself: a line it adds is seen here)


cdef inline bytes _status_line(object status):
    # PERF: a typed dict's lookup, where `.get` on the module global was an attribute lookup and a call per response
    # (~200 instructions; callgrind showed it under every head built). `status`: the int object, not made again.
    cdef PyObject* line = PyDict_GetItem(_STATUS_LINES, status)
    if line == NULL:
        return _status_line_spec(status)
    return <bytes><object>line


cdef object _INF = float("inf")  # (one float object, not one made per exchange)


cdef inline bint _keep_alive(Request req, bint closing, bint whole):
    return req.keep_alive and not closing and (req.complete or not whole)


def keep_alive(Request req, bint closing, bint whole):
    """See `fastgw.core.http.keep_alive`: the one rule for keeping a client connection open."""
    return _keep_alive(req, closing, whole)


cdef bytes _finish_head(list parts, ExchangeState ex, bytes length, bint chunked, bint keep):
    # PERF: the ending written with the parts into one allocation, where appending four or five more parts (the list
    # grown, then joined) cost ~700 instructions a response (callgrind: PyList_Append's reallocs).
    cdef bytes reply = ex.reply_lines if ex is not None else None
    cdef Request req = <Request?>ex.req if ex is not None else None
    cdef const char* conn = NULL
    cdef Py_ssize_t conn_n = 0, size = 2, at = 0, n
    cdef char* q
    if not keep:
        conn, conn_n = b"connection: close\r\n", 19
        if req is not None:
            req.keep_alive = False
    elif req is not None and req.http10:
        conn, conn_n = b"connection: keep-alive\r\n", 24
    for item in parts:
        if type(item) is not bytes:  # (a bytes-like part: joined the general way)
            return _finish_joined(parts, reply, length, chunked, conn, conn_n)
        size += PyBytes_GET_SIZE(<bytes>item)
    if reply is not None:
        size += PyBytes_GET_SIZE(reply)
    if length is not None:
        size += 18 + PyBytes_GET_SIZE(length)
    elif chunked:
        size += 28
    size += conn_n
    out = PyBytes_FromStringAndSize(NULL, size)
    q = PyBytes_AS_STRING(out)
    for item in parts:
        n = PyBytes_GET_SIZE(<bytes>item)
        memcpy(q + at, PyBytes_AS_STRING(<bytes>item), n)
        at += n
    if reply is not None:
        at = _hcp(q, at, reply)
    if length is not None:
        at = _hlit(q, at, b"content-length: ", 16)
        at = _hcp(q, at, length)
        at = _hlit(q, at, b"\r\n", 2)
    elif chunked:
        at = _hlit(q, at, b"transfer-encoding: chunked\r\n", 28)
    if conn_n:
        at = _hlit(q, at, conn, conn_n)
    at = _hlit(q, at, b"\r\n", 2)
    return <bytes>out


cdef bytes _finish_joined(list parts, bytes reply, bytes length, bint chunked, const char* conn, Py_ssize_t conn_n):
    parts = list(parts)
    if reply is not None:
        parts.append(reply)
    if length is not None:
        parts += [b"content-length: ", length, b"\r\n"]
    elif chunked:
        parts.append(b"transfer-encoding: chunked\r\n")
    if conn_n:
        parts.append(conn[:conn_n])
    parts.append(b"\r\n")
    return b"".join(parts)


def finish_head(list parts, ExchangeState ex, bytes length, bint chunked, bint keep):
    """See `fastgw.core.http.finish_head`: every response head ends here."""
    return _finish_head(parts, ex, length, chunked, keep)


cdef class Request:
    """What the client sent. See `fastgw.core.http.Request`."""

    def __cinit__(self):
        self.method_b = b""
        self.method = ""
        self.url = b""
        self.headers = []
        self.host_raw = b""
        self.host = ""
        self.keep_alive = True
        self.chunked = self.expect_continue = self.headers_done = self.complete = False
        self.body = []
        self.path = ""

    def replayable(self):
        return self.method in _IDEMPOTENT and not self.chunked and not self.content_length

    def upstream_head(self, bytes target_uri, bytes host, bint trusted, bytes peer_ip, bint via, bytes proto=b"http"):
        # PERF: two passes over the headers, the first deciding and measuring, the second copying into one
        # allocation, where a list of four parts per header and a join cost ~2,500 instructions more a request on
        # the plain proxy (bench/instructions.py). Both passes make the same decisions.
        cdef tuple item
        cdef bytes name, value, xff = None, xfp = None, xfh = None, via_in = None, via_out = None, length = None
        cdef bint real_ip = False
        skip_named = self.conn_tokens
        cdef Py_ssize_t size = PyBytes_GET_SIZE(self.method_b) + PyBytes_GET_SIZE(target_uri) + 18
        size += PyBytes_GET_SIZE(host) + 2
        for item in self.headers:
            name = <bytes>item[0]
            value = <bytes>item[1]
            if _request_skip(name):
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
                        size += PyBytes_GET_SIZE(name) + PyBytes_GET_SIZE(value) + 4
                elif name == b"x-real-ip" and not real_ip:
                    real_ip = True
                    size += 13 + PyBytes_GET_SIZE(peer_ip)
                continue
            if skip_named is not None and name in skip_named:
                continue
            size += PyBytes_GET_SIZE(name) + PyBytes_GET_SIZE(value) + 4
        xff = xff + b", " + peer_ip if xff else peer_ip
        xfp = xfp or proto
        xfh = xfh or self.host_raw
        if via:
            via_out = via_in + b", " + VIA if via_in else VIA
        elif via_in:
            via_out = via_in
        if self.chunked:
            length = b"transfer-encoding: chunked\r\n"
        elif self.content_length is not None:
            length = b"content-length: %d\r\n" % self.content_length
        size += 17 + PyBytes_GET_SIZE(xff) + 21 + PyBytes_GET_SIZE(xfp) + 2
        if xfh:
            size += 18 + PyBytes_GET_SIZE(xfh) + 2
        if via_out is not None:
            size += 5 + PyBytes_GET_SIZE(via_out) + 2
        if length is not None:
            size += PyBytes_GET_SIZE(length)
        size += 2
        out = PyBytes_FromStringAndSize(NULL, size)
        cdef char* q = PyBytes_AS_STRING(out)
        cdef Py_ssize_t at = 0
        at = _hcp(q, at, self.method_b)
        q[at] = 32
        at += 1
        at = _hcp(q, at, target_uri)
        at = _hlit(q, at, b" HTTP/1.1\r\nhost: ", 17)
        at = _hcp(q, at, host)
        at = _hlit(q, at, b"\r\n", 2)
        real_ip = False
        for item in self.headers:
            name = <bytes>item[0]
            if _request_skip(name):
                if name == b"via":
                    pass
                elif trusted:
                    if name == b"x-real-ip" or name == b"forwarded":
                        at = _hline(q, at, name, <bytes>item[1])
                elif name == b"x-real-ip" and not real_ip:
                    real_ip = True
                    at = _hline(q, at, name, peer_ip)
                continue
            if skip_named is not None and name in skip_named:
                continue
            at = _hline(q, at, name, <bytes>item[1])
        at = _hline(q, at, b"x-forwarded-for", xff)
        at = _hline(q, at, b"x-forwarded-proto", xfp)
        if xfh:
            at = _hline(q, at, b"x-forwarded-host", xfh)
        if via_out is not None:
            at = _hline(q, at, b"via", via_out)
        if length is not None:
            at = _hcp(q, at, length)
        at = _hlit(q, at, b"\r\n", 2)
        assert at == size
        return out


cdef inline bint _eq(const unsigned char* p, const char* lit, Py_ssize_t n) noexcept:
    return memcmp(p, lit, n) == 0  # (as bytes ==: request names are lower-cased already)

# PERF: request header names classified by length and a byte compare, where a set lookup hashed each fresh name
# (~150-280 instructions a header, callgrind). tests/property/test_http_twins.py holds them to the twin's sets.
cdef inline bint _special_name(bytes name, Py_ssize_t n) noexcept:
    """`name` is one of `_REQUEST_SPECIAL` (one name per length)."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(name)
    return ((n == 4 and _eq(p, b"host", 4)) or (n == 6 and _eq(p, b"expect", 6))
            or (n == 10 and _eq(p, b"connection", 10)) or (n == 14 and _eq(p, b"content-length", 14))
            or (n == 17 and _eq(p, b"transfer-encoding", 17)))


cdef bint _request_skip(bytes name) noexcept:
    """`name` is one of `REQUEST_SKIP`: request headers never copied as they are."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(name)
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(name)
    return (_special_name(name, n) or (n == 2 and _eq(p, b"te", 2)) or (n == 3 and _eq(p, b"via", 3))
            or (n == 7 and (_eq(p, b"trailer", 7) or _eq(p, b"upgrade", 7)))
            or (n == 9 and (_eq(p, b"forwarded", 9) or _eq(p, b"x-real-ip", 9)))
            or (n == 10 and _eq(p, b"keep-alive", 10)) or (n == 15 and _eq(p, b"x-forwarded-for", 15))
            or (n == 16 and (_eq(p, b"proxy-connection", 16) or _eq(p, b"x-forwarded-host", 16)))
            or (n == 17 and _eq(p, b"x-forwarded-proto", 17)) or (n == 18 and _eq(p, b"proxy-authenticate", 18))
            or (n == 19 and _eq(p, b"proxy-authorization", 19)))


def _request_header_kind(bytes name):  # (for the tests, against REQUEST_SKIP and _REQUEST_SPECIAL)
    return _request_skip(name), _special_name(name, PyBytes_GET_SIZE(name))


cdef inline Py_ssize_t _hcp(char* q, Py_ssize_t at, bytes b) noexcept:
    cdef Py_ssize_t n = PyBytes_GET_SIZE(b)
    memcpy(q + at, PyBytes_AS_STRING(b), n)
    return at + n


cdef inline Py_ssize_t _hlit(char* q, Py_ssize_t at, const char* s, Py_ssize_t n) noexcept:
    memcpy(q + at, s, n)
    return at + n


cdef inline Py_ssize_t _hline(char* q, Py_ssize_t at, bytes name, bytes value) noexcept:
    """`name: value` and CRLF."""
    at = _hcp(q, at, name)
    q[at] = 58  # :
    q[at + 1] = 32
    at = _hcp(q, at + 2, value)
    q[at] = 13
    q[at + 1] = 10
    return at + 2


cdef _special_header(Request req, bytes name, bytes value):
    if name == b"content-length":
        if req.content_length is not None:
            raise Reject(400, "duplicate Content-Length")
        if not value.isdigit():
            raise Reject(400, "invalid Content-Length")
        req.content_length = int(value)
    elif name == b"transfer-encoding":
        if req.chunked or value.strip().lower() != b"chunked":
            raise Reject(400, "unsupported Transfer-Encoding")
        req.chunked = True
    elif name == b"host":
        _host_header(req, value)
    elif name == b"connection":
        tokens = connection_tokens(value)
        req.conn_tokens = tokens if req.conn_tokens is None else req.conn_tokens | tokens
    elif name == b"expect":
        if value.strip().lower() != b"100-continue":
            raise Reject(417, "Expectation Failed")
        req.expect_continue = True


cdef inline bint _is_ows(unsigned char c) noexcept:
    return c == 32 or c == 9  # RFC 9110's OWS: SP and HTAB


cdef inline bint _is_space(unsigned char c) noexcept:
    return c == 32 or 9 <= c <= 13  # what bytes.strip() strips


cdef _host_header(Request req, bytes value):
    # As fastgw.core.http._special_header's Host branch, without a Python call in the common case (ASCII host).
    cdef Py_ssize_t n = PyBytes_GET_SIZE(value), start = 0, end, i, stop
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(value)
    cdef unsigned char c
    cdef bint ascii = True
    cdef char* q
    if req.host_raw:
        raise Reject(400, "duplicate Host header")
    end = n
    while start < end and _is_space(p[start]):
        start += 1
    while end > start and _is_space(p[end - 1]):
        end -= 1
    if start == end:
        raise Reject(400, "invalid Host header")
    for i in range(start, end):
        c = p[i]
        if c == 32 or c == 47 or c == 64:  # " ", "/", "@"
            raise Reject(400, "invalid Host header")
        if c >= 128:
            ascii = False
    host = value if start == 0 and end == n else value[start:end]
    req.host_raw = host
    # The name for routing: up to the port, lower-case ("[v6]" kept whole).
    if p[start] == 91:  # "["
        stop = start
        for i in range(start, end):
            if p[i] == 93:  # "]"
                stop = i + 1
                break
    else:
        stop = end
        for i in range(start, end):
            if p[i] == 58:  # ":"
                stop = i
                break
    if not ascii:
        req.host = value[start:stop].decode("latin-1").lower()
        return
    lowered = PyBytes_FromStringAndSize(NULL, stop - start)
    q = PyBytes_AS_STRING(lowered)
    for i in range(start, stop):
        c = p[i]
        q[i - start] = c + 32 if 65 <= c <= 90 else c
    req.host = PyUnicode_DecodeLatin1(q, stop - start, NULL)


cdef class ExchangeState:
    """What the exchange of one request decides, declared once (http.pxd). See `fastgw.core.http.ExchangeState`.

    The decided fields start at their values on creation (`__cinit__`, as the twin's `__new__`); `__init__` sets
    the given ones. NOTE: `__cinit__` takes any arguments: a Python subclass (`fastgw.pipeline.exchange.Exchange`)
    is made with its own."""

    def __cinit__(self, *args, **kwargs):
        self.status = 0
        self.response_started = False
        self.retried = False
        self.finished = False
        self.t0 = 0.0
        self.sent = 0
        self.upstream_at = 0.0
        self.upstream_s = 0.0
        self.until = _INF

    def __init__(self, Request req, route, gw, peer, ctx, double t0=0.0):
        self.req = req
        self.route = route
        self.gw = gw
        self.peer = peer
        self.ctx = ctx
        self.t0 = t0


cdef extern from "Python.h":
    ctypedef struct PyMemberDef:
        const char *name
        int type
        Py_ssize_t offset
        int flags
        const char *doc
    ctypedef struct _TypeObject "PyTypeObject":
        Py_ssize_t tp_basicsize
        PyObject *tp_dict
    object PyDescr_NewMember(object, PyMemberDef *)
    void PyType_Modified(object)

cdef extern from "structmember.h":
    int T_OBJECT_EX, READONLY


cdef PyMemberDef _EXCHANGE_SLOTS[24]
cdef PyMemberDef _REQUEST_SLOTS[12]
cdef PyMemberDef _SINK_SLOTS[6]
cdef list _SLOT_NAMES = []  # (the members' names, kept alive)


cdef int _as_slots(type cls, tuple names, PyMemberDef *members, Py_ssize_t capacity, probe=None) except -1:
    """Expose the object fields `names` of the compiled class `cls` to Python as plain slots (member descriptors
    of T_OBJECT_EX) in place of the properties Cython makes for `cdef public` fields. A name given as (public,
    field, value) exposes `field` read-only under `public` beside its own name (the plugin API's names for fields of
    the core, phases.pyx); `value`, a fresh object of the field's type, finds it.

    PERF: CPython specializes the attribute access to a slot (LOAD_ATTR_SLOT, STORE_ATTR_SLOT: an offset read)
    and not to a property; the pipeline reads and writes the exchange's fields ~40 times an exchange from Python.
    bench/instructions.py --scenario proxy: 67,162 instructions an exchange with Cython's properties, 65,550 with
    these slots (64,068 once Exchange.__init__ no longer calls this class's; 64,293 on the Python class before).
    C code keeps reading them by name. Request's and the sinks' that Python reads per exchange: 58,931 -> 56,704
    (the flags), -> 56,025 (url, body, path, out, parsing).
    NOTE: each field's offset is found by setting it (through Cython's property) to a fresh object and finding
    that object's pointer in the instance: exact, whatever the struct's layout."""
    probe = cls.__new__(cls) if probe is None else probe
    cdef Py_ssize_t i, off, size = (<_TypeObject *><PyObject *>cls).tp_basicsize
    cdef PyObject *mark
    assert len(names) <= capacity
    for i in range(len(names)):
        name, field, marker = names[i] if type(names[i]) is tuple else (names[i], names[i], object())
        setattr(probe, field, marker)
        mark = <PyObject *>marker
        off = sizeof(void *) * 2  # (past the object header)
        while off + <Py_ssize_t>sizeof(void *) <= size:
            if (<PyObject **>(<char *><void *>probe + off))[0] == mark:
                break
            off += sizeof(void *)
        else:
            raise TypeError(f"{cls.__name__}.{field} is not an object field")
        _SLOT_NAMES.append((<str>name).encode())
        members[i] = PyMemberDef(PyBytes_AS_STRING(_SLOT_NAMES[-1]), T_OBJECT_EX, off,
                                 0 if field is name else READONLY, NULL)
        (<dict><object>(<_TypeObject *><PyObject *>cls).tp_dict)[name] = PyDescr_NewMember(cls, &members[i])
    PyType_Modified(cls)
    return 0


# The declared fields, exactly the pure twin's (the same names, or the import fails here).
_as_slots(ExchangeState, _SPEC_EXCHANGE_SLOTS, _EXCHANGE_SLOTS, 24)
_as_slots(Request, ("complete", "error", "chunked", "expect_continue", "headers_done", "keep_alive", "query", "url",
                    "body", "path"), _REQUEST_SLOTS, 12)
_as_slots(ResponseSink, ("done", "keep", "until_close", "new_parser", "out"), _SINK_SLOTS, 5)
_as_slots(RequestSink, ("parsing",), _SINK_SLOTS + 5, 1, RequestSink(None, None, 0, 0, 0, 0, 0))


cdef class RequestSink:
    """The httptools callbacks of one client connection. See `fastgw.core.http.RequestSink`."""

    def __cinit__(self, owner, queue, Py_ssize_t max_url_length, Py_ssize_t max_header_size,
                  Py_ssize_t max_headers, Py_ssize_t max_body_size, Py_ssize_t high_water,
                  Py_ssize_t max_field_size=8192):
        self.owner = owner
        self.queue = queue
        self.max_url = max_url_length
        self.max_header_size = max_header_size
        self.max_headers = max_headers
        self.max_body = max_body_size
        self.high_water = high_water
        self.max_field = max_field_size

    def on_message_begin(self):
        req = Request.__new__(Request)
        self.parsing = req
        self.exchange = None
        self.proxy_conn = False
        self.queue.append(req)

    def on_url(self, bytes url):
        cdef Request req = self.parsing
        req.url = url = req.url + url if req.url else url  # (`url`, typed bytes, is the whole of it now)
        if PyBytes_GET_SIZE(url) > self.max_url:
            raise Reject(414, "URI Too Long")

    def on_header(self, bytes name, bytes value):
        cdef Request req = self.parsing
        cdef Py_ssize_t n = PyBytes_GET_SIZE(name) + PyBytes_GET_SIZE(value)
        req.header_bytes += n + 4
        if (req.header_bytes > self.max_header_size or n > self.max_field
                or PyList_GET_SIZE(req.headers) >= self.max_headers):
            raise Reject(431, "Request Header Fields Too Large")
        name = _lower(name)
        # NOTE: httptools drops a value's leading whitespace and keeps its trailing; RFC 9110 §5.5 makes neither
        # part of the value. PERF: one byte read when there is none.
        if n > PyBytes_GET_SIZE(name) and _is_ows(PyBytes_AS_STRING(value)[PyBytes_GET_SIZE(value) - 1]):
            value = value.rstrip(b" \t")
        req.headers.append((name, value))
        n = PyBytes_GET_SIZE(name)
        # PERF: compared by length and bytes, where a set lookup hashed every fresh name (see _special_name).
        if _special_name(name, n):
            _special_header(req, name, value)
        elif n == 16 and _eq(<const unsigned char*>PyBytes_AS_STRING(name), b"proxy-connection", 16):
            self.proxy_conn = True

    def on_headers_complete(self):
        cdef Request req = self.parsing
        cdef PyObject* found
        p = self.parser
        keep = p.should_keep_alive()
        # PERF: no get_http_version (a str.format) for a keep-alive request that is HTTP/1.1: see the twin's NOTE.
        if not keep or req.conn_tokens is not None or self.proxy_conn:
            version = p.get_http_version()
            if version == "1.0":
                req.http10 = True
            elif version != "1.1":
                raise Reject(505, "HTTP Version Not Supported")
        method_b = p.get_method()
        req.method_b = method_b
        # PERF: a typed dict's lookup, where `.get` on the module global was an attribute lookup and a call.
        found = PyDict_GetItem(_METHODS_T, method_b)
        req.method = <str><object>found if found != NULL else method_b.decode("latin-1")
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

    def on_body(self, bytes body):
        cdef Request req = self.parsing
        req.body_size += PyBytes_GET_SIZE(body)
        if self.max_body and req.body_size > self.max_body:
            raise Reject(413, "Payload Too Large")
        cdef ExchangeState ex = self.exchange
        if ex is not None and ex.body_sink is not None:
            ex.body_sink.send_body(body)
        elif ex is None or not ex.finished:
            req.body.append(body)
            req.buffered += PyBytes_GET_SIZE(body)
            if req.buffered > self.high_water:
                self.owner.buffer_full()

    def on_message_complete(self):
        cdef Request req = self.parsing
        cdef ExchangeState ex = self.exchange
        self.parsing = None
        req.complete = True
        if ex is not None:
            self.exchange = None
            if ex.body_sink is not None:
                ex.body_sink.end_body()


# What a response header name means to the proxy, decided without allocating (names arrive in any case).
cdef enum:
    H_PLAIN = 0  # end-to-end: copied as it is
    H_DROP = 1  # hop-by-hop: dropped
    H_CONNECTION = 2
    H_LENGTH = 3
    H_TE = 4
    H_VIA = 5
    H_DATE = 6
    H_SERVER = 7


cdef inline bint _ieq(const unsigned char* p, const char* lit, Py_ssize_t n) noexcept:
    """p (n bytes, any case) equals the lower-case ASCII literal lit."""
    cdef Py_ssize_t i
    cdef unsigned char c
    for i in range(n):
        c = p[i]
        if 65 <= c <= 90:
            c += 32
        if c != <unsigned char>lit[i]:
            return False
    return True


cdef int _response_header_kind(bytes name) noexcept:
    # The names of RESPONSE_SKIP (hop-by-hop, framing, Date/Server/Via) by length; everything else is plain.
    cdef Py_ssize_t n = PyBytes_GET_SIZE(name)
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(name)
    if n == 2:
        return H_DROP if _ieq(p, b"te", 2) else H_PLAIN
    if n == 3:
        return H_VIA if _ieq(p, b"via", 3) else H_PLAIN
    if n == 4:
        return H_DATE if _ieq(p, b"date", 4) else H_PLAIN
    if n == 6:
        return H_SERVER if _ieq(p, b"server", 6) else H_PLAIN
    if n == 7:
        return H_DROP if _ieq(p, b"trailer", 7) or _ieq(p, b"upgrade", 7) else H_PLAIN
    if n == 10:
        if _ieq(p, b"connection", 10):
            return H_CONNECTION
        return H_DROP if _ieq(p, b"keep-alive", 10) else H_PLAIN
    if n == 14:
        return H_LENGTH if _ieq(p, b"content-length", 14) else H_PLAIN
    if n == 16:
        return H_DROP if _ieq(p, b"proxy-connection", 16) else H_PLAIN
    if n == 17:
        return H_TE if _ieq(p, b"transfer-encoding", 17) else H_PLAIN
    if n == 18:
        return H_DROP if _ieq(p, b"proxy-authenticate", 18) else H_PLAIN
    if n == 19:
        return H_DROP if _ieq(p, b"proxy-authorization", 19) else H_PLAIN
    return H_PLAIN


def _response_header_is_skipped(bytes name):
    """For the tests: the compiled classification agrees with `fastgw.core.http.RESPONSE_SKIP`."""
    return _response_header_kind(name) != H_PLAIN


cdef bint _named(bytes name, tuple names):
    """`name` (any case) is one of `names` (lower-case), compared without allocating."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(name)
    cdef bytes candidate
    for candidate in names:
        if PyBytes_GET_SIZE(candidate) == n and _ieq(<const unsigned char*>PyBytes_AS_STRING(name),
                                                     PyBytes_AS_STRING(candidate), n):
            return True
    return False


cdef class ResponseSink:
    """The httptools callbacks of one upstream connection. See `fastgw.core.http.ResponseSink`."""

    def __cinit__(self):
        self.server_line = b""
        self.date_line = b""
        self.out = []
        self.done = self.until_close = self.new_parser = self.keep = False
        self._start_head()

    cdef _start_head(self):
        self.head = []
        self.length = self.te = self.via_in = self.named = None
        self.has_date = self.has_server = False

    def begin(self, ExchangeState ex, bytes server_line, bint via, bytes date_line, state):
        self.ex = ex
        self.server_line = server_line
        self.via = via
        self.date_line = date_line
        self.state = state
        self.out = []
        self._start_head()
        self.chunk_out = self.done = self.informational = self.until_close = self.new_parser = self.keep = False
        self.collect = False

    def on_header(self, bytes name, bytes value):
        cdef int kind = _response_header_kind(name)
        cdef list head = self.head
        if kind == H_DATE:
            self.has_date = True
        elif kind == H_SERVER:
            self.has_server = True
        elif kind != H_PLAIN:
            if kind == H_CONNECTION:
                if _lower(value) not in _PLAIN_CONNECTION:
                    tokens = connection_tokens(value) - _PLAIN_CONNECTION
                    self.named = tokens if self.named is None else self.named | tokens
            elif kind == H_LENGTH:
                self.length = value
            elif kind == H_TE:
                self.te = value
            elif kind == H_VIA:
                self.via_in = value
            return  # hop-by-hop or rewritten by the gateway: not copied
        names = self.ex.reply_names
        if names is not None and _named(name, <tuple?>names):
            return  # the gateway writes its own (finish_head)
        # End-to-end, and the upstream's own Date and Server: copied as they are.
        head.append(name)
        head.append(b": ")
        head.append(value)
        head.append(b"\r\n")

    def on_headers_complete(self):
        cdef ExchangeState ex = self.ex
        cdef Request req = <Request?>ex.req
        cdef int status
        cdef list parts, head
        cdef bint keep, chunked, has_date, has_server
        cdef Py_ssize_t i
        cdef bytes lname
        p = self.parser
        status = code = p.get_status_code()  # (the int object kept: for the table and ex.status, not made twice)
        if status < 200:
            if status == 101:
                raise UpstreamProtocolError("101 Switching Protocols to a request that asked for no upgrade")
            self._start_head()
            self.informational = True
            return
        self.keep = p.should_keep_alive()
        has_date, has_server = self.has_date, self.has_server
        if self.named:
            parts = [_status_line(code)]
            has_date = has_server = False
            head = self.head
            for i in range(0, PyList_GET_SIZE(head), 4):
                lname = _lower(<bytes>head[i])
                if lname not in self.named:
                    parts += head[i : i + 4]
                    has_date = has_date or lname == b"date"
                    has_server = has_server or lname == b"server"
        else:  # PERF: the head's own list, where a new one and its extension cost ~500 instructions a response
            parts = self.head
            parts.insert(0, _status_line(code))
        if not has_date:
            parts.append(self.date_line)
        if not has_server:
            parts.append(self.server_line)
        via, length = self.via_in, self.length
        if self.via:
            parts.append(b"via: ")
            parts.append(via + b", " + VIA if via else VIA)
            parts.append(b"\r\n")
        elif via:
            parts.append(b"via: ")
            parts.append(via)
            parts.append(b"\r\n")
        keep = _keep_alive(req, self.state.closing, False)
        chunked = False
        if req.head_only or status == 204 or status == 304:
            if status == 204:
                length = None
            self.done = True
            self.new_parser = req.head_only
        elif length is None:
            self.until_close = self.te is None
            if req.http10:
                keep = False
            else:
                chunked = True
                self.chunk_out = not self.collect
        self.out.append(_finish_head(parts, ex, length, chunked, keep))
        ex.status = code
        ex.response_started = True

    def on_body(self, bytes body):
        if self.chunk_out:
            self.out.append(b"%x\r\n%b\r\n" % (PyBytes_GET_SIZE(body), body))
        else:
            self.out.append(body)

    def on_message_complete(self):
        if self.informational:
            self.informational = False
            return
        if self.chunk_out and not self.done:
            self.out.append(b"0\r\n\r\n")
        self.done = True

    def connection_ended(self):
        if self.chunk_out:
            self.out.append(b"0\r\n\r\n")
        self.done = True


def normalize_path(bytes raw, int policy=0):
    """See `fastgw.core.http.normalize_path`; the common case (nothing to normalize) is one scan here."""
    return _normalize(raw, policy)


cdef _normalize(bytes raw, int policy):
    cdef Py_ssize_t i, n = PyBytes_GET_SIZE(raw)
    cdef const char* p = PyBytes_AS_STRING(raw)
    for i in range(n):
        if (p[i] == b'%' or p[i] == b'\\'
                or (p[i] == b'/' and i + 1 < n and (p[i + 1] == b'.' or p[i + 1] == b'/'))):
            return _normalize_path_spec(raw, policy)
    return PyUnicode_DecodeLatin1(p, n, NULL)
