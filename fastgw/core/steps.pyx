# Compiled steps of the built-in plugins (part of `fastgw._core`, included by `fastgw/_core.pyx`; declarations:
# steps.pxd): what the phase loop runs in place of a plugin's Python phase, without a Python frame.
#
# Its pure twin `fastgw/core/steps.py` is the specification (tests/property/test_steps_twins.py holds both to it,
# and to the plugins' own phases).

import os as _os
import uuid as _uuid

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.list cimport PyList_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeLatin1
from libc.string cimport memchr, memcpy

cdef bytes _rid_prefix = (str(_uuid.uuid4()) + "#").encode()
cdef unsigned long long _rid_count = 0


def _rid_reseed():
    global _rid_prefix, _rid_count
    _rid_prefix = (str(_uuid.uuid4()) + "#").encode()
    _rid_count = 0


_os.register_at_fork(after_in_child=_rid_reseed)


cdef bytes _next_id_b():
    """The next id, as bytes. PERF: the digits written after the prefix in one allocation, where str(count) and a
    concatenation, then encoding for the headers, cost three (~300 instructions a request)."""
    global _rid_count
    cdef char digits[24]
    cdef int n = 0, i
    cdef unsigned long long v
    _rid_count += 1
    v = _rid_count
    while True:
        digits[n] = <char>(48 + v % 10)
        n += 1
        v //= 10
        if v == 0:
            break
    cdef Py_ssize_t size = PyBytes_GET_SIZE(_rid_prefix)
    out = PyBytes_FromStringAndSize(NULL, size + n)
    cdef char* q = PyBytes_AS_STRING(out)
    memcpy(q, PyBytes_AS_STRING(_rid_prefix), size)
    for i in range(n):
        q[size + i] = digits[n - 1 - i]
    return <bytes>out


cdef inline str _next_id():
    cdef bytes b = _next_id_b()
    return PyUnicode_DecodeLatin1(PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b), NULL)


def next_request_id():
    return _next_id()


cdef class Step:
    """One phase of one plugin configuration, as the phase loop runs it. See `fastgw.core.steps.Step`."""

    def __call__(self, Context ctx, conf):
        return self.run(ctx)

    cdef object run(self, Context ctx):
        raise NotImplementedError


cdef inline void _upstream_set(Context ctx, bytes key, object value) except *:
    """See `fastgw.core.steps.upstream_set`."""
    _upstream_put(ctx, (key, value))


cdef void _upstream_put(Context ctx, tuple item) except *:
    """`_upstream_set` of a (key, value) pair made once. PERF: a step's fixed header, or one value passed both
    upstream and to the client, costs no tuple per request (--scenario chain: 94,184 -> 93,798 instructions an
    exchange, request-id's and request-transformer's steps)."""
    cdef UpstreamRequest up = <UpstreamRequest?>ctx._upstream if ctx._upstream is not None else None
    cdef list items
    cdef tuple it
    cdef bytes key = <bytes>item[0]
    if up is not None and up._headers is not None:
        items = [it for it in up._headers._items if <bytes>it[0] != key]
        if item[1] is not None:
            items.append(item)
        up._headers._items = items
        return
    if up is not None:
        if up._sets is None:
            up._sets = []
        up._sets.append(item)
        return
    if ctx._upstream_sets is None:
        ctx._upstream_sets = []
    ctx._upstream_sets.append(item)


cdef bint _upstream_has(Context ctx, bytes key) except -1:
    """See `fastgw.core.steps.upstream_has`."""
    cdef UpstreamRequest up = <UpstreamRequest?>ctx._upstream if ctx._upstream is not None else None
    cdef list sets
    cdef tuple it
    cdef Py_ssize_t i
    if up is not None and up._headers is not None:
        for it in up._headers._items:
            if <bytes>it[0] == key:
                return True
        return False
    sets = up._sets if up is not None else ctx._upstream_sets
    if sets:
        for i in range(PyList_GET_SIZE(sets) - 1, -1, -1):
            it = <tuple>sets[i]
            if <bytes>it[0] == key:
                return it[1] is not None
    for it in ctx._req.headers:
        if <bytes>it[0] == key:
            return True
    return False


cdef inline object _first(list raw, bytes key, Py_ssize_t* count):
    """The first value of the fields named `key` in `raw` (None: there is none); how many there are into `count`."""
    cdef tuple it
    first = None
    count[0] = 0
    for it in raw:
        if <bytes>it[0] == key:
            if count[0] == 0:
                first = it[1]
            count[0] += 1
    return first


cdef inline bint _has(list raw, bytes key):
    cdef tuple it
    for it in raw:
        if <bytes>it[0] == key:
            return True
    return False


def upstream_set(Context ctx, bytes key, value):
    _upstream_set(ctx, key, value)


def upstream_has(Context ctx, bytes key):
    return _upstream_has(ctx, key)


cdef inline void _authenticated(Context ctx, consumer, credential) except *:
    ctx._consumer = consumer
    if ctx.chain.per_consumer:
        ctx._switch = ctx.chain.for_consumer(consumer)
    ctx.credential = credential


cdef class KeyAuthStep(Step):
    """See `fastgw.core.steps.KeyAuthStep`. PERF: the key found in C, without parsing the query, and decoded
    straight from it (no slice, no tuple); the plugin's dict of keys met held here (no attribute lookup per
    request): 2,341 -> 1,247 instructions a run (callgrind, bench/instructions.py --scenario chain)."""

    def __init__(self, plugin, conf, fallback, header, frozenset wire, tuple query, bint in_query):
        self.plugin = plugin
        self.seen = plugin.seen
        self.conf = conf
        self.fallback = fallback
        self.header = (<str>header).encode("latin-1") if header is not None else None
        self.header_name = header
        self.alias = self.header.replace(b"-", b"_") if self.header is not None and b"-" in self.header else None
        self.wire = wire
        self.query = tuple(
            [((<str>n).encode("latin-1"), n) for n in query if (<str>n).isascii() or max(map(ord, n)) < 256]
        )
        self.in_query = in_query

    cdef object run(self, Context ctx):
        cdef list raw = ctx._raw
        cdef bytes value = None, q, n
        cdef tuple it
        cdef Py_ssize_t count = 0
        cdef const char* p
        cdef Py_ssize_t size, start, end, eq, at = 0, stop = 0
        cdef object credential = None
        if self.header is not None:
            value = _first(raw, self.header, &count)
            if count == 1 and (self.alias is None or not _has(raw, self.alias)):
                q = ctx._raw_query
                if not (self.in_query and q):
                    consumer = self.seen.get(_text(value))
                    if consumer is not None:
                        _authenticated(ctx, consumer, self.header_name)
                        return None
            return self.fallback(ctx, self.conf)
        q = ctx._raw_query
        if not q:
            return self.fallback(ctx, self.conf)
        p = PyBytes_AS_STRING(q)
        size = PyBytes_GET_SIZE(q)
        if memchr(p, 37, size) != NULL or memchr(p, 43, size) != NULL or memchr(p, 59, size) != NULL:  # % + ;
            return self.fallback(ctx, self.conf)
        if self.wire:
            for it in raw:
                if it[0] in self.wire:
                    return self.fallback(ctx, self.conf)
        # PERF: the fields scanned in place; only the value of the one field named as a key is decoded.
        start = 0
        while start <= size:
            end = start
            while end < size and p[end] != 38:  # &
                end += 1
            eq = start
            while eq < end and p[eq] != 61:  # =
                eq += 1
            for it in self.query:
                n = <bytes>it[0]
                if PyBytes_GET_SIZE(n) == eq - start and (eq == start or _same(p + start, n)):
                    if eq < end:
                        at, stop = eq + 1, end
                    else:
                        at = stop = 0
                    credential = it[1]
                    count += 1
                    break
            start = end + 1
        if count != 1 or at == stop:
            return self.fallback(ctx, self.conf)
        consumer = self.seen.get(PyUnicode_DecodeLatin1(p + at, stop - at, NULL))
        if consumer is None:
            return self.fallback(ctx, self.conf)
        _authenticated(ctx, consumer, credential)
        return None


cdef inline bint _same(const char* p, bytes n) noexcept:
    cdef const char* k = PyBytes_AS_STRING(n)
    cdef Py_ssize_t i
    for i in range(PyBytes_GET_SIZE(n)):
        if p[i] != k[i]:
            return False
    return True


cdef inline bint _safe_id(bytes value) noexcept:
    """`[A-Za-z0-9._:/+=#-]{1,200}`, whole."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(value), i
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(value)
    cdef unsigned char c
    if n < 1 or n > 200:
        return False
    for i in range(n):
        c = p[i]
        if not (48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c == 46 or c == 95 or c == 58 or c == 47
                or c == 43 or c == 61 or c == 35 or c == 45):
            return False
    return True


cdef class RequestIdStep(Step):
    """See `fastgw.core.steps.RequestIdStep`."""

    def __init__(self, str name, bint keep, bint echo):
        self.key = name.lower().encode("latin-1")
        self.keep = keep
        self.echo = echo

    cdef object run(self, Context ctx):
        cdef bytes value = None
        cdef str rid
        cdef Py_ssize_t n
        if self.keep:
            value = _first(ctx._raw, self.key, &n)
        if value is None or not _safe_id(value):
            value = _next_id_b()
        rid = PyUnicode_DecodeLatin1(PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value), NULL)
        ctx.vars["request_id"] = rid
        item = (self.key, value)  # one tuple for both ways
        _upstream_put(ctx, item)
        if self.echo:
            if ctx._reply_headers is None:
                ctx._reply_headers = []
            ctx._reply_headers.append(item)
        return None


cdef class HeaderStep(Step):
    """See `fastgw.core.steps.HeaderStep`."""

    def __init__(self, tuple ops):
        # (kind, key, (key, value)): the pair put in the upstream request as it is, made once.
        self.ops = tuple([(op[0], op[1], (op[1], None if op[0] == 0 else op[2])) for op in ops])

    cdef object run(self, Context ctx):
        cdef tuple op
        cdef int kind
        for op in self.ops:
            kind = op[0]
            if kind == 1 or kind == 0 or not _upstream_has(ctx, <bytes>op[1]):
                _upstream_put(ctx, <tuple>op[2])
        return None


cdef class AclStep(Step):
    """See `fastgw.core.steps.AclStep`."""

    def __init__(self, frozenset allow, frozenset deny, unauthorized, forbidden):
        self.allow = allow
        self.deny = deny
        self.unauthorized = unauthorized
        self.forbidden = forbidden

    cdef object run(self, Context ctx):
        consumer = ctx._consumer
        if consumer is None:
            return self.unauthorized
        groups = consumer.groups
        for g in groups:
            if g in self.deny:
                return self.forbidden
        if self.allow:
            for g in groups:
                if g in self.allow:
                    return None
            return self.forbidden
        return None


cdef long long _ipv4(str text):
    """See `fastgw.core.steps.parse_ipv4`."""
    cdef long long out = 0, v = 0
    cdef int parts = 0, digits = 0
    cdef Py_UCS4 c, first = 0
    for c in text:
        if c == 46:  # .
            if digits == 0 or parts == 3:
                return -1
            out = out << 8 | v
            parts += 1
            v = digits = 0
        elif 48 <= c <= 57:
            if digits == 0:
                first = c
            elif first == 48 or digits == 3:
                return -1
            v = v * 10 + (<long long>c - 48)
            digits += 1
            if v > 255:
                return -1
        else:
            return -1
    if digits == 0 or parts != 3:
        return -1
    return out << 8 | v


def parse_ipv4(str text):
    return _ipv4(text)


cdef class IpStep(Step):
    """See `fastgw.core.steps.IpStep`."""

    def __init__(self, tuple allow, tuple deny, bint any_allow, refusal, conf, fallback):
        self.allow = allow
        self.deny = deny
        self.any_allow = any_allow
        self.refusal = refusal
        self.conf = conf
        self.fallback = fallback

    cdef object run(self, Context ctx):
        cdef long long addr = _ipv4(ctx._client_ip)
        cdef tuple net
        if addr < 0:
            return self.fallback(ctx, self.conf)
        for net in self.deny:
            if addr & <long long>net[1] == <long long>net[0]:
                return self.refusal
        if self.any_allow:
            for net in self.allow:
                if addr & <long long>net[1] == <long long>net[0]:
                    return None
            return self.refusal
        return None


cdef class CorsStep(Step):
    """See `fastgw.core.steps.CorsStep`."""

    def __init__(self, conf, fallback):
        self.conf = conf
        self.fallback = fallback

    cdef object run(self, Context ctx):
        if ctx._req.method != "OPTIONS":
            return None
        if not _has(ctx._raw, b"origin") or not _has(ctx._raw, b"access-control-request-method"):
            return None
        return self.fallback(ctx, self.conf)


cdef class CorsFilterStep(Step):
    """See `fastgw.core.steps.CorsFilterStep`."""

    def __init__(self, conf, fallback):
        self.conf = conf
        self.fallback = fallback

    cdef object run(self, Context ctx):
        if ctx.response is None or not _has(ctx._raw, b"origin") or ctx.vars.get("cors_preflight"):
            return None
        return self.fallback(ctx, self.conf)
