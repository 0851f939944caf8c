"""rate-limit on Redis, with a real redis-server of the test's own: the redis policy answers as the local one;
one limit holds across two gateway processes (and across the workers of one); Redis stopped mid-test gives
fail_open (served) and fail_closed (503) without waiting, and limiting comes back when Redis does; hybrid
reconciles the workers' counts; usage plans' throttle and quota."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from fastgw.plugins import rate_limit
from fastgw.testing import EchoUpstream, http_request
from tests.integration.gwprocess import GatewayProcess

pytestmark = pytest.mark.asyncio


@pytest.fixture(autouse=True)
def fresh_buckets():
    rate_limit._TABLES.clear()
    yield
    rate_limit._TABLES.clear()


def _cfg(upstream: EchoUpstream, redis_url: str, plugin: dict, **top) -> dict:
    integ = {"type": "http", "upstream": "b"}
    cfg = {
        "redis": {"url": redis_url},
        "upstreams": {"b": {"targets": [upstream.url]}},
        "routes": [{"path": "/{proxy+}", "integration": integ, "plugins": {"rate-limit": plugin}}],
        "logging": {"access_log": False},
    }
    cfg.update(top)
    return cfg


async def test_redis_policy_answers_as_local(redis_server, upstream, gateway):
    srv = await gateway(_cfg(upstream, redis_server.url, {"rate": 2, "period": 1, "burst": 3, "policy": "redis"}))
    for run in range(2):
        got = [await http_request(srv.port, "GET", "/x") for _ in range(4)]
        assert [r.status for r in got] == [200, 200, 200, 429], run
        assert [r.header("ratelimit-remaining") for r in got] == ["2", "1", "0", "0"]
        assert got[3].header("retry-after") == "1"
        assert orjson.loads(got[3].body) == {"message": "Too Many Requests"}
        await asyncio.sleep(0.55)
        assert (await http_request(srv.port, "GET", "/x")).status == 200
        assert (await http_request(srv.port, "GET", "/x")).status == 429
        await asyncio.sleep(1.6)
    assert len(upstream.received) == 8


async def test_one_limit_holds_across_two_gateway_processes_with_workers(redis_server, upstream, tmp_path):
    cfg = tmp_path / "gw.json"
    cfg.write_bytes(orjson.dumps(_cfg(upstream, redis_server.url, {"rate": 5, "period": 60, "policy": "redis"})))
    a = await GatewayProcess(cfg, "--workers", "2").start()
    b = await GatewayProcess(cfg).start()
    try:
        statuses = []
        for i in range(8):
            # New connections spread over a's two workers; b is another gateway.
            r = await http_request((a.port, b.port)[i % 2], "GET", "/x")
            statuses.append(r.status)
        assert statuses.count(200) == 5 and statuses[5:] == [429, 429, 429], statuses
        assert len(upstream.received) == 5
    finally:
        await a.stop()
        await b.stop()


async def test_redis_gone_fail_open_and_fail_closed_then_back(redis_server, upstream, gateway):
    integ = {"type": "http", "upstream": "b"}
    limit = {"rate": 2, "period": 60, "policy": "redis"}
    cfg = {
        "redis": {"url": redis_server.url, "timeout": 0.2, "connect_timeout": 0.2, "backoff_max": 0.3},
        "upstreams": {"b": {"targets": [upstream.url]}},
        "routes": [
            {"path": "/open", "integration": integ, "plugins": {"rate-limit": limit}},
            {"path": "/closed", "integration": integ,
             "plugins": {"rate-limit": {**limit, "on_redis_failure": "fail_closed", "name": "closed"}}},
        ],
    }  # fmt: skip
    srv = await gateway(cfg)
    assert [(await http_request(srv.port, "GET", "/open")).status for _ in range(3)] == [200, 200, 429]
    redis_server.stop()
    for _ in range(2):
        t0 = time.monotonic()
        r_open = await http_request(srv.port, "GET", "/open")
        r_closed = await http_request(srv.port, "GET", "/closed")
        assert time.monotonic() - t0 < 1.0  # never longer than the short timeouts
        assert r_open.status == 200 and r_open.header("ratelimit-limit") is None  # served, not limited
        assert r_closed.status == 503 and orjson.loads(r_closed.body) == {"message": "Service Unavailable"}
    redis_server.start()  # same port, empty: the buckets start full again
    await asyncio.sleep(0.4)  # past the backoff
    deadline = time.monotonic() + 5
    while (await http_request(srv.port, "GET", "/closed")).status == 503:
        assert time.monotonic() < deadline, "no recovery after Redis came back"
        await asyncio.sleep(0.1)
    assert [(await http_request(srv.port, "GET", "/open")).status for _ in range(3)] == [200, 200, 429]


async def test_hybrid_decides_locally_and_learns_what_others_spent(redis_server, upstream, tmp_path):
    cfg = tmp_path / "gw.json"
    plugin = {"rate": 4, "period": 60, "policy": "hybrid", "sync_interval": 0.05}
    cfg.write_bytes(orjson.dumps(_cfg(upstream, redis_server.url, plugin)))
    a = await GatewayProcess(cfg).start()
    b = await GatewayProcess(cfg).start()
    try:
        assert [(await http_request(a.port, "GET", "/x")).status for _ in range(5)] == [200] * 4 + [429]
        await asyncio.sleep(0.3)  # a's counts reach Redis
        # b's first request passes on its own bucket (the stated overshoot: one sync interval's worth per worker);
        # its sync learns the bucket is empty, and then it refuses too.
        assert (await http_request(b.port, "GET", "/x")).status == 200
        await asyncio.sleep(0.3)
        assert (await http_request(b.port, "GET", "/x")).status == 429
    finally:
        await a.stop()
        await b.stop()


def _plan_cfg(upstream: EchoUpstream, redis_url: str | None, plan: dict) -> dict:
    integ = {"type": "http", "upstream": "b"}
    cfg = {
        "upstreams": {"b": {"targets": [upstream.url]}},
        "plugins": {"key-auth": {}},
        "usage_plans": {"basic": plan},
        "consumers": {
            "alice": {"usage_plan": "basic", "credentials": {"key-auth": [{"key": "alice-key"}]}},
            "bob": {"usage_plan": "basic", "credentials": {"key-auth": [{"key": "bob-key"}]}},
            "carol": {"credentials": {"key-auth": [{"key": "carol-key"}]}},
        },
        "routes": [{"path": "/{proxy+}", "integration": integ}],
    }
    if redis_url:
        cfg["redis"] = {"url": redis_url}
    return cfg


@pytest.mark.parametrize("where", ["local", "redis"])
async def test_usage_plan_quota_and_throttle(redis_server, upstream, gateway, where):
    url = redis_server.url if where == "redis" else None
    srv = await gateway(_plan_cfg(upstream, url, {"quota": {"limit": 3, "period": "day"}}))

    async def call(who: str):
        return await http_request(srv.port, "GET", "/x", headers={"apikey": f"{who}-key"})

    for who in ("alice", "bob"):  # a quota per consumer
        got = [await call(who) for _ in range(4)]
        assert [r.status for r in got] == [200, 200, 200, 429]
        assert orjson.loads(got[3].body) == {"message": "Limit Exceeded"}
    assert [(await call("carol")).status for _ in range(5)] == [200] * 5  # no plan, no quota
    assert len(upstream.received) == 3 + 3 + 5

    rate_limit._TABLES.clear()
    srv = await gateway(_plan_cfg(upstream, url, {"throttle": {"rate": 1, "burst": 2}, "quota": {"limit": 100}}))
    got = [await call("alice") for _ in range(3)]
    assert [r.status for r in got] == [200, 200, 429]
    assert orjson.loads(got[2].body) == {"message": "Too Many Requests"}
    await asyncio.sleep(1.05)
    assert (await call("alice")).status == 200


async def test_usage_plan_quota_in_redis_is_shared_by_gateways(redis_server, upstream, gateway):
    cfg = _plan_cfg(upstream, redis_server.url, {"quota": {"limit": 2, "period": "month"}})
    a = await gateway(cfg)
    b = await gateway(cfg)
    h = {"apikey": "alice-key"}
    assert (await http_request(a.port, "GET", "/x", headers=h)).status == 200
    assert (await http_request(b.port, "GET", "/x", headers=h)).status == 200
    assert (await http_request(a.port, "GET", "/x", headers=h)).status == 429
    assert (await http_request(b.port, "GET", "/x", headers=h)).status == 429
