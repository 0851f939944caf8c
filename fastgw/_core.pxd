# cdef declarations of the compiled core; the Python-visible API is typed in _core.pyi.

cdef class _Entry:
    cdef readonly object route
    cdef readonly str name
    cdef readonly frozenset methods
    cdef readonly bint any_method
    cdef readonly int host_kind
    cdef readonly str host
    cdef readonly tuple param_names
    cdef readonly long long order

cdef class _Node:
    cdef dict literals
    cdef _Node param
    cdef list entries
    cdef list greedy_entries

cdef class Router:
    cdef _Node _root
    cdef dict _static
    cdef dict _shapes
    cdef long long _count
    cdef public bint frozen

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
    cdef void _make_room(self, long long now_ns)
