"""Issue 19, items 3, 5 and 6, tried from outside over real sockets: cache entries shared only by requests whose
target the backend receives byte for byte the same; a credential sent twice refused before it reaches the
upstream; JWT NumericDate claims that are not numbers, and every other odd credential, answered 401 and never a
500. Each case runs twice: a remembered credential or a cached entry is judged again the second time."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from typing import Any

import orjson
import pytest

from fastgw.plugins.basic_auth import hash_password
from fastgw.testing import RawConnection, Response, http_request
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
        for name, rest in (
            ("ANY /{proxy+}", "/p|?a=b%26c"),
            ("ANY /{proxy+}", "/p|?a=b&c"),
            ("ANY /{proxy+}", "/p\\|x|?y"),
        )
    ), keys
    # A purge by a key's prefix, escapes and all, takes exactly the entries under it.
    assert await purge_redis(shared, "ANY /{proxy+}|GET|test.local|/p\\|x|") == 1
    assert await purge_redis(shared, "ANY /{proxy+}|GET|test.local|/p|?a=b&") == 1
    assert (await send(gw.port, "/p?a=b%26c")).header("x-cache-status") == "HIT"
    assert (await send(gw.port, "/p?a=b&c")).header("x-cache-status") == "MISS"


# -- item 5: a credential sent twice ----------------------------------------------------------------------------


@pytest.fixture
def creds() -> dict[str, Any]:
    return {
        "alice": {"credentials": {
            "key-auth": [{"key": "alice-key"}],
            "basic-auth": [{"username": "alice", "password_hash": hash_password("pw", iterations=1000)}],
            "jwt-auth": [{"issuer": "shop", "algorithms": ["HS256"], "secret": SECRET}],
        }},
        "bob": {"credentials": {"key-auth": [{"key": "bob-key"}]}},
    }  # fmt: skip


SECRET = "a-long-shared-secret-for-hs256-0123456789abcdef"


def hs256(payload: dict[str, Any] | bytes, header: dict[str, Any] | bytes | None = None) -> str:
    """An HS256 token over exactly these JSON bytes (so claims PyJWT would never write can be tried)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = header if isinstance(header, bytes) else json.dumps(header or {"alg": "HS256", "typ": "JWT"}).encode()
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signing_input = b64(head) + "." + b64(body)
    return signing_input + "." + b64(hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest())


def good_token(**over: Any) -> str:
    return hs256({"iss": "shop", "sub": "alice", "exp": int(time.time()) + 300, **over})


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


TWICE_SENT = [
    # key-auth, from the header (the default) and the query
    ("key", {}, "/x", [("apikey", "alice-key"), ("apikey", "bob-key")]),
    ("key", {}, "/x", [("apikey", "nope"), ("apikey", "alice-key")]),
    ("key", {}, "/x?apikey=alice-key&apikey=bob-key", []),
    ("key", {}, "/x?apikey=alice-key&api%6Bey=evil", []),  # the same name, escaped
    ("key", {}, "/x?apikey=alice-key;apikey=evil", []),  # a second one to a backend that splits on `;`
    ("key", {}, "/x?apikey=alice-key", [("apikey", "alice-key")]),  # header and query
    ("key", {"key_names": ["x-api-key"]}, "/x", [("x-api-key", "alice-key"), ("x_api_key", "evil")]),  # CGI
    ("key", {"key_names": ["apikey", "x-api-key"]}, "/x", [("x-api-key", "alice-key"), ("apikey", "evil")]),
    ("key", {"in_cookie": True}, "/x", [("cookie", "apikey=alice-key; apikey=evil")]),
    ("key", {"in_cookie": True}, "/x", [("cookie", "apikey=alice-key"), ("cookie", "apikey=evil")]),
    ("key", {"in_cookie": True}, "/x", [("apikey", "alice-key"), ("cookie", "apikey=evil")]),
    # basic-auth
    ("basic", {}, "/x", [("authorization", basic("alice", "pw")), ("authorization", basic("alice", "other"))]),
    ("basic", {}, "/x", [("authorization", basic("alice", "pw")), ("authorization", "Bearer evil")]),
    # jwt-auth, from the header, the query and a cookie
    ("jwt", {}, "/x", [("authorization", "Bearer {t}"), ("authorization", "Bearer evil")]),
    ("jwt", {}, "/x", [("authorization", "Bearer {t}"), ("authorization", "Basic ZXZpbDpldmls")]),
    ("jwt", {"query_names": ["jwt"]}, "/x?jwt={t}&jwt=evil", []),
    ("jwt", {"query_names": ["jwt"]}, "/x?jwt={t}", [("authorization", "Bearer evil")]),
    ("jwt", {"cookie_names": ["jwt"]}, "/x", [("cookie", "jwt={t}; jwt=evil")]),
    ("jwt", {"cookie_names": ["jwt"]}, "/x", [("authorization", "Bearer {t}"), ("cookie", "jwt=evil")]),
]
PLUGIN = {"key": "key-auth", "basic": "basic-auth", "jwt": "jwt-auth"}


@pytest.mark.parametrize(("kind", "conf", "target", "headers"), TWICE_SENT)
async def test_a_credential_sent_twice_is_refused(upstream, gateway, creds, kind, conf, target, headers):
    gw = await gateway(route_config(upstream, {PLUGIN[kind]: conf}, consumers=creds))
    token = good_token()
    target = target.replace("{t}", token)
    headers = [(k, v.replace("{t}", token)) for k, v in headers]
    for _ in TWICE:
        r = await send(gw.port, target, headers)
        assert r.status == 400, (r.status, r.body)
        assert r.json()["message"].startswith("More than one ")
    assert upstream.received == []


async def test_one_credential_with_other_fields_around_it_still_passes(upstream, gateway, creds):
    plugins = {"key-auth": {"in_cookie": True, "hide_credentials": True}}
    gw = await gateway(route_config(upstream, plugins, consumers=creds))
    for _ in TWICE:
        r = await send(gw.port, "/x?a=1&b=apikey", [("cookie", "theme=dark; apikey=alice-key; lang=en")])
        assert r.status == 200
        r = await send(gw.port, "/x", [("cookie", "expires=3; apikey=alice-key")])  # SimpleCookie lost it
        assert r.status == 200
    seen = upstream.received[0]
    assert seen.header("cookie") == "theme=dark; lang=en" and seen.target == "/x?a=1&b=apikey"
    # A place the plugin does not read is the backend's: with in_query false, ?apikey= is not a second key.
    gw = await gateway(route_config(upstream, {"key-auth": {"in_query": False}}, consumers=creds))
    assert (await send(gw.port, "/x?apikey=third-party", [("apikey", "alice-key")])).status == 200
    plugins = {"jwt-auth": {"cookie_names": ["jwt"], "hide_credentials": True}}
    gw = await gateway(route_config(upstream, plugins, consumers=creds))
    upstream.received.clear()
    r = await send(gw.port, "/x", [("authorization", "Basic abc"), ("cookie", f"a=1; jwt={good_token()}")])
    assert r.status == 200  # an Authorization of another scheme is not a bearer token
    (seen,) = upstream.received
    assert seen.header("authorization") == "Basic abc" and seen.header("cookie") == "a=1"  # the token hidden


# -- item 6: odd claims and credentials, never a 500 ------------------------------------------------------------

NOW = int(time.time())  # read at import: tokens made from it live a day, past any suite's run
ODD_TOKENS = [
    ("exp-string", {"exp": str(NOW + 86400)}),
    ("nbf-string", {"nbf": str(NOW - 10)}),
    ("iat-string", {"iat": str(NOW)}),
    ("exp-bool", {"exp": True}),
    ("exp-list", {"exp": [NOW + 86400]}),
    ("exp-object", {"exp": {"v": NOW + 86400}}),
    ("exp-null", {"exp": None}),
    ("exp-huge", b'{"iss": "shop", "exp": 1' + b"0" * 400 + b"}"),
    ("exp-too-many-digits", b'{"iss": "shop", "exp": 1' + b"0" * 5000 + b"}"),
    ("exp-1e400", b'{"iss": "shop", "exp": 1e400}'),
    ("exp-nan", b'{"iss": "shop", "exp": NaN}'),
    ("exp-infinity", b'{"iss": "shop", "exp": Infinity}'),
    ("nbf-minus-infinity", b'{"iss": "shop", "exp": 9999999999, "nbf": -Infinity}'),
    ("iat-nan", b'{"iss": "shop", "exp": 9999999999, "iat": NaN}'),
    ("payload-nested", b'{"iss": "shop", "exp": 9999999999, "x": ' + b"[" * 2500 + b"]" * 2500 + b"}"),
    ("payload-not-object", b"[1, 2]"),
    ("payload-not-json", b"\xff\xfe"),
]


@pytest.mark.parametrize(("case", "payload"), ODD_TOKENS)
async def test_numeric_dates_must_be_numbers_and_odd_claims_are_401(upstream, gateway, creds, case, payload, caplog):
    caplog.set_level(logging.INFO, logger="fastgw")
    gw = await gateway(route_config(upstream, {"jwt-auth": {}}, consumers=creds))
    claims = payload if isinstance(payload, bytes) else {"iss": "shop", "exp": NOW + 86400, **payload}
    token = hs256(claims)
    for _ in TWICE:  # a token accepted once would be taken from the remembered ones the second time
        r = await send(gw.port, "/x", [("authorization", f"Bearer {token}")])
        assert (r.status, r.json()) == (401, {"message": "Unauthorized"}), r.body
        assert r.header("www-authenticate") == 'Bearer realm="fastgw", error="invalid_token"'
    assert upstream.received == []
    assert not [m for m in caplog.records if m.levelno >= logging.ERROR], "a plugin raised"


ODD_HEADERS = [
    ("header-not-object", b'"HS256"'),
    ("header-list", b'[{"alg": "HS256"}]'),
    ("alg-list", b'{"alg": ["HS256"]}'),
    ("alg-object", b'{"alg": {"HS256": 1}}'),
    ("kid-list", b'{"alg": "HS256", "kid": ["a"]}'),
    ("header-not-json", b"{"),
    ("header-nested", b'{"alg": "HS256", "x": ' + b"[" * 2500 + b"]" * 2500 + b"}"),
]


@pytest.mark.parametrize(("case", "header"), ODD_HEADERS)
@pytest.mark.parametrize("pick", ["iss", "kid"])
async def test_odd_jose_headers_are_401(upstream, gateway, creds, case, header, pick, caplog):
    caplog.set_level(logging.INFO, logger="fastgw")
    conf = {} if pick == "iss" else {"key_claim_name": "kid", "key_claim_in": "header"}
    gw = await gateway(route_config(upstream, {"jwt-auth": conf}, consumers=creds))
    token = hs256({"iss": "shop", "exp": NOW + 86400}, header)
    for _ in TWICE:
        r = await send(gw.port, "/x", [("authorization", f"Bearer {token}")])
        assert r.status == 401, r.body
    assert upstream.received == []
    assert not [m for m in caplog.records if m.levelno >= logging.ERROR], "a plugin raised"


async def test_a_route_key_without_consumers_refuses_odd_claims_too(upstream, gateway):
    gw = await gateway(route_config(upstream, {"jwt-auth": {"secret": SECRET}}))
    for claims in ({"exp": str(NOW + 86400)}, {"exp": NOW + 86400, "nbf": "0"}):
        token = hs256(claims)
        for _ in TWICE:
            assert (await send(gw.port, "/x", [("authorization", f"Bearer {token}")])).status == 401
    assert (await send(gw.port, "/x", [("authorization", f"Bearer {hs256({'exp': NOW + 86400.5})}")])).status == 200


ODD_BASIC = [
    "Basic é",  # not base64, not even ASCII
    "Basic " + base64.b64encode(b"\xff\xfe:\xfd").decode(),  # not UTF-8
    "Basic " + base64.b64encode(b"alice").decode(),  # no colon
    "Basic ====",
    "Basic " + base64.b64encode(b"alice:" + b"p" * 5000).decode()[:4000],  # cut short
    "Basic " + base64.b64encode(b"alice:pw\x00").decode(),
    "Basic",
    "basic " + base64.b64encode(b":").decode(),
]


@pytest.mark.parametrize("value", ODD_BASIC)
async def test_odd_basic_credentials_are_401(upstream, gateway, creds, value, caplog):
    caplog.set_level(logging.INFO, logger="fastgw")
    gw = await gateway(route_config(upstream, {"basic-auth": {}}, consumers=creds))
    for _ in TWICE:
        r = await send(gw.port, "/x", [(b"authorization", value.encode("utf-8"))])
        assert r.status == 401, r.body
        assert orjson.loads(r.body)["message"] in ("Unauthorized", "Invalid authentication credentials")
    assert upstream.received == []
    assert not [m for m in caplog.records if m.levelno >= logging.ERROR], "a plugin raised"


async def test_a_bcrypt_password_past_72_bytes_is_judged_not_raised(upstream, gateway):
    bcrypt = pytest.importorskip("bcrypt")
    long_pw = "p" * 100
    stored = bcrypt.hashpw(long_pw.encode()[:72], bcrypt.gensalt(4)).decode()
    consumers = {"c": {"credentials": {"basic-auth": [{"username": "c", "password_hash": stored}]}}}
    gw = await gateway(route_config(upstream, {"basic-auth": {}}, consumers=consumers))
    for _ in TWICE:
        assert (await send(gw.port, "/x", [("authorization", basic("c", long_pw))])).status == 200
        assert (await send(gw.port, "/x", [("authorization", basic("c", "q" * 100))])).status == 401


ODD_KEYS = [
    ("/x", [(b"apikey", b"\xff\xfe")]),
    ("/x?apikey=%FF%FE", []),
    ("/x?apikey=%", []),
    ("/x", [("cookie", 'apikey="; =; ;;; $Path=/')]),
    ("/x", [(b"cookie", b"apikey=\xff")]),
]


@pytest.mark.parametrize(("target", "headers"), ODD_KEYS)
async def test_odd_api_keys_are_401(upstream, gateway, creds, target, headers, caplog):
    caplog.set_level(logging.INFO, logger="fastgw")
    gw = await gateway(route_config(upstream, {"key-auth": {"in_cookie": True}}, consumers=creds))
    for _ in TWICE:
        assert (await send(gw.port, target, headers)).status == 401
    assert upstream.received == []
    assert not [m for m in caplog.records if m.levelno >= logging.ERROR], "a plugin raised"
    assert (await http_request(gw.port, "GET", "/x", headers={"apikey": "alice-key"})).status == 200
