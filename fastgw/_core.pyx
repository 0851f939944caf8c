# cython: language_level=3
"""Compiled core of fastgw: the route trie, the token-bucket table and the per-byte HTTP helpers.

The specification is `fastgw/_pycore.py`; this module gives the same answers (the property tests in
tests/property/ run both side by side) and only makes them cheaper. Keep the two in step.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.list cimport PyList_GET_SIZE
from cpython.tuple cimport PyTuple_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeLatin1
from libc.string cimport memchr, memcpy
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

from fastgw import _pycore as _spec
from fastgw import _pylimit as _spec_limit
from fastgw import _pyplugins as _spec_plugins
from fastgw._pycore import Router as _SpecRouter
from fastgw._pycore import (
    PATH_BACKSLASH_SEPARATOR,
    PATH_SLASHES_DECODE,
    PATH_SLASHES_KEEP,
    PATH_SLASHES_REJECT,
    _IDEMPOTENT,
    _METHODS,
    _PLAIN_CONNECTION,
    _REQUEST_SPECIAL,
    ANY,
    HTTP_STATUS_LINES,
    REQUEST_SKIP,
    VIA,
    Reject,
    UpstreamProtocolError,
    connection_tokens,
    normalize_path as _normalize_path_spec,
    status_line as _status_line_spec,
    HOST_ANY,
    HOST_EXACT,
    HOST_WILDCARD,
    RouteConflict,
    parse_template,
)

# The twins' lists are the one export list: this module defines every name in them (tests/property/test_twins.py
# holds it to that, and to defining its own classes and functions rather than handing on the pure ones).
__all__ = [*_spec.__all__, *_spec_plugins.__all__, *_spec_limit.__all__]

cdef long long _MAX_UNITS = (<long long>1) << 62


cdef class _Entry:
    def __cinit__(self, route, str name, frozenset methods, int host_kind, str host, tuple param_names,
                  long long order):
        self.route = route
        self.name = name
        self.methods = methods
        self.any_method = ANY in methods
        self.host_kind = host_kind
        self.host = host
        self.param_names = param_names
        self.order = order


cdef class _Node:
    def __cinit__(self):
        self.literals = {}
        self.param = None
        self.entries = []
        self.greedy_entries = []


cdef inline bint _host_ok(_Entry e, str host):
    if e.host_kind == HOST_ANY:
        return True
    if e.host_kind == HOST_EXACT:
        return host == e.host
    return len(host) > len(e.host) and host.endswith(e.host)


cdef _Entry _pick(list entries, str method, str host, set allowed):
    # `allowed` is None on the first walk (a hit needs no 405 bookkeeping); a miss walks again to collect it.
    cdef _Entry e
    for e in entries:
        if not _host_ok(e, host):
            continue
        if e.any_method or method in e.methods:
            return e
        if allowed is not None:
            allowed.update(e.methods)
    return None


cdef _Entry _walk(_Node node, list segs, Py_ssize_t i, Py_ssize_t n, str method, str host, list params,
                  set allowed):
    # Each trie edge consumes exactly one segment, so a node is only ever tried at one depth: the walk visits
    # each node at most once and its cost is bounded by the size of the trie, whatever the path.
    cdef _Node child
    cdef _Entry found
    if i == n:
        if node.entries:
            return _pick(node.entries, method, host, allowed)
        return None
    child = node.literals.get(segs[i])
    if child is not None:
        found = _walk(child, segs, i + 1, n, method, host, params, allowed)
        if found is not None:
            return found
    if node.param is not None:
        params.append(segs[i])
        found = _walk(node.param, segs, i + 1, n, method, host, params, allowed)
        if found is not None:
            return found
        params.pop()
    if node.greedy_entries:
        found = _pick(node.greedy_entries, method, host, allowed)
        if found is not None:
            params.append("/".join(segs[i:]))
            return found
    return None


cdef class Router:
    """Route table: `add` routes, `freeze`, then `match` (method, host, path). See `fastgw._pycore.Router`.

    `add` and `freeze` run once per config load: they are the pure twin's own (parsing templates, refusing
    conflicts, ordering entries), run on a `_pycore.Router` kept inside, and `freeze` copies its frozen trie into
    C structs for `match`, the only part compiled twice."""

    def __cinit__(self):
        self._spec = _SpecRouter()
        self._root = _Node()
        self._static = {}
        self.frozen = False

    def __len__(self):
        return len(self._spec)

    def add(self, route, methods, str path, host=None, name=None):
        self._spec.add(route, methods, path, host, name)

    def freeze(self):
        spec = self._spec
        spec.freeze()
        made = {}  # id(entry of the spec) -> its compiled copy: the static table and the trie share entries
        self._root = _copy_node(spec._root, made)
        self._static = {path: [_copy_entry(e, made) for e in entries] for path, entries in spec._static.items()}
        self.frozen = True

    def dump(self):
        return self._spec.dump()

    def match(self, str method, str host, str path):
        return self._match(method, host, path)

    def route(self, Request req, int policy=0):
        """See `fastgw._pycore.Router.route`: the request target's split, path policy and match in one call."""
        cdef bytes url = req.url, raw
        cdef Py_ssize_t q = url.find(b"?"), h
        if q < 0:
            raw = url
        else:
            raw = url[:q]
            req.query = url[q + 1:]
        h = raw.find(b"#")
        if h >= 0:
            raw = raw[:h]
        path = _normalize(raw, policy)
        if path is None:
            return False
        req.path = path
        return self._match(req.method, req.host, path)

    cdef _match(self, str method, str host, str path):
        cdef _Entry e
        cdef list entries, segs, params
        cdef set allowed
        cdef dict found
        cdef Py_ssize_t i
        if not self.frozen:
            raise RuntimeError("freeze() the router before matching")
        entries = self._static.get(path)
        if entries is not None:
            for e in entries:
                if _host_ok(e, host) and (e.any_method or method in e.methods):
                    return e.route, {}
        segs = [s for s in path.split("/") if s]
        params = []
        e = _walk(self._root, segs, 0, len(segs), method, host, params, None)
        if e is not None:
            found = {}
            for i in range(len(params)):
                found[e.param_names[i]] = params[i]
            return e.route, found
        allowed = set()
        _walk(self._root, segs, 0, len(segs), method, host, [], allowed)
        if allowed:
            return None, tuple(sorted(allowed))
        return None



cdef _Entry _copy_entry(e, dict made):
    cdef _Entry c = made.get(id(e))
    if c is None:
        c = made[id(e)] = _Entry(e.route, e.name, e.methods, e.host_kind, e.host, e.param_names, e.order)
    return c


cdef _Node _copy_node(node, dict made):
    cdef _Node c = _Node()
    c.literals = {lit: _copy_node(child, made) for lit, child in node.literals.items()}
    c.param = _copy_node(node.param, made) if node.param is not None else None
    c.entries = [_copy_entry(e, made) for e in node.entries]
    c.greedy_entries = [_copy_entry(e, made) for e in node.greedy_entries]
    return c


# ------------------------------------------------------------------------------------------------------------
# Token buckets


cdef class _Bucket:
    pass


cdef class BucketTable:
    """Token buckets keyed by string, integer arithmetic, clock passed in. See `fastgw._pylimit.BucketTable`."""

    def __cinit__(self, long long capacity, long long refill_tokens, long long refill_period_ns,
                  Py_ssize_t max_keys=100_000):
        if capacity < 1 or refill_tokens < 1 or refill_period_ns < 1 or max_keys < 1:
            raise ValueError("capacity, refill_tokens, refill_period_ns and max_keys must all be >= 1")
        # Checked by division: the product itself could overflow.
        if capacity >= _MAX_UNITS // refill_period_ns:
            raise ValueError("capacity * refill_period_ns must stay below 2**62")
        self.capacity = capacity
        self.refill_tokens = refill_tokens
        self.refill_period_ns = refill_period_ns
        self.max_keys = max_keys
        self._cap_units = capacity * refill_period_ns
        self._buckets = {}

    def __len__(self):
        return len(self._buckets)

    cdef long long _level(self, _Bucket b, long long now_ns):
        cdef long long need, elapsed
        if now_ns <= b.last:
            return b.units
        need = self._cap_units - b.units
        elapsed = now_ns - b.last
        if elapsed >= (need + self.refill_tokens - 1) // self.refill_tokens:
            return self._cap_units
        # elapsed * refill_tokens < need + refill_tokens <= cap_units + refill_tokens: no overflow.
        return b.units + elapsed * self.refill_tokens

    def take(self, str key, long long now_ns, long long cost=1):
        cdef long long remaining, wait
        if cost < 0:
            raise ValueError("cost must be >= 0")
        ok = self._take(key, now_ns, cost, &remaining, &wait)
        return ok, remaining, wait

    cdef bint _take(self, str key, long long now_ns, long long cost, long long* remaining, long long* wait):
        """`take` (cost >= 0) without the tuple: the answer in `remaining` and `wait`."""
        cdef _Bucket b
        cdef long long units, cost_units, period = self.refill_period_ns
        b = self._buckets.pop(key, None)
        if b is None:
            if len(self._buckets) >= self.max_keys:
                self._make_room(now_ns)
            b = _Bucket()
            b.units = self._cap_units
            b.last = now_ns
            units = self._cap_units
        else:
            units = self._level(b, now_ns)
            if now_ns > b.last:
                b.last = now_ns
        self._buckets[key] = b
        b.units = units
        if cost > self.capacity:
            remaining[0] = units // period
            wait[0] = -1
            return False
        cost_units = cost * period
        if units >= cost_units:
            b.units = units - cost_units
            remaining[0] = b.units // period
            wait[0] = 0
            return True
        remaining[0] = units // period
        wait[0] = (cost_units - units + self.refill_tokens - 1) // self.refill_tokens
        return False

    cdef void _make_room(self, long long now_ns):
        cdef dict buckets = self._buckets
        while buckets:
            key = next(iter(buckets))
            if self._level(<_Bucket>buckets[key], now_ns) < self._cap_units:
                break
            del buckets[key]
        if len(buckets) >= self.max_keys:
            del buckets[next(iter(buckets))]

    def sweep(self, long long now_ns):
        full = [k for k, b in self._buckets.items() if self._level(<_Bucket>b, now_ns) >= self._cap_units]
        for k in full:
            del self._buckets[k]
        return len(full)

    def clear(self):
        self._buckets.clear()


# ------------------------------------------------------------------------------------------------------------
# HTTP/1.1 message helpers. See the section of the same name in `fastgw._pycore`, which is the specification.


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


cdef inline bytes _status_line(int status):
    line = HTTP_STATUS_LINES.get(status)
    if line is None:
        return _status_line_spec(status)
    return <bytes>line


cdef inline bint _keep_alive(Request req, bint closing, bint whole):
    return req.keep_alive and not closing and (req.complete or not whole)


def keep_alive(Request req, bint closing, bint whole):
    """See `fastgw._pycore.keep_alive`: the one rule for keeping a client connection open."""
    return _keep_alive(req, closing, whole)


cdef bytes _finish_head(list parts, Request req, bytes length, bint chunked, bint keep):
    if req is not None and req.reply_lines is not None:
        parts.append(req.reply_lines)
    if length is not None:
        parts.append(b"content-length: ")
        parts.append(length)
        parts.append(b"\r\n")
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


def finish_head(list parts, Request req, bytes length, bint chunked, bint keep):
    """See `fastgw._pycore.finish_head`: every response head ends here."""
    return _finish_head(parts, req, length, chunked, keep)


cdef class Request:
    """One client request, from its first byte until its response is written. See `fastgw._pycore.Request`."""

    def __cinit__(self):
        self.method_b = b""
        self.method = ""
        self.url = b""
        self.headers = []
        self.host_raw = b""
        self.host = ""
        self.keep_alive = True
        self.body = []
        self.path = ""

    def replayable(self):
        return self.method in _IDEMPOTENT and not self.chunked and not self.content_length

    def upstream_head(self, bytes target_uri, bytes host, bint trusted, bytes peer_ip, bint via, bytes proto=b"http"):
        cdef list parts = [self.method_b, b" ", target_uri, b" HTTP/1.1\r\nhost: ", host, b"\r\n"]
        cdef tuple item
        cdef bytes name, value
        cdef bint real_ip = False
        skip_named = self.conn_tokens
        xff = xfp = xfh = via_in = None
        for item in self.headers:
            name = <bytes>item[0]
            value = <bytes>item[1]
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
                        parts.append(name)
                        parts.append(b": ")
                        parts.append(value)
                        parts.append(b"\r\n")
                elif name == b"x-real-ip" and not real_ip:
                    real_ip = True
                    parts.append(b"x-real-ip: ")
                    parts.append(peer_ip)
                    parts.append(b"\r\n")
                continue
            if skip_named is not None and name in skip_named:
                continue
            parts.append(name)
            parts.append(b": ")
            parts.append(value)
            parts.append(b"\r\n")
        parts.append(b"x-forwarded-for: ")
        parts.append(xff + b", " + peer_ip if xff else peer_ip)
        parts.append(b"\r\nx-forwarded-proto: ")
        parts.append(xfp or proto)
        parts.append(b"\r\n")
        xfh = xfh or self.host_raw
        if xfh:
            parts.append(b"x-forwarded-host: ")
            parts.append(xfh)
            parts.append(b"\r\n")
        if via:
            parts.append(b"via: ")
            parts.append(via_in + b", " + VIA if via_in else VIA)
            parts.append(b"\r\n")
        elif via_in:
            parts.append(b"via: ")
            parts.append(via_in)
            parts.append(b"\r\n")
        if self.chunked:
            parts.append(b"transfer-encoding: chunked\r\n")
        elif self.content_length is not None:
            parts.append(b"content-length: %d\r\n" % self.content_length)
        parts.append(b"\r\n")
        return b"".join(parts)


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
    # As _pycore._special_header's Host branch, without a Python call in the common case (ASCII host).
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


cdef class RequestSink:
    """The httptools callbacks of one client connection. See `fastgw._pycore.RequestSink`."""

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
        self.queue.append(req)

    def on_url(self, bytes url):
        cdef Request req = self.parsing
        req.url = req.url + url if req.url else url
        if PyBytes_GET_SIZE(req.url) > self.max_url:
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
        # PERF: only names of these lengths can be special (host, expect, connection, content-length, ...).
        if (n == 4 or n == 6 or n == 10 or n == 14 or n == 17) and name in _REQUEST_SPECIAL:
            _special_header(req, name, value)

    def on_headers_complete(self):
        cdef Request req = self.parsing
        p = self.parser
        version = p.get_http_version()
        if version == "1.0":
            req.http10 = True
        elif version != "1.1":
            raise Reject(505, "HTTP Version Not Supported")
        method_b = p.get_method()
        req.method_b = method_b
        req.method = _METHODS.get(method_b) or method_b.decode("latin-1")
        req.keep_alive = p.should_keep_alive()
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
        up = req.upstream
        if up is not None:
            up.send_body(body)
        elif not req.finished:
            req.body.append(body)
            req.buffered += PyBytes_GET_SIZE(body)
            if req.buffered > self.high_water:
                self.owner.buffer_full()

    def on_message_complete(self):
        cdef Request req = self.parsing
        self.parsing = None
        req.complete = True
        if req.upstream is not None:
            req.upstream.end_body()


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
    """For the tests: the compiled classification agrees with `_pycore.RESPONSE_SKIP`."""
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
    """The httptools callbacks of one upstream connection. See `fastgw._pycore.ResponseSink`."""

    def __cinit__(self):
        self.server_line = b""
        self.date_line = b""
        self.out = []
        self._start_head()

    cdef _start_head(self):
        self.head = []
        self.length = self.te = self.via_in = self.named = None
        self.has_date = self.has_server = False

    def begin(self, Request req, bytes server_line, bint via, bytes date_line, state):
        self.req = req
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
        names = self.req.reply_names
        if names is not None and _named(name, <tuple>names):
            return  # the gateway writes its own (finish_head)
        # End-to-end, and the upstream's own Date and Server: copied as they are.
        head.append(name)
        head.append(b": ")
        head.append(value)
        head.append(b"\r\n")

    def on_headers_complete(self):
        cdef Request req = self.req
        cdef int status
        cdef list parts, head
        cdef bint keep, chunked, has_date, has_server
        cdef Py_ssize_t i
        cdef bytes lname
        p = self.parser
        status = p.get_status_code()
        if status < 200:
            if status == 101:
                raise UpstreamProtocolError("101 Switching Protocols to a request that asked for no upgrade")
            self._start_head()
            self.informational = True
            return
        self.keep = p.should_keep_alive()
        parts = [_status_line(status)]
        has_date, has_server = self.has_date, self.has_server
        if self.named:
            has_date = has_server = False
            head = self.head
            for i in range(0, PyList_GET_SIZE(head), 4):
                lname = _lower(<bytes>head[i])
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
        self.out.append(_finish_head(parts, req, length, chunked, keep))
        req.status = status
        req.response_started = True

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
    """See `fastgw._pycore.normalize_path`; the common case (nothing to normalize) is one scan here."""
    return _normalize(raw, policy)


cdef _normalize(bytes raw, int policy):
    cdef Py_ssize_t i, n = PyBytes_GET_SIZE(raw)
    cdef const char* p = PyBytes_AS_STRING(raw)
    for i in range(n):
        if (p[i] == b'%' or p[i] == b'\\'
                or (p[i] == b'/' and i + 1 < n and (p[i + 1] == b'.' or p[i + 1] == b'/'))):
            return _normalize_path_spec(raw, policy)
    return PyUnicode_DecodeLatin1(p, n, NULL)


# ------------------------------------------------------------------------------------------------------------
# The plugin runtime's hot part. See `fastgw/_pyplugins.py`, which is the specification.

from urllib.parse import parse_qsl as _parse_qsl, urlencode as _urlencode

from fastgw._pyplugins import FRAMING as _FRAMING_SET, PluginFailed

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
    """A case-insensitive multi-map of header names to values. See `fastgw._pyplugins.Headers`."""

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
    See `fastgw._pyplugins.HeadHeaders`."""

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
    """The request as the client sent it; read-only. See `fastgw._pyplugins.ClientRequest`."""

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
    """What goes to the integration, as plugins change it. See `fastgw._pyplugins.UpstreamRequest`."""

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
    """The response's status and headers as header_filter phases see them. See `fastgw._pyplugins`."""

    def __init__(self, int status, headers):
        self.status = status
        self.headers = headers
        self.body = None


cdef Headers _VALID_HEADERS = Headers()


cdef class PhaseChain:
    """What the request loop reads of a route's plugin chain. See `fastgw._pyplugins.PhaseChain`.

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
    """What the phases of one request share. See `fastgw._pyplugins.Context`."""

    def __init__(self, ClientRequest request, route, PhaseChain chain):
        self.request = request
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
            up._req = self.request._req
            up._headers = None
            up._query = None
            up.path = None
            up.body = None
            up._sets = self._upstream_sets
            self._upstream_sets = None
            self._upstream = up
        return self._upstream


def new_context(Request req, str client_ip, params, route, PhaseChain chain):
    cdef ClientRequest request = ClientRequest.__new__(ClientRequest)
    request._req = req
    request._raw = req.headers
    request._raw_query = req.query
    request._headers = None
    request._query = None
    request.client_ip = client_ip
    request.params = params
    request.body = None
    cdef Context ctx = Context.__new__(Context)
    ctx.request = request
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


cdef inline long long _monotonic_us() noexcept:
    """`time.monotonic_ns() // 1000`: CPython reads the same clock (CLOCK_MONOTONIC) on Linux."""
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <long long>ts.tv_sec * 1000000 + ts.tv_nsec // 1000


cdef inline Py_ssize_t _ndigits(long long v) noexcept:
    """The decimal digits of `v` (>= 0)."""
    cdef Py_ssize_t n = 1
    while v >= 10:
        v //= 10
        n += 1
    return n


cdef inline Py_ssize_t _digits_at(char* q, long long v, Py_ssize_t n) noexcept:
    """Write `v` (>= 0, `n` digits) in decimal at q; return n."""
    cdef Py_ssize_t i = n
    while i > 0:
        i -= 1
        q[i] = <char>(48 + v % 10)
        v //= 10
    return n


cdef class LimitFront:
    """See `fastgw._pylimit.LimitFront`. PERF: the whole decision of one local limit in C (the key, the clock, the
    take, the fields' bytes), the fields written by `finish_head` into whatever head answers: the limit cost 24.2k
    instructions a request through the phases, 11.3k as a Python front that spliced the fields into the head."""

    cdef BucketTable table
    cdef object key_of
    cdef bytes f_remaining, f_reset, f_end
    cdef bint has_fields, always
    cdef tuple names
    cdef long long burst, rate, period_us
    cdef object refuse, after

    def __init__(self, BucketTable table, key_of, fields, tuple names, long long burst, long long rate,
                 long long period_us, refuse, after, bint always):
        self.table = table
        self.key_of = key_of
        self.has_fields = fields is not None
        if self.has_fields:
            self.f_remaining, self.f_reset, self.f_end = fields
        self.names = names
        self.burst = burst
        self.rate = rate
        self.period_us = period_us
        self.refuse = refuse
        self.after = after
        self.always = always

    def __call__(self, ex, str client_ip):
        cdef Request req = <Request?>ex.req
        cdef long long remaining, wait, reset, left
        cdef Py_ssize_t size, at, nr, nt
        cdef char* q
        route = ex.route
        key = client_ip if self.key_of is None else self.key_of(req, client_ip, route.info)
        if not self.table._take(key, _monotonic_us(), 1, &remaining, &wait):
            self.refuse(ex, client_ip, remaining, wait)
            return True
        if self.has_fields:
            # Whole seconds until the bucket is full again, rounded up (< 2**52 * 1e9: no overflow).
            left = (self.burst - remaining) * self.period_us
            reset = (left + self.rate * 1000000 - 1) // (self.rate * 1000000)
            nr, nt = _ndigits(remaining), _ndigits(reset)
            size = PyBytes_GET_SIZE(self.f_remaining) + PyBytes_GET_SIZE(self.f_reset) + PyBytes_GET_SIZE(self.f_end)
            lines = PyBytes_FromStringAndSize(NULL, size + nr + nt)
            q = PyBytes_AS_STRING(lines)
            at = PyBytes_GET_SIZE(self.f_remaining)
            memcpy(q, PyBytes_AS_STRING(self.f_remaining), at)
            at += _digits_at(q + at, remaining, nr)
            memcpy(q + at, PyBytes_AS_STRING(self.f_reset), PyBytes_GET_SIZE(self.f_reset))
            at += PyBytes_GET_SIZE(self.f_reset)
            at += _digits_at(q + at, reset, nt)
            memcpy(q + at, PyBytes_AS_STRING(self.f_end), PyBytes_GET_SIZE(self.f_end))
            req.reply_lines = lines
            req.reply_names = self.names
        # NOTE: `req.t0` is set (by dispatch) exactly when the worker observes its exchanges: one C field read where
        # `ex.leg.state.access_log` is three attribute lookups (~300 instructions).
        if self.after is not None and (self.always or req.t0 != 0.0):
            self.after(ex, client_ip, key)
        strip = route.chain.strip
        if strip:
            strip_headers(req, strip)
        if req.expect_continue:
            ex.integrate()
        else:
            route.start(ex)
        return True


def strip_headers(Request req, frozenset names):
    cdef list headers = req.headers
    cdef tuple item
    for item in headers:
        if item[0] in names:
            req.headers = [h for h in headers if (<tuple>h)[0] not in names]
            return


def add_consumer_headers(Request req, consumer, user_key, groups_key):
    if user_key:
        req.headers.append((user_key, consumer.name_b))
    if groups_key and consumer.groups_b:
        req.headers.append((groups_key, consumer.groups_b))


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
        out.append(s)
    return out


def finish_phases(Context ctx, Request req, frozenset strip, keys):
    if ctx._upstream is not None:
        (<UpstreamRequest>ctx._upstream).apply(req)
    elif ctx._upstream_sets is not None:
        req.headers = _with_sets(req.headers, ctx._upstream_sets)
    if strip:
        strip_headers(req, strip)
        if ctx._consumer is not None and keys is not None:
            add_consumer_headers(req, ctx._consumer, keys[0], keys[1])


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
    cdef Py_ssize_t i = start
    if ctx._switch is not None and i > 0:
        i = switch_chain(ctx, i)
    cdef PhaseChain chain = ctx.chain
    cdef tuple phases = chain.request
    cdef tuple phase
    while i < PyTuple_GET_SIZE(phases):
        phase = <tuple>phases[i]
        try:
            result = phase[0](ctx, phase[1])
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
        finish_phases(ctx, req, chain.strip, chain.consumer_keys)
    except Exception as exc:
        raise PluginFailed("(upstream request changes)") from exc
    return _ALL_WENT_ON


# ==================================================================================================================
# Observation: the metrics counters, the access log's buffer and its JSON lines, the one hook Exchange.done calls.
# The twin and specification is fastgw/_pyobserve.py (same API, same counters, same bytes:
# tests/property/test_observe_twins.py). Kept in this one section, apart from the rest of the core.
# PERF: callgrind, bench/instructions.py over --scenario loop (71.4k an exchange): the JSON log and the metrics cost
# +30.5k instructions an exchange in Python (log +23.1k, metrics +10.9k), +7.3k here (log +6.6k, metrics +4.1k);
# bench/README.md has the steps.
# ==================================================================================================================

from libc.stdlib cimport free, realloc
from libc.string cimport memcmp

import orjson as _orjson

from fastgw import _pyobserve as _spec_observe

__all__.extend(_spec_observe.__all__)

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object)
    void *PyUnicode_DATA(object)
    Py_ssize_t PyUnicode_GET_LENGTH(object)

cdef object _dumps = _orjson.dumps
cdef object _stamp_of = _spec_observe.stamp
cdef object _target_names = _spec_observe.target_names
cdef tuple _PUBLISHED = _spec_observe.PUBLISHED
cdef double _BOUNDS[11]
for _i, _bound in enumerate(_spec_observe.BUCKETS):
    _BOUNDS[_i] = _bound
cdef int _NBOUNDS = len(_spec_observe.BUCKETS)
assert _NBOUNDS == 11 and _spec_observe.WIDTH == 16 and _spec_observe.UWIDTH == 16  # (the C arrays' sizes)
cdef double _MAX_US = _spec_observe._MAX_US
cdef char *_HEX = b"0123456789abcdef"
cdef unsigned char _PLAIN[128]  # ASCII a JSON string carries as it is
for _i in range(128):
    _PLAIN[_i] = _i >= 0x20 and _i != 0x22 and _i != 0x5c


cdef inline double _now() noexcept:
    # NOTE: CLOCK_MONOTONIC as a double of seconds, as CPython's perf_counter computes it on Linux (nanoseconds,
    # then divided by 1e9), so the readings compare with the t0 and upstream_at the Python side takes.
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <double>(<long long>ts.tv_sec * 1000000000 + ts.tv_nsec) / 1e9


def clock():
    return _now()


cdef inline int _bucket(double dt) noexcept:
    # bisect_left(BUCKETS, dt): the bounds below dt (NaN: none, as bisect's comparisons say)
    cdef int i = 0
    while i < 11 and _BOUNDS[i] < dt:
        i += 1
    return i


cdef inline long long _micros(double seconds) noexcept:
    cdef double us = seconds * 1000000.0
    if not us > 0:
        return 0
    return <long long>us if us < _MAX_US else <long long>_MAX_US


cdef extern from "Python.h":
    ctypedef struct PyMemberDef:
        int type
        Py_ssize_t offset
    ctypedef struct PyMemberDescrObject:
        PyMemberDef *d_member
    ctypedef struct PyObject

cdef extern from "structmember.h":
    int T_OBJECT_EX

from types import MemberDescriptorType as _MemberDescriptor


cdef class _Slots:
    """Reads named `__slots__` fields of one class's instances at their offsets, other objects with getattr.

    PERF: an exchange's fields (and its peer's address) are read ~15 times an exchange by Tally and LogLines;
    through getattr each costs ~100 instructions (type lookup, descriptor, PyMember_GetOne), at the offset ~5.
    NOTE: exact: only for instances of exactly the class resolved, and only for fields that are plain object slots
    on it (a member descriptor of T_OBJECT_EX, which an instance dict cannot shadow); an unset slot, any other
    class or field goes through getattr (which raises AttributeError as ever)."""

    cdef object cls
    cdef tuple names
    cdef Py_ssize_t offsets[8]

    def __cinit__(self, tuple names):
        assert len(names) <= 8
        self.names = names

    cdef int resolve(self, object cls) except -1:
        cdef Py_ssize_t i
        for i in range(len(self.names)):
            d = getattr(cls, self.names[i], None)
            if (type(d) is _MemberDescriptor and issubclass(cls, d.__objclass__)
                    and (<PyMemberDescrObject *>d).d_member.type == T_OBJECT_EX):
                self.offsets[i] = (<PyMemberDescrObject *>d).d_member.offset
            else:
                self.offsets[i] = -1
        self.cls = cls
        return 0

    cdef inline object get(self, object obj, int i):
        cdef PyObject *p
        if type(obj) is not self.cls:
            self.resolve(type(obj))
        if self.offsets[i] >= 0:
            p = (<PyObject **>(<char *><void *>obj + self.offsets[i]))[0]
            if p != NULL:
                return <object>p
        return getattr(obj, self.names[i])


cdef enum:
    _REQ, _ROUTE, _GW, _PEER, _SENT, _UPSTREAM, _UPSTREAM_S, _CTX

cdef _Slots _EX = _Slots(("req", "route", "gw", "peer", "sent", "upstream", "upstream_s", "ctx"))
cdef _Slots _PEER_IP = _Slots(("ip",))


cdef class _Series:
    """One (route, method, status) series of a Tally."""

    def __cinit__(self, method, int status):
        self.method = method
        self.status = status

    cdef list row(self):
        cdef list out = [self.count, self.bytes_in, self.bytes_out, self.total]
        cdef int i
        for i in range(12):
            out.append(self.buckets[i])
        return out


cdef class _Answered:
    """The latency series of what answered (a target, or a function)."""

    def __cinit__(self, upstream, target):
        self.upstream = upstream
        self.target = target

    cdef list row(self):
        cdef list out = [self.upstream, self.target, self.count, self.total]
        cdef int i
        for i in range(12):
            out.append(self.buckets[i])
        return out


cdef class Tally:
    """One worker's per-exchange counters. See `fastgw._pyobserve.Tally`."""

    def __cinit__(self):
        self._routes = {}  # route name ("" for a miss) -> [_Series], one per method and status seen
        self._upstreams = {}
        self.cache = {}
        self.limits = {}

    def add(self, ex, double now):
        self._add(ex, now)

    cdef int _add(self, object ex, double now) except -1:
        # PERF: a dict lookup by the route's name (its hash is cached) and a scan of that route's few series
        # rather than a (name, method, status) tuple made and hashed per exchange; C integers, no float objects.
        cdef Request req = <Request?>_EX.get(ex, _REQ)
        cdef _Series s = None
        cdef _Answered u
        cdef list found
        cdef double dt
        cdef int status = req.status
        route = _EX.get(ex, _ROUTE)
        name = route.name if route is not None else ""
        method = req.method
        found = self._routes.get(name)
        if found is None:
            found = self._routes[name] = []
        for item in found:
            if (<_Series>item).status == status and ((<_Series>item).method is method or (<_Series>item).method == method):
                s = <_Series>item
                break
        if s is None:
            s = _Series(method, status)
            found.append(s)
        dt = now - req.t0
        s.count += 1
        s.bytes_in += req.body_size
        s.bytes_out += <long long>_EX.get(ex, _SENT)
        s.total += dt
        s.buckets[_bucket(dt)] += 1
        up = _EX.get(ex, _UPSTREAM)
        if up is not None:
            got = self._upstreams.get(up)
            if got is None:
                names = _target_names(ex, up)
                got = self._upstreams[up] = _Answered(names[0], names[1])
            u = <_Answered>got
            dt = _EX.get(ex, _UPSTREAM_S)
            u.count += 1
            u.total += dt
            u.buckets[_bucket(dt)] += 1
        ctx = _EX.get(ex, _CTX)
        if ctx is not None:
            v = ctx.vars
            if v:
                cache = v.get("cache_status")
                if cache is not None:
                    k = (name, str(cache))
                    self.cache[k] = self.cache.get(k, 0) + 1
                limit = v.get("rate_limit")
                if limit is not None:
                    k = (name, str(limit))
                    self.limits[k] = self.limits.get(k, 0) + 1
        return 0

    def series(self):
        cdef dict out = {}
        for name, found in self._routes.items():
            for item in found:
                out[(name, (<_Series>item).method, (<_Series>item).status)] = (<_Series>item).row()
        return out

    def upstreams(self):
        return {up: (<_Answered>u).row() for up, u in self._upstreams.items()}


# _Buf (_core.pxd): the growing buffer a flush writes its lines into (one bytes object at the end).


cdef int _grow(_Buf *b, Py_ssize_t more) except -1:
    cdef Py_ssize_t cap = b.cap * 2
    cdef char *p
    if b.size + more <= b.cap:
        return 0
    if cap < b.size + more:
        cap = b.size + more
    if cap < 16384:
        cap = 16384
    p = <char *>realloc(b.data, cap)
    if p == NULL:
        raise MemoryError()
    b.data = p
    b.cap = cap
    return 0


# PERF: every checked write leaves _SLACK bytes free behind it, so that the field names and numbers between two of
# them (under 200 bytes) are copied by _lit unchecked: inlined, a constant-size copy is a move or two (callgrind:
# ~540 instructions a line less than a checked memcpy each).
cdef enum:
    _SLACK = 512


cdef inline int _put(_Buf *b, const char *s, Py_ssize_t n) except -1:
    if b.size + n + _SLACK > b.cap:
        _grow(b, n + _SLACK)
    memcpy(b.data + b.size, s, n)
    b.size += n
    return 0


cdef extern from *:
    """
    /* fastgw._core: an unchecked copy into the flush buffer, a macro so that the C compiler sees each constant size
       (and copies a field name in a move or two) wherever it is used. */
    #define __fastgw_lit(b, s, n) (memcpy((b)->data + (b)->size, (s), (n)), (void)((b)->size += (n)))
    """
    # NOTE: unchecked: only right after a checked write (or the reserve json() starts with), under _SLACK in all.
    void _lit "__fastgw_lit"(_Buf *b, const char *s, Py_ssize_t n) noexcept


cdef inline int _put_bytes(_Buf *b, bytes s) except -1:
    return _put(b, PyBytes_AS_STRING(s), PyBytes_GET_SIZE(s))


cdef void _put_int(_Buf *b, long long v) noexcept:
    # (unchecked, as _lit: at most 20 bytes)
    cdef char digits[24]
    cdef int i = 24
    cdef bint negative = v < 0
    cdef unsigned long long u = <unsigned long long>(-v) if negative else <unsigned long long>v
    while True:
        i -= 1
        digits[i] = <char>(48 + u % 10)
        u //= 10
        if u == 0:
            break
    if negative:
        i -= 1
        digits[i] = b'-'
    _lit(b, digits + i, 24 - i)


cdef void _put_ms(_Buf *b, long long us) noexcept:
    # "%d.%03d" % divmod(us, 1000), us >= 0
    cdef char frac[4]
    cdef long long r = us % 1000
    _put_int(b, us // 1000)
    frac[0] = b'.'
    frac[1] = <char>(48 + r // 100)
    frac[2] = <char>(48 + (r // 10) % 10)
    frac[3] = <char>(48 + r % 10)
    _lit(b, frac, 4)


cdef int _put_ascii(_Buf *b, const unsigned char *s, Py_ssize_t n) except -1:
    # A JSON string of ASCII text, escaped as orjson escapes it: `"` and `\`, the short forms of \b \t \n \f \r,
    # \u00XX (lower-case hex) for the other control characters; DEL and `/` as they are.
    cdef Py_ssize_t i
    cdef unsigned char c
    cdef char *out
    if b.size + n * 6 + 2 + _SLACK > b.cap:
        _grow(b, n * 6 + 2 + _SLACK)
    out = b.data + b.size
    out[0] = b'"'
    out += 1
    for i in range(n):
        c = s[i]
        if _PLAIN[c & 127]:  # (callers pass ASCII only)
            out[0] = <char>c
            out += 1
        elif c == 0x22 or c == 0x5c:
            out[0] = b'\\'
            out[1] = <char>c
            out += 2
        elif c == 0x08 or c == 0x09 or c == 0x0a or c == 0x0c or c == 0x0d:
            out[0] = b'\\'
            out[1] = b'b' if c == 0x08 else (b't' if c == 0x09 else (b'n' if c == 0x0a else (b'f' if c == 0x0c else b'r')))
            out += 2
        else:
            memcpy(out, b"\\u00", 4)
            out[4] = _HEX[c >> 4]
            out[5] = _HEX[c & 15]
            out += 6
    out[0] = b'"'
    out += 1
    b.size = out - b.data
    return 0


cdef int _put_json(_Buf *b, object v) except -1:
    """A value as JSON: ASCII text escaped here, null, anything else (other text, numbers) through orjson."""
    if v is None:
        return _put(b, b"null", 4)
    if type(v) is str and PyUnicode_IS_ASCII(v):
        return _put_ascii(b, <const unsigned char *>PyUnicode_DATA(v), PyUnicode_GET_LENGTH(v))
    return _put_bytes(b, <bytes>_dumps(v))


cdef int _put_agent(_Buf *b, bytes ua) except -1:
    """A header value as the log reads it (Latin-1): as it is when ASCII, else through orjson."""
    cdef const unsigned char *s = <const unsigned char *>PyBytes_AS_STRING(ua)
    cdef Py_ssize_t i, n = PyBytes_GET_SIZE(ua)
    for i in range(n):
        if s[i] >= 0x80:
            return _put_bytes(b, <bytes>_dumps(ua.decode("latin-1")))
    return _put_ascii(b, s, n)


cdef inline bint _is(bytes name, const char *what, Py_ssize_t n) noexcept:
    return PyBytes_GET_SIZE(name) == n and memcmp(PyBytes_AS_STRING(name), what, n) == 0


cdef class LogLines:
    """The access log's buffer and its JSON lines. See `fastgw._pyobserve.LogLines`."""

    def __cinit__(self, fragment, label, trace_id, Py_ssize_t size=64):
        self.size = size
        self._fragment = fragment
        self._label = label
        self._trace_id = trace_id
        self._ex = []
        self._now = NULL
        self._cap = 0
        self._second = -1
        self._stamp = b""
        self._fragments = {}
        self._labels = {}

    def __dealloc__(self):
        free(self._now)

    cdef int _add(self, object ex, double now) except -1:
        # True (1) when the buffer is full. PERF: the reading kept as a C double beside the list: no float object
        # and no (ex, now) tuple per exchange.
        cdef Py_ssize_t n = PyList_GET_SIZE(self._ex)
        cdef Py_ssize_t cap
        cdef double *p
        if n >= self._cap:
            cap = self._cap * 2 if self._cap else 64
            p = <double *>realloc(self._now, cap * sizeof(double))
            if p == NULL:
                raise MemoryError()
            self._now = p
            self._cap = cap
        self._ex.append(ex)
        self._now[n] = now
        return n + 1 >= self.size

    def add(self, ex, double now):
        return self._add(ex, now) == 1

    def __len__(self):
        return PyList_GET_SIZE(self._ex)

    def take(self):
        cdef Py_ssize_t i
        cdef list raw = self._ex
        cdef list out = [(raw[i], self._now[i]) for i in range(PyList_GET_SIZE(raw))]
        self._ex = []
        return out

    def json(self, double offset):
        cdef _Buf b
        b.data = NULL
        b.size = b.cap = 0
        try:
            _grow(&b, _SLACK)
            self._lines(&b, offset)
            data = PyBytes_FromStringAndSize(b.data, b.size)
        finally:
            free(b.data)
        self._ex = []
        return data

    cdef int _lines(self, _Buf *b, double offset) except -1:
        # PERF: the fields read straight from the exchange and its typed Request, ASCII text escaped by the loop
        # of _put_ascii into one buffer; orjson only for other text and the plugins' values.
        cdef list raw = self._ex
        cdef Py_ssize_t i, n = PyList_GET_SIZE(raw)
        cdef long long wall, second = self._second
        cdef double now, t0
        cdef Request req
        cdef bytes stamp_b = self._stamp
        cdef bytes name
        cdef tuple item
        for i in range(n):
            ex = raw[i]
            now = self._now[i]
            req = <Request?>_EX.get(ex, _REQ)
            wall = <long long>(now + offset)
            if wall != second:
                second = wall
                stamp_b = _stamp_of(wall)
            ua = tp = None
            for item in req.headers:
                name = <bytes>item[0]
                if _is(name, b"user-agent", 10):
                    ua = item[1]
                elif _is(name, b"traceparent", 11):
                    tp = item[1]
            _lit(b, b'{"time":', 8)
            _put_bytes(b, stamp_b)
            _lit(b, b',"client":', 10)
            _put_json(b, _PEER_IP.get(_EX.get(ex, _PEER), 0))
            _lit(b, b',"method":', 10)
            _put_json(b, req.method)
            _lit(b, b',"host":', 8)
            _put_json(b, req.host)
            _lit(b, b',"path":', 8)
            _put_json(b, req.path or req.url.decode("latin-1")[:256])
            _lit(b, b",", 1)
            route = _EX.get(ex, _ROUTE)
            if route is None:
                _lit(b, b'"route":null', 12)
            else:
                gw = _EX.get(ex, _GW)
                if gw is not self._gw:
                    self._gw = gw
                    self._fragments = {}
                    self._labels = {}
                where = self._fragments.get(route)
                if where is None:
                    where = self._fragments[route] = self._fragment(gw, route)
                _put_bytes(b, <bytes?>where)
            _lit(b, b',"status":', 10)
            _put_int(b, req.status)
            _lit(b, b',"request_bytes":', 17)
            _put_int(b, req.body_size)
            _lit(b, b',"response_bytes":', 18)
            _put_int(b, <long long>_EX.get(ex, _SENT))
            _lit(b, b',"duration_ms":', 15)
            t0 = req.t0
            _put_ms(b, _micros(now - t0) if t0 else 0)
            _lit(b, b',"user_agent":', 14)
            if ua is None:
                _lit(b, b"null", 4)
            else:
                _put_agent(b, <bytes?>ua)
            up = _EX.get(ex, _UPSTREAM)
            if up is not None:
                label = self._labels.get(up)
                if label is None:
                    label = self._labels[up] = self._label(up)
                _lit(b, b',"upstream":', 12)
                _put_bytes(b, <bytes?>label)
                _lit(b, b',"upstream_ms":', 15)
                _put_ms(b, _micros(_EX.get(ex, _UPSTREAM_S)))
            ctx = _EX.get(ex, _CTX)
            trace_id = None
            if ctx is not None:
                v = ctx.vars
                if v:
                    for key in _PUBLISHED:
                        found = v.get(key)
                        if found is not None:
                            _lit(b, b',"', 2)
                            _put_bytes(b, (<str>key).encode())
                            _lit(b, b'":', 2)
                            _put_bytes(b, <bytes>_dumps(found, default=str))
                    trace_id = v.get("trace_id")
                consumer = ctx.consumer
                if consumer is not None:
                    _lit(b, b',"consumer":', 12)
                    _put_bytes(b, <bytes>_dumps(consumer.name))
            if trace_id is None and tp is not None:
                trace_id = self._trace_id(tp)
            if trace_id is not None:
                _lit(b, b',"trace_id":"', 13)
                _put_bytes(b, (<str?>trace_id).encode())
                _lit(b, b'"}\n', 3)
            else:
                _lit(b, b"}\n", 2)
        self._second = second
        self._stamp = stamp_b
        return 0


cdef class Observer:
    """The one hook Exchange.done calls. See `fastgw._pyobserve.Observer`."""

    def __init__(self, Tally tally, log=None, tuple hooks=()):
        self.tally = tally
        self.log = log
        self._lines = <LogLines?>log.lines if log is not None else None
        self.hooks = hooks

    def __call__(self, ex):
        cdef double now = _now()
        if self.tally is not None:
            self.tally._add(ex, now)
        if self._lines is not None and self._lines._add(ex, now):
            self.log.flush()
        if self.hooks:
            reading = now
            for hook in self.hooks:
                hook(ex, reading)

    def flush(self):
        if self.log is not None:
            self.log.flush()
