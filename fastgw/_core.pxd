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
    cdef object _spec
    cdef _Node _root
    cdef dict _static
    cdef public bint frozen
    cdef _match(self, str method, str host, str path)

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

cdef class Request:
    cdef public bytes method_b
    cdef public str method
    cdef public bytes url
    cdef public list headers
    cdef public Py_ssize_t header_bytes
    cdef public object content_length
    cdef public bint chunked
    cdef public bint expect_continue
    cdef public bytes host_raw
    cdef public str host
    cdef public object conn_tokens
    cdef public bint keep_alive
    cdef public bint http10
    cdef public bint head_only
    cdef public bint headers_done
    cdef public bint complete
    cdef public object error
    cdef public list body
    cdef public Py_ssize_t buffered
    cdef public Py_ssize_t body_size
    cdef public object upstream
    cdef public bint response_started
    cdef public int status
    cdef public bint retried
    cdef public bint finished
    cdef public str path
    cdef public object query
    cdef public double t0
    cdef public bytes reply_lines
    cdef public tuple reply_names

cdef class RequestSink:
    cdef public object owner
    cdef public object queue
    cdef public object parser
    cdef public Request parsing
    cdef readonly Py_ssize_t max_url
    cdef readonly Py_ssize_t max_header_size
    cdef readonly Py_ssize_t max_headers
    cdef readonly Py_ssize_t max_body
    cdef readonly Py_ssize_t high_water
    cdef readonly Py_ssize_t max_field

cdef class ResponseSink:
    cdef public object parser
    cdef public Request req
    cdef public bytes server_line
    cdef public bint via
    cdef public bytes date_line
    cdef public object state
    cdef public list head
    cdef public object length
    cdef public object te
    cdef public object via_in
    cdef public object named
    cdef public bint has_date
    cdef public bint has_server
    cdef public list out
    cdef public bint chunk_out
    cdef public bint done
    cdef public bint informational
    cdef public bint until_close
    cdef public bint new_parser
    cdef public bint keep
    cdef public bint collect
    cdef _start_head(self)

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
    cdef public ClientRequest request
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
# -- observation (the section at the end of _core.pyx; twin: fastgw/_pyobserve.py) ------------------------------

cdef struct _Buf:
    char *data
    Py_ssize_t size
    Py_ssize_t cap

cdef class _Series:
    cdef object method
    cdef int status
    cdef long long count
    cdef long long bytes_in
    cdef long long bytes_out
    cdef double total
    cdef long long buckets[12]
    cdef list row(self)

cdef class _Answered:
    cdef object upstream
    cdef object target
    cdef long long count
    cdef double total
    cdef long long buckets[12]
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
