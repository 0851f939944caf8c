"""`rate-limit` with the local policy: exactly `burst` pass at once, the next is refused, one more passes after
period/rate; the RateLimit-* fields on every response of the route; keys, several limits, per consumer, per stage;
config errors with their key paths. The upstream only ever sees the requests that passed."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from fastgw.config.load import ConfigError, load_config_bytes
from fastgw.plugins import rate_limit
from fastgw.testing import http_request
from tests.plugins.conftest import TWICE, route_config


@pytest.fixture(autouse=True)
def fresh_buckets():
    # Buckets outlive a config (a reload keeps them): each test starts from none.
    rate_limit._TABLES.clear()
    yield
    rate_limit._TABLES.clear()


async def get(srv, path="/x", headers=None):
    return await http_request(srv.port, "GET", path, headers=headers or {})


async def test_burst_then_refused_then_one_more_after_period_over_rate(upstream, gateway):
    srv = await gateway(route_config(upstream, {"rate-limit": {"rate": 2, "period": 1, "burst": 3}}))
    for run in TWICE:
        seen = len(upstream.received)
        for i in range(3):
            r = await get(srv)
            assert r.status == 200, (run, i)
            assert r.header("ratelimit-limit") == "3"
            assert r.header("ratelimit-remaining") == str(2 - i)
            assert r.header("ratelimit-policy") == "3;w=1;rate=2"
        r = await get(srv)
        assert r.status == 429
        assert orjson.loads(r.body) == {"message": "Too Many Requests"}
        assert r.header("retry-after") == "1" and r.header("ratelimit-remaining") == "0"
        assert r.header("content-type") == "application/json"
        assert len(upstream.received) == seen + 3  # the refused one never reached the upstream
        await asyncio.sleep(0.55)  # period / rate = 0.5 s: one token back
        assert (await get(srv)).status == 200
        assert (await get(srv)).status == 429
        await asyncio.sleep(1.6)  # the bucket refills whole for the second run


async def test_several_limits_all_must_allow_and_a_refusal_takes_nothing(upstream, gateway):
    limits = [{"rate": 100, "period": 1, "burst": 2}, {"rate": 3, "period": 3600}]
    srv = await gateway(route_config(upstream, {"rate-limit": {"limits": limits, "key": "ip"}}))
    # Per second: 2 at once; per hour: 3. The first two pass, the third is refused by the per-second one.
    assert [(await get(srv)).status for _ in range(3)] == [200, 200, 429]
    await asyncio.sleep(0.05)
    r = await get(srv)  # the refused one took nothing from the hourly bucket
    assert r.status == 200
    assert r.header("ratelimit-limit") == "3" and r.header("ratelimit-remaining") == "0"  # the closest to refusing
    await asyncio.sleep(0.05)
    r = await get(srv)
    assert r.status == 429 and int(r.header("retry-after")) > 1000  # the hourly limit holds it back
    assert len(upstream.received) == 3


async def test_keys_header_and_route_and_combined(upstream, gateway):
    integ = {"type": "http", "upstream": "backend"}
    cfg = {
        "upstreams": {"backend": {"targets": [upstream.url]}},
        "plugins": {"rate-limit": {"rate": 1, "period": 60, "key": ["route", "header:X-Tenant"]}},
        "routes": [{"path": "/a", "integration": integ}, {"path": "/b", "integration": integ}],
    }
    srv = await gateway(cfg)
    t1, t2 = {"x-tenant": "one"}, {"x-tenant": "two"}
    assert (await get(srv, "/a", t1)).status == 200
    assert (await get(srv, "/a", t1)).status == 429
    assert (await get(srv, "/a", t2)).status == 200  # another tenant
    assert (await get(srv, "/b", t1)).status == 200  # another route
    assert (await get(srv, "/b", t1)).status == 429
    assert [rq.path for rq in upstream.received] == ["/a", "/a", "/b"]


async def test_ip_is_the_peer_unless_a_trusted_proxy_says_otherwise(upstream, gateway):
    spoof = {"x-forwarded-for": "203.0.113.9"}
    srv = await gateway(route_config(upstream, {"rate-limit": {"rate": 1, "period": 60}}))
    assert (await get(srv, headers=spoof)).status == 200
    # A client-chosen X-Forwarded-For is not another client.
    assert (await get(srv, headers={"x-forwarded-for": "203.0.113.10"})).status == 429
    rate_limit._TABLES.clear()
    srv2 = await gateway(
        route_config(upstream, {"rate-limit": {"rate": 1, "period": 60}}, server={"trusted_proxies": ["127.0.0.1"]})
    )
    assert (await get(srv2, headers=spoof)).status == 200
    assert (await get(srv2, headers=spoof)).status == 429
    assert (await get(srv2, headers={"x-forwarded-for": "203.0.113.10"})).status == 200  # behind a trusted proxy


async def test_per_consumer_limits_and_consumer_key_falls_back_to_ip(upstream, gateway, consumers):
    consumers["alice"]["plugins"] = {"rate-limit": {"rate": 3, "period": 60, "key": "consumer"}}
    cfg = route_config(
        upstream,
        {"key-auth": {}, "rate-limit": {"rate": 1, "period": 60, "key": "consumer"}},
        consumers=consumers,
    )
    srv = await gateway(cfg)
    alice, bob = {"apikey": "alice-key"}, {"apikey": "bob-key"}
    assert [(await get(srv, headers=alice)).status for _ in range(4)] == [200, 200, 200, 429]
    assert [(await get(srv, headers=bob)).status for _ in range(2)] == [200, 429]
    assert all(rq.header("x-consumer-username") in ("alice", "bob") for rq in upstream.received)
    assert len(upstream.received) == 4


async def test_consumer_key_without_authentication_is_the_ip(upstream, gateway):
    srv = await gateway(route_config(upstream, {"rate-limit": {"rate": 2, "period": 60, "key": "consumer"}}))
    assert [(await get(srv)).status for _ in range(3)] == [200, 200, 429]


async def test_per_stage_throttling_of_an_api(gateway):
    cfg = {
        "apis": {
            "shop": {
                "stages": {"prod": {}, "test": {}},
                "plugins": {"rate-limit": {"rate": 2, "period": 60, "key": "api"}},
                "routes": [
                    {"path": "/a", "integration": {"type": "mock", "body": "a"}},
                    {"path": "/b", "integration": {"type": "mock", "body": "b"}},
                ],
            }
        }
    }
    srv = await gateway(cfg)
    # One bucket per stage, shared by the stage's routes.
    assert [(await get(srv, p)).status for p in ("/prod/a", "/prod/b", "/prod/a")] == [200, 200, 429]
    r = await get(srv, "/test/a")
    assert r.status == 200 and r.body == b"a" and r.header("ratelimit-remaining") == "1"


async def test_headers_can_be_left_out_and_errors_from_plugins_keep_them(upstream, gateway):
    srv = await gateway(route_config(upstream, {"rate-limit": {"rate": 5, "headers": False}}))
    r = await get(srv)
    assert r.status == 200 and r.header("ratelimit-limit") is None
    rate_limit._TABLES.clear()
    srv = await gateway(route_config(upstream, {"rate-limit": {"rate": 5}}))
    r = await get(srv, "/status/503")  # an upstream error is a response of the route too
    assert r.status == 503 and r.header("ratelimit-remaining") == "4"


async def test_the_fast_way_and_the_usual_way_answer_the_same_fields(upstream, gateway):
    # One local limit alone on a route is decided in dispatch (fastgw.core.LimitFront, its fields written where
    # the head ends); beside another plugin it runs as an access phase. Both give the same fields, in place of any
    # the upstream or a mock sent itself, on proxied answers, gateway-made ones and errors (upstream down: 502).
    limit = {"rate": 2, "period": 60, "burst": 4}
    alone = route_config(upstream, {"rate-limit": limit})
    beside = route_config(upstream, {"rate-limit": limit, "request-id": {}})
    for cfg in (alone, beside):
        cfg["upstreams"]["down"] = {"targets": ["http://127.0.0.1:9"], "connect_timeout": 1}
        plugins = cfg["routes"][0]["plugins"]
        cfg["routes"] += [
            {"path": "/gone", "integration": {"type": "http", "upstream": "down"}, "plugins": plugins},
            {"path": "/mock", "plugins": plugins,
             "integration": {"type": "mock", "body": "m", "headers": {"RateLimit-Limit": "99", "X-M": "1"}}},
        ]  # fmt: skip
    answers = []
    for cfg in (alone, beside):
        rate_limit._TABLES.clear()
        srv = await gateway(cfg)
        seen = []
        for path in ("/headers?RateLimit-Limit=7&ratelimit-reset=1&X-Up=u", "/mock", "/gone", "/x"):
            r = await get(srv, path)
            fields = sorted((k.lower(), v) for k, v in r.headers if k.lower().startswith("ratelimit"))
            seen.append((r.status, fields, r.header("x-up") or r.header("x-m")))
        answers.append(seen)
    assert answers[0] == answers[1]
    first, mock, gone, last = answers[0]
    assert first == (200, [("ratelimit-limit", "4"), ("ratelimit-policy", "4;w=60;rate=2"),
                           ("ratelimit-remaining", "3"), ("ratelimit-reset", "30")], "u")  # fmt: skip
    assert mock[0] == 200 and mock[2] == "1" and ("ratelimit-limit", "4") in mock[1] and len(mock[1]) == 4
    assert gone[0] == 502 and ("ratelimit-remaining", "1") in gone[1]
    assert last[0] == 200 and ("ratelimit-remaining", "0") in last[1] and ("ratelimit-reset", "120") in last[1]


@pytest.mark.parametrize(
    ("plugin", "path", "needle"),
    [
        ({"rate": 0}, "$.routes[0].plugins.rate-limit.rate", ">= 1"),
        ({"rate": 1, "key": "cookie"}, "$.routes[0].plugins.rate-limit.key", "header:"),
        ({"rate": 1, "policy": "redis"}, "$.routes[0].plugins.rate-limit", "redis:"),
        ({}, "$.routes[0].plugins.rate-limit", "give `rate`"),
        ({"rate": 1, "burst": 10**9, "period": 86400}, "$.routes[0].plugins.rate-limit", "too large"),
    ],
)
def test_config_errors_name_the_key(plugin, path, needle):
    cfg = {"routes": [{"path": "/x", "integration": {"type": "mock"}, "plugins": {"rate-limit": plugin}}]}
    with pytest.raises(ConfigError) as exc:
        load_config_bytes(orjson.dumps(cfg), "gw.json")
    assert exc.value.source == "gw.json"
    assert exc.value.path == path, str(exc.value)
    assert needle in str(exc.value)


def test_a_consumers_usage_plan_must_exist():
    cfg = {"consumers": {"alice": {"usage_plan": "gold"}}, "usage_plans": {"basic": {"quota": {"limit": 5}}}}
    with pytest.raises(ConfigError) as exc:
        load_config_bytes(orjson.dumps(cfg), "gw.json")
    assert exc.value.path == "$.consumers.alice.usage_plan" and "basic" in exc.value.message


async def test_a_usage_plan_applies_on_its_apis_only(gateway):
    mock = {"type": "mock", "body": "ok"}
    cfg = {
        "plugins": {"key-auth": {}},
        "usage_plans": {"p": {"quota": {"limit": 1, "period": "week"}, "apis": ["shop/prod"]}},
        "consumers": {"alice": {"usage_plan": "p", "credentials": {"key-auth": [{"key": "k"}]}}},
        "apis": {"shop": {"stages": {"prod": {}, "test": {}}, "routes": [{"path": "/a", "integration": mock}]}},
    }
    srv = await gateway(cfg)
    key = {"apikey": "k"}
    assert [(await get(srv, "/prod/a", key)).status for _ in range(2)] == [200, 429]
    assert [(await get(srv, "/test/a", key)).status for _ in range(3)] == [200, 200, 200]  # not on the plan
