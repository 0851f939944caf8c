"""`usage-plan`: AWS usage plans for consumers (API keys): throttling (a token bucket per consumer, `rate` per
second and `burst`) and a quota (requests per UTC day, week from Monday, or month).

Not configured by hand: a consumer with `usage_plan: NAME` gets this plugin with the plan `usage_plans.NAME`
(fastgw.config.load), so it applies on every route where the consumer authenticates (or on the plan's `apis`).
Throttled: 429 `{"message":"Too Many Requests"}`; quota exhausted: 429 `{"message":"Limit Exceeded"}`, as API
Gateway answers. Counts live in Redis when the top-level `redis:` section is configured, per worker otherwise.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any, Literal

import msgspec

from fastgw.config.schema import Name, Quota, Throttle
from fastgw.plugins.base import Context, Plugin, Response
from fastgw.plugins.rate_limit import TAKE_SCRIPT, Limit, Rule, bucket_key, take_all, take_args
from fastgw.state import redis as redis_state

TOO_MANY = {"message": "Too Many Requests"}
LIMIT_EXCEEDED = {"message": "Limit Exceeded"}
UNAVAILABLE = {"message": "Service Unavailable"}

# Count one request in a quota window; the key expires a day after its window ends. KEYS: the window's counter.
# ARGV: the window's end (unix seconds). Returns the count, this request included.
QUOTA_SCRIPT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIREAT', KEYS[1], tonumber(ARGV[1]) + 86400) end
return n
"""


class UsagePlanConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    plan: Name
    throttle: Throttle | None = None
    quota: Quota | None = None
    apis: list[str] = msgspec.field(default_factory=list)
    policy: Literal["local", "redis"] | None = None
    on_redis_failure: Literal["fail_open", "fail_closed"] = "fail_open"


def window(period: str, now: float) -> tuple[str, int]:
    """The quota window `now` (unix seconds) falls in: its id and its end (unix seconds), UTC calendar periods."""
    day = dt.datetime.fromtimestamp(now, dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        start, end = day, day + dt.timedelta(days=1)
    elif period == "week":
        start = day - dt.timedelta(days=day.weekday())
        end = start + dt.timedelta(days=7)
    else:
        start = day.replace(day=1)
        end = (start + dt.timedelta(days=32)).replace(day=1)
    return start.strftime("%Y-%m-%d"), int(end.timestamp())


class Prepared:
    __slots__ = ("plan", "rule", "quota", "apis", "redis", "fail_open", "counts", "fail_opened")

    def __init__(self, conf: UsagePlanConfig, redis: redis_state.SharedRedis | None) -> None:
        self.plan = conf.plan
        t = conf.throttle
        self.rule = Rule(Limit(rate=t.rate, burst=t.burst, key="consumer"), "plan:" + conf.plan, 100_000) if t else None
        self.quota = conf.quota
        self.apis = frozenset(conf.apis)
        self.redis = redis
        self.fail_open = conf.on_redis_failure == "fail_open"
        self.counts: dict[tuple[str, str], int] = {}  # local quotas: (consumer, window) -> requests
        self.fail_opened = 0


class UsagePlan(Plugin):
    name = "usage-plan"
    priority = 1950  # before rate-limit: a plan's throttle and quota are the outer limits
    Config = UsagePlanConfig

    def prepare(self, conf: UsagePlanConfig) -> Prepared:
        redis = redis_state.current
        policy = conf.policy or ("redis" if redis is not None else "local")
        if policy == "redis" and redis is None:
            raise ValueError("policy 'redis' needs the top-level `redis:` section")
        return Prepared(conf, redis if policy == "redis" else None)

    def access(self, ctx: Context, p: Prepared) -> Any:
        consumer = ctx.consumer
        if consumer is None:
            return None
        if p.apis:
            route = ctx.route
            if route.api not in p.apis and f"{route.api}/{route.stage}" not in p.apis:
                return None
        if p.redis is not None:
            return self._remote(ctx, p, consumer.name)
        # What the access log and metrics read (a rate-limit after this plugin has the last word on "allowed").
        v = ctx.vars
        if p.rule is not None:
            allowed, _, _ = take_all((p.rule,), ["c:" + consumer.name], time.monotonic_ns() // 1000)[0]
            if not allowed:
                v["rate_limit"] = "refused"
                return Response(429, TOO_MANY)
        if p.quota is not None:
            wid, _ = window(p.quota.period, time.time())
            key = (consumer.name, wid)
            n = p.counts.get(key, 0) + 1
            if n > p.quota.limit:
                v["rate_limit"] = "quota"
                return Response(429, LIMIT_EXCEEDED)
            if len(p.counts) > 100_000:
                p.counts.clear()  # old windows; bounded memory matters more than a per-worker count's past
            p.counts[key] = n
        v["rate_limit"] = "allowed"
        return None

    async def _remote(self, ctx: Context, p: Prepared, consumer: str) -> Response | None:
        redis = p.redis
        assert redis is not None
        try:
            if p.rule is not None:
                names = [bucket_key(redis.prefix, p.rule, "c:" + consumer)]
                args = take_args((p.rule,), None)
                out = await redis.run(lambda c: redis.script(TAKE_SCRIPT)(keys=names, args=args, client=c))
                if out[0] != 1:
                    ctx.vars["rate_limit"] = "refused"
                    return Response(429, TOO_MANY)
            if p.quota is not None:
                wid, end = window(p.quota.period, time.time())
                key = f"{redis.prefix}quota:{p.plan}:{consumer}:{wid}"
                n = await redis.run(lambda c: redis.script(QUOTA_SCRIPT)(keys=[key], args=[end], client=c))
                if int(n) > p.quota.limit:
                    ctx.vars["rate_limit"] = "quota"
                    return Response(429, LIMIT_EXCEEDED)
        except redis_state.RedisUnavailable:
            if p.fail_open:
                p.fail_opened += 1
                ctx.vars["rate_limit"] = "allowed"
                return None
            ctx.vars["rate_limit"] = "refused"
            return Response(503, UNAVAILABLE)
        ctx.vars["rate_limit"] = "allowed"
        return None


PLUGINS = (UsagePlan,)
