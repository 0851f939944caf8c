"""The tenant plugin, installed as a package and found by name through its entry point."""

from __future__ import annotations

import pytest

from fastgw.config.load import ConfigError, load_config_bytes
from fastgw.testing import http_request


def config(upstream_url: str) -> dict:
    return {
        "upstreams": {"app": {"targets": [upstream_url]}},
        "routes": [
            {
                "path": "/{proxy+}",
                "integration": {"type": "http", "upstream": "app"},
                "plugins": {"tenant": {"tenants": {"acme": "gold", "initech": "basic"}}},
            }
        ],
    }


@pytest.mark.asyncio
async def test_known_tenants_pass_with_their_plan(fastgw_gateway, echo_upstream):
    gw = await fastgw_gateway(config(echo_upstream.url))
    for _ in range(2):
        echo_upstream.received.clear()
        r = await http_request(gw.port, "GET", "/orders", headers={"X-Tenant": "ACME"})
        assert r.status == 200 and r.header("x-served-tenant") == "acme"
        assert echo_upstream.received[0].header("x-tenant-plan") == "gold"


@pytest.mark.asyncio
async def test_unknown_tenants_never_reach_the_upstream(fastgw_gateway, echo_upstream):
    gw = await fastgw_gateway(config(echo_upstream.url))
    for headers in ({}, {"X-Tenant": "umbrella"}):
        r = await http_request(gw.port, "GET", "/orders", headers=headers)
        assert (r.status, r.json()) == (403, {"message": "Unknown tenant"})
    assert echo_upstream.received == []


def test_a_bad_configuration_is_refused_with_its_key_path():
    yaml = b"routes: [{path: /, integration: {type: mock}, plugins: {tenant: {tenants: {}}}}]\n"
    with pytest.raises(ConfigError) as info:
        load_config_bytes(yaml, "gw.yaml")
    assert info.value.path == "$.routes[0].plugins.tenant" and "name at least one tenant" in info.value.message
