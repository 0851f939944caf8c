from __future__ import annotations

from typing import Any

import pytest
import pytest_asyncio

# The public fixtures, and the hook that runs every async test and fixture on uvloop as `fastgw serve` does
# (tests/integration/test_loop.py fails otherwise).
from fastgw.pytest_plugin import (  # noqa: F401
    GatewayFactory,
    echo_upstream,
    fastgw_gateway,
    pytest_asyncio_loop_factories,
)
from fastgw.testing import EchoUpstream


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


@pytest_asyncio.fixture
async def redis_server() -> Any:
    """A redis-server of the test's own on a free port (see tests/redisproc.py); killed at teardown, after the
    clients the test's gateways made on its event loop are closed (list it before `gateway`)."""
    from fastgw.state import redis as redis_state
    from tests.redisproc import RedisProcess

    server = RedisProcess().start()
    yield server
    await redis_state.aclose_all()
    server.stop()
