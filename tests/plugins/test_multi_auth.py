"""multi-auth: key-auth or jwt-auth (either passes, the first that does names the consumer), on a real gateway with
a real echo upstream."""

from __future__ import annotations

import time

import orjson
import pytest

jwt = pytest.importorskip("jwt")

from fastgw.config.errors import ConfigError  # noqa: E402
from fastgw.config.load import load_config_bytes  # noqa: E402
from fastgw.testing import http_request  # noqa: E402
from tests.plugins.conftest import TWICE, route_config  # noqa: E402

SECRET = "a-long-shared-secret-for-the-multi-auth-tests-0123456789abcdef"
MULTI = {"multi-auth": {"auth_plugins": [{"key-auth": {}}, {"jwt-auth": {}}]}}


def token(iss: str = "https://idp.example", secret: str = SECRET) -> dict[str, str]:
    now = int(time.time())
    signed = jwt.encode({"iss": iss, "sub": "s", "exp": now + 300, "iat": now}, secret, algorithm="HS256")
    return {"Authorization": f"Bearer {signed}"}


@pytest.fixture
def people(consumers):
    consumers["carol"] = {
        "groups": ["jwt-users"],
        "credentials": {"jwt-auth": [{"issuer": "https://idp.example", "algorithms": ["HS256"], "secret": SECRET}]},
    }
    return consumers


async def test_either_plugin_lets_the_request_through_and_names_its_consumer(upstream, gateway, people):
    gw = await gateway(route_config(upstream, MULTI, consumers=people))
    for _ in TWICE:
        upstream.received.clear()
        assert (await http_request(gw.port, "GET", "/a", headers={"apikey": "alice-key"})).status == 200
        assert (await http_request(gw.port, "GET", "/b", headers=token())).status == 200
        # Both credentials: the first plugin in the list that passes names the consumer.
        both = {"apikey": "bob-key", **token()}
        assert (await http_request(gw.port, "GET", "/c", headers=both)).status == 200
        # A bad key does not stop a good token.
        assert (await http_request(gw.port, "GET", "/d", headers={"apikey": "wrong", **token()})).status == 200
        a, b, c, d = upstream.received
        assert a.header("x-consumer-username") == "alice" and a.header("x-consumer-groups") == "admin,staff"
        assert b.header("x-consumer-username") == "carol" and b.header("x-consumer-groups") == "jwt-users"
        assert c.header("x-consumer-username") == "bob"
        assert d.header("x-consumer-username") == "carol"


async def test_when_none_passes_the_first_plugins_answer_is_sent(upstream, gateway, people):
    gw = await gateway(route_config(upstream, MULTI, consumers=people))
    for _ in TWICE:
        r = await http_request(gw.port, "GET", "/x")
        assert (r.status, r.json()) == (401, {"message": "No API key found in request"})
        assert r.header("www-authenticate") == 'Key realm="fastgw"'
        r = await http_request(gw.port, "GET", "/x", headers={"apikey": "wrong", **token(secret="not-the-secret" * 4)})
        assert (r.status, r.json()) == (401, {"message": "Invalid authentication credentials"})
    # The other order: jwt-auth's answer.
    flipped = {"multi-auth": {"auth_plugins": [{"jwt-auth": {}}, {"key-auth": {}}]}}
    gw = await gateway(route_config(upstream, flipped, consumers=people))
    r = await http_request(gw.port, "GET", "/x", headers={"apikey": "wrong"})
    assert (r.status, r.json()) == (401, {"message": "Unauthorized"})
    assert r.header("www-authenticate").startswith("Bearer")
    assert upstream.received == []


async def test_a_credential_sent_twice_is_refused_whatever_the_other_plugins_say(upstream, gateway, people):
    """key-auth's 400 for two keys ends the trial: a good token beside them must not carry both keys upstream."""
    gw = await gateway(route_config(upstream, MULTI, consumers=people))
    for _ in TWICE:
        r = await http_request(gw.port, "GET", "/x?apikey=bob-key", headers={"apikey": "alice-key", **token()})
        assert r.status == 400, r.body
        assert "More than one" in r.json()["message"]
    assert upstream.received == []


async def test_acl_after_multi_auth_sees_the_consumer(upstream, gateway, people):
    plugins = {**MULTI, "acl": {"allow": ["jwt-users"]}}
    gw = await gateway(route_config(upstream, plugins, consumers=people))
    for _ in TWICE:
        assert (await http_request(gw.port, "GET", "/x", headers=token())).status == 200
        r = await http_request(gw.port, "GET", "/x", headers={"apikey": "alice-key"})
        assert r.status == 403  # alice is authenticated, but not in jwt-users


@pytest.mark.parametrize(
    ("conf", "path", "message"),
    [
        ({"auth_plugins": [{"key-auth": {}}]}, ".auth_plugins", "length >= 2"),
        ({"auth_plugins": [{"key-auth": {}}, {"acl": {"allow": ["a"]}}]}, ".auth_plugins[1]", "not an authentication"),
        ({"auth_plugins": [{"key-auth": {}}, {"nope": {}}]}, ".auth_plugins[1]", "basic-auth, jwt-auth, key-auth"),
        ({"auth_plugins": [{"key-auth": {}, "jwt-auth": {}}, {"key-auth": {}}]}, ".auth_plugins[0]", "one plugin"),
        ({"auth_plugins": [{"key-auth": {"realm": 1}}, {"jwt-auth": {}}]}, ".auth_plugins[0].key-auth.realm",
         "Expected `str`"),
        # The same explanation as a plugin configured alone (fastgw.plugins.chain.prepare_plugin).
        ({"auth_plugins": [{"key-auth": {"key_name": ["x"]}}, {"jwt-auth": {}}]}, ".auth_plugins[0].key-auth",
         "unknown field `key_name` (did you mean 'key_names'?)"),
        ({"auth_plugins": [{"key-auth": {}}, {"lambda-authorizer": {"function": "f"}}]},
         ".auth_plugins[1].lambda-authorizer.function", "no function named 'f'"),
    ],
)  # fmt: skip
def test_config_errors_name_the_key(conf, path, message):
    raw = orjson.dumps({"routes": [{"path": "/", "integration": {"type": "mock"}, "plugins": {"multi-auth": conf}}]})
    with pytest.raises(ConfigError) as err:
        load_config_bytes(raw, "gw.json")
    assert err.value.path == "$.routes[0].plugins.multi-auth" + path
    assert message in str(err.value)


async def test_a_refused_credential_is_hidden_when_its_plugin_says_hide_credentials(upstream, gateway, people):
    """A wrong apikey beside a valid token: the request passes (jwt-auth), and key-auth's hide_credentials still keeps
    the guessed key from the upstream (and the other way round: a token jwt-auth refused, with a good key)."""
    hide_key = {"multi-auth": {"auth_plugins": [{"key-auth": {"hide_credentials": True}}, {"jwt-auth": {}}]}}
    gw = await gateway(route_config(upstream, hide_key, consumers=people))
    for _ in TWICE:
        upstream.received.clear()
        r = await http_request(gw.port, "GET", "/a?apikey=wrong", headers=token())
        assert r.status == 200, r.body
        r = await http_request(gw.port, "GET", "/b", headers={"apikey": "wrong", "x-other": "kept", **token()})
        assert r.status == 200, r.body
        a, b = upstream.received
        assert a.target == "/a" and a.header("authorization").startswith("Bearer ")  # jwt-auth's own: not hidden
        assert b.header("apikey") is None and b.header("x-other") == "kept"
        assert b.header("x-consumer-username") == "carol"
    hide_token = {"multi-auth": {"auth_plugins": [{"jwt-auth": {"hide_credentials": True}}, {"basic-auth": {}},
                                                  {"key-auth": {}}]}}  # fmt: skip
    gw = await gateway(route_config(upstream, hide_token, consumers=people))
    for _ in TWICE:
        upstream.received.clear()
        bad = token(secret="not-the-secret" * 4)
        r = await http_request(gw.port, "GET", "/c", headers={"apikey": "alice-key", **bad})
        assert r.status == 200, r.body
        (c,) = upstream.received
        assert c.header("authorization") is None and c.header("apikey") == "alice-key"
        assert c.header("x-consumer-username") == "alice"
