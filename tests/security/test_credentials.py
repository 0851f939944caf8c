"""Issue 19, items 3, 5 and 6, tried from outside over real sockets: cache entries shared only by requests whose
target the backend receives byte for byte the same; a credential sent twice refused before it reaches the
upstream; JWT NumericDate claims that are not numbers, and every other odd credential, answered 401 and never a
500. Each case runs twice: a remembered credential or a cached entry is judged again the second time."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fastgw.testing import RawConnection, Response
from tests.plugins.conftest import TWICE, route_config


async def send(port: int, target: str, headers: list[tuple[str, str]] | list[tuple[bytes, bytes]] = ()) -> Response:
    """One GET with the header fields exactly as given (names may repeat; bytes go out as they are)."""
    lines = [(b"host", b"test.local"), (b"connection", b"close")]
    lines += [(k.encode("latin-1"), v.encode("latin-1")) if isinstance(k, str) else (k, v) for k, v in headers]
    head = b"GET %s HTTP/1.1\r\n" % target.encode("latin-1") + b"".join(b"%s: %s\r\n" % kv for kv in lines)
    conn = await RawConnection.open(port)
    try:
        await conn.send(head + b"\r\n")
        return await conn.response()
    finally:
        await conn.close()


# -- item 3: cache keys -----------------------------------------------------------------------------------------

# Each pair: two targets the upstream receives differently, that a key made of decoded or sorted values (or of
# unescaped parts) gave one entry.
DIFFERENT_TARGETS = [
    ("/c?a=b%26c%3Dd", "/c?a=b&c=d"),  # an escaped separator is not a separator
    ("/c?x=%FF", "/c?x=%FE"),  # two bytes that are not UTF-8 are still two bytes
    ("/c?a=1;b=2", "/c?a=1%3Bb=2"),  # `;` is a separator to some backends, `%3B` to none
    ("/c?a=1&a=2", "/c?a=2&a=1"),  # the first `a` is another value
    ("/c?a=1&%61=2", "/c?%61=2&a=1"),  # so it is when one name is escaped
    ("/c?q=a+b", "/c?q=a%20b"),
    ("/c?a", "/c?a="),
    ("/c?", "/c"),
    ("/c|?x", "/c?|x"),  # a `|` in the path or query is not the key's separator
]


@pytest.fixture(params=["front", "chain", "redis"])
def cache_route(request, upstream) -> Any:
    """The route's cache as each way answers it: the front (proxy-cache alone), the phase chain (another plugin
    along), the Redis store (the chain, and the key as Redis holds it)."""
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")
        return lambda conf: route_config(upstream, {"proxy-cache": {"backend": "redis", **conf}},
                                         redis={"url": server.url})  # fmt: skip
    if request.param == "chain":
        return lambda conf: route_config(upstream, {"proxy-cache": conf, "request-id": {}})
    return lambda conf: route_config(upstream, {"proxy-cache": conf})


async def _filled(gw_port: int, target: str, headers: Any = ()) -> Response:
    """A request that the cache may store; waits for the Redis store's write (after the response went out)."""
    r = await send(gw_port, target, headers)
    await asyncio.sleep(0.03)
    return r


@pytest.mark.parametrize(("first", "second"), DIFFERENT_TARGETS)
async def test_requests_share_an_entry_only_for_the_same_target_bytes(upstream, gateway, cache_route, first, second):
    gw = await gateway(cache_route({}))
    for _ in TWICE:
        a = await _filled(gw.port, first)
        b = await send(gw.port, second)
        assert a.status == b.status == 200
        assert b.header("x-cache-status") in ("MISS", "HIT")
        want = second.partition("?")[2]
        assert b.json()["query"] == want, f"{second} was answered with the entry of {first}"
    # Each of the two reached the upstream once (the second round was answered from the cache), as it was sent.
    assert sorted(r.target for r in upstream.received) == sorted([first, second])


async def test_the_same_target_is_still_one_entry(upstream, gateway, cache_route):
    gw = await gateway(cache_route({}))
    await _filled(gw.port, "/c?a=b%26c%3Dd&x=%FF")
    again = await send(gw.port, "/c?a=b%26c%3Dd&x=%FF")
    assert again.header("x-cache-status") == "HIT" and len(upstream.received) == 1


HEADER_PAIRS = [
    # key_headers [X-A, X-B]: a `|` inside a value is not the separator of the parts
    ([("x-a", "1|2"), ("x-b", "3")], [("x-a", "1"), ("x-b", "2|3")]),
    # every value counts, not the first
    ([("x-a", "t"), ("x-a", "u")], [("x-a", "t")]),
    ([("x-a", "t,u")], [("x-a", "t"), ("x-a", "u")]),
    # the bytes count, not their reading: é in Latin-1 and in UTF-8
    ([(b"x-a", b"\xe9")], [(b"x-a", b"\xc3\xa9")]),
    # empty is not absent
    ([("x-a", "")], []),
]


@pytest.mark.parametrize(("first", "second"), HEADER_PAIRS)
async def test_key_headers_and_vary_take_every_value_as_sent(upstream, gateway, cache_route, first, second):
    gw = await gateway(cache_route({"key_headers": ["X-A", "X-B"]}))
    await _filled(gw.port, "/k", first)
    assert (await send(gw.port, "/k", second)).header("x-cache-status") == "MISS"
    # The same through Vary: the upstream says its answer varies on X-A and X-B.
    vary = "/headers?Vary=X-A,X-B"
    await _filled(gw.port, vary, first)
    assert (await _filled(gw.port, vary, first)).header("x-cache-status") == "HIT"
    assert (await send(gw.port, vary, second)).header("x-cache-status") == "MISS"


async def test_an_upstream_target_made_by_an_earlier_plugin_completes_the_key(upstream, gateway):
    plugins = {
        "request-transformer": {"set": {"query": {"who": "$request.header.X-Who"}}},
        "proxy-cache": {},
    }
    gw = await gateway(route_config(upstream, plugins))
    for who in ("alice", "bob", "alice"):
        r = await send(gw.port, "/me", [("x-who", who)])
        assert r.json()["query"] == f"who={who}"
    assert [r.target for r in upstream.received] == ["/me?who=alice", "/me?who=bob"]


async def test_redis_keys_and_purge_follow_the_same_rule(redis_server, upstream, gateway):
    from fastgw.config.schema import RedisConfig
    from fastgw.state import redis as redis_state
    from fastgw.state.cache import purge_redis

    gw = await gateway(route_config(upstream, {"proxy-cache": {"backend": "redis"}}, redis={"url": redis_server.url}))
    for target in ("/p?a=b%26c", "/p?a=b&c", "/p|x?y"):
        await _filled(gw.port, target)
    shared = redis_state.configure(RedisConfig(url=redis_server.url))  # the gateway's own, as the CLI finds it
    assert shared is not None
    keys = sorted(k.decode() for k in await shared.run(lambda c: c.keys("*")))
    host = "test.local"
    assert keys == sorted(
        f"{shared.prefix}cache:2:{name}|GET|{host}|{rest}"
        for name, rest in (("routes[0]", "/p|?a=b%26c"), ("routes[0]", "/p|?a=b&c"), ("routes[0]", "/p\\|x|?y"))
    ), keys
    # A purge by a key's prefix, escapes and all, takes exactly the entries under it.
    assert await purge_redis(shared, "routes[0]|GET|test.local|/p\\|x|") == 1
    assert await purge_redis(shared, "routes[0]|GET|test.local|/p|?a=b&") == 1
    assert (await send(gw.port, "/p?a=b%26c")).header("x-cache-status") == "HIT"
    assert (await send(gw.port, "/p?a=b&c")).header("x-cache-status") == "MISS"
