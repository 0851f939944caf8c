"""jwt-auth with real keys of every supported algorithm, a real local JWKS server, and a real echo upstream."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

jwt = pytest.importorskip("jwt")
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa  # noqa: E402

from fastgw.testing import http_request  # noqa: E402
from tests.plugins.conftest import TWICE, route_config  # noqa: E402


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {
        "rsa": rsa_key,
        "rsa2": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "p256": ec.generate_private_key(ec.SECP256R1()),
        "p384": ec.generate_private_key(ec.SECP384R1()),
        "ed": ed25519.Ed25519PrivateKey.generate(),
    }


def pem(private: Any) -> str:
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def claims(iss: str, **over: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": iss, "sub": "user-1", "exp": now + 300, "iat": now, **over}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


ALGS = [
    ("HS256", "secret"), ("HS384", "secret"), ("HS512", "secret"),
    ("RS256", "rsa"), ("RS384", "rsa"), ("RS512", "rsa"), ("PS256", "rsa"),
    ("ES256", "p256"), ("ES384", "p384"), ("EdDSA", "ed"),
]  # fmt: skip
SECRET = "a-long-shared-secret-of-at-least-64-bytes-for-hs512-0123456789abcdefghij"


def consumers_for(keys: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for alg, kind in ALGS:
        cred: dict[str, Any] = {"issuer": f"iss-{alg}", "algorithms": [alg]}
        if kind == "secret":
            cred["secret"] = SECRET
        else:
            cred["public_key"] = pem(keys[kind])
        out[f"c-{alg.lower()}"] = {"groups": ["g"], "credentials": {"jwt-auth": [cred]}}
    return out


def sign(alg: str, kind: str, keys: dict[str, Any], payload: dict[str, Any], **kw: Any) -> str:
    key = SECRET if kind == "secret" else keys[kind]
    return jwt.encode(payload, key, algorithm=alg, **kw)


@pytest.mark.parametrize(("alg", "kind"), ALGS)
async def test_every_algorithm(upstream, gateway, keys, alg, kind):
    gw = await gateway(route_config(upstream, {"jwt-auth": {"hide_credentials": True}}, consumers=consumers_for(keys)))
    token = sign(alg, kind, keys, claims(f"iss-{alg}"))
    for _ in TWICE:  # the second one is answered from the remembered verification
        upstream.received.clear()
        r = await http_request(gw.port, "GET", "/x", headers=bearer(token))
        assert r.status == 200, r.body
        (seen,) = upstream.received
        assert seen.header("x-consumer-username") == f"c-{alg.lower()}" and seen.header("authorization") is None


@pytest.mark.parametrize(
    ("case", "make", "conf", "why"),
    [
        (
            "expired",
            lambda k: sign("RS256", "rsa", k, claims("iss-RS256", exp=int(time.time()) - 10)),
            {},
            "ExpiredSignatureError",
        ),
        (
            "not-yet-valid",
            lambda k: sign("RS256", "rsa", k, claims("iss-RS256", nbf=int(time.time()) + 60)),
            {},
            "ImmatureSignatureError",
        ),
        (
            "wrong-audience",
            lambda k: sign("RS256", "rsa", k, claims("iss-RS256", aud="other")),
            {"audience": ["shop"]},
            "InvalidAudienceError",
        ),
        (
            "no-audience",
            lambda k: sign("RS256", "rsa", k, claims("iss-RS256")),
            {"audience": ["shop"]},
            "MissingRequiredClaimError",
        ),
        (
            "missing-claim",
            lambda k: sign("RS256", "rsa", k, claims("iss-RS256")),
            {"required_claims": ["exp", "jti"]},
            "jti",
        ),
        ("unknown-issuer", lambda k: sign("RS256", "rsa", k, claims("iss-nobody")), {}, "no consumer has the issuer"),
        ("other-key", lambda k: sign("RS256", "rsa2", k, claims("iss-RS256")), {}, "InvalidSignatureError"),
        ("alg-not-allowed", lambda k: sign("RS384", "rsa", k, claims("iss-RS256")), {}, "alg 'RS384' is not allowed"),
        (
            "alg-none",
            lambda k: jwt.encode(claims("iss-RS256"), None, algorithm="none"),
            {},
            "alg 'none' is not allowed",
        ),
        (
            "hs256-with-rs-public-key",
            lambda k: hs256_with(pem(k["rsa"]), claims("iss-RS256")),
            {},
            "alg 'HS256' is not allowed",
        ),
        ("garbage", lambda k: "not.a.jwt", {}, "malformed token"),
        ("tampered", lambda k: tamper(sign("ES256", "p256", k, claims("iss-ES256"))), {}, "InvalidSignatureError"),
    ],
)
async def test_refusals_are_401_and_never_reach_the_upstream(upstream, gateway, keys, case, make, conf, why, caplog):
    caplog.set_level(logging.INFO, logger="fastgw.plugins.jwt")
    gw = await gateway(route_config(upstream, {"jwt-auth": conf}, consumers=consumers_for(keys)))
    token = make(keys)
    for _ in TWICE:
        r = await http_request(gw.port, "GET", "/x", headers=bearer(token))
        assert (r.status, r.json()) == (401, {"message": "Unauthorized"})
        assert r.header("www-authenticate") == 'Bearer realm="fastgw", error="invalid_token"'
    assert upstream.received == []
    # The log says exactly why; the client does not.
    assert any("jwt-auth: refused" in m and why in m for m in caplog.messages), caplog.messages


async def test_a_request_without_a_token_gets_the_bare_challenge(upstream, gateway, keys):
    gw = await gateway(route_config(upstream, {"jwt-auth": {}}, consumers=consumers_for(keys)))
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer "}):
        r = await http_request(gw.port, "GET", "/x", headers=headers)
        assert r.status == 401 and r.header("www-authenticate") == 'Bearer realm="fastgw"'


def hs256_with(secret: str, payload: dict[str, Any]) -> str:
    """An HS256 token whose HMAC key is the issuer's RSA public key (the classic key-confusion attack)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(json.dumps(payload).encode())
    sig = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64(sig)


def tamper(token: str) -> str:
    head, payload, sig = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data["sub"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{head}.{forged}.{sig}"


async def test_scopes(upstream, gateway, keys):
    gw = await gateway(route_config(upstream, {"jwt-auth": {"scopes": ["orders:read"]}}, consumers=consumers_for(keys)))
    ok = sign("ES256", "p256", keys, claims("iss-ES256", scope="profile orders:read"))
    ok_list = sign("ES256", "p256", keys, claims("iss-ES256", scp=["orders:read"]))
    lacking = sign("ES256", "p256", keys, claims("iss-ES256", scope="profile"))
    for _ in TWICE:
        assert (await http_request(gw.port, "GET", "/x", headers=bearer(ok))).status == 200
        assert (await http_request(gw.port, "GET", "/x", headers=bearer(ok_list))).status == 200
        r = await http_request(gw.port, "GET", "/x", headers=bearer(lacking))
        assert (r.status, r.json()) == (403, {"message": "Forbidden"})
        assert r.header("www-authenticate") == 'Bearer realm="fastgw", error="insufficient_scope", scope="orders:read"'


class JwksServer:
    """A local JWKS endpoint whose keys a test can rotate; counts the fetches."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.hits = 0
        self.port = 0
        self.paths: list[str] = []  # every path asked for, redirects included
        self.redirects: dict[str, str] = {}  # path -> Location of a 302
        self.cache_control: str | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        path = head.split(b" ", 2)[1].decode()
        self.paths.append(path)
        if path in self.redirects:
            writer.write(b"HTTP/1.1 302 Found\r\nlocation: %s\r\ncontent-length: 0\r\n\r\n" % (
                self.redirects[path].encode()))  # fmt: skip
        else:
            self.hits += 1
            body = json.dumps({"keys": self.keys}).encode()
            cc = b"cache-control: %s\r\n" % self.cache_control.encode() if self.cache_control else b""
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n%scontent-length: %d\r\n\r\n%s" % (
                cc, len(body), body))  # fmt: skip
        await writer.drain()
        writer.close()


@pytest.fixture
async def jwks_server() -> AsyncIterator[JwksServer]:
    srv = JwksServer()
    server = await asyncio.start_server(srv._serve, "127.0.0.1", 0)
    srv.port = server.sockets[0].getsockname()[1]
    srv.server = server  # type: ignore[attr-defined]  # a test may stop it (the identity provider is down)
    try:
        yield srv
    finally:
        server.close()
        await server.wait_closed()


def jwk(private: Any, kid: str, alg: str) -> dict[str, Any]:
    data = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(private.public_key()))
    return {**data, "kid": kid, "use": "sig", "alg": alg}


async def test_jwks_fetch_rotation_and_unknown_kid(upstream, gateway, keys, jwks_server):
    jwks_server.keys = [jwk(keys["rsa"], "k1", "RS256")]
    url = f"http://127.0.0.1:{jwks_server.port}/.well-known/jwks.json"
    consumers = {"idp": {"credentials": {"jwt-auth": [{"issuer": "https://idp", "algorithms": ["RS256", "ES256"],
                                                       "jwks_url": url}]}}}  # fmt: skip
    gw = await gateway(route_config(upstream, {"jwt-auth": {"jwks_min_refresh": 0}}, consumers=consumers))
    t1 = sign("RS256", "rsa", keys, claims("https://idp"), headers={"kid": "k1"})
    for _ in TWICE:
        assert (await http_request(gw.port, "GET", "/x", headers=bearer(t1))).status == 200
    assert jwks_server.hits == 1  # fetched once, then cached

    t2 = sign("ES256", "p256", keys, claims("https://idp"), headers={"kid": "k2"})
    r = await http_request(gw.port, "GET", "/x", headers=bearer(t2))
    assert r.status == 401 and jwks_server.hits == 2  # unknown kid: fetched again, still unknown

    jwks_server.keys = [jwk(keys["p256"], "k2", "ES256")]  # the identity provider rotates its keys
    for _ in TWICE:
        assert (await http_request(gw.port, "GET", "/x", headers=bearer(t2))).status == 200
    assert jwks_server.hits == 3


async def test_unknown_kids_do_not_make_a_fetch_per_request(upstream, gateway, keys, jwks_server):
    jwks_server.keys = [jwk(keys["rsa"], "k1", "RS256")]
    url = f"http://127.0.0.1:{jwks_server.port}/jwks"
    consumers = {"idp": {"credentials": {"jwt-auth": [{"issuer": "https://idp", "jwks_url": url}]}}}
    gw = await gateway(route_config(upstream, {"jwt-auth": {"jwks_min_refresh": 60}}, consumers=consumers))
    for i in range(5):
        token = sign("RS256", "rsa", keys, claims("https://idp"), headers={"kid": f"nope-{i}"})
        assert (await http_request(gw.port, "GET", "/x", headers=bearer(token))).status == 401
    assert jwks_server.hits == 1


async def test_a_jwks_redirect_is_followed(upstream, gateway, keys, jwks_server):
    # identity providers move their JWKS (issue 23: the hand-written client followed no redirect)
    jwks_server.keys = [jwk(keys["rsa"], "k1", "RS256")]
    jwks_server.redirects = {"/old/jwks": "/v2/jwks"}
    url = f"http://127.0.0.1:{jwks_server.port}/old/jwks"
    consumers = {"idp": {"credentials": {"jwt-auth": [{"issuer": "https://idp", "jwks_url": url}]}}}
    gw = await gateway(route_config(upstream, {"jwt-auth": {}}, consumers=consumers))
    token = sign("RS256", "rsa", keys, claims("https://idp"), headers={"kid": "k1"})
    assert (await http_request(gw.port, "GET", "/x", headers=bearer(token))).status == 200
    assert jwks_server.paths == ["/old/jwks", "/v2/jwks"]


async def test_jwks_cache_control_max_age_is_honoured_and_the_last_keys_outlive_the_server(
    upstream, gateway, keys, jwks_server, caplog
):
    jwks_server.keys = [jwk(keys["rsa"], "k1", "RS256")]
    jwks_server.cache_control = "public, max-age=1"
    url = f"http://127.0.0.1:{jwks_server.port}/jwks"
    consumers = {"idp": {"credentials": {"jwt-auth": [{"issuer": "https://idp", "jwks_url": url}]}}}
    conf = {"jwt-auth": {"jwks_min_refresh": 0, "jwks_max_age": 3600}}
    gw = await gateway(route_config(upstream, conf, consumers=consumers))

    def token() -> str:  # a new one each time, so none is answered from the remembered tokens
        return sign("RS256", "rsa", keys, claims("https://idp", jti=str(time.time_ns())), headers={"kid": "k1"})

    assert (await http_request(gw.port, "GET", "/x", headers=bearer(token()))).status == 200
    assert (await http_request(gw.port, "GET", "/x", headers=bearer(token()))).status == 200
    assert jwks_server.hits == 1  # within its max-age: cached
    await asyncio.sleep(1.1)
    assert (await http_request(gw.port, "GET", "/x", headers=bearer(token()))).status == 200
    assert jwks_server.hits == 2  # past max-age (not jwks_max_age): fetched again
    # The identity provider goes away: the keys fetched last keep working
    jwks_server.server.close()  # type: ignore[attr-defined]
    await jwks_server.server.wait_closed()  # type: ignore[attr-defined]
    await asyncio.sleep(1.1)
    caplog.set_level(logging.WARNING, "fastgw.plugins.jwt")
    for _ in TWICE:
        assert (await http_request(gw.port, "GET", "/x", headers=bearer(token()))).status == 200
    assert "cannot fetch the JWKS" in caplog.text


async def test_the_jwks_fetch_goes_through_the_proxy_the_environment_names(
    upstream, gateway, keys, jwks_server, monkeypatch
):
    # HTTP_PROXY as curl and requests read it: the JWKS server stands in for the proxy, asked in absolute form
    for name in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{jwks_server.port}")
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    jwks_server.keys = [jwk(keys["rsa"], "k1", "RS256")]
    consumers = {"idp": {"credentials": {"jwt-auth": [{"issuer": "https://idp", "jwks_url": "http://idp.test/jwks"}]}}}
    gw = await gateway(route_config(upstream, {"jwt-auth": {}}, consumers=consumers))
    token = sign("RS256", "rsa", keys, claims("https://idp"), headers={"kid": "k1"})
    assert (await http_request(gw.port, "GET", "/x", headers=bearer(token))).status == 200
    assert jwks_server.paths == ["http://idp.test/jwks"]


def test_max_age_of_a_cache_control_value():
    from fastgw.plugins.jwt_auth import max_age

    assert max_age("public, max-age=300, must-revalidate") == 300.0
    assert max_age('max-age="60"') == 60.0
    assert max_age("no-store") == 0.0 and max_age("max-age=soon") == 0.0
    assert max_age("") is None and max_age("public") is None


@pytest.mark.parametrize(
    ("cred", "what"),
    [
        ({"issuer": "i", "algorithms": ["none"], "secret": "s"}, "unsupported algorithm(s) none"),
        ({"issuer": "i", "algorithms": ["RS256"], "secret": "s"}, "a secret only signs HS256"),
        ({"issuer": "i", "algorithms": ["HS256"], "jwks_url": "http://x/j"}, "HMAC algorithms need a secret"),
        ({"issuer": "i", "algorithms": ["RS256"], "public_key": "nope"}, "not a PEM public key"),
        ({"issuer": "i", "secret": "s", "jwks_url": "http://x/j"}, "give exactly one of"),
    ],
)
def test_credentials_that_would_open_a_hole_are_refused_at_load(cred, what):
    from fastgw.config.load import ConfigError, load_config_bytes

    cfg = {"consumers": {"c": {"credentials": {"jwt-auth": [cred]}}},
           "routes": [{"path": "/", "integration": {"type": "mock"}, "plugins": {"jwt-auth": {}}}]}  # fmt: skip
    with pytest.raises(ConfigError, match=what.replace("(", r"\(").replace(")", r"\)")):
        load_config_bytes(json.dumps(cfg).encode(), "gw.json")


async def test_claims_reach_a_function_as_the_jwt_authorizer(keys, tmp_path):
    from fastgw.testing import running_gateway
    from tests.functions.conftest import ECHO_PY, write

    write(tmp_path / "fn", "echo.py", ECHO_PY)
    cfg = {
        "consumers": consumers_for(keys),
        "functions": {"echo": {"runtime": "python", "handler": "echo.handler", "code": "fn"}},
        "routes": [{"path": "/v2", "integration": {"type": "lambda", "function": "echo"}, "plugins": {"jwt-auth": {}}}],
    }
    token = sign("EdDSA", "ed", keys, claims("iss-EdDSA", scope="a b"))
    async with running_gateway(cfg, base_dir=tmp_path) as gw:
        r = await http_request(gw.port, "GET", "/v2", headers=bearer(token))
        auth = r.json()["event"]["requestContext"]["authorizer"]
        assert auth["jwt"]["scopes"] == ["a", "b"] and auth["jwt"]["claims"]["iss"] == "iss-EdDSA"


# -- tokens without iss: the credential picked by another claim, or the route's own key -------------------------


def no_iss(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "user-1", "exp": now + 300, **over}


async def test_key_claim_name_picks_the_credential_from_a_payload_claim(upstream, gateway, keys):
    consumers = {
        "tenant-a": {"credentials": {"jwt-auth": [{"key": "a", "algorithms": ["HS256"], "secret": SECRET}]}},
        "tenant-b": {
            "credentials": {"jwt-auth": [{"key": "b", "issuer": "https://b", "public_key": pem(keys["rsa"])}]}
        },  # noqa: E501
    }
    gw = await gateway(route_config(upstream, {"jwt-auth": {"key_claim_name": "tenant"}}, consumers=consumers))
    a = sign("HS256", "secret", keys, no_iss(tenant="a"))
    b = sign("RS256", "rsa", keys, no_iss(tenant="b", iss="https://b"))
    b_wrong_iss = sign("RS256", "rsa", keys, no_iss(tenant="b", iss="https://evil"))
    b_no_iss = sign("RS256", "rsa", keys, no_iss(tenant="b"))
    signed_by_a_for_b = sign("HS256", "secret", keys, no_iss(tenant="b", iss="https://b"))
    nobody = sign("HS256", "secret", keys, no_iss(tenant="c"))
    for _ in TWICE:
        upstream.received.clear()
        for token, who in ((a, "tenant-a"), (b, "tenant-b")):
            r = await http_request(gw.port, "GET", "/x", headers=bearer(token))
            assert r.status == 200, r.body
            assert upstream.received[-1].header("x-consumer-username") == who
        for token in (b_wrong_iss, b_no_iss, signed_by_a_for_b, nobody, a.replace(".", ".x", 1)):
            r = await http_request(gw.port, "GET", "/x", headers=bearer(token))
            assert (r.status, r.json()) == (401, {"message": "Unauthorized"})
        assert len(upstream.received) == 2


async def test_key_claim_name_picks_the_credential_from_a_header_field(upstream, gateway, keys, caplog):
    caplog.set_level(logging.INFO, logger="fastgw.plugins.jwt")
    consumers = {
        "svc-1": {"credentials": {"jwt-auth": [{"key": "k1", "public_key": pem(keys["rsa"])}]}},
        "svc-2": {
            "credentials": {"jwt-auth": [{"key": "k2", "algorithms": ["ES256"], "public_key": pem(keys["p256"])}]}
        },  # noqa: E501
    }
    conf = {"jwt-auth": {"key_claim_name": "kid", "key_claim_in": "header"}}
    gw = await gateway(route_config(upstream, conf, consumers=consumers))
    for _ in TWICE:
        upstream.received.clear()
        t1 = sign("RS256", "rsa", keys, no_iss(), headers={"kid": "k1"})
        t2 = sign("ES256", "p256", keys, no_iss(), headers={"kid": "k2"})
        for token, who in ((t1, "svc-1"), (t2, "svc-2")):
            assert (await http_request(gw.port, "GET", "/x", headers=bearer(token))).status == 200
            assert upstream.received[-1].header("x-consumer-username") == who
        crossed = sign("RS256", "rsa", keys, no_iss(), headers={"kid": "k2"})  # names svc-2, signed by svc-1's key
        unknown = sign("RS256", "rsa", keys, no_iss(), headers={"kid": "k9"})
        for token in (crossed, unknown):
            assert (await http_request(gw.port, "GET", "/x", headers=bearer(token))).status == 401
        assert len(upstream.received) == 2
    assert "no consumer credential has the kid 'k9'" in caplog.text
    assert "alg 'RS256' is not allowed for key 'k2'" in caplog.text


@pytest.mark.parametrize("kind", ["secret", "public_key", "jwks_url"])
async def test_the_routes_own_key_verifies_tokens_without_consumers(upstream, gateway, keys, jwks_server, kind):
    jwks_server.keys = [jwk(keys["rsa"], "k1", "RS256")]
    own: dict[str, Any] = {
        "secret": {"secret": SECRET},
        "public_key": {"public_key": pem(keys["rsa"]), "issuer": "https://idp"},
        "jwks_url": {"jwks_url": f"http://127.0.0.1:{jwks_server.port}/jwks", "issuer": "https://idp"},
    }[kind]
    gw = await gateway(route_config(upstream, {"jwt-auth": {**own, "audience": ["shop"]}}))
    signer = ("HS256", "secret") if kind == "secret" else ("RS256", "rsa")
    iss = {} if kind == "secret" else {"iss": "https://idp"}
    good = sign(*signer, keys, no_iss(aud="shop", **iss), headers={"kid": "k1"})
    bad = [
        sign(*signer, keys, no_iss(aud="other", **iss), headers={"kid": "k1"}),  # another audience
        sign("RS256", "rsa2", keys, no_iss(aud="shop", **iss), headers={"kid": "k1"}),  # another key
        sign("HS256", "secret", keys, no_iss(aud="shop", **iss)) if kind != "secret" else "x.y.z",
    ]
    if kind != "secret":
        bad.append(sign(*signer, keys, no_iss(aud="shop", iss="https://evil"), headers={"kid": "k1"}))
        bad.append(sign(*signer, keys, no_iss(aud="shop"), headers={"kid": "k1"}))  # the issuer is required
    for _ in TWICE:
        upstream.received.clear()
        r = await http_request(gw.port, "GET", "/x", headers=bearer(good))
        assert r.status == 200, r.body
        assert upstream.received[-1].header("x-consumer-username") is None  # no consumer: the token is the identity
        for token in bad:
            r = await http_request(gw.port, "GET", "/x", headers=bearer(token))
            assert (r.status, r.json()) == (401, {"message": "Unauthorized"}), token
        assert len(upstream.received) == 1


async def test_a_token_verified_on_one_route_is_judged_again_on_another(upstream, gateway, keys):
    # Remembered verifications belong to the route configuration that made them (its audience, its keys).
    integ = {"type": "http", "upstream": "backend"}
    cfg = {
        "upstreams": {"backend": {"targets": [upstream.url]}},
        "consumers": consumers_for(keys),
        "routes": [
            {"path": "/a", "integration": integ, "plugins": {"jwt-auth": {"audience": ["a"]}}},
            {"path": "/b", "integration": integ, "plugins": {"jwt-auth": {"audience": ["b"]}}},
        ],
    }
    gw = await gateway(cfg)
    token = sign("RS256", "rsa", keys, claims("iss-RS256", aud="a"))
    for _ in TWICE:
        assert (await http_request(gw.port, "GET", "/a", headers=bearer(token))).status == 200
        assert (await http_request(gw.port, "GET", "/b", headers=bearer(token))).status == 401
    assert [r.path for r in upstream.received] == ["/a", "/a"]


@pytest.mark.parametrize(
    ("conf", "cred", "what"),
    [
        ({"secret": "s", "key_claim_name": "tenant"}, None, "not used with the plugin's own key"),
        ({"issuer": "https://idp"}, None, "issuer and algorithms go with the plugin's own key"),
        ({"secret": "s", "public_key": "p"}, None, "give exactly one of"),
        ({"public_key": "p", "algorithms": ["HS256"]}, None, "HMAC algorithms need a secret"),
        ({}, {"secret": "s", "algorithms": ["HS256"]}, "needs an issuer or a key"),
        ({}, {"key": "k", "algorithms": ["none"], "secret": "s"}, "key 'k': unsupported algorithm(s) none"),
    ],
)
def test_route_keys_and_key_claims_that_cannot_work_are_refused_at_load(conf, cred, what):
    from fastgw.config.load import ConfigError, load_config_bytes

    cfg: dict[str, Any] = {"routes": [{"path": "/", "integration": {"type": "mock"}, "plugins": {"jwt-auth": conf}}]}
    if cred is not None:
        cfg["consumers"] = {"c": {"credentials": {"jwt-auth": [cred]}}}
    with pytest.raises(ConfigError, match=what.replace("(", r"\(").replace(")", r"\)")):
        load_config_bytes(json.dumps(cfg).encode(), "gw.json")
