"""What the cache and the limiters publish for the access log and metrics: `ctx.vars["cache_status"]` (the
X-Cache-Status value) and `ctx.vars["rate_limit"]` (allowed, refused, quota), read by a plugin's log phase on routes
whose chain runs, and by the access log on routes whose only plugin answers before any phase (`Plugin.front`: a cache
hit, one local limit)."""

from __future__ import annotations

import asyncio
import io

import orjson
import pytest

from fastgw.observability.accesslog import AccessLog
from fastgw.plugins import rate_limit
from fastgw.testing import EchoUpstream, http_request, running_gateway
from tests.plugins import sample
from tests.plugins.conftest import route_config

PROBE = ["tests.plugins.sample:VarsProbe"]


@pytest.fixture(autouse=True)
def fresh():
    rate_limit._TABLES.clear()
    sample.SEEN_VARS.clear()
    yield
    rate_limit._TABLES.clear()


async def _seen(n: int) -> list[tuple[str | None, str | None]]:
    for _ in range(200):  # the log phases run off the request path
        if len(sample.SEEN_VARS) >= n:
            break
        await asyncio.sleep(0.01)
    return list(sample.SEEN_VARS)


async def test_a_log_phase_reads_the_cache_status_and_the_limiters_decision(upstream, gateway):
    plugins = {"proxy-cache": {"ttl": 60}, "rate-limit": {"rate": 2, "period": 60}, "vars-probe": {}}
    srv = await gateway(route_config(upstream, plugins, plugin_modules=PROBE))
    statuses = [(await http_request(srv.port, "GET", "/a")).status for _ in range(3)]
    bypass = await http_request(srv.port, "POST", "/a")
    assert statuses == [200, 200, 429] and bypass.status == 429
    assert await _seen(4) == [("MISS", "allowed"), ("HIT", "allowed"), (None, "refused"), (None, "refused")]


async def test_a_usage_plan_says_quota_when_the_quota_refuses(gateway):
    mock = {"type": "mock", "body": "ok"}
    cfg = {
        "plugin_modules": PROBE,
        "plugins": {"key-auth": {}, "vars-probe": {}},
        "usage_plans": {"p": {"quota": {"limit": 1, "period": "day"}}},
        "consumers": {"alice": {"usage_plan": "p", "credentials": {"key-auth": [{"key": "k"}]}}},
        "routes": [{"path": "/a", "integration": mock}],
    }
    srv = await gateway(cfg)
    assert [(await http_request(srv.port, "GET", "/a", headers={"apikey": "k"})).status for _ in range(2)] == [200, 429]
    assert await _seen(2) == [(None, "allowed"), (None, "quota")]


async def test_the_access_log_has_them_when_the_only_plugin_answers_first():
    out = io.BytesIO()
    async with EchoUpstream() as up:
        cfg = route_config(up, {})
        cached = {"path": "/c", "integration": {"type": "http", "upstream": "backend"},
                  "plugins": {"proxy-cache": {"ttl": 60}}}  # fmt: skip
        limited = {"path": "/l", "integration": {"type": "http", "upstream": "backend"},
                   "plugins": {"rate-limit": {"rate": 1, "period": 60}}}  # fmt: skip
        cfg["routes"] = [cached, limited]
        cfg["logging"] = {"access_log": True}
        async with running_gateway(cfg, access_log=AccessLog(out)) as gw:
            answers = [await http_request(gw.port, "GET", path) for path in ("/c", "/c", "/l", "/l")]
    assert [r.header("x-cache-status") for r in answers[:2]] == ["MISS", "HIT"]
    assert [r.status for r in answers[2:]] == [200, 429]
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert [(e["path"], e.get("cache_status"), e.get("rate_limit")) for e in lines] == [
        ("/c", "MISS", None), ("/c", "HIT", None), ("/l", None, "allowed"), ("/l", None, "refused"),
    ]  # fmt: skip
    # What was sent is counted on the short ways too: head and body, more than the body alone.
    assert all(e["response_bytes"] > len(r.body) for e, r in zip(lines, answers, strict=True)), lines


async def test_the_limits_fields_replace_those_the_upstream_sent_when_the_limit_answers_first(upstream, gateway):
    # One local limit alone on the route (its front writes the fields into the head on the way out).
    srv = await gateway(route_config(upstream, {"rate-limit": {"rate": 5, "period": 60}}))
    r = await http_request(srv.port, "GET", "/headers?RateLimit-Limit=99&RateLimit-Remaining=98&x-kept=1")
    assert r.status == 200 and r.header("x-kept") == "1"
    fields = [(k.lower(), v) for k, v in r.headers if k.lower().startswith("ratelimit-")]
    assert fields == [("ratelimit-limit", "5"), ("ratelimit-remaining", "4"), ("ratelimit-reset", "12"),
                      ("ratelimit-policy", "5;w=60")]  # fmt: skip
