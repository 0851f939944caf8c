"""`proxy-cache`: hits, misses and bypasses as the upstream sees them (it counts what reaches it), every rule of
the key, Cache-Control / Expires / Vary / Set-Cookie / Authorization, the size bound, X-Cache-Status and Age,
50 concurrent misses making one upstream request, stale-while-revalidate and stale-if-error, lambda routes, the
Redis backend shared by two gateways."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from urllib.parse import quote

import orjson
import pytest

from fastgw.state.cache import MemoryStore, Stored
from fastgw.testing import http_request
from tests.plugins.conftest import TWICE, route_config


class Scripted:
    """An upstream whose answer the test sets: `answer = (status, headers, body)`, after `delay` seconds, and only
    once `gate` (when set) is open; `waiting` counts the requests held at the gate."""

    def __init__(self) -> None:
        self.answer: tuple[int, list[tuple[str, str]], bytes] = (200, [], b"one")
        self.delay = 0.0
        self.gate: asyncio.Event | None = None
        self.waiting = 0
        self.hits = 0
        self.port = 0
        self._server: asyncio.AbstractServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Scripted:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                self.hits += 1
                status, headers, body = self.answer
                if self.delay:
                    await asyncio.sleep(self.delay)
                if self.gate is not None:
                    self.waiting += 1
                    await self.gate.wait()
                    self.waiting -= 1
                head = f"HTTP/1.1 {status} X\r\ncontent-length: {len(body)}\r\n"
                head += "".join(f"{k}: {v}\r\n" for k, v in headers)
                writer.write(head.encode() + b"\r\n" + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def get(srv, path="/x", headers=None, method="GET"):
    return await http_request(srv.port, method, path, headers=headers or {})


def hdrs(**h: str) -> str:
    return "/headers?" + "&".join(f"{k.replace('_', '-')}={quote(v)}" for k, v in h.items())


async def test_miss_then_hit_with_status_and_age(upstream, gateway):
    srv = await gateway(route_config(upstream, {"proxy-cache": {"ttl": 60}}))
    for run in TWICE:
        path = f"/item/{run}"
        r1 = await get(srv, path)
        assert r1.status == 200 and r1.header("x-cache-status") == "MISS" and r1.header("age") == "0"
        r2 = await get(srv, path)
        assert r2.header("x-cache-status") == "HIT" and r2.body == r1.body
        assert r2.header("age") in ("0", "1") and r2.header("content-type") == "application/json"
        assert r2.header("x-upstream") == "echo"  # the upstream's headers are kept
        assert r2.header("date") is not None and r2.header("content-length") == str(len(r1.body))
        head = await get(srv, path, method="HEAD")  # HEAD is answered from the GET entry
        assert head.header("x-cache-status") == "HIT" and head.body == b""
    assert [rq.path for rq in upstream.received] == ["/item/0", "/item/1"]


async def test_the_key_takes_the_query_as_it_came_and_configured_headers(upstream, gateway):
    srv = await gateway(route_config(upstream, {"proxy-cache": {"key_headers": ["X-Tenant"]}}))
    assert (await get(srv, "/q?a=1&b=2")).header("x-cache-status") == "MISS"
    assert (await get(srv, "/q?a=1&b=2")).header("x-cache-status") == "HIT"
    # Not sorted: the backend gets another target, and may read it otherwise (duplicate names, `;` separators).
    assert (await get(srv, "/q?b=2&a=1")).header("x-cache-status") == "MISS"
    assert (await get(srv, "/q?a=1&b=3")).header("x-cache-status") == "MISS"
    assert (await get(srv, "/q?a=1&b=2", {"x-tenant": "t1"})).header("x-cache-status") == "MISS"
    assert (await get(srv, "/q?a=1&b=2", {"x-tenant": "t1"})).header("x-cache-status") == "HIT"
    assert (await get(srv, "/q?a=1&b=2", {"x-tenant": ""})).header("x-cache-status") == "MISS"  # empty: not absent
    assert len(upstream.received) == 5


@pytest.mark.parametrize("cc", ["no-store", "private, max-age=60", "no-cache"])
async def test_cache_control_that_forbids_storing(upstream, gateway, cc):
    srv = await gateway(route_config(upstream, {"proxy-cache": {}}))
    path = hdrs(Cache_Control=cc)
    assert [(await get(srv, path)).header("x-cache-status") for _ in range(3)] == ["MISS"] * 3
    assert len(upstream.received) == 3


async def test_max_age_s_maxage_and_expires_set_the_lifetime(upstream, gateway):
    srv = await gateway(route_config(upstream, {"proxy-cache": {"ttl": 600}}))
    short = hdrs(Cache_Control="max-age=1")
    shared = hdrs(Cache_Control="max-age=0, s-maxage=1")  # s-maxage is the shared caches' own
    expires = hdrs(
        Expires=time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 3))
    )  # 2-3 s (whole seconds)
    past = hdrs(Expires="Thu, 01 Jan 1970 00:00:00 GMT")
    for path in (short, shared, expires):
        assert (await get(srv, path)).header("x-cache-status") == "MISS"
        assert (await get(srv, path)).header("x-cache-status") == "HIT"
    assert [(await get(srv, past)).header("x-cache-status") for _ in range(2)] == ["MISS", "MISS"]
    await asyncio.sleep(1.3)
    assert (await get(srv, expires)).header("x-cache-status") == "HIT"  # by the date, still fresh
    for path in (short, shared):
        assert (await get(srv, path)).header("x-cache-status") == "EXPIRED"
        assert (await get(srv, path)).header("x-cache-status") == "HIT"
    await asyncio.sleep(2.0)
    assert (await get(srv, expires)).header("x-cache-status") == "EXPIRED"


async def test_cache_control_ignored_when_told(upstream, gateway):
    srv = await gateway(route_config(upstream, {"proxy-cache": {"respect_cache_control": False}}))
    path = hdrs(Cache_Control="no-store")
    assert [(await get(srv, path)).header("x-cache-status") for _ in range(2)] == ["MISS", "HIT"]


async def test_vary_keys_by_the_named_request_headers(upstream, gateway):
    srv = await gateway(route_config(upstream, {"proxy-cache": {}}))
    path = hdrs(Vary="X-Lang")
    en, fr = {"x-lang": "en"}, {"x-lang": "fr"}
    assert (await get(srv, path, en)).header("x-cache-status") == "MISS"
    hit = await get(srv, path, en)
    assert hit.header("x-cache-status") == "HIT" and ["x-lang", "en"] in orjson.loads(hit.body)["headers"]
    assert (await get(srv, path, fr)).header("x-cache-status") == "MISS"
    fr_hit = await get(srv, path, fr)
    assert fr_hit.header("x-cache-status") == "HIT" and ["x-lang", "fr"] in orjson.loads(fr_hit.body)["headers"]
    star = hdrs(Vary="*")
    assert [(await get(srv, star)).header("x-cache-status") for _ in range(2)] == ["MISS", "MISS"]


async def test_set_cookie_and_authorization_are_never_shared_by_default(upstream, gateway):
    srv = await gateway(route_config(upstream, {"proxy-cache": {}}))
    cookie = hdrs(Set_Cookie="session=alice")
    r = [await get(srv, cookie) for _ in range(2)]
    assert [x.header("x-cache-status") for x in r] == ["MISS", "MISS"]
    assert all(x.header("set-cookie") == "session=alice" for x in r)
    auth = {"authorization": "Bearer alice"}
    assert [(await get(srv, "/me", auth)).header("x-cache-status") for _ in range(2)] == ["BYPASS", "BYPASS"]
    assert (await get(srv, "/me", method="POST")).header("x-cache-status") == "BYPASS"
    assert len(upstream.received) == 5
    srv2 = await gateway(route_config(upstream, {"proxy-cache": {"cache_set_cookie": True}}))
    assert [(await get(srv2, cookie)).header("x-cache-status") for _ in range(2)] == ["MISS", "HIT"]


async def test_an_item_over_max_item_size_streams_through_uncached(upstream, gateway):
    srv = await gateway(route_config(upstream, {"proxy-cache": {"max_item_size": 100_000}}))
    for path, n in (("/bytes/250000", 250_000), ("/chunked/250000", 250_000)):
        for _ in TWICE:
            r = await get(srv, path)
            assert r.status == 200 and len(r.body) == n and r.header("x-cache-status") == "MISS"
    small = [await get(srv, "/bytes/1000") for _ in range(2)]
    assert [x.header("x-cache-status") for x in small] == ["MISS", "HIT"] and len(small[1].body) == 1000
    assert len(upstream.received) == 5


async def test_fifty_concurrent_misses_make_one_upstream_request(gateway):
    async with Scripted() as up:
        up.delay = 0.3
        up.answer = (200, [("content-type", "text/plain")], b"slow")
        srv = await gateway(route_config(up, {"proxy-cache": {}}))  # type: ignore[arg-type]
        got = await asyncio.gather(*(get(srv, "/slow") for _ in range(50)))
        assert all(r.status == 200 and r.body == b"slow" for r in got)
        assert up.hits == 1
        assert sorted({r.header("x-cache-status") for r in got}) == ["HIT", "MISS"]


async def test_coalescing_waits_are_bounded(gateway):
    async with Scripted() as up:
        up.delay = 0.6
        up.answer = (200, [("cache-control", "no-store")], b"x")
        srv = await gateway(route_config(up, {"proxy-cache": {"lock_timeout": 0.2}}))  # type: ignore[arg-type]
        t0 = time.monotonic()
        got = await asyncio.gather(*(get(srv, "/slow") for _ in range(3)))
        # The waiters gave up after 0.2 s and went themselves: everyone is done in about 0.8 s, not 1.8 s.
        assert all(r.status == 200 for r in got) and up.hits == 3
        assert time.monotonic() - t0 < 1.5


async def test_stale_while_revalidate_in_the_background(gateway):
    # nginx's proxy_cache_background_update (issue 23): the request that finds the entry stale is answered at once
    async with Scripted() as up:
        up.answer = (200, [("cache-control", "max-age=1, stale-while-revalidate=30")], b"v1")
        srv = await gateway(route_config(up, {"proxy-cache": {}, "request-id": {}}))  # type: ignore[arg-type]
        assert (await get(srv, "/r")).header("x-cache-status") == "MISS"
        await asyncio.sleep(1.1)
        up.gate, up.answer = asyncio.Event(), (200, up.answer[1], b"v2")  # the upstream holds its answers
        first = await http_request(srv.port, "GET", "/r", timeout=3)
        # answered while the refresh is still held at the upstream
        assert first.header("x-cache-status") == "STALE" and first.body == b"v1" and up.waiting == 1
        assert int(first.header("age")) >= 1 and first.header("x-request-id")
        for _ in TWICE:  # one refresh per key: the others are answered stale, nothing more reaches the upstream
            r = await get(srv, "/r")
            assert r.header("x-cache-status") == "STALE" and r.body == b"v1"
        head = await get(srv, "/r", method="HEAD")
        assert head.header("x-cache-status") == "STALE" and up.hits == 2
        up.gate.set()  # the refresh answers: stored, and the next request is a hit of the new body
        for _ in range(100):
            r = await get(srv, "/r")
            if r.header("x-cache-status") == "HIT":
                break
            assert r.body == b"v1"
            await asyncio.sleep(0.02)
        assert r.header("x-cache-status") == "HIT" and r.body == b"v2" and up.hits == 2


async def test_background_refreshes_are_bounded(gateway):
    async with Scripted() as up:
        up.answer = (200, [("cache-control", "max-age=1, stale-while-revalidate=30")], b"v1")
        plugins = {"proxy-cache": {"max_background_refreshes": 1}}
        srv = await gateway(route_config(up, plugins))  # type: ignore[arg-type]
        for path in ("/a", "/b"):
            assert (await get(srv, path)).header("x-cache-status") == "MISS"
        await asyncio.sleep(1.1)
        up.gate, up.answer = asyncio.Event(), (200, up.answer[1], b"v2")
        assert (await get(srv, "/a")).header("x-cache-status") == "STALE"  # its refresh takes the one place
        b = asyncio.ensure_future(get(srv, "/b"))  # no room: /b refreshes itself, and waits for the upstream
        for _ in range(100):
            if up.waiting == 2:
                break
            await asyncio.sleep(0.02)
        assert up.waiting == 2 and not b.done()
        up.gate.set()
        r = await b
        assert r.header("x-cache-status") == "EXPIRED" and r.body == b"v2"


async def test_a_background_refresh_runs_the_later_phases(gateway, upstream):
    # The refresh is the request's own way again from the phase after the cache (a transform at a lower priority
    # sees it; an auth plugin before the cache does not run again), with the consumer that authenticated.
    consumers = {"alice": {"credentials": {"key-auth": [{"key": "alice-key"}]}}}
    path = hdrs(cache_control="max-age=1, stale-while-revalidate=30")
    plugins = {
        "key-auth": {},
        "proxy-cache": {"vary_by_consumer": True},
        "request-transformer": {"add": {"headers": {"x-via-transform": "yes"}}},
    }
    srv = await gateway(route_config(upstream, plugins, consumers=consumers))
    key = {"apikey": "alice-key"}
    assert (await get(srv, path, headers=key)).header("x-cache-status") == "MISS"
    await asyncio.sleep(1.1)
    r = await get(srv, path, headers=key)
    assert r.header("x-cache-status") == "STALE"
    for _ in range(100):
        if len(upstream.received) == 2:
            break
        await asyncio.sleep(0.02)
    refresh = upstream.received[1]
    assert refresh.method == "GET" and refresh.header("x-via-transform") == "yes"
    assert refresh.header("x-consumer-username") == "alice"
    for _ in range(100):
        r = await get(srv, path, headers=key)
        if r.header("x-cache-status") == "HIT":
            break
        await asyncio.sleep(0.02)
    assert r.header("x-cache-status") == "HIT" and len(upstream.received) == 2


async def test_stale_while_revalidate_in_the_foreground_and_stale_if_error(gateway):
    async with Scripted() as up:
        up.answer = (200, [("cache-control", "max-age=1, stale-while-revalidate=30, stale-if-error=60")], b"v1")
        # background_update: false, the way before issue 23 (and nginx's default): the first request waits
        plugins = {"proxy-cache": {"background_update": False}, "request-id": {}}
        srv = await gateway(route_config(up, plugins))  # type: ignore[arg-type]
        assert (await get(srv, "/r")).header("x-cache-status") == "MISS"
        await asyncio.sleep(1.1)
        up.delay, up.answer = 0.4, (200, up.answer[1], b"v2")
        refresh = asyncio.ensure_future(get(srv, "/r"))
        await asyncio.sleep(0.1)
        during = await get(srv, "/r")  # one request refreshes; meanwhile the stale entry answers
        assert during.header("x-cache-status") == "STALE" and during.body == b"v1"
        done = await refresh
        assert done.header("x-cache-status") == "EXPIRED" and done.body == b"v2"
        assert (await get(srv, "/r")).body == b"v2"
        await asyncio.sleep(1.1)
        up.delay, up.answer = 0.0, (503, [], b"down")
        r = await get(srv, "/r")  # the upstream fails: the stale entry answers, said to be stale
        assert r.status == 200 and r.body == b"v2" and r.header("x-cache-status") == "STALE"
        assert int(r.header("age")) >= 1 and r.header("x-request-id")  # what plugins set stays
    # The upstream gone altogether (502 from the gateway): stale-if-error still answers.
    r = await get(srv, "/r")
    assert r.status == 200 and r.body == b"v2" and r.header("x-cache-status") == "STALE"


async def test_lambda_routes_are_cached(gateway, tmp_path: Path):
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "app.py").write_text(
        "import os, time\n"
        "def handler(event, context):\n"
        "    return {'statusCode': 200, 'body': str(time.monotonic_ns()), 'headers': {'x-pid': str(os.getpid())}}\n"
    )
    cfg = {
        "functions": {"f": {"runtime": "python", "handler": "app.handler", "code": "fn"}},
        "routes": [{"path": "/fn", "integration": {"type": "lambda", "function": "f"},
                    "plugins": {"proxy-cache": {"ttl": 60}}}],
    }  # fmt: skip
    srv = await gateway(cfg, base_dir=tmp_path)
    a, b = await get(srv, "/fn"), await get(srv, "/fn")
    assert a.status == 200 and a.header("x-cache-status") == "MISS"
    assert b.header("x-cache-status") == "HIT" and b.body == a.body and b.header("x-pid") == a.header("x-pid")


async def test_refresh_by_an_authenticated_consumer_when_allowed(upstream, gateway, consumers):
    plugins = {"key-auth": {}, "proxy-cache": {"allow_refresh": True}}
    srv = await gateway(route_config(upstream, plugins, consumers=consumers))
    key = {"apikey": "alice-key"}
    assert (await get(srv, "/p", key)).header("x-cache-status") == "MISS"
    assert (await get(srv, "/p", key)).header("x-cache-status") == "HIT"
    assert (await get(srv, "/p", {**key, "cache-control": "max-age=0"})).header("x-cache-status") == "MISS"
    assert len(upstream.received) == 2
    srv2 = await gateway(route_config(upstream, {"key-auth": {}, "proxy-cache": {}}, consumers=consumers))
    await get(srv2, "/p", key)
    assert (await get(srv2, "/p", {**key, "cache-control": "max-age=0"})).header("x-cache-status") == "HIT"


def test_the_memory_store_is_bounded_in_bytes_lru_first():
    store = MemoryStore(10_000)

    def item(n: int) -> Stored:
        return Stored(200, [], b"x" * n, 0.0, 0.0, 1e12, 1e12, 1e12)

    for i in range(5):
        store.put(f"k{i}", item(3000))
        store.get("k0", 1.0)  # k0 stays recently used
    assert store.bytes <= 10_000
    assert set(store.items) == {"k0", "k3", "k4"}  # three of 3064 bytes fit; the least recently used went
    store.put("huge", item(20_000))  # bigger than the whole store: not kept, nothing else dropped
    assert "huge" not in store.items and len(store.items) == 3
    assert store.purge("k3") == 1 and set(store.items) == {"k0", "k4"}
    assert store.purge() == 2
    assert store.bytes == 0 and not store.items


async def test_redis_backend_is_shared_by_gateways(redis_server, upstream, gateway):
    cfg = route_config(upstream, {"proxy-cache": {"backend": "redis"}}, redis={"url": redis_server.url})
    a, b = await gateway(cfg), await gateway(cfg)
    r1 = await get(a, "/shared")
    await asyncio.sleep(0.05)  # the store is written after the response went out
    r2 = await get(b, "/shared")
    assert r1.header("x-cache-status") == "MISS" and r2.header("x-cache-status") == "HIT" and r2.body == r1.body
    assert len(upstream.received) == 1
    redis_server.stop()
    r3 = await get(b, "/shared")  # Redis gone: fail_open goes upstream, uncached
    assert r3.status == 200 and r3.header("x-cache-status") == "BYPASS"


async def test_cache_purge_through_the_cli(redis_server, upstream, gateway, tmp_path: Path):
    integ = {"type": "http", "upstream": "backend"}
    cfg = {
        "redis": {"url": redis_server.url},
        "upstreams": {"backend": {"targets": [upstream.url]}},
        "plugins": {"proxy-cache": {"backend": "redis"}},
        "routes": [{"path": "/a/{x}", "name": "a", "integration": integ},
                   {"path": "/b/{x}", "name": "b", "integration": integ}],
    }  # fmt: skip
    srv = await gateway(cfg)
    for path in ("/a/1", "/a/2", "/b/1"):
        await get(srv, path)
    await asyncio.sleep(0.05)
    assert [(await get(srv, p)).header("x-cache-status") for p in ("/a/1", "/a/2", "/b/1")] == ["HIT"] * 3
    conf = tmp_path / "gw.json"
    conf.write_bytes(orjson.dumps(cfg))

    async def purge(*args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "fastgw", "cache-purge", str(conf), *args, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await proc.communicate()
        return proc.returncode or 0, out.decode()

    assert await purge("--route", "a") == (0, "purged 2 cache entries of route a\n")
    assert (await get(srv, "/a/1")).header("x-cache-status") == "MISS"
    assert (await get(srv, "/b/1")).header("x-cache-status") == "HIT"
    await asyncio.sleep(0.05)
    code, out = await purge("--prefix", "b|GET|")
    assert code == 0 and out == "purged 1 cache entries with prefix 'b|GET|'\n"
    await get(srv, "/b/1")
    await asyncio.sleep(0.05)
    code, out = await purge()
    assert code == 0 and out == "purged 2 cache entries\n"  # /a/1 again, and /b/1
    assert (await get(srv, "/b/1")).header("x-cache-status") == "MISS"
