# Observation, compiled (part of `fastgw._core`, included by `fastgw/_core.pyx`; declarations: observe.pxd): the
# metrics counters, the access log's buffer and its JSON lines, the one hook Exchange.done calls.
#
# Its pure twin `fastgw/core/observe.py` is the specification: same API, same counters, same bytes
# (tests/property/test_observe_twins.py).
#
# PERF: callgrind, bench/instructions.py over --scenario loop (71.4k an exchange): the JSON log and the metrics cost
# +30.5k instructions an exchange in Python (log +23.1k, metrics +10.9k), +7.3k here (log +6.6k, metrics +4.1k);
# bench/README.md has the steps.

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.list cimport PyList_GET_SIZE
from cpython.tuple cimport PyTuple_GET_SIZE
from libc.stdlib cimport free, realloc
from libc.string cimport memcmp, memcpy
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

from types import MemberDescriptorType as _MemberDescriptor

import orjson as _orjson

from fastgw.core import observe as _spec_observe

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object)
    void *PyUnicode_DATA(object)
    Py_ssize_t PyUnicode_GET_LENGTH(object)

cdef object _dumps = _orjson.dumps
cdef object _stamp_of = _spec_observe.stamp
cdef object _target_names = _spec_observe.target_names
cdef object _check_exchange = _spec_observe.check_exchange
cdef tuple _PUBLISHED = _spec_observe.PUBLISHED
cdef tuple _PUBLISHED_KEYS = tuple([b',"%s":' % (<str>k).encode() for k in _PUBLISHED])  # as the line writes them
cdef double _BOUNDS[16]
for _i, _bound in enumerate(_spec_observe.BUCKETS):
    _BOUNDS[_i] = _bound
cdef int _NBOUNDS = len(_spec_observe.BUCKETS)
assert _NBOUNDS == 16 and _spec_observe.WIDTH == 21 and _spec_observe.UWIDTH == 21  # (the C arrays' sizes)
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
    while i < 16 and _BOUNDS[i] < dt:
        i += 1
    return i


cdef inline long long _micros(double seconds) noexcept:
    cdef double us = seconds * 1000000.0
    if not us > 0:
        return 0
    return <long long>us if us < _MAX_US else <long long>_MAX_US


cdef extern from "Python.h":
    ctypedef struct PyMemberDescrObject:
        PyMemberDef *d_member
    ctypedef struct PyObject


cdef class _Slots:
    """Reads named `__slots__` fields of one class's instances at their offsets, other objects with getattr.

    PERF: the peer's address is read once an exchange by LogLines; through getattr it costs ~100 instructions (type
    lookup, descriptor, PyMember_GetOne), at the offset ~5. (The exchange's own fields are C fields of the declared
    `ExchangeState`, core/http.pxd: read typed, no names.)
    NOTE: exact: only for instances of exactly the class resolved, and only for fields that are plain object slots
    on it (a member descriptor of T_OBJECT_EX, which an instance dict cannot shadow); an unset slot, any other
    class or field goes through getattr (which raises AttributeError as ever)."""

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


cdef _Slots _PEER_IP = _Slots(("ip",))


cdef class _Series:
    """One (route, method, status) series of a Tally."""

    def __cinit__(self, method, int status):
        self.method = method
        self.status = status

    cdef list row(self):
        cdef list out = [self.count, self.bytes_in, self.bytes_out, self.total]
        cdef int i
        for i in range(17):
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
        for i in range(17):
            out.append(self.buckets[i])
        return out


cdef class Tally:
    """One worker's per-exchange counters. See `fastgw.core.observe.Tally`."""

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
        cdef ExchangeState x = <ExchangeState?>ex
        cdef Request req = <Request?>x.req
        cdef _Series s = None
        cdef _Answered u
        cdef list found
        cdef double dt
        cdef int status = x.status
        route = x.route
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
        dt = now - <double>x.t0
        s.count += 1
        s.bytes_in += req.body_size
        s.bytes_out += <long long>x.sent
        s.total += dt
        s.buckets[_bucket(dt)] += 1
        up = x.upstream
        if up is not None:
            got = self._upstreams.get(up)
            if got is None:
                names = _target_names(ex, up)
                got = self._upstreams[up] = _Answered(names[0], names[1])
            u = <_Answered>got
            dt = <double>x.upstream_s
            u.count += 1
            u.total += dt
            u.buckets[_bucket(dt)] += 1
        ctx = x.ctx
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


# _Buf (observe.pxd): the growing buffer a flush writes its lines into (one bytes object at the end).


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
    """The access log's buffer and its JSON lines. See `fastgw.core.observe.LogLines`."""

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
        cdef Py_ssize_t i, k, n = PyList_GET_SIZE(raw)
        cdef long long wall, second = self._second
        cdef double now, t0
        cdef Request req
        cdef ExchangeState x
        cdef bytes stamp_b = self._stamp
        cdef bytes name
        cdef tuple item
        cdef dict v
        for i in range(n):
            ex = raw[i]
            now = self._now[i]
            x = <ExchangeState?>ex
            req = <Request?>x.req
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
            _put_json(b, _PEER_IP.get(x.peer, 0))
            _lit(b, b',"method":', 10)
            _put_json(b, req.method)
            _lit(b, b',"host":', 8)
            _put_agent(b, req.host_raw)  # the Host header as sent, port included (Latin-1, as the spec reads it)
            _lit(b, b',"path":', 8)
            _put_json(b, req.path or req.url.decode("latin-1")[:256])
            _lit(b, b",", 1)
            route = x.route
            if route is None:
                _lit(b, b'"route":null', 12)
            else:
                gw = x.gw
                if gw is not self._gw:
                    self._gw = gw
                    self._fragments = {}
                    self._labels = {}
                where = self._fragments.get(route)
                if where is None:
                    where = self._fragments[route] = self._fragment(gw, route)
                _put_bytes(b, <bytes?>where)
            _lit(b, b',"status":', 10)
            _put_int(b, x.status)
            _lit(b, b',"request_bytes":', 17)
            _put_int(b, req.body_size)
            _lit(b, b',"response_bytes":', 18)
            _put_int(b, <long long>x.sent)
            _lit(b, b',"duration_ms":', 15)
            t0 = <double>x.t0
            _put_ms(b, _micros(now - t0) if t0 else 0)
            _lit(b, b',"user_agent":', 14)
            if ua is None:
                _lit(b, b"null", 4)
            else:
                _put_agent(b, <bytes?>ua)
            up = x.upstream
            if up is not None:
                label = self._labels.get(up)
                if label is None:
                    label = self._labels[up] = self._label(up)
                _lit(b, b',"upstream":', 12)
                _put_bytes(b, <bytes?>label)
                _lit(b, b',"upstream_ms":', 15)
                _put_ms(b, _micros(<double>x.upstream_s))
            ctx = x.ctx
            trace_id = None
            if ctx is not None:
                # PERF: the compiled context's fields read in C, ASCII text written here rather than through
                # orjson (a Python-level call each): ~1,500 instructions a request with a request id and a consumer.
                # PERF: vars typed as a dict, so its four lookups are C calls, not `.get` found and called: the
                # lines of --scenario chain (a request id and a consumer) 5.5k -> 4.6k instructions each.
                if type(ctx) is Context:
                    v = (<Context>ctx).vars
                    consumer = (<Context>ctx)._consumer
                else:
                    other = ctx.vars
                    v = other if type(other) is dict or other is None else dict(other)
                    consumer = ctx.consumer
                if v:
                    for k in range(PyTuple_GET_SIZE(_PUBLISHED_KEYS)):
                        found = v.get(_PUBLISHED[k])
                        if found is not None:
                            _put_bytes(b, <bytes>_PUBLISHED_KEYS[k])
                            if type(found) is str and PyUnicode_IS_ASCII(found):
                                _put_json(b, found)
                            else:
                                _put_bytes(b, <bytes>_dumps(found, default=str))
                    trace_id = v.get("trace_id")
                if consumer is not None:
                    _lit(b, b',"consumer":', 12)
                    _put_json(b, consumer.name)
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
    """The one hook Exchange.done calls. See `fastgw.core.observe.Observer`."""

    def __init__(self, Tally tally, log=None, tuple hooks=(), exchange=ExchangeState):
        # The exchange class it will see declares the fields read here (typed: any other raises TypeError).
        _check_exchange(exchange, ExchangeState)
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
