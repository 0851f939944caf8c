"""The limiter's hot part: the pure-Python twin (the spec, the test oracle and the fallback) of
`fastgw/core/limit.pyx`: the token buckets, and the front of one limit decided in this worker.

`fastgw.core` picks these or the compiled ones; the property tests (tests/property/test_twins.py,
tests/property/test_limit_twins.py, tests/unit/test_buckets.py) hold the two to the same answers.
"""

from __future__ import annotations

import time
from typing import Any

from fastgw.core.phases import strip_headers as _strip_headers

__all__ = ["BucketTable", "LimitFront"]

_MAX_UNITS = 1 << 62


class BucketTable:
    """Token buckets keyed by string, in integer arithmetic with the clock passed in (nanoseconds).

    Each bucket holds up to `capacity` tokens and gains `refill_tokens` every `refill_period_ns`. A token is
    kept as `refill_period_ns` units and the bucket gains `refill_tokens` units per nanosecond, so nothing is
    rounded. A new key starts full. At most `max_keys` buckets are kept: when a new key needs room, buckets
    that have refilled completely (indistinguishable from a new bucket, so nothing is lost) are dropped from
    the least recently used end, then, if the table is still full, the least recently used bucket.
    """

    def __init__(self, capacity: int, refill_tokens: int, refill_period_ns: int, max_keys: int = 100_000) -> None:
        if capacity < 1 or refill_tokens < 1 or refill_period_ns < 1 or max_keys < 1:
            raise ValueError("capacity, refill_tokens, refill_period_ns and max_keys must all be >= 1")
        if capacity >= _MAX_UNITS // refill_period_ns:
            raise ValueError("capacity * refill_period_ns must stay below 2**62")
        self.capacity = capacity
        self.refill_tokens = refill_tokens
        self.refill_period_ns = refill_period_ns
        self.max_keys = max_keys
        self._cap_units = capacity * refill_period_ns
        # key -> [units, last_ns]; dict order is recency order (touched keys move to the end).
        self._buckets: dict[str, list[int]] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def _level(self, b: list[int], now_ns: int) -> int:
        units, last = b[0], b[1]
        if now_ns <= last:  # NOTE: a clock that goes back refills nothing, and never drains either.
            return units
        need = self._cap_units - units
        elapsed = now_ns - last
        # Compare against the time to fill instead of multiplying first: no overflow in the C twin.
        if elapsed >= (need + self.refill_tokens - 1) // self.refill_tokens:
            return self._cap_units
        return units + elapsed * self.refill_tokens

    def take(self, key: str, now_ns: int, cost: int = 1) -> tuple[bool, int, int]:
        """Take `cost` tokens: (allowed, tokens remaining, ns until `cost` tokens are there; -1 never)."""
        if cost < 0:
            raise ValueError("cost must be >= 0")
        buckets = self._buckets
        b = buckets.pop(key, None)
        if b is None:
            if len(buckets) >= self.max_keys:
                self._make_room(now_ns)
            b = [self._cap_units, now_ns]
            units = self._cap_units
        else:
            units = self._level(b, now_ns)
            if now_ns > b[1]:
                b[1] = now_ns
        buckets[key] = b
        period = self.refill_period_ns
        if cost > self.capacity:
            b[0] = units
            return False, units // period, -1
        cost_units = cost * period
        if units >= cost_units:
            units -= cost_units
            b[0] = units
            return True, units // period, 0
        b[0] = units
        deficit = cost_units - units
        return False, units // period, (deficit + self.refill_tokens - 1) // self.refill_tokens

    def _make_room(self, now_ns: int) -> None:
        buckets = self._buckets
        while buckets:
            key = next(iter(buckets))
            if self._level(buckets[key], now_ns) < self._cap_units:
                break
            del buckets[key]
        if len(buckets) >= self.max_keys:
            del buckets[next(iter(buckets))]

    def sweep(self, now_ns: int) -> int:
        """Drop every bucket that has refilled completely; returns how many were dropped."""
        full = [k for k, b in self._buckets.items() if self._level(b, now_ns) >= self._cap_units]
        for k in full:
            del self._buckets[k]
        return len(full)

    def clear(self) -> None:
        self._buckets.clear()


class LimitFront:
    """One limit taken in this worker, on a route whose only plugin it is (a `Plugin.front`: it sees the request
    before any plugin context exists; `fastgw.plugins.rate_limit._front` builds it). Called with the exchange and
    the client's address, it takes a token under the request's key (`key_of(req, client_ip, route.info)`, or the
    address itself when `key_of` is None), at `time.monotonic_ns() // 1000` (the limiter counts microseconds).

    Allowed: when `fields` is given, the response will carry the RateLimit fields (`ExchangeState.reply_lines`, in
    place of the response's own fields named in `names`): `fields` is (before the remaining count, before the reset,
    after it) and the reset is the whole seconds until the bucket is full again, `burst - remaining` tokens at `rate`
    per `period_us`, rounded up. Then `after(ex, client_ip, key)` runs when `always` is true or the worker observes its
    exchanges (`ex.t0` set: the hybrid policy counts; the access log wants `rate_limit`), the route's stripped
    headers go, and the integration starts. Refused: `refuse(ex, client_ip, remaining, wait)` answers (wait: the
    microseconds until a token is there, -1 never). Always returns True: the front took the request."""

    __slots__ = ("table", "key_of", "fields", "names", "burst", "rate", "period_us", "refuse", "after", "always")

    def __init__(
        self,
        table: BucketTable,
        key_of: Any,
        fields: tuple[bytes, bytes, bytes] | None,
        names: tuple[bytes, ...],
        burst: int,
        rate: int,
        period_us: int,
        refuse: Any,
        after: Any,
        always: bool,
    ) -> None:
        self.table = table
        self.key_of = key_of
        self.fields = fields
        self.names = names
        self.burst = burst
        self.rate = rate
        self.period_us = period_us
        self.refuse = refuse
        self.after = after
        self.always = always

    def __call__(self, ex: Any, client_ip: str) -> bool:
        req = ex.req
        route = ex.route
        key = client_ip if self.key_of is None else self.key_of(req, client_ip, route.info)
        ok, remaining, wait = self.table.take(key, time.monotonic_ns() // 1000)
        if not ok:
            self.refuse(ex, client_ip, remaining, wait)
            return True
        fields = self.fields
        if fields is not None:
            reset = -(-((self.burst - remaining) * self.period_us) // (self.rate * 1_000_000))
            ex.reply_lines = b"%b%d%b%d%b" % (fields[0], remaining, fields[1], reset, fields[2])
            ex.reply_names = self.names
        # NOTE: `ex.t0` is set (by dispatch) exactly when the worker observes its exchanges.
        if self.after is not None and (self.always or ex.t0 != 0.0):
            self.after(ex, client_ip, key)
        strip = route.chain.strip
        if strip:
            _strip_headers(req, strip)
        if req.expect_continue:
            ex.integrate()
        else:
            route.start(ex)
        return True
