"""Plugins configured per consumer: on every route where the consumer authenticates, its own configuration
replaces the route's, adds plugins the route lacks, or switches one off; routes that switch a plugin off keep it
off. What the upstream saw and what the client got, for each consumer, twice."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from fastgw.config.load import ConfigError, load_config_bytes
from fastgw.plugins.basic_auth import hash_password
from fastgw.testing import http_request
from tests.plugins.conftest import TWICE

PLAN = {"request-transformer": {"set": {"headers": {"x-plan": "basic"}}}}


def consumers(auth: str) -> dict[str, Any]:
    def cred(name: str) -> dict[str, Any]:
        if auth == "key-auth":
            return {"key-auth": [{"key": f"{name}-key"}]}
        return {"basic-auth": [{"username": name, "password_hash": hash_password("pw", iterations=1000)}]}

    return {
        "alice": {"credentials": cred("alice"), "plugins": {
            "request-transformer": {"set": {"headers": {"x-plan": "gold"}}},
            "response-transformer": {"body": {"set": {"for": "$consumer.username"}}}}},
        "bob": {"credentials": cred("bob")},
        "carol": {"credentials": cred("carol"), "plugins": {"request-transformer": False}},
    }  # fmt: skip


def creds(auth: str, name: str) -> dict[str, str]:
    if auth == "key-auth":
        return {"apikey": f"{name}-key"}
    return {"authorization": "Basic " + base64.b64encode(f"{name}:pw".encode()).decode()}


@pytest.mark.parametrize("auth", ["key-auth", "basic-auth"])  # basic-auth names the consumer after an await
async def test_a_consumers_plugins_replace_add_and_switch_off_the_routes(upstream, gateway, auth):
    integ = {"type": "http", "upstream": "backend"}
    cfg = {
        "upstreams": {"backend": {"targets": [upstream.url]}},
        "consumers": consumers(auth),
        "plugins": {auth: {}},
        "routes": [
            {"path": "/plans", "integration": integ, "plugins": PLAN},
            {"path": "/bare", "integration": integ},
            {"path": "/off", "integration": integ, "plugins": {"request-transformer": False}},
        ],
    }
    gw = await gateway(cfg)
    expect = {  # (path, consumer) -> (x-plan the upstream saw, the response body was edited)
        ("/plans", "alice"): ("gold", True), ("/plans", "bob"): ("basic", False), ("/plans", "carol"): (None, False),
        ("/bare", "alice"): ("gold", True), ("/bare", "bob"): (None, False), ("/bare", "carol"): (None, False),
        ("/off", "alice"): (None, True), ("/off", "bob"): (None, False),
    }  # fmt: skip
    for _ in TWICE:
        for (path, who), (plan, edited) in expect.items():
            upstream.received.clear()
            r = await http_request(gw.port, "GET", path, headers=creds(auth, who))
            assert r.status == 200, (path, who)
            (seen,) = upstream.received
            assert (seen.header("x-plan"), seen.header("x-consumer-username")) == (plan, who), (path, who)
            assert r.json().get("for") == (who if edited else None), (path, who)
            assert int(r.header("content-length") or -1) == len(r.body)
        r = await http_request(gw.port, "GET", "/plans")
        assert r.status == 401  # nobody: the route's chain, which refuses


async def test_a_consumers_body_edits_collect_the_body_on_its_routes(upstream, gateway):
    cfg = {
        "upstreams": {"backend": {"targets": [upstream.url]}},
        "consumers": {"alice": {"credentials": {"key-auth": [{"key": "k"}]},
                                "plugins": {"request-transformer": {"body": {"set": {"by": "$consumer.username"}}}}}},
        "routes": [{"path": "/orders", "methods": ["POST"], "integration": {"type": "http", "upstream": "backend"},
                    "plugins": {"key-auth": {}}}],
    }  # fmt: skip
    gw = await gateway(cfg)
    for _ in TWICE:
        upstream.received.clear()
        r = await http_request(gw.port, "POST", "/orders", headers={"apikey": "k"},
                               body=b'{"item": 1}')  # fmt: skip
        assert r.status == 200
        assert upstream.received[0].body == b'{"item":1,"by":"alice"}'


@pytest.mark.parametrize(
    ("plugins", "message"),
    [
        ({"key-auth": {}}, "runs before the consumer is known"),
        ({"cors": {}}, "runs before the consumer is known (priority 3"),
        ({"request-transformer": {"nope": 1}}, "Object contains unknown field `nope`"),
        ({"no-such-plugin": {}}, "unknown plugin 'no-such-plugin'"),
    ],
)
def test_per_consumer_plugins_refused_at_load(plugins, message):
    cfg = {"consumers": {"alice": {"plugins": plugins}}, "routes": [{"path": "/", "integration": {"type": "mock"}}]}
    import orjson

    with pytest.raises(ConfigError) as err:
        load_config_bytes(orjson.dumps(cfg), "gw.json")
    assert message in str(err.value) and "$.consumers.alice.plugins." in str(err.value)
