r"""`proxy-cache`: answer repeated requests from a cache (`memory`: an LRU bounded in bytes per worker; `redis`:
shared by every gateway), for every integration (http, lambda, mock).

The key is printable: `route|method|host|path|?query|key headers|consumer`, completed by the request headers the
response varies on (`Vary`). Two requests share an entry only when the backend would receive the same target: the
path as normalized and forwarded, the query byte for byte as it came (never decoded, never sorted: `a=b%26c` is not
`a=b&c`, and `a=1&b=2` is not `b=2&a=1`), and the upstream path or query an earlier plugin set; a header part holds
every value the request carries for that name. The request's text goes in as its bytes read as Latin-1 (one
character a byte), with `\` and `|` escaped as `\\` and `\|`, so that no part can be read as another.

Every response of the route says `X-Cache-Status` (HIT, MISS, BYPASS, EXPIRED, STALE) and `Age`. Concurrent misses
on one key make one upstream request; the others wait for it (at most `lock_timeout`, then they go themselves). A
stale entry is served as STALE while it is refreshed in the background (`stale-while-revalidate`: the request
that finds it stale is answered at once, as nginx's `proxy_cache_background_update` does, and the rest of its way,
the route's later phases and integration, runs again for a copy of it, whose answer is stored and reaches no
client; one refresh per key at a time, at most `max_background_refreshes` at once), or when the upstream fails
(`stale-if-error`), as the response's Cache-Control allows.

The cache answers from the access phase and fills from the response filters: a hit goes through the route's
response filters as any response does (a response-transformer runs on hits too; what is stored is the response
before the filters of lower priority).
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import email.utils
import logging
import re
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import msgspec
from msgspec import Meta

from fastgw.core import PhaseChain, new_context
from fastgw.plugins.base import Context, Early, Plugin, Response
from fastgw.state import redis as redis_state
from fastgw.state.cache import MemoryStore, RedisStore, Stored

log = logging.getLogger("fastgw.plugins.proxy_cache")

# Never stored: framing and per-hop fields, and what describes one answer rather than the resource.
_NOT_STORED = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive", "date", "age",
                         "x-cache-status"})  # fmt: skip


_BACKGROUND: set[asyncio.Task[None]] = set()
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9a-z-]+$")  # a header name (lower-case), as RFC 9110 5.1 spells it


class ProxyCacheConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    backend: Literal["memory", "redis"] = "memory"
    ttl: Annotated[float, Meta(gt=0, le=365 * 86_400)] = 300.0  # when the response says nothing
    # Honour the upstream's Cache-Control (max-age, s-maxage, no-store, private, no-cache) and Expires.
    respect_cache_control: bool = True
    methods: list[Literal["GET", "HEAD"]] = msgspec.field(default_factory=lambda: ["GET", "HEAD"])
    statuses: list[Annotated[int, Meta(ge=200, le=599)]] = msgspec.field(default_factory=lambda: [200, 301, 404])
    key_headers: list[Annotated[str, Meta(pattern=r"^[A-Za-z0-9-]+$")]] = msgspec.field(default_factory=list)
    vary_by_consumer: bool = False  # the consumer that authenticated is part of the key
    # Shared across clients only if configured: responses that set cookies, requests that carry Authorization.
    cache_set_cookie: bool = False
    cache_authorization: bool = False
    max_item_size: Annotated[int, Meta(ge=1)] = 1024 * 1024  # bigger responses stream through, uncached
    memory_size: Annotated[int, Meta(ge=1024)] = 64 * 1024 * 1024  # bytes per worker (memory backend)
    lock_timeout: Annotated[float, Meta(gt=0, le=60)] = 5.0  # the longest a miss waits for the same miss
    # stale-while-revalidate: the stale entry answers at once and is refreshed in the background (false: the
    # first request after expiry waits for the upstream, the others get the stale entry meanwhile).
    background_update: bool = True
    # Background refreshes at once (per worker and plugin configuration); past it the request refreshes the entry
    # itself and waits. A refresh counts until it is stored or its lock_timeout passed.
    max_background_refreshes: Annotated[int, Meta(ge=1, le=10_000)] = 32
    # AWS's behaviour: `Cache-Control: max-age=0` from an authenticated consumer refreshes the entry.
    allow_refresh: bool = False
    on_redis_failure: Literal["fail_open", "fail_closed"] = "fail_open"  # fail_open: go upstream, uncached


class Prepared:
    __slots__ = ("conf", "methods", "statuses", "store", "remote", "inflight", "key_header_names", "refreshing")

    def __init__(self, conf: ProxyCacheConfig, redis: redis_state.SharedRedis | None) -> None:
        self.conf = conf
        self.methods = frozenset(conf.methods)
        self.statuses = frozenset(conf.statuses)
        self.key_header_names = tuple(h.lower().encode("latin-1") for h in conf.key_headers)
        self.store = MemoryStore(conf.memory_size)
        self.remote = RedisStore(redis) if redis is not None else None
        # Misses being fetched: base key -> (future resolved when the response is stored or not, deadline).
        self.inflight: dict[str, tuple[asyncio.Future[None], float]] = {}
        # Background refreshes on their way: base key -> their deadline (time.monotonic()).
        self.refreshing: dict[str, float] = {}

    def may_refresh(self) -> bool:
        """Room for one more background refresh (those past their deadline no longer count)."""
        limit = self.conf.max_background_refreshes
        if len(self.refreshing) >= limit:
            now = time.monotonic()
            for key in [k for k, deadline in self.refreshing.items() if deadline <= now]:
                del self.refreshing[key]
        return len(self.refreshing) < limit


class Pending:
    """A miss on its way: what the response filters need to store it, or to answer with a stale entry."""

    __slots__ = ("p", "base", "stale", "store", "serve_stale", "future", "now", "putting")

    def __init__(self, p: Prepared, base: str, stale: Stored | None, future: asyncio.Future[None] | None) -> None:
        self.p = p
        self.base = base
        self.stale = stale
        self.store: tuple[str, Stored] | None = None
        self.serve_stale = False
        self.future = future
        self.now = 0.0
        self.putting = False  # being written to Redis: released when written

    def release(self) -> None:
        fut = self.future
        if fut is not None:
            self.future = None
            entry = self.p.inflight.get(self.base)
            if entry is not None and entry[0] is fut:
                del self.p.inflight[self.base]
            if not fut.done():
                fut.set_result(None)
            self.p.refreshing.pop(self.base, None)


def _esc(text: str) -> str:
    """A part of the key as it came, with its separators escaped (`\\` -> `\\\\`, `|` -> `\\|`)."""
    if "|" in text or "\\" in text:
        return text.replace("\\", "\\\\").replace("|", "\\|")
    return text


def _query(raw: bytes | None) -> str:
    """The query part: `?` and the query byte for byte (Latin-1), or "" without one (`/c?` is not `/c`)."""
    return "" if raw is None else "?" + _esc(raw.decode("latin-1"))


def headers_part(raw: list[tuple[bytes, bytes]], names: tuple[bytes, ...] | list[bytes]) -> str:
    """`name=v1,v2` for each of `names` (lower-case wire names) the request carries, every value in order; the
    bare `name` when it carries none (absent is not empty). `,` is escaped inside a value as `|` and `\\` are."""
    parts = []
    for name in names:
        values = [v for k, v in raw if k == name]
        text = _esc(name.decode("latin-1"))  # a token: no `=` or `,`, but `|` is one of its characters
        if values:
            text += "=" + ",".join(_esc(v.decode("latin-1")).replace(",", "\\,") for v in values)
        parts.append(text)
    return "|".join(parts)


def base_key(ctx: Context, p: Prepared) -> str:
    req = ctx.request
    method = "GET" if req.method == "HEAD" else req.method
    route = ctx.route
    key = (f"{route.api}/{route.stage}/{route.name}" if route.api else route.name) + "|" + method + "|"
    # NOTE: the query as it came (`raw_query`, None without a `?`), as Front reads it from the wire request.
    key += _esc((req.host or "").lower()) + "|" + _esc(req.path) + "|" + _query(req.raw_query)
    if p.key_header_names:
        key += "|" + headers_part(req.headers.raw(), p.key_header_names)
    if p.conf.vary_by_consumer:
        c = ctx.consumer
        key += "|" + (c.name if c is not None else "")
    # An earlier plugin that changed the upstream's path or query (request-transformer, a hidden query key)
    # may have made them from headers or the consumer: what the backend is asked for completes the key.
    up = ctx.upstream_request_if_made  # NOTE: read, never made here (ctx.upstream_request would make one)
    if up is not None and (up.path is not None or up.query_if_made is not None):
        changed = up.query_if_made
        query = urlencode([(k, v) for k, vs in changed.items() for v in vs]) if changed is not None else ""
        key += "|>" + _esc(up.path or "") + ("?" + query if changed is not None else "")
    return key


def vary_key(ctx: Context, base: str, names: list[str]) -> str:
    return base + "|" + headers_part(ctx.request.headers.raw(), [n.encode("latin-1") for n in names])


def cache_control(value: str | None) -> dict[str, str]:
    """A Cache-Control value's directives, lower-cased, each with its argument unquoted ("" without one): what
    proxy-cache and jwt-auth (a JWKS's max-age) read."""
    out: dict[str, str] = {}
    for part in (value or "").split(","):
        name, _, arg = part.strip().partition("=")
        if name:
            out[name.lower()] = arg.strip().strip('"')
    return out


def _seconds(value: str | None) -> float | None:
    try:
        return float(int(value)) if value is not None else None
    except ValueError:
        return None


def _http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate(value)
    except (TypeError, ValueError):
        return None
    return float(calendar.timegm(parsed)) if parsed else None


def _status(ctx: Context, value: str) -> None:
    """X-Cache-Status on the response, and the same word for the access log and metrics."""
    ctx.set_response_header("X-Cache-Status", value)
    ctx.vars["cache_status"] = value


def encode_lines(item: Stored) -> tuple[bytes, bool]:
    """The stored headers as the header lines a hit sends (as the gateway encodes a `Response` of them: names as
    stored, values UTF-8, a Content-Type added to a body without one), and whether a Server line is among them."""
    headers = item.headers
    if item.body and not any(k.lower() == "content-type" for k, _ in headers):
        headers = [*headers, ("content-type", "application/octet-stream")]
    lines = b"".join(b"%s: %s\r\n" % (k.encode("latin-1"), v.encode("utf-8")) for k, v in headers)
    return lines, any(k.lower() == "server" for k, _ in headers)


_HIT_LINE = b"x-cache-status: HIT\r\nage: %d\r\n"


class Front:
    """PERF: a fresh hit on a route whose one plugin is this cache (memory backend) is answered before anything
    of the plugin machinery exists: the key made from the request's fields (as `base_key` makes it), one dict
    lookup, the stored header lines written after the status line and Date with X-Cache-Status and Age, in one
    piece. No context, phase loop, `Response` or header map (issue 12: a hit cost ~115k instructions that way, more
    than a proxied exchange). Anything but a fresh hit (a miss, a stale entry, a bypass) goes the usual way, which
    decides it again. The access log still finds `cache_status` in `ex.ctx.vars`: a context is made for it when
    the log is on."""

    __slots__ = ("p", "route_part", "authorization", "consumer_part", "quiet")

    def __init__(self, p: Prepared) -> None:
        self.p = p
        self.route_part: str | None = None  # from the route's RouteInfo, on its first request
        self.authorization = not p.conf.cache_authorization  # a request that carries one is not answered here
        # Without an authentication plugin on the route no consumer is ever known: its part of the key is "".
        self.consumer_part = "|" if p.conf.vary_by_consumer else ""
        self.quiet = PhaseChain()  # the chain of a hit's context: nothing more runs

    def __call__(self, ex: Early, client_ip: str) -> bool:
        req = ex.req
        method = req.method
        p = self.p
        if method not in p.methods:
            return False
        raw = req.headers
        if self.authorization:
            for k, v in raw:  # PERF: inline, not a helper: a Python frame less on every hit
                if k == b"authorization" and v:
                    return False
        part = self.route_part
        if part is None:
            info = ex.route.info
            part = self.route_part = f"{info.api}/{info.stage}/{info.name}" if info.api else info.name
        # NOTE: the same key as base_key makes (no plugin ran before this, so nothing changed the upstream's).
        # PERF: `in` tests inline, _esc() only for the rare part that holds a `|` or `\`.
        host = (req.host or "").lower()
        if "|" in host or "\\" in host:
            host = _esc(host)
        path = req.path
        if "|" in path or "\\" in path:
            path = _esc(path)
        key = f"{part}|{'GET' if method == 'HEAD' else method}|{host}|{path}|"
        query = req.query
        if query is not None:
            text = query.decode("latin-1")
            key += "?" + (_esc(text) if "|" in text or "\\" in text else text)
        if p.key_header_names:
            key += "|" + headers_part(raw, p.key_header_names)
        key += self.consumer_part
        now = time.time()
        items = p.store.items
        item = items.get(key)
        if item is None or now >= item.fresh_until:
            return False
        if item.status == 0:  # the response varies on request headers: they complete the key
            items.move_to_end(key)
            key += "|" + headers_part(raw, [n.encode("latin-1") for n in item.vary or ()])
            item = items.get(key)
            if item is None or now >= item.fresh_until:
                return False
        items.move_to_end(key)
        if ex.leg.state.access_log is not None:
            ctx = ex.ctx = new_context(req, client_ip, ex.params, ex.route.info, self.quiet)
            ctx.vars["cache_status"] = "HIT"
        age = item.age + now - item.stored_at if now > item.stored_at else item.age
        server = b"" if item.has_server else ex.gw.server_line
        # NOTE: int() first: %d of a float raises (and swallows) a TypeError inside, ~3k instructions.
        ex.send_ready(item.status, [item.lines, server, _HIT_LINE % int(age)], item.body)
        return True


class ProxyCache(Plugin):
    name = "proxy-cache"
    priority = 1050  # after the limits and request transforms, before the response-transformer's filters
    Config = ProxyCacheConfig

    def prepare(self, conf: ProxyCacheConfig) -> Prepared:
        redis = redis_state.current
        if conf.backend == "redis" and redis is None:
            raise ValueError("backend 'redis' needs the top-level `redis:` section (redis: {url: ...})")
        return Prepared(conf, redis if conf.backend == "redis" else None)

    def max_held(self, p: Prepared) -> int:
        return p.conf.max_item_size

    def front(self, p: Prepared) -> Callable[[Early, str], bool] | None:
        # The memory backend answers at once; a Redis lookup is a round trip, which the usual way awaits.
        return Front(p) if p.remote is None else None

    # -- the request: answer from the cache, or let one miss go upstream --------------------------------------

    def access(self, ctx: Context, p: Prepared) -> Any:
        req = ctx.request
        if req.method not in p.methods or (not p.conf.cache_authorization and req.header("authorization")):
            _status(ctx, "BYPASS")
            return None
        base = base_key(ctx, p)
        refresh = (p.conf.allow_refresh and ctx.consumer is not None
                   and "max-age=0" in (req.header("cache-control") or "").replace(" ", ""))  # fmt: skip
        if p.remote is not None:
            return self._remote(ctx, p, base, refresh)
        now = time.time()
        entry = None if refresh else self._lookup(ctx, p, base, now)
        return self._decide(ctx, p, base, entry, now)

    def _lookup(self, ctx: Context, p: Prepared, base: str, now: float) -> Stored | None:
        item = p.store.get(base, now)
        if item is not None and item.status == 0:
            item = p.store.get(vary_key(ctx, base, item.vary or []), now)
        return item

    async def _remote_lookup(self, ctx: Context, p: Prepared, base: str, now: float) -> Stored | None:
        assert p.remote is not None
        item = await p.remote.get(base, now)
        if item is not None and item.status == 0:
            item = await p.remote.get(vary_key(ctx, base, item.vary or []), now)
        return item

    def _decide(self, ctx: Context, p: Prepared, base: str, entry: Stored | None, now: float) -> Any:
        if entry is not None:
            if now < entry.fresh_until:
                return self._hit(ctx, entry, now, "HIT")
            busy = p.inflight.get(base)
            if now < entry.stale_until:
                if busy is not None and time.monotonic() < busy[1]:
                    return self._hit(ctx, entry, now, "STALE")  # another request is refreshing it
                if p.conf.background_update and p.may_refresh():
                    return self._refresh(ctx, p, base, entry, now)
        busy = p.inflight.get(base)
        if busy is not None and time.monotonic() < busy[1]:
            return self._wait(ctx, p, base, busy, entry)
        return self._go(ctx, p, base, entry)

    def _refresh(self, ctx: Context, p: Prepared, base: str, entry: Stored, now: float) -> Response:
        """The stale entry answers now; the rest of the request runs again in the background (Response.refresh),
        with a Pending of its own that stores its answer, and holds the key's lock meanwhile."""
        fut = asyncio.get_running_loop().create_future()
        deadline = time.monotonic() + p.conf.lock_timeout
        p.inflight[base] = (fut, deadline)
        p.refreshing[base] = deadline
        resp = self._hit(ctx, entry, now, "STALE")
        resp.refresh = {"proxy-cache": Pending(p, base, entry, fut)}
        return resp

    def _go(self, ctx: Context, p: Prepared, base: str, stale: Stored | None) -> None:
        fut = asyncio.get_running_loop().create_future()
        p.inflight[base] = (fut, time.monotonic() + p.conf.lock_timeout)
        ctx.vars["proxy-cache"] = Pending(p, base, stale, fut)
        _status(ctx, "EXPIRED" if stale is not None else "MISS")
        return None

    async def _wait(self, ctx: Context, p: Prepared, base: str, busy: tuple[asyncio.Future[None], float],
                    stale: Stored | None) -> Response | None:  # fmt: skip
        """Another request is fetching this key: wait for it (bounded), then answer from what it stored."""
        fut, deadline = busy
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(fut), max(0.0, deadline - time.monotonic()))
        now = time.time()
        if p.remote is not None:
            try:
                entry = await self._remote_lookup(ctx, p, base, now)
            except redis_state.RedisUnavailable:
                entry = None
        else:
            entry = self._lookup(ctx, p, base, now)
        if entry is not None and now < entry.fresh_until:
            return self._hit(ctx, entry, now, "HIT")
        self._go(ctx, p, base, entry or stale)
        return None

    async def _remote(self, ctx: Context, p: Prepared, base: str, refresh: bool) -> Response | None:
        now = time.time()
        try:
            entry = None if refresh else await self._remote_lookup(ctx, p, base, now)
        except redis_state.RedisUnavailable:
            if p.conf.on_redis_failure == "fail_closed":
                return Response(503, {"message": "Service Unavailable"})
            _status(ctx, "BYPASS")
            return None
        result = self._decide(ctx, p, base, entry, now)
        if asyncio.iscoroutine(result):
            return await result
        return result

    def _hit(self, ctx: Context, entry: Stored, now: float, status: str) -> Response:
        _status(ctx, status)
        ctx.set_response_header("Age", str(int(entry.age + max(0.0, now - entry.stored_at))))
        return Response(entry.status, entry.body, headers=entry.headers)

    # -- the response: decide whether it is stored, or answer with a stale entry instead ---------------------

    def header_filter(self, ctx: Context, p: Prepared) -> None:
        pending = ctx.vars.get("proxy-cache")
        if pending is None:
            return
        resp = ctx.response
        assert resp is not None
        headers = resp.headers
        now = pending.now = time.time()
        stale = pending.stale
        if resp.status >= 500 and stale is not None and now < stale.error_until:
            # stale-if-error: the stale entry answers instead (its body replaces this one in body_filter).
            pending.serve_stale = True
            # The failed response's headers go, except those plugins set on every response (ids, RateLimit).
            reply = {k.decode("latin-1") for k, _ in (ctx.reply_headers or ())}
            for name in {k.lower() for k, _ in headers} - reply:
                headers.remove(name)
            for k, v in stale.headers:
                headers.add(k, v)
            headers.set("X-Cache-Status", "STALE")
            ctx.vars["cache_status"] = "STALE"
            headers.set("Age", str(int(stale.age + max(0.0, now - stale.stored_at))))
            resp.status = stale.status
            return
        if headers.get("age") is None:
            headers.set("Age", "0")
        pending.store = self._storable(ctx, p, pending, resp.status, headers, now)

    def _storable(self, ctx: Context, p: Prepared, pending: Pending, status: int, headers: Any,
                  now: float) -> tuple[str, Stored] | None:  # fmt: skip
        conf = p.conf
        if status not in p.statuses or ctx.request.method == "HEAD":
            return None
        if not conf.cache_set_cookie and headers.get("set-cookie") is not None:
            return None
        vary_raw = ",".join(headers.get_all("vary"))
        vary = sorted({v.strip().lower() for v in vary_raw.split(",") if v.strip()})
        if "*" in vary or not all(_TOKEN.match(v) for v in vary):
            return None  # Vary: * (RFC 9111 4.1), or a name no request header can have: never matched
        ttl, swr, sie = conf.ttl, 0.0, 0.0
        if conf.respect_cache_control:
            cc = cache_control(",".join(headers.get_all("cache-control")))
            if "no-store" in cc or "private" in cc or "no-cache" in cc:
                return None
            given = _seconds(cc.get("s-maxage")) if "s-maxage" in cc else _seconds(cc.get("max-age"))
            if given is None and headers.get("expires") is not None:
                expires = _http_date(headers.get("expires"))
                date = _http_date(headers.get("date")) or now
                given = (expires - date) if expires is not None else 0.0  # an invalid Expires is in the past
            if given is not None:
                ttl = given
            swr = _seconds(cc.get("stale-while-revalidate")) or 0.0
            sie = _seconds(cc.get("stale-if-error")) or 0.0
        age = _seconds(headers.get("age")) or 0.0
        left = ttl - age
        if left <= 0 and swr <= 0 and sie <= 0:
            return None
        reply = {k.decode("latin-1") for k, _ in (ctx.reply_headers or ())}
        kept = [(k, v) for k, v in headers if k.lower() not in _NOT_STORED and k.lower() not in reply]
        fresh = now + max(0.0, left)
        item = Stored(status, kept, b"", now, age, fresh, fresh + swr, fresh + sie, vary or None)
        key = vary_key(ctx, pending.base, vary) if vary else pending.base
        return key, item

    def body_filter(self, ctx: Context, p: Prepared) -> None:
        pending = ctx.vars.get("proxy-cache")
        if pending is None:
            return
        resp = ctx.response
        assert resp is not None
        if pending.serve_stale:
            resp.body = pending.stale.body
            pending.release()
            return
        stored = pending.store
        body = resp.body or b""
        if stored is None or len(body) > p.conf.max_item_size:
            pending.release()
            return
        key, item = stored
        item.body = body
        pointer = Stored(0, [], b"", item.stored_at, 0.0, item.fresh_until, item.stale_until, item.error_until,
                         item.vary) if item.vary else None  # fmt: skip
        if p.remote is None:
            item.lines, item.has_server = encode_lines(item)
            if pointer is not None:
                p.store.put(pending.base, pointer)
            p.store.put(key, item)
            pending.release()
        else:
            pending.putting = True
            task = asyncio.get_running_loop().create_task(self._remote_put(pending, key, item, pointer))
            _BACKGROUND.add(task)  # NOTE: the loop keeps only a weak reference to a task
            task.add_done_callback(_BACKGROUND.discard)

    async def _remote_put(self, pending: Pending, key: str, item: Stored, pointer: Stored | None) -> None:
        remote = pending.p.remote
        assert remote is not None
        try:
            if pointer is not None:
                await remote.put(pending.base, pointer, pending.now)
            await remote.put(key, item, pending.now)
        except redis_state.RedisUnavailable:
            pass  # not stored: the next request goes upstream
        finally:
            pending.release()

    def log(self, ctx: Context, p: Prepared) -> None:
        pending = ctx.vars.get("proxy-cache")
        if pending is not None and not pending.putting:
            pending.release()  # stored, or nothing to store (not cacheable, a HEAD, over max_item_size, gone)


PLUGINS = (ProxyCache,)


def memory_caches(plugins: Any) -> list[Prepared]:
    """The memory-backend caches of a deployment's `PluginSetup` in this process: every route's and consumer's
    proxy-cache with `backend: memory`, each once."""
    if plugins is None:
        return []
    confs = [conf for chain in plugins.chains if chain is not None for _, conf, _ in chain.entries]
    confs += [pc[1] for consumer in plugins.consumers.values() for pc in consumer.plugins.values() if pc is not None]
    return list({id(c): c for c in confs if isinstance(c, Prepared) and c.remote is None}.values())


def purge_memory(plugins: Any, prefix: str = "") -> int:
    """Delete this process's memory-backend entries whose key starts with `prefix` ("" for all); how many. (The
    admin API's `POST /cache/purge` asks this of every worker.)"""
    return sum(p.store.purge(prefix) for p in memory_caches(plugins))
