"""No input of a client makes key-auth, jwt-auth or basic-auth raise (issue 19, item 6): random header fields,
queries, cookies and tokens (signed, so that they reach the claim checks: dates of every JSON type, huge and
non-finite numbers, odd JOSE headers) go to each plugin's access phase, on the core `fastgw.core` chose; the
answer is a pass, a 400 or a 401, never an exception. tests/security/test_credentials.py holds the named cases
over real sockets."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("jwt")

from fastgw import core  # noqa: E402
from fastgw.plugins.base import Response, RouteInfo  # noqa: E402
from fastgw.plugins.basic_auth import BasicAuth, BasicAuthConfig, BasicCredential, hash_password  # noqa: E402
from fastgw.plugins.consumers import Consumer  # noqa: E402
from fastgw.plugins.jwt_auth import JwtAuth, JwtAuthConfig, JwtCredential  # noqa: E402
from fastgw.plugins.key_auth import KeyAuth, KeyAuthConfig, KeyCredential  # noqa: E402

SECRET = "a-long-shared-secret-for-hs256-0123456789abcdef"
ALICE = Consumer("alice", (), {})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _signed(header: bytes, payload: bytes) -> str:
    signing_input = _b64(header) + "." + _b64(payload)
    return signing_input + "." + _b64(hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest())


def _plugins() -> list[tuple[Any, Any]]:
    key = KeyAuth()
    key.credentials([(ALICE, KeyCredential(key="alice-key"))])
    jwt = JwtAuth()
    jwt.credentials([(ALICE, JwtCredential(issuer="shop", algorithms=["HS256"], secret=SECRET))])
    basic = BasicAuth()
    basic.credentials([(ALICE, BasicCredential(username="alice", password_hash=hash_password("pw", 1000)))])
    return [
        (key, key.prepare(KeyAuthConfig())),
        (key, key.prepare(KeyAuthConfig(key_names=["apikey", "x-api-key"], in_cookie=True, hide_credentials=True))),
        (jwt, jwt.prepare(JwtAuthConfig(query_names=["jwt"], cookie_names=["jwt"], hide_credentials=True))),
        (jwt, jwt.prepare(JwtAuthConfig(key_claim_name="kid", key_claim_in="header"))),
        (jwt, jwt.prepare(JwtAuthConfig(secret=SECRET))),
        (basic, basic.prepare(BasicAuthConfig(hide_credentials=True))),
    ]


PLUGINS = _plugins()
ROUTE = RouteInfo("r", "/x", ("GET",), None, None, None)

JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
CLAIMS = st.dictionaries(st.sampled_from(["exp", "nbf", "iat", "iss", "aud", "sub", "scope", "scp"]), JSON_VALUE)
JOSE = st.dictionaries(st.sampled_from(["alg", "kid", "typ", "crit"]), JSON_VALUE) | st.just({"alg": "HS256"})


@st.composite
def tokens(draw: Any) -> str:
    claims = {"iss": "shop", **draw(CLAIMS)}
    header = draw(JOSE)
    if draw(st.booleans()):
        header = {"alg": "HS256", "kid": "shop", **header}
    # Python's json writes NaN and Infinity, which PyJWT's json reads back: exactly the claims to try.
    return _signed(json.dumps(header).encode(), json.dumps(claims).encode())


def _basic(user: bytes, password: bytes) -> bytes:
    return b"Basic " + base64.b64encode(user + b":" + password)


FIELD_BYTES = st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"").replace(b"\0", b""))
VALUE = st.one_of(
    FIELD_BYTES,
    st.sampled_from([b"alice-key", b"Bearer ", b"Basic ", b"jwt=", b"apikey=alice-key; apikey=x", b'apikey="']),
    tokens().map(lambda t: ("Bearer " + t).encode()),
    st.tuples(FIELD_BYTES, FIELD_BYTES).map(lambda up: _basic(*up)),
    st.just(_basic(b"alice", b"pw")),
)
NAME = st.sampled_from([b"apikey", b"x-api-key", b"x_api_key", b"authorization", b"cookie", b"x-other"])
QUERY = st.one_of(
    st.none(),
    FIELD_BYTES.map(lambda b: b.replace(b" ", b"").replace(b"#", b"")),
    st.sampled_from([b"apikey=alice-key", b"apikey=%", b"api%6Bey=a&apikey=b", b"a=1;apikey=x", b"jwt=%FF"]),
    tokens().map(lambda t: b"jwt=" + t.encode()),
)


def _request(fields: list[tuple[bytes, bytes]], query: bytes | None) -> Any:
    req = core.Request()
    req.method = "GET"
    req.path = "/x"
    req.host = "test.local"
    req.headers = [(b"host", b"test.local"), *fields]
    req.query = query
    return req


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fields=st.lists(st.tuples(NAME, VALUE), max_size=4), query=QUERY)
def test_no_client_input_makes_an_auth_plugin_raise(fields: list[tuple[bytes, bytes]], query: bytes | None) -> None:
    for plugin, prepared in PLUGINS:
        ctx = core.new_context(_request(fields, query), "127.0.0.1", {}, ROUTE, core.PhaseChain())
        answer = plugin.access(ctx, prepared)
        if asyncio.iscoroutine(answer):
            answer = asyncio.run(answer)
        assert answer is None or (isinstance(answer, Response) and answer.status in (400, 401, 403)), answer
        if answer is None:
            ctx.upstream_request.apply(ctx.request._req)  # what goes upstream can be built


PRINCIPAL = st.text(max_size=12) | st.sampled_from(["alice\r\nx-admin: true\r\n\r\nGET /internal HTTP/1.1", "a\0b"])


@settings(max_examples=300, deadline=None)
@given(principal=PRINCIPAL, tenant=PRINCIPAL)
def test_no_authorizer_answer_puts_a_control_character_into_a_header(principal: str, tenant: str) -> None:
    """A Lambda authorizer's principalId becomes the consumer's name (X-Consumer-Username) and, like a context value
    upstream_headers names, a header value: one with a control character (tab aside) is a malformed answer (500),
    and a consumer cannot be named so."""
    from fastgw.plugins.lambda_authorizer import LambdaAuthorizerConfig, Malformed, Prepared, read_answer

    prep = Prepared(LambdaAuthorizerConfig(function="f", upstream_headers={"X-Tenant": "tenant"}), [], None)
    policy = {"Statement": [{"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": "*"}]}
    answer = {"principalId": principal, "context": {"tenant": tenant}, "policyDocument": policy}
    unsafe = any((ord(c) < 32 and c != "\t") or c == "\x7f" for c in principal + tenant)
    try:
        verdict = read_answer(answer, prep)
    except Malformed:
        assert unsafe
    else:
        assert not unsafe and Consumer(verdict.principal or "", (), {}).name_b == principal.encode()
    try:
        Consumer(principal, (), {})
    except ValueError:
        assert any((ord(c) < 32 and c != "\t") or c == "\x7f" for c in principal)
