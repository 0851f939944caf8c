from __future__ import annotations

from typing import Any

import pytest
import uvloop

from fastgw.pytest_plugin import GatewayFactory, echo_upstream, fastgw_gateway  # noqa: F401 - the public fixtures
from fastgw.testing import EchoUpstream


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    """Every async test and fixture runs on uvloop, the loop `fastgw serve` runs on: transports, timers and
    signal handling differ from asyncio's own loop in ways a gateway notices (tests/integration/test_loop.py)."""
    return {"uvloop": uvloop.new_event_loop}


# The project's tests use the fixtures plugin authors get (fastgw.pytest_plugin), under shorter names.
@pytest.fixture
def upstream(echo_upstream: EchoUpstream) -> EchoUpstream:  # noqa: F811 - the fixture, by name
    return echo_upstream


@pytest.fixture
def gateway(fastgw_gateway: GatewayFactory) -> GatewayFactory:  # noqa: F811 - the fixture, by name
    """Factory: `srv = await gateway(config_dict)`; every gateway made is shut down at teardown."""
    return fastgw_gateway


def proxy_config(upstream_url: str, route: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    """One catch-all proxy route (`/{proxy+}` and `/`) to `upstream_url`, with overrides."""
    integ = {"type": "http", "upstream": "backend", **((route or {}).pop("integration", {}))}
    routes = [
        {"path": "/{proxy+}", "integration": integ, **(route or {})},
        {"path": "/", "integration": integ},
    ]
    cfg: dict[str, Any] = {"upstreams": {"backend": {"targets": [upstream_url]}}, "routes": routes}
    for key, value in top.items():
        if key == "upstream_opts":
            cfg["upstreams"]["backend"].update(value)
        else:
            cfg[key] = value
    return cfg
