# Declarations of the compiled HTTP/1.1 work (`fastgw/core/http.pyx`), included by `fastgw/_core.pxd`.

cdef class Request:
    # NOTE: the fields Python reads on every exchange (http.pyx, the _as_slots call for it) are objects exposed as plain
    # slots, as ExchangeState's (http.pyx, _as_slots); the flags among them hold bools.
    cdef public bytes method_b
    cdef public str method
    cdef public object url
    cdef public list headers
    cdef public Py_ssize_t header_bytes
    cdef public object content_length
    cdef public object chunked
    cdef public object expect_continue
    cdef public bytes host_raw
    cdef public str host
    cdef public object conn_tokens
    cdef public object keep_alive
    cdef public bint http10
    cdef public bint head_only
    cdef public object headers_done
    cdef public object complete
    cdef public object error
    cdef public object body
    cdef public Py_ssize_t buffered
    cdef public Py_ssize_t body_size
    cdef public object path
    cdef public object query

cdef class ExchangeState:
    # What the exchange of one request decides, declared once (see `fastgw.core.http.ExchangeState`): the compiled
    # sinks, the limit front and the observer read and write these as C fields, by name. NOTE: all objects, each
    # exposed to Python as a plain slot (http.pyx, _as_slots): Python code reads them as fast as a __slots__
    # class's. `req` is a Request (read with a checked cast); `status` an int; the flags bools; t0, until,
    # upstream_at and upstream_s floats; sent an int. Never `del` one (nor a plain-slot field of Request or the
    # sinks): C code reads them without a NULL check (tests/unit/test_exchange_state.py holds the package to it).
    cdef public object req
    cdef public object route
    cdef public object gw
    cdef public object peer
    cdef public object ctx
    cdef public object body_sink
    cdef public object status
    cdef public object response_started
    cdef public object retried
    cdef public object finished
    cdef public object t0
    cdef public object reply_lines
    cdef public object reply_names
    cdef public object sent
    cdef public object upstream
    cdef public object upstream_at
    cdef public object upstream_s
    cdef public object until

cdef class RequestSink:
    cdef public object owner
    cdef public object queue
    cdef public object parser
    cdef public object parsing
    cdef public ExchangeState exchange
    cdef readonly Py_ssize_t max_url
    cdef readonly Py_ssize_t max_header_size
    cdef readonly Py_ssize_t max_headers
    cdef readonly Py_ssize_t max_body
    cdef readonly Py_ssize_t high_water
    cdef readonly Py_ssize_t max_field
    cdef public bint proxy_conn

cdef class ResponseSink:
    # NOTE: `out` and the flags `done`, `keep`, `until_close`, `new_parser` (bools): objects read from Python as
    # plain slots (http.pyx, _as_slots), as RequestSink's `parsing`.
    cdef public object parser
    cdef public ExchangeState ex
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
    cdef public object out
    cdef public bint chunk_out
    cdef public object done
    cdef public bint informational
    cdef public object until_close
    cdef public object new_parser
    cdef public object keep
    cdef public bint collect
    cdef _start_head(self)
