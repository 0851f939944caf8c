# The connections' compiled core, included by the hub fastgw/_core.pyx (declarations: conn.pxd); its specification
# is the pure twin fastgw/core/conn.py.

cimport cython

from httptools import HttpParserError as _HttpParserError, HttpParserUpgrade as _HttpParserUpgrade

# The twin's constants, read once (C ints here).
cdef int _DEADLINE_HEADER = _twin_conn.DEADLINE_HEADER
cdef int _DEADLINE_IDLE = _twin_conn.DEADLINE_IDLE
cdef int _DEADLINE_BODY = _twin_conn.DEADLINE_BODY
cdef int _PAUSE_PIPELINE = _twin_conn.PAUSE_PIPELINE
cdef object _perf_counter = _twin_conn.perf_counter


def start_exchange(leg, gw, Request req not None, route, params, t0, new_exchange, ip):
    """Make the exchange of a routed request and start it. See `fastgw.core.conn.start_exchange`."""
    _start_exchange(leg, gw, req, route, route.chain, params, t0, new_exchange, ip)


@cython.nonecheck(True)
cdef int _start_exchange(leg, gw, Request req, route, chain, params, t0, new_exchange, ip) except -1:
    # (`chain`: route.chain, which the caller has read.)
    if chain is None:
        ex = new_exchange(leg, gw, req, route, params, None, t0)
        if gw.strip_names:
            strip_headers(req, gw.strip_names)
        if req.expect_continue:
            ex.integrate()
        else:
            route.start(ex)
        return 0
    front = (<PhaseChain?>chain).front
    if front is not None:
        # The route's one plugin sees the request first (Plugin.front): a cache hit, one local limit.
        ex = new_exchange(leg, gw, req, route, params, None, t0)
        if front(ex, ip):
            return 0
        ex.ctx = new_context(req, ip, params, route.info, chain)
        request_phases(ex, 0)
        return 0
    ctx = new_context(req, ip, params, route.info, chain)
    ex = new_exchange(leg, gw, req, route, params, ctx, t0)
    if (<PhaseChain>chain).streams:
        request_phases(ex, 0)
    else:
        ex.run(chain)
    return 0


cdef class DeadlineState:
    """The fields of an object with one deadline (see `fastgw.core.conn`); `Deadline` gives the behaviour."""


cdef class ClientConn(DeadlineState):
    """The client connection's per-request path. See `fastgw.core.conn.ClientConn`.

    PERF: ClientProtocol's data_received, _maybe_start and request_done as Python ran ~3k instructions of bytecode
    an exchange; compiled, with the request, the exchange and the sink read as C fields: bench/instructions.py
    --scenario proxy 53,610 -> 50,534 instructions an exchange."""

    @cython.nonecheck(True)
    def data_received(self, data):
        if self.broken or self.closed:
            return
        try:
            self.parser.feed_data(data)
        except _HttpParserUpgrade as exc:
            self._upgrade(data, int(exc.args[0]))
        except _HttpParserError as exc:
            self._parse_error(exc)
        queue = self.queue
        if not queue:
            return
        cdef double at
        if len(queue) > 1:
            self.pause_reading_for(_PAUSE_PIPELINE)  # answered in order: the next one waits its turn
        elif self.deadline_kind == _DEADLINE_IDLE:
            # The first bytes of the next request after an idle keep-alive wait (_header_deadline, inlined).
            self.deadline_kind = _DEADLINE_HEADER
            at = <double>self.loop.time() + <double>self.limits.header_timeout
            self.deadline = at
            if at < <double>self.timer_at:
                self.arm(at)
        elif self.deadline_kind == _DEADLINE_BODY:
            self.deadline = <double>self.loop.time() + <double>self.limits.body_timeout  # (later than before)
        self._start()

    def _maybe_start(self):
        self._start()

    @cython.nonecheck(True)
    cdef int _start(self) except -1:
        cdef Request req
        cdef ExchangeState ex
        if self._starting or self.closed or not self.queue:
            return 0
        self._starting = True
        try:
            while not self.active and self.queue and not self.closed:
                req = self.queue[0]
                if req.error is not None:
                    self.active = True
                    status, message = req.error
                    self.refuse(self, self.state.gateway, req, status, message)
                    return 0
                if not req.headers_done:
                    return 0
                self.active = True
                if not req.complete and not req.expect_continue:
                    # (An expecting client sends its body once told to: its clock starts then, in continue_sent.)
                    self._body_deadline_starts()
                try:
                    self._dispatch(req)
                except Exception as exc:
                    self._dispatch_failed(req, exc)
                else:
                    ex = self.exchange
                    if ex is not None and ex.req is req and self.sink.parsing is req:
                        # The rest of its body, still arriving, goes to its exchange's body sink from now on.
                        self.sink.exchange = ex
        finally:
            self._starting = False
        return 0

    @cython.nonecheck(True)
    cdef int _dispatch(self, Request req) except -1:
        # PERF: dispatch's usual case, and the exchange's start, without their frames and bytecode (a Python call
        # less an exchange): bench/instructions.py --scenario proxy 50,534 -> 50,023 instructions an exchange,
        # --scenario chain 74,949 -> 73,741 (-> 75,553 when only a plugin-less route's start was here: the chain's
        # then went through two Python calls, routed's and dispatch's prologue, where it had one).
        state = self.state
        gw = state.gateway
        paths = gw.paths
        if not paths.simple or req.url[:1] != b"/":
            self.dispatch(self, req)
            return 0
        t0 = _perf_counter() if state.access_log is not None else 0.0
        found = paths.router.route(req, paths.default)
        cdef tuple hit
        if found is not None and found is not False:
            hit = <tuple?>found
            if hit[0] is not None:
                route = gw.routes[hit[0]]
                chain = route.chain
                if chain is None:
                    _start_exchange(self, gw, req, route, None, hit[1], t0, self.new_exchange, "")
                    return 0
                peer = self.peer
                if not peer.trusted:  # (else the client's address is X-Forwarded-For's: dispatch.client_ip)
                    _start_exchange(self, gw, req, route, chain, hit[1], t0, self.new_exchange, peer.ip)
                    return 0
        self.routed(self, gw, req, found, t0)
        return 0

    @cython.nonecheck(True)
    def request_done(self, Request req not None):
        """`req` is answered in full (its exchange is done): go on with the next request, or close."""
        cdef double at
        queue = self.queue
        if queue and queue[0] is req:
            queue.popleft()
        self.active = False
        self.exchange = None
        if not (req.keep_alive and req.complete) or req.error is not None or self.state.closing:
            self.close()
            return
        if not queue:
            if not self.write_paused:  # (else the send deadline stands: what was sent is still to be taken)
                self.deadline_kind = _DEADLINE_IDLE
                at = <double>self.loop.time() + <double>self.limits.keepalive_timeout
                self.deadline = at
                if at < <double>self.timer_at:
                    self.arm(at)
            if self._paused:
                self.resume_reading_for(_PAUSE_PIPELINE)
            return
        if len(queue) == 1 and self._paused:
            self.resume_reading_for(_PAUSE_PIPELINE)
        if not (<Request?>queue[0]).headers_done:
            self._header_deadline()
        if not self._starting:
            self._start()


cdef PyMemberDef _DEADLINE_SLOTS[4]
_as_slots(DeadlineState, tuple(_twin_conn.DeadlineState.__slots__), _DEADLINE_SLOTS, 4)
# (The twin's fields but the C ones, which conn.pxd declares.)
cdef tuple _CLIENT_CONN_OBJECTS = tuple(n for n in _twin_conn.ClientConn.__slots__
                                        if n not in ("sink", "deadline_kind", "_paused", "_starting"))
cdef PyMemberDef _CLIENT_CONN_SLOTS[14]
_as_slots(ClientConn, _CLIENT_CONN_OBJECTS, _CLIENT_CONN_SLOTS, 14)
