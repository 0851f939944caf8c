# The limiter, compiled (part of `fastgw._core`, included by `fastgw/_core.pyx`; declarations: limit.pxd): the
# token buckets, and the front of one limit decided in this worker.
#
# Its pure twin `fastgw/core/limit.py` is the specification (tests/property/test_twins.py,
# tests/property/test_limit_twins.py).

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memcpy
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

cdef long long _MAX_UNITS = (<long long>1) << 62


cdef class _Bucket:
    pass


cdef class BucketTable:
    """Token buckets keyed by string, integer arithmetic, clock passed in. See `fastgw.core.limit.BucketTable`."""

    def __cinit__(self, long long capacity, long long refill_tokens, long long refill_period_ns,
                  Py_ssize_t max_keys=100_000):
        if capacity < 1 or refill_tokens < 1 or refill_period_ns < 1 or max_keys < 1:
            raise ValueError("capacity, refill_tokens, refill_period_ns and max_keys must all be >= 1")
        # Checked by division: the product itself could overflow.
        if capacity >= _MAX_UNITS // refill_period_ns:
            raise ValueError("capacity * refill_period_ns must stay below 2**62")
        self.capacity = capacity
        self.refill_tokens = refill_tokens
        self.refill_period_ns = refill_period_ns
        self.max_keys = max_keys
        self._cap_units = capacity * refill_period_ns
        self._buckets = {}

    def __len__(self):
        return len(self._buckets)

    cdef long long _level(self, _Bucket b, long long now_ns):
        cdef long long need, elapsed
        if now_ns <= b.last:
            return b.units
        need = self._cap_units - b.units
        elapsed = now_ns - b.last
        if elapsed >= (need + self.refill_tokens - 1) // self.refill_tokens:
            return self._cap_units
        # elapsed * refill_tokens < need + refill_tokens <= cap_units + refill_tokens: no overflow.
        return b.units + elapsed * self.refill_tokens

    def take(self, str key, long long now_ns, long long cost=1):
        cdef long long remaining, wait
        if cost < 0:
            raise ValueError("cost must be >= 0")
        ok = self._take(key, now_ns, cost, &remaining, &wait)
        return ok, remaining, wait

    cdef bint _take(self, str key, long long now_ns, long long cost, long long* remaining, long long* wait):
        """`take` (cost >= 0) without the tuple: the answer in `remaining` and `wait`."""
        cdef _Bucket b
        cdef long long units, cost_units, period = self.refill_period_ns
        b = self._buckets.pop(key, None)
        if b is None:
            if len(self._buckets) >= self.max_keys:
                self._make_room(now_ns)
            b = _Bucket()
            b.units = self._cap_units
            b.last = now_ns
            units = self._cap_units
        else:
            units = self._level(b, now_ns)
            if now_ns > b.last:
                b.last = now_ns
        self._buckets[key] = b
        b.units = units
        if cost > self.capacity:
            remaining[0] = units // period
            wait[0] = -1
            return False
        cost_units = cost * period
        if units >= cost_units:
            b.units = units - cost_units
            remaining[0] = b.units // period
            wait[0] = 0
            return True
        remaining[0] = units // period
        wait[0] = (cost_units - units + self.refill_tokens - 1) // self.refill_tokens
        return False

    cdef void _make_room(self, long long now_ns):
        cdef dict buckets = self._buckets
        while buckets:
            key = next(iter(buckets))
            if self._level(<_Bucket>buckets[key], now_ns) < self._cap_units:
                break
            del buckets[key]
        if len(buckets) >= self.max_keys:
            del buckets[next(iter(buckets))]

    def sweep(self, long long now_ns):
        full = [k for k, b in self._buckets.items() if self._level(<_Bucket>b, now_ns) >= self._cap_units]
        for k in full:
            del self._buckets[k]
        return len(full)

    def clear(self):
        self._buckets.clear()


cdef inline long long _monotonic_us() noexcept:
    """`time.monotonic_ns() // 1000`: CPython reads the same clock (CLOCK_MONOTONIC) on Linux."""
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <long long>ts.tv_sec * 1000000 + ts.tv_nsec // 1000


cdef inline Py_ssize_t _ndigits(long long v) noexcept:
    """The decimal digits of `v` (>= 0)."""
    cdef Py_ssize_t n = 1
    while v >= 10:
        v //= 10
        n += 1
    return n


cdef inline Py_ssize_t _digits_at(char* q, long long v, Py_ssize_t n) noexcept:
    """Write `v` (>= 0, `n` digits) in decimal at q; return n."""
    cdef Py_ssize_t i = n
    while i > 0:
        i -= 1
        q[i] = <char>(48 + v % 10)
        v //= 10
    return n


cdef class LimitFront:
    """See `fastgw.core.limit.LimitFront`. PERF: the whole decision of one local limit in C (the key, the clock, the
    take, the fields' bytes), the fields written by `finish_head` into whatever head answers: the limit cost 24.2k
    instructions a request through the phases, 11.3k as a Python front that spliced the fields into the head."""

    def __init__(self, BucketTable table, key_of, fields, tuple names, long long burst, long long rate,
                 long long period_us, refuse, after, bint always):
        self.table = table
        self.key_of = key_of
        self.has_fields = fields is not None
        if self.has_fields:
            self.f_remaining, self.f_reset, self.f_end = fields
        self.names = names
        self.burst = burst
        self.rate = rate
        self.period_us = period_us
        self.refuse = refuse
        self.after = after
        self.always = always

    def __call__(self, ExchangeState ex not None, str client_ip):
        cdef Request req = <Request?>ex.req
        cdef long long remaining, wait, reset, left
        cdef Py_ssize_t size, at, nr, nt
        cdef char* q
        route = ex.route
        key = client_ip if self.key_of is None else self.key_of(req, client_ip, route.info)
        if not self.table._take(key, _monotonic_us(), 1, &remaining, &wait):
            self.refuse(ex, client_ip, remaining, wait)
            return True
        if self.has_fields:
            # Whole seconds until the bucket is full again, rounded up (< 2**52 * 1e9: no overflow).
            left = (self.burst - remaining) * self.period_us
            reset = (left + self.rate * 1000000 - 1) // (self.rate * 1000000)
            nr, nt = _ndigits(remaining), _ndigits(reset)
            size = PyBytes_GET_SIZE(self.f_remaining) + PyBytes_GET_SIZE(self.f_reset) + PyBytes_GET_SIZE(self.f_end)
            lines = PyBytes_FromStringAndSize(NULL, size + nr + nt)
            q = PyBytes_AS_STRING(lines)
            at = PyBytes_GET_SIZE(self.f_remaining)
            memcpy(q, PyBytes_AS_STRING(self.f_remaining), at)
            at += _digits_at(q + at, remaining, nr)
            memcpy(q + at, PyBytes_AS_STRING(self.f_reset), PyBytes_GET_SIZE(self.f_reset))
            at += PyBytes_GET_SIZE(self.f_reset)
            at += _digits_at(q + at, reset, nt)
            memcpy(q + at, PyBytes_AS_STRING(self.f_end), PyBytes_GET_SIZE(self.f_end))
            ex.reply_lines = lines
            ex.reply_names = self.names
        # NOTE: `ex.t0` is set (by dispatch) exactly when the worker observes its exchanges: one C field read where
        # `ex.leg.state.access_log` is three attribute lookups (~300 instructions).
        if self.after is not None and (self.always or <double>ex.t0 != 0.0):
            self.after(ex, client_ip, key)
        strip = route.chain.strip
        if strip:
            _strip_headers(req, strip)
        if req.expect_continue:
            ex.integrate()
        else:
            route.start(ex)
        return True
