"""Balancers, the breaker, outlier ejection and the retry budget, driven directly (no sockets, time injected)."""

from __future__ import annotations

import random
from collections import Counter

import msgspec
import pytest

from fastgw.config.schema import BreakerConfig, PassiveCheck, RetryConfig
from fastgw.config.schema import Upstream as UpstreamConfig
from fastgw.proxy.balancer import ConsistentHash, LeastConnections, RandomTwoChoices, RoundRobin, SmoothWeighted
from fastgw.proxy.breaker import CLOSED, HALF_OPEN, OPEN, Breaker
from fastgw.proxy.health import Outlier
from fastgw.proxy.pool import Target, Upstream
from fastgw.proxy.retry import RetryBudget

CONF = msgspec.convert({"targets": ["http://127.0.0.1:1"]}, UpstreamConfig)


def targets(*weights: int) -> list[Target]:
    return [Target(f"http://10.0.0.{i + 1}:80", CONF, w) for i, w in enumerate(weights)]


def test_round_robin_takes_turns():
    ts = targets(1, 1, 1)
    b = RoundRobin(ts)
    assert [b.pick(None) for _ in range(6)] == ts + ts
    assert b.picks == 6


def test_smooth_weighted_spreads_the_heavy_target_as_nginx_does():
    a, b, c = ts = targets(5, 1, 1)
    rr = SmoothWeighted(ts)
    # nginx's documented sequence for weights 5, 1, 1: never five a's in a row.
    assert [rr.pick(None) for _ in range(7)] == [a, a, b, a, c, a, a]


@pytest.mark.parametrize("balancer", [SmoothWeighted, lambda ts: RandomTwoChoices(ts, random.Random(7))])
def test_weights_hold_over_ten_thousand_picks(balancer):
    ts = targets(1, 2, 7)
    b = balancer(ts)
    counts = Counter(b.pick(None) for _ in range(10_000))
    for t in ts:
        assert counts[t] / 10_000 == pytest.approx(t.weight / 10, abs=0.02)


def test_least_connections_prefers_the_least_busy_by_weight():
    a, b, c = ts = targets(1, 1, 2)
    a.open, b.open, c.open = 3, 1, 3  # c: 3 busy for weight 2 is 1.5 per weight; b: 1
    lc = LeastConnections(ts)
    assert lc.pick(None) is b
    b.open = 5
    assert lc.pick(None) is c
    a.open = b.open = c.open = 0
    assert {lc.pick(None) for _ in range(3)} == {a, b, c}  # ties go round-robin


def test_least_connections_counts_idle_connections_as_free():
    a, b = ts = targets(1, 1)
    a.open, b.open = 4, 1
    a.idle = [object()] * 4  # type: ignore[list-item]
    assert LeastConnections(ts).pick(None) is a


def test_random_two_choices_picks_the_less_busy_of_two():
    a, b = ts = targets(1, 1)
    a.open = 10
    r = RandomTwoChoices(ts, random.Random(1))
    counts = Counter(r.pick(None) for _ in range(1000))
    # b wins whenever it is drawn at least once: 3 draws in 4.
    assert counts[b] / 1000 == pytest.approx(0.75, abs=0.05)


def test_consistent_hash_moves_only_the_removed_targets_keys():
    ts = targets(1, 1, 1, 1, 1)
    ring = ConsistentHash(ts, "path")
    keys = [f"/users/{i}".encode() for i in range(10_000)]
    before = {k: ring.lookup(k) for k in keys}
    share = Counter(before.values())
    for t in ts:
        assert share[t] / 10_000 == pytest.approx(0.2, abs=0.05)
    gone = ts[2]
    ring.update([t for t in ts if t is not gone])
    after = {k: ring.lookup(k) for k in keys}
    moved = [k for k in keys if after[k] is not before[k]]
    assert all(before[k] is gone for k in moved)  # only its own keys move
    assert len(moved) / 10_000 <= 1 / 5 + 0.05
    ring.update(ts)
    assert {k: ring.lookup(k) for k in keys} == before  # and come back when it does


def test_consistent_hash_weight_grows_the_share():
    ts = targets(1, 3)
    ring = ConsistentHash(ts, "ip")
    share = Counter(ring.lookup(b"10.1.%d.%d" % (i // 256, i % 256)) for i in range(10_000))
    assert share[ts[1]] / 10_000 == pytest.approx(0.75, abs=0.05)


def test_breaker_three_states():
    changes = []
    conf = BreakerConfig(consecutive_failures=3, failure_ratio=None, cool_down=10, probes=2)
    br = Breaker(conf, lambda state, why: changes.append(state))
    for now in (1, 2):
        br.record(False, now)
    br.record(True, 3)  # a success breaks the run
    for now in (4, 5):
        br.record(False, now)
    assert br.state == CLOSED
    br.record(False, 6)
    assert br.state == OPEN and not br.admit(7)
    br.tick(15)
    assert br.state == OPEN  # cooling down until 16
    br.tick(16)
    assert br.state == HALF_OPEN
    assert br.admit(16) and br.admit(16) and not br.admit(16)  # two probes, no more
    br.record(True, 17)
    br.record(False, 17)  # one failed probe opens it again
    assert br.state == OPEN
    br.tick(27)
    assert br.admit(27) and br.admit(27)
    br.record(True, 28)
    br.record(True, 28)
    assert br.state == CLOSED
    assert changes == [OPEN, HALF_OPEN, OPEN, HALF_OPEN, CLOSED]


def test_breaker_opens_on_a_failure_ratio_within_its_window():
    conf = BreakerConfig(consecutive_failures=None, failure_ratio=0.5, min_requests=10, window=10)
    br = Breaker(conf, lambda state, why: None)
    for i in range(9):
        br.record(i % 2 == 0, 0.1 * i)  # 4 failures in 9: too few answers to judge
    assert br.state == CLOSED
    br.record(False, 1.0)  # 5 of 10
    assert br.state == OPEN
    br2 = Breaker(conf, lambda state, why: None)
    for i in range(10):
        br2.record(i % 2 == 0, 3.0 * i)  # the same answers spread over 30 s: never 10 in one window
    assert br2.state == CLOSED


def test_ejection_time_grows_with_repeats_and_decays():
    conf = PassiveCheck(consecutive_failures=2, base_ejection=10, max_ejection=25)
    o = Outlier(conf)
    assert o.record(False) is None
    assert o.record(False) is not None
    assert o.eject(0) == 10
    assert not o.tick(9) and o.tick(10)
    o.record(False)
    assert o.record(False) is not None
    assert o.eject(11) == 20  # the second ejection lasts twice as long
    assert o.tick(31)
    o.record(False)
    o.record(False)
    assert o.eject(32) == 25  # capped at max_ejection
    assert o.tick(57)
    o.tick(67)  # 10 s in rotation without failing: one ejection forgiven
    assert o.ejections == 2


def test_outlier_failure_ratio():
    o = Outlier(PassiveCheck(consecutive_failures=None, failure_ratio=0.3, min_requests=10))
    results = [o.record(i % 3 != 0) for i in range(10)]  # 4 failures in 10
    assert results[:-1] == [None] * 9 and results[-1] is not None


def test_retry_budget_allows_a_ratio_of_the_requests():
    rr = RoundRobin(targets(1, 1))
    budget = RetryBudget(0.2, 3, rr)
    assert [budget.allow() for _ in range(4)] == [True, True, True, False]  # budget_min with no traffic
    for _ in range(100):
        rr.pick(None)
    allowed = sum(budget.allow() for _ in range(100))
    assert allowed == 20
    # The window moves on: after 10 s of marks the old retries no longer count.
    for s in range(11):
        budget.tick(float(s))
    assert budget.allow()


def test_upstream_pick_skips_targets_out_of_rotation():
    conf = msgspec.convert(
        {"targets": ["http://10.0.0.1:80", "http://10.0.0.2:80"], "breaker": {"consecutive_failures": 1}},
        UpstreamConfig,
    )
    up = Upstream("u", conf)
    a, b = up.targets
    assert up.only is None  # a breaker can take the target out: a choice per request
    a.watch.failed("refused")  # type: ignore[union-attr]
    assert up.live == [b]
    assert {up.pick(None) for _ in range(4)} == {b}
    b.watch.failed("refused")  # type: ignore[union-attr]
    assert up.pick(None) is None
    assert [t["breaker"] for t in up.status()["targets"]] == ["open", "open"]


def test_retry_config_defaults_are_nginxs():
    conf = RetryConfig()
    assert conf.attempts == 2 and conf.when == ["error", "timeout"] and "POST" not in conf.methods
