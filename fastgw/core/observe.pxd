# Declarations of the compiled observation (`fastgw/core/observe.pyx`), included by `fastgw/_core.pxd`.

cdef struct _Buf:
    char *data
    Py_ssize_t size
    Py_ssize_t cap

cdef class _Slots:
    cdef object cls
    cdef tuple names
    cdef Py_ssize_t offsets[8]
    cdef int resolve(self, object cls) except -1
    cdef inline object get(self, object obj, int i)

cdef class _Series:
    cdef object method
    cdef int status
    cdef long long count
    cdef long long bytes_in
    cdef long long bytes_out
    cdef double total
    cdef long long buckets[17]  # BUCKETS and +Inf
    cdef list row(self)

cdef class _Answered:
    cdef object upstream
    cdef object target
    cdef long long count
    cdef double total
    cdef long long buckets[17]  # BUCKETS and +Inf
    cdef list row(self)

cdef class Tally:
    cdef dict _routes
    cdef dict _upstreams
    cdef public dict cache
    cdef public dict limits
    cdef int _add(self, object ex, double now) except -1

cdef class LogLines:
    cdef readonly Py_ssize_t size
    cdef object _fragment
    cdef object _label
    cdef object _trace_id
    cdef list _ex
    cdef double *_now
    cdef Py_ssize_t _cap
    cdef long long _second
    cdef bytes _stamp
    cdef object _gw
    cdef dict _fragments
    cdef dict _labels
    cdef int _add(self, object ex, double now) except -1
    cdef int _lines(self, _Buf *b, double offset) except -1

cdef class Observer:
    cdef readonly Tally tally
    cdef readonly object log
    cdef readonly tuple hooks
    cdef LogLines _lines
