# Declarations of the compiled limiter (`fastgw/core/limit.pyx`), included by `fastgw/_core.pxd`.

cdef class _Bucket:
    cdef long long units
    cdef long long last

cdef class BucketTable:
    cdef readonly long long capacity
    cdef readonly long long refill_tokens
    cdef readonly long long refill_period_ns
    cdef readonly Py_ssize_t max_keys
    cdef long long _cap_units
    cdef dict _buckets
    cdef long long _level(self, _Bucket b, long long now_ns)
    cdef bint _take(self, str key, long long now_ns, long long cost, long long* remaining, long long* wait)
    cdef void _make_room(self, long long now_ns)

cdef class LimitFront:
    cdef BucketTable table
    cdef object key_of
    cdef bytes f_remaining, f_reset, f_end
    cdef bint has_fields, always
    cdef tuple names
    cdef long long burst, rate, period_us
    cdef object refuse, after
