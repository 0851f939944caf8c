# Declarations of the connections' compiled core (`fastgw/core/conn.pyx`), included by `fastgw/_core.pxd`.

cdef class DeadlineState:
    # Exactly the pure twin's __slots__ (`fastgw.core.conn.DeadlineState`), shown to Python as plain slots
    # (conn.pyx, _as_slots): `Deadline`'s methods read them from Python. Never `del` one (C code reads them
    # without a NULL check).
    cdef public object deadline, timer, timer_at, loop
