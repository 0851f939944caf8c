"""The Redis policy's Lua script makes the local decision exactly: random sequences of requests (time steps,
costs, several buckets at once) give the same (allowed, remaining, wait) from the script on a real redis-server
and from `take_all` over the pure twin's and the compiled BucketTable."""

from __future__ import annotations

import itertools

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastgw.core import BucketTable as CoreTable
from fastgw.core import limit as pylimit
from fastgw.plugins import rate_limit
from fastgw.plugins.rate_limit import TAKE_SCRIPT, Limit, Rule, take_all, take_args
from tests.redisproc import RedisProcess

_ids = itertools.count()


@pytest.fixture(scope="module")
def client():
    server = RedisProcess().start()
    c = redis.Redis(port=server.port)
    yield c
    c.close()
    server.stop()


limits = st.builds(
    lambda rate, burst, period_ms: (rate, burst, period_ms),
    st.integers(1, 50),
    st.integers(1, 20),
    st.sampled_from([1, 7, 250, 1000, 60_000, 3_600_000, 86_400_000]),
)
ops = st.lists(
    st.tuples(st.integers(0, 3_000_000), st.integers(0, 3), st.lists(st.integers(0, 2), min_size=1, max_size=3)),
    min_size=1,
    max_size=40,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(specs=st.lists(limits, min_size=1, max_size=3), steps=ops, start=st.integers(0, 2**40))
def test_script_decides_as_the_local_tables(client, specs, steps, start):
    run = next(_ids)
    rate_limit._TABLES.clear()
    rules = tuple(
        Rule(Limit(rate=r, burst=b, period=p / 1000), f"prop{run}-{i}", 1000) for i, (r, b, p) in enumerate(specs)
    )
    pure = [pylimit.BucketTable(r.burst, r.rate, r.period_us) for r in rules]
    compiled = [CoreTable(r.burst, r.rate, r.period_us) for r in rules]
    script = client.register_script(TAKE_SCRIPT)
    now = start
    for dt, cost, who in steps:
        now += dt
        keys = [f"k{who[i % len(who)]}" for i in range(len(rules))]
        names = [f"prop{run}:{i}:{k}" for i, k in enumerate(keys)]
        out = script(keys=names, args=take_args(rules, now, cost))
        remote = [(out[0] == 1, out[1 + 2 * j], out[2 + 2 * j]) for j in range(len(rules))]
        for tables in (pure, compiled):
            for r, t in zip(rules, tables, strict=True):
                r.table = t
            local = take_all(rules, keys, now, cost)
            assert remote == [(a, rem, w) for a, rem, w in local], (now, cost, keys)
        # And the state left behind, unit for unit (the pure twin shows its buckets).
        for name, t, k in zip(names, pure, keys, strict=True):
            units, last = client.hmget(name, "u", "t")
            assert [int(units), int(last)] == t._buckets[k], (name, now)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=limits, steps=st.lists(st.tuples(st.integers(0, 3_000_000), st.integers(0, 30)), min_size=1,
                                   max_size=30), start=st.integers(0, 2**40))  # fmt: skip
def test_hybrid_sync_script_refills_as_the_tables_and_spends_down_to_empty(client, spec, steps, start):
    run = next(_ids)
    rate_limit._TABLES.clear()
    rate, burst, period_ms = spec
    rule = Rule(Limit(rate=rate, burst=burst, period=period_ms / 1000), f"sync{run}", 1000)
    model = pylimit.BucketTable(rule.burst, rule.rate, rule.period_us)
    script = client.register_script(rate_limit.SYNC_SCRIPT)
    name = f"sync{run}:k"
    now = start
    for dt, used in steps:
        now += dt
        left = script(keys=[name], args=[now, rule.burst, rule.rate, rule.period_us, used])[0]
        model.take("k", now, 0)  # the refill
        b = model._buckets["k"]
        b[0] = max(0, b[0] - used * rule.period_us)  # what other workers passed, never below empty
        assert left == b[0] // rule.period_us
        assert [int(x) for x in client.hmget(name, "u", "t")] == b
