"""`LimitFront` (one local rate limit decided before any plugin context exists): the compiled class and its pure
twin take the same tokens and ask for the same response fields, for any sequence of requests over a few keys and
any limit; and the fields land in the head `finish_head` ends, in place of the upstream's own (the sink twins)."""

from __future__ import annotations

import types

import pytest
from httptools import HttpResponseParser
from hypothesis import given, settings
from hypothesis import strategies as st

from fastgw import core
from fastgw.core import http as pyhttp
from fastgw.core import limit as pylimit
from fastgw.core import phases as pyphases

if not core.COMPILED:
    pytest.skip("compiled core not built (FASTGW_NO_EXTENSIONS or no extension)", allow_module_level=True)

from fastgw import _core  # noqa: E402

NAMES = (b"ratelimit-limit", b"ratelimit-remaining", b"ratelimit-reset", b"ratelimit-policy")
FIELDS = (b"ratelimit-limit: 3\r\nratelimit-remaining: ", b"\r\nratelimit-reset: ", b"\r\nratelimit-policy: p\r\n")


class Route:
    """What a front reads of the served route; `start` records the exchanges it was handed."""

    def __init__(self, strip: frozenset[bytes]) -> None:
        self.info = types.SimpleNamespace(api="a", stage="s", name="r")
        self.chain = types.SimpleNamespace(strip=strip)
        self.started: list[object] = []

    def start(self, ex: object) -> None:
        self.started.append(ex)


def _exchange(impl: types.ModuleType, route: Route, header: bytes, observing: bool) -> object:
    req = impl.Request()
    req.headers = [(b"x-key", header), (b"x-consumer", b"spoofed")]
    # t0: dispatch's clock reading, taken only when the worker observes
    return impl.ExchangeState(req, route, None, None, None, 1.5 if observing else 0.0)


def _run(impl: types.ModuleType, pure: types.ModuleType, limit: tuple, requests: list, by_header: bool) -> list:
    burst, rate, period_us, with_fields, always = limit
    table = pure.BucketTable(burst, rate, period_us)
    refused: list[tuple] = []
    after: list[tuple] = []
    route = Route(frozenset({b"x-consumer"}))

    def key_of(req: object, ip: str, info: object) -> str:
        return next(v.decode() for k, v in req.headers if k == b"x-key")  # type: ignore[attr-defined]

    front = pure.LimitFront(
        table, key_of if by_header else None, FIELDS if with_fields else None, NAMES, burst, rate, period_us,
        lambda ex, ip, remaining, wait: refused.append((ip, remaining, wait > 0 or wait == -1)),
        lambda ex, ip, key: after.append((ip, key)), always,
    )  # fmt: skip
    out = []
    for ip, header, observing in requests:
        ex = _exchange(impl, route, header, observing)
        assert front(ex, ip) is True
        out.append((ex.reply_lines, ex.reply_names, [h for h, _ in ex.req.headers], ex in route.started))
    return [out, refused, after]


LIMIT = st.tuples(
    st.integers(1, 4), st.integers(1, 1000), st.sampled_from([1, 999, 10**6, 3 * 10**6, 86_400 * 10**6]),
    st.booleans(), st.booleans(),
)  # fmt: skip
REQUESTS = st.lists(
    st.tuples(st.sampled_from(["10.0.0.1", "::1"]), st.sampled_from([b"k1", b"k2"]), st.booleans()), max_size=12
)


@settings(max_examples=300, deadline=None)
@given(limit=LIMIT, requests=REQUESTS, by_header=st.booleans())
def test_both_fronts_take_the_same_tokens_and_ask_for_the_same_fields(limit, requests, by_header):
    # Each twin reads the clock itself, so the two runs compare only where nothing refills within a test: a token
    # comes every minute at the fastest (the period stretched where it would come sooner).
    burst, rate, period_us, *rest = limit
    limit = (burst, rate, max(period_us, rate * 60 * 10**6), *rest)
    fast = _run(_core, _core, limit, requests, by_header)
    slow = _run(pyhttp, pylimit, limit, requests, by_header)
    assert fast == slow
    # Exactly `burst` requests of one key pass (nothing refills within the test).
    out, refused, after = slow
    keys = [(h if by_header else ip) for ip, h, _ in requests]
    for k in set(keys):
        passed = [o for o, kk in zip(out, keys, strict=True) if kk == k and o[3]]
        assert len(passed) == min(limit[0], keys.count(k))
    assert len(refused) == len(out) - sum(o[3] for o in out)


def test_the_fields_count_down_and_name_the_reset():
    for impl, pure in ((_core, _core), (pyhttp, pylimit)):
        table = pure.BucketTable(3, 1, 2_000_000)  # 3 at once, then one every 2 s
        front = pure.LimitFront(table, None, FIELDS, NAMES, 3, 1, 2_000_000, None, None, False)
        lines = []
        for _ in range(3):
            ex = _exchange(impl, Route(frozenset()), b"", False)
            front(ex, "10.0.0.9")
            lines.append(ex.reply_lines)
        assert lines == [
            b"ratelimit-limit: 3\r\nratelimit-remaining: 2\r\nratelimit-reset: 2\r\nratelimit-policy: p\r\n",
            b"ratelimit-limit: 3\r\nratelimit-remaining: 1\r\nratelimit-reset: 4\r\nratelimit-policy: p\r\n",
            b"ratelimit-limit: 3\r\nratelimit-remaining: 0\r\nratelimit-reset: 6\r\nratelimit-policy: p\r\n",
        ], impl


UPSTREAM_FIELD = st.sampled_from(
    [b"Server: x", b"RateLimit-Limit: 9", b"ratelimit-reset: 1", b"RATELIMIT-POLICY: p", b"x-ratelimit-limit: 3",
     b"ratelimit-limits: 4", b"Date: today", b"a: ratelimit-limit: 5", b"Content-Type: text/plain"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(fields=st.lists(UPSTREAM_FIELD, max_size=6), reply=st.booleans(), status=st.sampled_from([200, 304, 502]))
def test_the_sinks_write_the_fields_in_place_of_the_upstreams(fields, reply, status):
    response = b"\r\n".join([b"HTTP/1.1 %d X" % status, *fields, b"Content-Length: 0", b"", b""])
    heads = []
    for impl in (_core, pyhttp):
        ex = impl.ExchangeState(impl.Request(), None, None, None, None)
        if reply:
            ex.reply_lines, ex.reply_names = b"ratelimit-limit: 5\r\n", NAMES
        sink = impl.ResponseSink()
        sink.parser = HttpResponseParser(sink)
        sink.begin(ex, b"server: fastgw\r\n", False, b"date: d\r\n", types.SimpleNamespace(closing=False))
        sink.parser.feed_data(response)
        heads.append(b"".join(sink.out))
    assert heads[0] == heads[1]
    named = [ln for ln in heads[0].split(b"\r\n\r\n")[0].split(b"\r\n") if ln.partition(b":")[0].lower() in NAMES]
    if reply:
        assert named == [b"ratelimit-limit: 5"]
    else:
        assert named == [f for f in fields if f.partition(b":")[0].lower() in NAMES]


def test_pure_twin_module_exports_only_twinned_names():
    assert set(pylimit.__all__) <= set(core.TWINNED)
    assert not set(pylimit.__all__) & set(pyphases.__all__)


OP = st.tuples(
    st.sampled_from(["a", "b", "c", "d", "e"]),
    st.integers(min_value=-(10**9), max_value=5 * 10**9),  # clock step, sometimes backwards
    st.integers(min_value=0, max_value=12),
)


@settings(max_examples=300, deadline=None)
@given(
    capacity=st.integers(1, 10),
    refill=st.integers(1, 7),
    period=st.sampled_from([1, 1000, 10**9, 3 * 10**9]),
    max_keys=st.integers(1, 6),
    ops=st.lists(OP, max_size=60),
    sweep_every=st.integers(0, 10),
)
def test_bucket_twins_agree(capacity, refill, period, max_keys, ops, sweep_every):
    fast = _core.BucketTable(capacity, refill, period, max_keys)
    slow = pylimit.BucketTable(capacity, refill, period, max_keys)
    now = 10**12
    for i, (key, step, cost) in enumerate(ops):
        now += step
        assert fast.take(key, now, cost) == slow.take(key, now, cost), (i, key, now, cost)
        assert len(fast) == len(slow) <= max_keys
        if sweep_every and i % sweep_every == 0:
            assert fast.sweep(now) == slow.sweep(now)
