"""`rate-limit`: token buckets per key (client address, consumer, route, API, a header, or several combined), in
this worker (`local`, the compiled `BucketTable`), in Redis (`redis`: one atomic script per decision, exact
across processes and gateways), or both (`hybrid`: decided here, reconciled with Redis in the background).

Every response of a limited route carries `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` and
`RateLimit-Policy` (the IETF RateLimit header fields draft); a refused request gets 429
`{"message":"Too Many Requests"}` with `Retry-After`.

A bucket belongs to its limit (rate, period, burst, key) and the configuration's `name`: configurations with
the same limit share buckets wherever they are configured (a route's copy of the global limit is the global
limit); give a `name`, or add `route` / `api` to the key, to keep them apart.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from fastgw.core import BucketTable, LimitFront, new_context
from fastgw.plugins.base import Context, Early, Plugin, Response, RouteInfo
from fastgw.state import redis as redis_state

log = logging.getLogger("fastgw.plugins.rate_limit")

TOO_MANY = {"message": "Too Many Requests"}
UNAVAILABLE = {"message": "Service Unavailable"}
_KEY_WORDS = ("ip", "consumer", "route", "api")
# NOTE: time is kept in microseconds (not the nanoseconds BucketTable's names say; its arithmetic does not care)
# so that a bucket's units (burst * period) stay below 2**52 and the Redis script, whose Lua numbers are doubles,
# computes exactly what the compiled table does.
MAX_UNITS = 2**52
KeySpec = Annotated[str, Meta(pattern=r"^(ip|consumer|route|api|header:[A-Za-z0-9!#$%&'*+.^_`|~-]+)$")]


class Limit(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    rate: Annotated[int, Meta(ge=1, le=1_000_000_000)]  # requests per `period`
    period: Annotated[float, Meta(gt=0, le=31 * 86_400)] = 1.0  # seconds
    burst: Annotated[int, Meta(ge=1, le=1_000_000_000)] | None = None  # bucket size; default `rate`
    key: KeySpec | Annotated[list[KeySpec], Meta(min_length=1)] = "ip"


class RateLimitConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    # One limit: rate / period / burst / key; several at once: `limits` (a request passes when all allow it).
    rate: Annotated[int, Meta(ge=1, le=1_000_000_000)] | None = None
    period: Annotated[float, Meta(gt=0, le=31 * 86_400)] = 1.0
    burst: Annotated[int, Meta(ge=1, le=1_000_000_000)] | None = None
    key: KeySpec | Annotated[list[KeySpec], Meta(min_length=1)] = "ip"
    limits: list[Limit] = msgspec.field(default_factory=list)
    policy: Literal["local", "redis", "hybrid"] = "local"
    # Redis slow or gone (redis and hybrid policies): serve and count (fail_open) or answer 503 (fail_closed).
    on_redis_failure: Literal["fail_open", "fail_closed"] = "fail_open"
    headers: bool = True  # the RateLimit-* fields on every response of the route
    name: Annotated[str, Meta(max_length=128)] = ""  # buckets of configurations with another name are apart
    # hybrid: how often each worker reconciles its counts with Redis (the overshoot grows with it).
    sync_interval: Annotated[float, Meta(gt=0, le=60)] = 0.1
    max_keys: Annotated[int, Meta(ge=1, le=100_000_000)] = 100_000  # buckets kept per limit and worker


class Rule:
    """One limit as served: how to compute a request's key, the bucket parameters, and the local table."""

    __slots__ = ("key_of", "burst", "rate", "period_us", "table", "id", "policy_field", "limit_text",
                 "key")  # fmt: skip

    def __init__(self, limit: Limit, name: str, max_keys: int) -> None:
        burst = limit.burst or limit.rate
        period_us = round(limit.period * 1_000_000)
        if burst * period_us >= MAX_UNITS:
            raise ValueError(f"burst * period is too large ({burst} * {limit.period}s): lower the burst or period")
        self.burst = burst
        self.limit_text = str(burst)
        self.rate = limit.rate
        self.period_us = period_us
        self.key_of = _key_function(limit.key)
        self.key = limit.key
        ident = msgspec.json.encode([name, limit.rate, period_us, burst, limit.key])
        self.id = hashlib.sha256(ident).hexdigest()[:16]
        # The same limit configured twice (a reload, another scope) keeps its buckets.
        table = _TABLES.get((self.id, max_keys))
        if table is None:
            table = _TABLES[(self.id, max_keys)] = BucketTable(burst, limit.rate, period_us, max_keys)
        self.table = table
        self.policy_field = f"{burst};w={limit.period:g}" + (f";rate={limit.rate}" if burst != limit.rate else "")


_TABLES: dict[tuple[str, int], BucketTable] = {}
_BACKGROUND: set[asyncio.Task[None]] = set()


def _key_function(key: str | list[str]) -> Callable[[Context], str]:
    parts = [key] if isinstance(key, str) else key
    fns = [_key_part(p) for p in parts]
    if len(fns) == 1:
        return fns[0]
    return lambda ctx: "|".join(fn(ctx) for fn in fns)


def _key_part(part: str) -> Callable[[Context], str]:
    if part == "ip":
        # The client address as server.trusted_proxies decides it: never a header a client chose.
        return lambda ctx: ctx.request.client_ip
    if part == "consumer":

        def consumer(ctx: Context) -> str:
            c = ctx.consumer
            return "c:" + c.name if c is not None else "ip:" + ctx.request.client_ip

        return consumer
    if part == "route":
        return lambda ctx: f"{ctx.route.api}/{ctx.route.stage}/{ctx.route.name}"
    if part == "api":
        return lambda ctx: f"{ctx.route.api}/{ctx.route.stage}"
    name = part.split(":", 1)[1]
    return lambda ctx: ctx.request.header(name) or ""


# The same keys from the request itself, for `LimitFront` (no context, so no consumer: a chain whose only plugin is the
# limit authenticates no one, and `consumer` is the client address then too).
FrontKey = Callable[[Any, str, RouteInfo], str]


def _front_key(key: str | list[str]) -> FrontKey:
    fns = [_front_key_part(p) for p in ([key] if isinstance(key, str) else key)]
    if len(fns) == 1:
        return fns[0]
    return lambda req, ip, info: "|".join(fn(req, ip, info) for fn in fns)


def _front_key_part(part: str) -> FrontKey:
    if part == "ip":
        return lambda req, ip, info: ip
    if part == "consumer":
        return lambda req, ip, info: "ip:" + ip
    if part == "route":
        return lambda req, ip, info: f"{info.api}/{info.stage}/{info.name}"
    if part == "api":
        return lambda req, ip, info: f"{info.api}/{info.stage}"
    name = part.split(":", 1)[1].lower().encode("latin-1")

    def header(req: Any, ip: str, info: RouteInfo) -> str:
        for k, v in req.headers:
            if k == name:
                try:
                    return str(v.decode("utf-8"))
                except UnicodeDecodeError:
                    return str(v.decode("latin-1"))
        return ""

    return header


class Prepared:
    __slots__ = ("rules", "policy", "fail_open", "headers", "redis", "policy_header", "sync_interval", "pending",
                 "flushing", "fail_opened", "single", "hybrid")  # fmt: skip

    def __init__(self, conf: RateLimitConfig, redis: redis_state.SharedRedis | None) -> None:
        limits = list(conf.limits)
        if conf.rate is not None:
            limits.insert(0, Limit(rate=conf.rate, period=conf.period, burst=conf.burst, key=conf.key))
        if not limits:
            raise ValueError("give `rate` (with `period`, `burst`, `key`) or `limits`")
        self.rules = tuple(Rule(limit, conf.name, conf.max_keys) for limit in limits)
        self.policy = conf.policy
        # PERF: one limit decided here (local, hybrid) takes a shorter way through `access`.
        self.single = len(self.rules) == 1 and conf.policy != "redis"
        self.hybrid = conf.policy == "hybrid"
        self.fail_open = conf.on_redis_failure == "fail_open"
        self.headers = conf.headers
        self.redis = redis
        self.policy_header = ", ".join(r.policy_field for r in self.rules)
        self.sync_interval = conf.sync_interval
        self.pending: dict[tuple[int, str], int] = {}  # hybrid: (rule, key) -> requests passed since the last sync
        self.flushing = False
        self.fail_opened = 0  # requests served because Redis failed (fail_open)


def take_all(rules: tuple[Rule, ...], keys: list[str], now_us: int, cost: int = 1) -> list[tuple[bool, int, int]]:
    """The local decision over several limits: all take `cost`, or (when one refuses) none does. Per rule:
    (allowed, tokens remaining, microseconds until `cost` tokens are there; -1 never). The Redis script makes
    exactly this decision."""
    if len(rules) == 1:
        return [rules[0].table.take(keys[0], now_us, cost)]
    peeks = [r.table.take(k, now_us, 0) for r, k in zip(rules, keys, strict=True)]
    if all(rem >= cost and cost <= r.burst for r, (_, rem, _) in zip(rules, peeks, strict=True)):
        return [r.table.take(k, now_us, cost) for r, k in zip(rules, keys, strict=True)]
    # Refused: nothing is taken; a take that cannot pass changes nothing but the refill already done.
    return [r.table.take(k, now_us, cost) if rem < cost or cost > r.burst else (False, rem, 0)
            for r, k, (_, rem, _) in zip(rules, keys, peeks, strict=True)]  # fmt: skip


# One decision over several buckets, all or nothing, in BucketTable's integer arithmetic (see its docstring).
# KEYS: the buckets. ARGV: now in microseconds ("" = Redis's clock, one clock for every gateway), cost, then per
# bucket: capacity, refill_tokens, refill_period. Returns {allowed, remaining_1, wait_1, remaining_2, ...}.
TAKE_SCRIPT = """
local function idiv(a, b)
  local q = math.floor(a / b)
  if q * b > a then q = q - 1 elseif (q + 1) * b <= a then q = q + 1 end
  return q
end
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local cost = tonumber(ARGV[2])
local n = #KEYS
local units, lasts, caps, refills, periods = {}, {}, {}, {}, {}
local ok = 1
for i = 1, n do
  local cap, refill, period = tonumber(ARGV[i * 3]), tonumber(ARGV[i * 3 + 1]), tonumber(ARGV[i * 3 + 2])
  local cap_units = cap * period
  local st = redis.call('HMGET', KEYS[i], 'u', 't')
  local u, last = tonumber(st[1]), tonumber(st[2])
  if u == nil or last == nil then
    u, last = cap_units, now
  elseif now > last then
    local elapsed = now - last
    if elapsed >= idiv(cap_units - u + refill - 1, refill) then u = cap_units else u = u + elapsed * refill end
    last = now
  end
  units[i], lasts[i], caps[i], refills[i], periods[i] = u, last, cap, refill, period
  if cost > cap or u < cost * period then ok = 0 end
end
local out = {ok}
for i = 1, n do
  local u, period, refill = units[i], periods[i], refills[i]
  if ok == 1 then u = u - cost * period end
  local wait = 0
  if cost > caps[i] then wait = -1
  elseif ok == 0 and u < cost * period then wait = idiv(cost * period - u + refill - 1, refill) end
  redis.call('HSET', KEYS[i], 'u', string.format('%.0f', u), 't', string.format('%.0f', lasts[i]))
  -- A bucket that refilled completely is a new bucket: let Redis forget it then.
  local full_us = idiv(caps[i] * period - u + refill - 1, refill)
  redis.call('PEXPIRE', KEYS[i], idiv(full_us, 1000) + 1000)
  out[#out + 1] = idiv(u, period)
  out[#out + 1] = wait
end
return out
"""

# hybrid: apply the requests a worker passed since its last sync (clamped at an empty bucket) and return what is
# left. KEYS: the buckets. ARGV: now ("" = Redis's clock), then per bucket: capacity, refill_tokens,
# refill_period, requests passed. Returns the tokens left per bucket.
SYNC_SCRIPT = """
local function idiv(a, b)
  local q = math.floor(a / b)
  if q * b > a then q = q - 1 elseif (q + 1) * b <= a then q = q + 1 end
  return q
end
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local out = {}
for i = 1, #KEYS do
  local b = (i - 1) * 4 + 2
  local cap, refill, period, used = tonumber(ARGV[b]), tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]),
    tonumber(ARGV[b + 3])
  local cap_units = cap * period
  local st = redis.call('HMGET', KEYS[i], 'u', 't')
  local u, last = tonumber(st[1]), tonumber(st[2])
  if u == nil or last == nil then
    u, last = cap_units, now
  elseif now > last then
    local elapsed = now - last
    if elapsed >= idiv(cap_units - u + refill - 1, refill) then u = cap_units else u = u + elapsed * refill end
    last = now
  end
  u = math.max(0, u - used * period)
  redis.call('HSET', KEYS[i], 'u', string.format('%.0f', u), 't', string.format('%.0f', last))
  redis.call('PEXPIRE', KEYS[i], idiv(idiv(cap_units - u + refill - 1, refill), 1000) + 1000)
  out[i] = idiv(u, period)
end
return out
"""


def bucket_key(prefix: str, rule: Rule, key: str) -> str:
    # NOTE: one bucket is one Redis key (a hash of its units and time), and the key value is its hash tag: on a
    # Redis Cluster the buckets of one request that share a key value (per second and per hour, by ip) sit in one
    # slot, so one script decides over them.
    return f"{prefix}rl:{{{key}}}:{rule.id}"


def take_args(rules: tuple[Rule, ...], now_us: int | None, cost: int = 1) -> list[Any]:
    args: list[Any] = ["" if now_us is None else now_us, cost]
    for r in rules:
        args += [r.burst, r.rate, r.period_us]
    return args


def _script_call(redis: redis_state.SharedRedis, lua: str, names: list[str], args: list[Any]) -> Any:
    def call(client: Any) -> Any:
        return redis.script(lua)(keys=names, args=args, client=client)

    return call


def _full_in_s(rule: Rule, remaining: int) -> int:
    """RateLimit-Reset of an allowed request: whole seconds until the bucket is full again (`burst - remaining`
    tokens at `rate` per `period_us`), rounded up, in integers (LimitFront computes the same in C)."""
    return -(-((rule.burst - remaining) * rule.period_us) // (rule.rate * 1_000_000))


def _ceil_s(us: float) -> int:
    return int(-(-us // 1_000_000))


def _front(plugin: RateLimit, p: Prepared) -> LimitFront:
    """PERF: one limit decided in this worker (local, hybrid) on a route whose only plugin it is: `LimitFront` (the
    compiled core) takes the token from the request's fields and starts the integration at once; `finish_head`
    writes the four RateLimit-* fields into whatever head answers. No phase loop, no context (unless the access log
    wants `rate_limit`), no filter over the head; the integration sees a route without plugins. A refusal is answered
    as `access` answers it. Callgrind, plain proxy 71.4k instructions a request: the limit the usual way +24.2k, as
    a Python front splicing the head +11.2k, as LimitFront +3.5k (the fields' ~110 bytes of head are most of it)."""
    rule = p.rules[0]
    fields = None
    if p.headers:
        # The fields as set_response_header would add them (names lower-case, in this order), two numbers left.
        fields = (
            f"ratelimit-limit: {rule.limit_text}\r\nratelimit-remaining: ".encode("latin-1"),
            b"\r\nratelimit-reset: ",
            f"\r\nratelimit-policy: {p.policy_header}\r\n".encode("latin-1"),
        )

    def refuse(ex: Early, client_ip: str, remaining: int, wait: int) -> None:
        route = ex.route
        ctx = ex.ctx = new_context(ex.req, client_ip, ex.params, route.info, route.chain)
        refused = plugin._answer(ctx, p, [(False, remaining, wait)])
        assert refused is not None
        ex.respond(refused.status, refused.headers, refused.body)

    def after(ex: Early, client_ip: str, key: str) -> None:
        if p.hybrid:
            plugin._count(p, [key])
        if ex.leg.state.access_log is not None:
            route = ex.route
            ctx = ex.ctx = new_context(ex.req, client_ip, ex.params, route.info, route.chain)
            ctx.vars["rate_limit"] = "allowed"

    key_of = None if rule.key == "ip" else _front_key(rule.key)
    return LimitFront(rule.table, key_of, fields, _OURS, rule.burst, rule.rate, rule.period_us, refuse, after, p.hybrid)


_OURS = tuple(b"ratelimit-%s" % n for n in (b"limit", b"remaining", b"reset", b"policy"))


class RateLimit(Plugin):
    name = "rate-limit"
    priority = 1900
    Config = RateLimitConfig

    def prepare(self, conf: RateLimitConfig) -> Prepared:
        redis = redis_state.current
        if conf.policy != "local" and not redis_state.available():
            raise ValueError(f"policy {conf.policy!r} needs the redis client: pip install 'fastgw[redis]'")
        if conf.policy != "local" and redis is None:
            raise ValueError(f"policy {conf.policy!r} needs the top-level `redis:` section (redis: {{url: ...}})")
        return Prepared(conf, redis if conf.policy != "local" else None)

    def front(self, p: Prepared) -> Callable[[Early, str], bool] | None:
        return _front(self, p) if p.single else None

    def access(self, ctx: Context, p: Prepared) -> Any:
        # PERF: the local policy is a plain phase (no coroutine). One limit: one key function, one compiled take and
        # the four header fields, ~1.3 us a request (timeit over access(); 1.9 us through take_all and _answer, of
        # which the take is 0.35 us and the headers ~0.6 us). Several limits peek, then take: ~2.6 us for two.
        rules = p.rules
        if p.single:
            rule = rules[0]
            key = rule.key_of(ctx)
            ok, remaining, wait = rule.table.take(key, time.monotonic_ns() // 1000)
            if ok:
                if p.hybrid:
                    self._count(p, [key])
                if p.headers:
                    ctx.set_response_header("RateLimit-Limit", rule.limit_text)
                    ctx.set_response_header("RateLimit-Remaining", str(remaining))
                    ctx.set_response_header("RateLimit-Reset", str(_full_in_s(rule, remaining)))
                    ctx.set_response_header("RateLimit-Policy", p.policy_header)
                ctx.vars["rate_limit"] = "allowed"
                return None
            return self._answer(ctx, p, [(ok, remaining, wait)])
        keys = [r.key_of(ctx) for r in rules]
        if p.policy == "redis":
            return self._remote(ctx, p, keys)
        results = take_all(rules, keys, time.monotonic_ns() // 1000)
        if p.policy == "hybrid" and results[0][0]:
            self._count(p, keys)
        return self._answer(ctx, p, results)

    def _answer(self, ctx: Context, p: Prepared, results: list[tuple[bool, int, int]]) -> Response | None:
        rules = p.rules
        allowed = all(r[0] for r in results)
        if allowed:
            # The limit closest to refusing is the one reported (as the draft asks).
            i = min(range(len(results)), key=lambda j: results[j][1]) if len(results) > 1 else 0
            rule = rules[i]
            remaining = results[i][1]
            reset = _full_in_s(rule, remaining)
        else:
            # The limit that holds the request back longest is the one reported (-1: it never passes).
            i = max(range(len(results)), key=lambda j: results[j][2] if results[j][2] >= 0 else 1 << 62)
            rule, remaining = rules[i], 0
            wait = results[i][2]
            reset = _ceil_s(wait) if wait >= 0 else _ceil_s(rule.period_us)
            reset = max(reset, 1)
        if p.headers:
            ctx.set_response_header("RateLimit-Limit", str(rule.burst))
            ctx.set_response_header("RateLimit-Remaining", str(remaining))
            ctx.set_response_header("RateLimit-Reset", str(reset))
            ctx.set_response_header("RateLimit-Policy", p.policy_header)
        if allowed:
            ctx.vars["rate_limit"] = "allowed"
            return None
        ctx.vars["rate_limit"] = "refused"
        return Response(429, TOO_MANY, headers=[("Retry-After", str(reset))])

    async def _remote(self, ctx: Context, p: Prepared, keys: list[str]) -> Response | None:
        redis = p.redis
        assert redis is not None
        rules = p.rules
        if redis.cluster and len(set(keys)) > 1:
            return await self._remote_slots(ctx, p, keys)
        names = [bucket_key(redis.prefix, r, k) for r, k in zip(rules, keys, strict=True)]
        args = take_args(rules, None)
        try:
            out = await redis.run(lambda client: redis.script(TAKE_SCRIPT)(keys=names, args=args, client=client))
        except redis_state.RedisUnavailable:
            return self._redis_failed(ctx, p)
        ok = out[0] == 1
        results = [(ok, int(out[1 + 2 * j]), int(out[2 + 2 * j])) for j in range(len(rules))]
        return self._answer(ctx, p, results)

    async def _remote_slots(self, ctx: Context, p: Prepared, keys: list[str]) -> Response | None:
        """On a Redis Cluster, limits with different key values live in different slots: one script per key
        value, in order, stopping at the first refusal (the limits decided before it have taken their token:
        NOTE the one place the redis policy is not all-or-nothing)."""
        redis = p.redis
        assert redis is not None
        results: list[tuple[bool, int, int] | None] = [None] * len(keys)
        for value in dict.fromkeys(keys):
            idx = [i for i, k in enumerate(keys) if k == value]
            rules = tuple(p.rules[i] for i in idx)
            names = [bucket_key(redis.prefix, r, value) for r in rules]
            args = take_args(rules, None)
            try:
                out = await redis.run(_script_call(redis, TAKE_SCRIPT, names, args))
            except redis_state.RedisUnavailable:
                return self._redis_failed(ctx, p)
            ok = out[0] == 1
            for j, i in enumerate(idx):
                results[i] = (ok, int(out[1 + 2 * j]), int(out[2 + 2 * j]))
            if not ok:
                break
        done = [r if r is not None else (True, p.rules[i].burst, 0) for i, r in enumerate(results)]
        if not all(r[0] for r in done):
            done = [(False, rem, wait) for _, rem, wait in done]
        return self._answer(ctx, p, done)

    def _redis_failed(self, ctx: Context, p: Prepared) -> Response | None:
        if p.fail_open:
            p.fail_opened += 1
            ctx.vars["rate_limit"] = "allowed"
            return None
        ctx.vars["rate_limit"] = "refused"
        return Response(503, UNAVAILABLE)

    # -- hybrid: counted here, reconciled with Redis every sync_interval ------------------------------------

    def _count(self, p: Prepared, keys: list[str]) -> None:
        pending = p.pending
        for i, k in enumerate(keys):
            pending[(i, k)] = pending.get((i, k), 0) + 1
        if not p.flushing:
            p.flushing = True
            loop = asyncio.get_running_loop()
            loop.call_later(p.sync_interval, self._start_sync, loop, p)

    def _start_sync(self, loop: asyncio.AbstractEventLoop, p: Prepared) -> None:
        task = loop.create_task(self._sync(p))
        _BACKGROUND.add(task)  # NOTE: the loop keeps only a weak reference to a task
        task.add_done_callback(_BACKGROUND.discard)

    async def _sync(self, p: Prepared) -> None:
        redis = p.redis
        assert redis is not None
        batch, p.pending = p.pending, {}
        p.flushing = False
        if not batch:
            return
        if not redis.cluster:
            await self._sync_items(p, list(batch.items()))
            return
        groups: dict[str, list[tuple[tuple[int, str], int]]] = {}
        for item in batch.items():
            groups.setdefault(item[0][1], []).append(item)  # one slot per key value (its hash tag)
        for items in groups.values():
            await self._sync_items(p, items)

    async def _sync_items(self, p: Prepared, items: list[tuple[tuple[int, str], int]]) -> None:
        redis = p.redis
        assert redis is not None
        names = [bucket_key(redis.prefix, p.rules[i], k) for (i, k), _ in items]
        args: list[Any] = [""]
        for (i, _), used in items:
            r = p.rules[i]
            args += [r.burst, r.rate, r.period_us, used]
        try:
            out = await redis.run(_script_call(redis, SYNC_SCRIPT, names, args))
        except redis_state.RedisUnavailable:
            return  # decided locally meanwhile: the local buckets are the limit until Redis answers again
        now = time.monotonic_ns() // 1000
        for ((i, k), _), left in zip(items, out, strict=True):
            table = p.rules[i].table
            mine = table.take(k, now, 0)[1]
            if mine > int(left):
                table.take(k, now, mine - int(left))  # what other workers spent is spent here too


PLUGINS = (RateLimit,)
