# The connections' compiled core, included by the hub fastgw/_core.pyx (declarations: conn.pxd); its specification
# is the pure twin fastgw/core/conn.py.

cdef class DeadlineState:
    """The fields of an object with one deadline (see `fastgw.core.conn`); `Deadline` gives the behaviour."""


cdef PyMemberDef _DEADLINE_SLOTS[4]
_as_slots(DeadlineState, tuple(_twin_conn.DeadlineState.__slots__), _DEADLINE_SLOTS, 4)
