# Declarations of the connections' compiled core (`fastgw/core/conn.pyx`), included by `fastgw/_core.pxd`.

cdef class DeadlineState:
    # Exactly the pure twin's __slots__ (`fastgw.core.conn.DeadlineState`), shown to Python as plain slots
    # (conn.pyx, _as_slots): `Deadline`'s methods read them from Python. Never `del` one (C code reads them
    # without a NULL check).
    cdef public object deadline, timer, timer_at, loop

cdef class ClientConn(DeadlineState):
    # The pure twin's __slots__ (`fastgw.core.conn.ClientConn`). The objects are shown to Python as plain slots
    # (conn.pyx, _as_slots: the exchange reads `state`, `peer`, `closed`, `write_paused`, writes `exchange` per request);
    # the flags among them hold bools. Never `del` one. `sink`, `deadline_kind`, `_paused` and `_starting` are C
    # fields (Python reads them off the per-request path, as Cython's properties).
    cdef public object state, limits, queue, parser, exchange, active, closed, broken, write_paused
    cdef public object peer, dispatch, routed, refuse, new_exchange
    cdef public RequestSink sink
    cdef public int deadline_kind
    cdef public int _paused
    cdef public bint _starting

    cdef int _start(self) except -1
    cdef int _dispatch(self, Request req) except -1
