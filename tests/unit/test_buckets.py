from __future__ import annotations

import pytest

from fastgw.core import COMPILED
from fastgw.core import limit as pylimit

IMPLS = [pytest.param(pylimit, id="pylimit")]
if COMPILED:
    from fastgw import _core

    IMPLS.append(pytest.param(_core, id="compiled"))

SEC = 1_000_000_000


@pytest.fixture(params=IMPLS)
def impl(request):
    return request.param


def test_burst_then_refill(impl):
    b = impl.BucketTable(capacity=3, refill_tokens=1, refill_period_ns=SEC)
    assert [b.take("k", 0) for _ in range(4)] == [(True, 2, 0), (True, 1, 0), (True, 0, 0), (False, 0, SEC)]
    assert b.take("k", SEC // 2) == (False, 0, SEC // 2)
    assert b.take("k", SEC) == (True, 0, 0)
    assert b.take("k", 10 * SEC) == (True, 2, 0)  # refill stops at capacity


def test_fractional_rates_are_exact(impl):
    b = impl.BucketTable(capacity=1, refill_tokens=3, refill_period_ns=SEC)  # 3 per second
    assert b.take("k", 0) == (True, 0, 0)
    assert b.take("k", 0) == (False, 0, 333_333_334)  # ceil(1e9/3)
    assert b.take("k", 333_333_333)[0] is False
    assert b.take("k", 333_333_334)[0] is True


def test_cost_and_keys_are_independent(impl):
    b = impl.BucketTable(capacity=10, refill_tokens=10, refill_period_ns=SEC)
    assert b.take("a", 0, cost=7) == (True, 3, 0)
    assert b.take("a", 0, cost=4) == (False, 3, SEC // 10)
    assert b.take("b", 0, cost=10) == (True, 0, 0)
    assert b.take("a", 0, cost=11) == (False, 3, -1)  # more than the bucket can ever hold
    assert b.take("a", 0, cost=0) == (True, 3, 0)
    with pytest.raises(ValueError):
        b.take("a", 0, cost=-1)


def test_clock_going_backwards_neither_refills_nor_drains(impl):
    b = impl.BucketTable(capacity=2, refill_tokens=1, refill_period_ns=SEC)
    b.take("k", 5 * SEC)
    b.take("k", 5 * SEC)
    assert b.take("k", 4 * SEC) == (False, 0, SEC)
    assert b.take("k", 6 * SEC) == (True, 0, 0)


def test_bounded_keys_evict_idle_then_least_recent(impl):
    b = impl.BucketTable(capacity=2, refill_tokens=1, refill_period_ns=SEC, max_keys=3)
    for k in ("a", "b", "c"):
        b.take(k, 0)
    b.take("a", 0)  # "a" is now empty and most recently used
    b.take("d", 0)  # all active: the least recently used ("b") goes
    assert len(b) == 3
    assert b.take("a", 0) == (False, 0, SEC)  # kept its state
    assert b.take("b", 0) == (True, 1, 0)  # came back new (and pushed out "c")
    # After a long pause every bucket is full again, i.e. idle: they are the first to go, and sweep drops them.
    assert b.sweep(100 * SEC) == 3
    assert len(b) == 0


def test_invalid_tables(impl):
    with pytest.raises(ValueError):
        impl.BucketTable(0, 1, SEC)
    with pytest.raises(ValueError):
        impl.BucketTable(1 << 40, 1, 1 << 30)
