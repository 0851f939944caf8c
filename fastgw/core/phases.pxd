# Declarations of the compiled plugin runtime (`fastgw/core/phases.pyx`), included by `fastgw/_core.pxd`.

cdef class Headers:
    cdef public list _items
    cdef public bint _frozen
    cpdef bytes _key(self, str name, str value=*)

cdef class HeadHeaders(Headers):
    cdef public object _block
    cdef list _framing
    cdef bint _absent(self, bytes key)
    cdef void _parse(self)
    cdef inline void _parsed(self)
    cdef void _set_raw(self, bytes key, bytes value)

cdef class ClientRequest:
    cdef public Request _req
    cdef public list _raw
    cdef public object _raw_query
    cdef public object _headers
    cdef public object _query
    cdef public str client_ip
    cdef public object params
    cdef public object body

cdef class UpstreamRequest:
    cdef public Request _req
    cdef public list _sets
    cdef public Headers _headers
    cdef public object _query
    cdef public object path
    cdef public object body

cdef class ResponseHead:
    cdef public int status
    cdef public object headers
    cdef public object body

cdef class PhaseChain:
    cdef public tuple request
    cdef public tuple header_filter
    cdef public tuple body_filter
    cdef public tuple log
    cdef public frozenset strip
    cdef public object consumer_keys
    cdef public bint per_consumer
    cdef public bint streams
    cdef public object front

cdef class Context:
    cdef ClientRequest _request  # made when first asked for (`request`)
    cdef public Request _req
    cdef public list _raw
    cdef public object _raw_query
    cdef public str _client_ip
    cdef public object _params
    cdef public object _upstream
    cdef public object response
    cdef public object _consumer
    cdef public object _switch
    cdef public object credential
    cdef public object route
    cdef public dict vars
    cdef public PhaseChain chain
    cdef public list _reply_headers
    cdef public list _upstream_sets
