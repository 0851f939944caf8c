# Declarations of the compiled steps of the built-in plugins (`fastgw/core/steps.pyx`), included by `fastgw/_core.pxd`.

cdef class Step:
    cdef object run(self, Context ctx)

cdef class KeyAuthStep(Step):
    cdef object plugin, conf, fallback, header_name
    cdef dict seen
    cdef bytes header, alias
    cdef frozenset wire
    cdef tuple query
    cdef bint in_query

cdef class RequestIdStep(Step):
    cdef bytes key
    cdef bint keep, echo

cdef class HeaderStep(Step):
    cdef tuple ops

cdef class AclStep(Step):
    cdef frozenset allow, deny
    cdef object unauthorized, forbidden

cdef class IpStep(Step):
    cdef tuple allow, deny
    cdef bint any_allow
    cdef object refusal, conf, fallback

cdef class CorsStep(Step):
    cdef object conf, fallback

cdef class CorsFilterStep(Step):
    cdef object conf, fallback
