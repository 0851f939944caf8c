# The upstream connection's compiled core, included by the hub fastgw/_core.pyx (declarations: upstream.pxd); its
# specification is the pure twin fastgw/core/upstream.py (tests/property/test_upstream_twins.py), step for step.

from cpython.list cimport PyList_GET_SIZE
from cpython.pyport cimport PY_SSIZE_T_MAX
from cpython.ref cimport PyObject

import time as _time

from httptools import HttpParserError as _HttpParserError, HttpResponseParser as _HttpResponseParser

cdef object _perf = _time.perf_counter

cdef extern from "Python.h":
    int _clear_list "PyList_SetSlice"(object, Py_ssize_t, Py_ssize_t, PyObject *) except -1

cdef enum:  # UpstreamConn.filtering, as the twin's FILTER and CHECK (checked below)
    UP_FILTER = 1
    UP_CHECK = 2


cdef class UpstreamConn(DeadlineState):
    """The fields and the per-request path of an upstream connection (see `fastgw.core.upstream`)."""

    def start(self, ExchangeState ex not None, bytes head):
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
        sink.begin(ex, route.server_line, route.via, self.date.line, self.state)
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
            at = self.deadline = self.loop.time() + self.target.head_timeout
            if at < self.timer_at:
                self.arm(at)
        if ex.paused:
            self.pause_reading()

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
            data = b"".join(out) if len(out) > 1 else out[0]
            if self.observed:
                if ex.upstream is None:  # the head: who answered, and how long it took
                    ex.upstream = self.target
                    ex.upstream_at = self.sent_at
                    ex.upstream_s = _perf() - self.sent_at
                ex.sent += len(data)
            ex.write(data)
            _clear_list(out, 0, PY_SSIZE_T_MAX, NULL)  # out.clear(), without a method call or a slice object
        if sink.done:
            self._end()
        else:
            at = self.deadline = self.loop.time() + self.target.read_timeout
            if at < self.timer_at:
                self.arm(at)

    def _finish(self):
        self._end()

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
        if reusable and not target.closed:
            idle = <list?>target.idle
            reusable = PyList_GET_SIZE(idle) < target.max_idle
        else:
            reusable = False
        if reusable:
            self.idle_since = self.loop.time()
            idle.append(self)
        else:
            self.close()
        if ex is not None:
            ex.body_sink = None
            watch = target.watch
            if watch is not None:
                if watch.quiet and ex.status < watch.bad:
                    watch.outlier.in_row = 0  # TargetWatch.answered's whole work here
                else:
                    watch.answered(ex.status)
            ex.done()  # nothing happens if the client went away meanwhile


assert (UP_FILTER, UP_CHECK) == (_twin_upstream.FILTER, _twin_upstream.CHECK)

# The object fields, shown to Python as plain slots (http.pyx, _as_slots); the typed ones stay Cython's properties.
cdef tuple _UPSTREAM_OBJECTS = ("target", "state", "transport", "parser", "head", "idle_since", "closed", "filtering",
                                "attempt", "date")
assert set(_UPSTREAM_OBJECTS) < set(_twin_upstream.UpstreamConn.__slots__)
cdef PyMemberDef _UPSTREAM_SLOTS[10]
_as_slots(UpstreamConn, _UPSTREAM_OBJECTS, _UPSTREAM_SLOTS, 10)
