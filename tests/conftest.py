from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from fastgw.server.server import Server
from fastgw.testing import EchoUpstream, running_gateway


@pytest.fixture
async def upstream() -> AsyncIterator[EchoUpstream]:
    async with EchoUpstream() as up:
        yield up


@pytest.fixture
async def gateway() -> AsyncIterator[Callable[[dict[str, Any]], Awaitable[Server]]]:
    """Factory: `srv = await gateway(config_dict)`; every gateway made is shut down at teardown."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(config: dict[str, Any]) -> Server:
            return await stack.enter_async_context(running_gateway(config))

        yield make


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
