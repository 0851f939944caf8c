"""A Redis Cluster made by the test (three nodes, no replicas): rate limits hold across two gateways, whether a
request's buckets share a slot (one script) or not (one script per key value), and the cache is shared."""

from __future__ import annotations

import asyncio

import pytest
import pytest_asyncio

from fastgw.plugins import rate_limit
from fastgw.state import redis as redis_state
from fastgw.testing import http_request
from tests.redisproc import RedisCluster

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def cluster(tmp_path):
    c = RedisCluster(str(tmp_path)).start()
    yield c
    await redis_state.aclose_all()
    c.stop()


async def test_limits_and_cache_on_a_cluster(cluster, upstream, gateway):
    rate_limit._TABLES.clear()
    integ = {"type": "http", "upstream": "b"}
    same_slot = {"limits": [{"rate": 3, "period": 60}, {"rate": 100, "period": 3600}], "policy": "redis"}
    two_slots = {"limits": [{"rate": 2, "period": 60, "key": "ip"}, {"rate": 50, "period": 60,
                 "key": "header:X-Tenant"}], "policy": "redis", "name": "two"}  # fmt: skip
    cfg = {
        "redis": {"url": cluster.url, "cluster": True, "timeout": 1.0, "connect_timeout": 1.0},
        "upstreams": {"b": {"targets": [upstream.url]}},
        "routes": [
            {"path": "/same", "integration": integ, "plugins": {"rate-limit": same_slot}},
            {"path": "/two", "integration": integ, "plugins": {"rate-limit": two_slots}},
            {"path": "/cached", "integration": integ, "plugins": {"proxy-cache": {"backend": "redis"}}},
        ],
    }
    a, b = await gateway(cfg), await gateway(cfg)
    got = [(await http_request((a, b)[i % 2].port, "GET", "/same")).status for i in range(5)]
    assert got == [200, 200, 200, 429, 429]
    t = {"x-tenant": "one"}
    got = [(await http_request((a, b)[i % 2].port, "GET", "/two", headers=t)).status for i in range(3)]
    assert got == [200, 200, 429]
    r1 = await http_request(a.port, "GET", "/cached")
    await asyncio.sleep(0.1)
    r2 = await http_request(b.port, "GET", "/cached")
    assert (r1.header("x-cache-status"), r2.header("x-cache-status")) == ("MISS", "HIT")
    assert len(upstream.received) == 3 + 2 + 1
