# The upstream connection's compiled core, included by the hub fastgw/_core.pyx (declarations: upstream.pxd); its
# specification is the pure twin fastgw/core/upstream.py (tests/property/test_upstream_twins.py), step for step.

cimport cython

from cpython.list cimport PyList_GET_SIZE
from cpython.object cimport Py_TYPE
from cpython.pyport cimport PY_SSIZE_T_MAX
from cpython.ref cimport PyObject

import time as _time

from urllib.parse import quote as _quote

from httptools import HttpParserError as _HttpParserError, HttpResponseParser as _HttpResponseParser

from fastgw.core.upstream import PATH_SAFE as _PATH_SAFE

cdef object _perf = _time.perf_counter

cdef extern from "Python.h":
    int _clear_list "PyList_SetSlice"(object, Py_ssize_t, Py_ssize_t, PyObject *) except -1
    ctypedef struct _Typed "PyTypeObject":
        unsigned int tp_version_tag
        unsigned long tp_flags
        void *tp_getattro
    ctypedef struct _MemberDescr "PyMemberDescrObject":
        PyMemberDef *d_member
    PyObject *_PyType_Lookup(_Typed *, object)
    PyObject *PyObject_GenericGetAttr(PyObject *, PyObject *)
    _Typed PyMemberDescr_Type
    int PY_VERSION_HEX


# PERF: the fields of the Python objects the path reads (the route's, the target's, the peer's, the exchange's own
# slots) are read as CPython's specialized bytecode reads a slot (LOAD_ATTR_SLOT): at the offset its member
# descriptor gives, for as long as the object's type is the one that descriptor was found on, unchanged since (the
# same type object, held, and the same version tag), where a generic getattr looked the type up each time (~140
# instructions a field; callgrind). A miss is the generic getattr (its value and its errors), which then learns the
# site. NOTE: learned only on CPython 3.11+, where any change to a type (or one of its bases) resets its version tag
# to 0 (3.10 keeps a changed type's tag, and its tags wrap: there every read is the generic getattr). The type is
# compared as well as the tag, so no other type's object is ever read at a learned offset.
ctypedef struct _Site:  # one field read: the type it was found on (held in _LEARNED), its version then, its offset
    PyObject *type
    unsigned int tag
    Py_ssize_t offset

cdef enum:  # the sites (_SITES)
    F_SERVER_LINE, F_VIA, F_LINE, F_HEAD_TIMEOUT, F_READ_TIMEOUT, F_PAUSED, F_WRITE, F_CLOSED, F_IDLE, F_MAX_IDLE
    F_WATCH, F_UPSTREAM, F_ONLY, F_REWRITES, F_HOST, F_PRESERVE_HOST, F_HOST_HEADER, F_TRUSTED, F_IP_B, F_PROTO
    F_GUARDED, F_GUARD_ALL, F_SITES

cdef _Site _SITES[<int>F_SITES]  # (zeroed: every site starts unlearned)
cdef list _LEARNED = [None] * <int>F_SITES  # each site's type, kept alive while the site points at it


cdef inline object _field(object obj, str name, int site):
    cdef _Site *s = &_SITES[site]
    cdef PyObject *value
    cdef PyObject *t = <PyObject *>Py_TYPE(obj)
    if t == s.type and (<_Typed *>t).tp_version_tag == s.tag:
        value = (<PyObject **>(<char *><PyObject *>obj + s.offset))[0]
        if value != NULL:
            return <object>value
    return _field_miss(obj, name, site)


cdef object _field_miss(object obj, str name, int site):
    value = getattr(obj, name)
    cdef _Site *s = &_SITES[site]
    cdef _Typed *t = <_Typed *>Py_TYPE(obj)
    cdef PyObject *descr
    if PY_VERSION_HEX >= 0x030B0000 and t.tp_getattro == <void *>PyObject_GenericGetAttr:
        descr = _PyType_Lookup(t, name)  # (assigns the type a version tag when it has none and can have one)
        if (descr != NULL and t.tp_version_tag != 0 and <_Typed *>Py_TYPE(<object>descr) == &PyMemberDescr_Type
                and (<_MemberDescr *>descr).d_member.type == T_OBJECT_EX):
            _LEARNED[site] = <object><PyObject *>t
            s.type = <PyObject *>t
            s.tag = t.tp_version_tag
            s.offset = (<_MemberDescr *>descr).d_member.offset
    return value


def _learned_sites():
    """How many of the path's field reads have learned their type (for the tests: the cache is in use)."""
    return sum(1 for i in range(<int>F_SITES) if _SITES[i].type != NULL)


cdef enum:  # UpstreamConn.filtering, as the twin's FILTER and CHECK (checked below)
    UP_FILTER = 1
    UP_CHECK = 2


cdef class UpstreamConn(DeadlineState):
    """The fields and the per-request path of an upstream connection (see `fastgw.core.upstream`)."""

    def start(self, ExchangeState ex not None, bytes head):
        self._start(ex, head)

    @cython.nonecheck(True)
    cdef _start(self, ExchangeState ex, bytes head):
        cdef Request req = <Request?>ex.req
        cdef ResponseSink sink = self.sink
        cdef Context ctx
        cdef PhaseChain chain
        cdef bint framed
        self.req = req
        self.ex = ex
        self.head = head
        self.served += 1
        ex.body_sink = self
        route = ex.route
        sink.begin(ex, _field(route, "server_line", F_SERVER_LINE), _field(route, "via", F_VIA),
                   _field(self.date, "line", F_LINE), self.state)
        if ex.ctx is not None:
            # PERF: Exchange.response_filters inline, as the twin's.
            ctx = <Context?>ex.ctx
            chain = ctx.chain
            self.filtering = UP_FILTER if ctx._reply_headers is not None or chain.header_filter else 0
            if chain.body_filter and not req.head_only:
                self.held = 0
                sink.collect = True  # the body as it comes, unframed: it is sent again with its new length
            else:
                self.held = -1
        else:
            self.filtering = 0
            self.held = -1
        if req.body or (req.complete and req.chunked):
            chunks = [head]
            framed = req.chunked
            for c in req.body:
                chunks.append(b"%x\r\n%b\r\n" % (len(c), c) if framed else c)
            ex.body_drained()
            if req.complete and framed:
                chunks.append(b"0\r\n\r\n")
            head = b"".join(chunks)
        self._req_done = req.complete
        if self.observed:
            self.sent_at = _perf()
        self.transport.write(head)
        if not self._write_paused:
            at = self.deadline = self.loop.time() + _field(self.target, "head_timeout", F_HEAD_TIMEOUT)
            if at < self.timer_at:
                self.arm(at)
        if _field(ex, "paused", F_PAUSED):
            self.pause_reading()

    @cython.nonecheck(True)
    def data_received(self, data):
        cdef ExchangeState ex = self.ex
        cdef ResponseSink sink
        cdef list out
        cdef int flags
        if ex is None:
            self.close()  # bytes on an idle connection: it cannot be trusted for the next request
            return
        try:
            self.parser.feed_data(data)
        except _HttpParserError as exc:
            cause = exc.__context__ if isinstance(exc.__context__, Exception) else exc
            self._try_failed("error", 502, "Bad Gateway", f"invalid response from upstream {self.target.url}: {cause}")
            return
        sink = self.sink
        out = <list?>sink.out
        if self.held >= 0:
            if not self._hold(ex, out):
                return
        elif self.filtering and ex.response_started:
            # The head was built by this feed (it is out[0]): checked, then the route's filters see it.
            flags = self.filtering
            self.filtering = 0
            if flags & UP_CHECK and self._retry_status(ex):
                return
            if flags & UP_FILTER:
                try:
                    out[0] = filter_head(ex.ctx, out[0])
                except PluginFailed as exc:
                    self._filter_failed(ex, out, exc)
                    return
        if out:
            self._send(ex, out)
        if sink.done:
            self._end()
        else:
            at = self.deadline = self.loop.time() + _field(self.target, "read_timeout", F_READ_TIMEOUT)
            if at < self.timer_at:
                self.arm(at)

    def _flush(self, ExchangeState ex not None):
        self._send(ex, <list?>self.sink.out)

    cdef _send(self, ExchangeState ex, list out):
        if not out:
            return
        data = b"".join(out) if PyList_GET_SIZE(out) > 1 else out[0]
        if self.observed:
            if ex.upstream is None:
                ex.upstream = self.target
                ex.upstream_at = self.sent_at
                ex.upstream_s = _perf() - self.sent_at
            ex.sent += len(data)
        _field(ex, "write", F_WRITE)(data)
        _clear_list(out, 0, PY_SSIZE_T_MAX, NULL)  # out.clear(), without a method call or a slice object

    def _finish(self):
        self._end()

    @cython.nonecheck(True)
    cdef _end(self):
        cdef ResponseSink sink = self.sink
        cdef ExchangeState ex
        cdef list idle
        cdef bint reusable = sink.keep and self._req_done and not sink.until_close and not self.closed
        if sink.new_parser:
            self.parser = sink.parser = _HttpResponseParser(sink)  # httptools cannot skip a HEAD response's body
        ex = self.ex
        self.ex = None
        self.req = None
        self.deadline = 0.0
        if self._reading_paused:
            self.resume_reading()
        target = self.target
        if reusable and not _field(target, "closed", F_CLOSED):
            idle = <list?>_field(target, "idle", F_IDLE)
            reusable = PyList_GET_SIZE(idle) < _field(target, "max_idle", F_MAX_IDLE)
        else:
            reusable = False
        if reusable:
            self.idle_since = self.loop.time()
            idle.append(self)
        else:
            self.close()
        if ex is not None:
            ex.body_sink = None
            watch = _field(target, "watch", F_WATCH)
            if watch is not None:
                if watch.quiet and ex.status < watch.bad:
                    watch.outlier.in_row = 0  # TargetWatch.answered's whole work here
                else:
                    watch.answered(ex.status)
            ex.done()  # nothing happens if the client went away meanwhile


def route_head(route, ExchangeState ex not None, target):
    """See `fastgw.core.upstream.route_head`."""
    return _route_head(route, ex, <Request?>ex.req, target)


@cython.nonecheck(True)
cdef bytes _route_head(route, ExchangeState ex, Request req, target):
    path = req.path
    ctx = ex.ctx
    if ctx is not None and (up := (<Context?>ctx)._upstream) is not None and (chosen := up.path) is not None:
        path = _quote(chosen, safe=_PATH_SAFE)  # a plugin chose the upstream path
    elif _field(route, "rewrites", F_REWRITES):
        path = route.upstream_path(path, ex.params)
    target_uri = (<str?>path).encode("latin-1")
    if req.query is not None:
        target_uri += b"?" + req.query
    host = _field(route, "host", F_HOST)
    if host is None:
        if _field(route, "preserve_host", F_PRESERVE_HOST) and req.host_raw:
            host = req.host_raw
        else:
            host = _field(target, "host_header", F_HOST_HEADER)
    peer = ex.peer
    return req.upstream_head(target_uri, host, _field(peer, "trusted", F_TRUSTED), _field(peer, "ip_b", F_IP_B),
                             _field(route, "via", F_VIA), _field(peer, "proto", F_PROTO))


@cython.nonecheck(True)
def start_route(route, ExchangeState ex not None):
    """See `fastgw.core.upstream.start_route`: `HttpRoute.start`."""
    cdef Request req = <Request?>ex.req
    cdef list idle
    upstream = _field(route, "upstream", F_UPSTREAM)
    target = _field(upstream, "only", F_ONLY)
    if target is None:
        target = upstream.pick(ex)
        if target is None:
            ex.fail(503, "Service Unavailable", f"upstream {upstream.name} has no target in rotation")
            return
    head = _route_head(route, ex, req, target)
    if _field(route, "guarded", F_GUARDED) and (_field(route, "guard_all", F_GUARD_ALL) or req.content_length
                                                or req.chunked):
        route._start_guarded(ex, target, head)
        return
    idle = <list?>_field(target, "idle", F_IDLE)
    conn = idle.pop() if idle else None
    if conn is not None and (conn.closed or conn.transport.is_closing()):
        conn = target.acquire()
    if conn is None:
        route._connect(ex, target, head)
    elif isinstance(conn, UpstreamConn):
        (<UpstreamConn>conn)._start(ex, <bytes?>head)  # (the compiled start itself: no call through Python)
    else:
        conn.start(ex, head)


assert (UP_FILTER, UP_CHECK) == (_twin_upstream.FILTER, _twin_upstream.CHECK)

# The object fields, shown to Python as plain slots (http.pyx, _as_slots); the typed ones stay Cython's properties.
cdef tuple _UPSTREAM_OBJECTS = ("target", "state", "transport", "parser", "head", "idle_since", "closed", "filtering",
                                "attempt", "date")
assert set(_UPSTREAM_OBJECTS) < set(_twin_upstream.UpstreamConn.__slots__)
cdef PyMemberDef _UPSTREAM_SLOTS[10]
_as_slots(UpstreamConn, _UPSTREAM_OBJECTS, _UPSTREAM_SLOTS, 10)
