# Declarations of the compiled router (`fastgw/core/router.pyx`), included by `fastgw/_core.pxd`.

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
    cdef list constrained  # children under a constraint, in the order they are tried (before `param`)
    cdef object fullmatch  # this node's constraint's `fullmatch` (a constrained child), else None
    cdef _Node param
    cdef list entries
    cdef list greedy_entries

cdef class Router:
    cdef object _spec
    cdef _Node _root
    cdef dict _static
    cdef bint _greedy_root  # the root has no literal, constrained or param child (see _match)
    cdef public bint frozen
    cdef _match(self, str method, str host, str path, frozenset skip)
