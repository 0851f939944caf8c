# Declarations of the upstream connection's compiled core (`fastgw/core/upstream.pyx`), included by
# `fastgw/_core.pxd` (after conn.pxd: it builds on `DeadlineState`).

cdef class UpstreamConn(DeadlineState):
    # The pure twin's __slots__ (`fastgw.core.upstream.UpstreamConn`). The object fields are shown to Python as plain
    # slots (upstream.pyx, _as_slots): the pool and the route read `closed`, `transport` and `filtering` per request,
    # the rest of the leg (fastgw.proxy.upstream) the others. Never `del` one (C code reads them without a NULL
    # check). The typed ones are read per request by the compiled path only (Python sees them as properties).
    cdef public object target, state, transport, parser, head, idle_since, closed, filtering, attempt, date
    cdef public ResponseSink sink
    cdef public ExchangeState ex
    cdef public Request req
    cdef public Py_ssize_t served, held
    cdef public bint _req_done, _reading_paused, _write_paused, observed
    cdef public double sent_at
    cdef _start(self, ExchangeState ex, bytes head)
    cdef _end(self)
    cdef _send(self, ExchangeState ex, list out)
