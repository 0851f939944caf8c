"""pytest fixtures for testing with fastgw (the ones fastgw's own tests use). Import them into a conftest.py:

    from fastgw.pytest_plugin import echo_upstream, fastgw_gateway  # noqa: F401

- `echo_upstream`: an `EchoUpstream` on a free loopback port (it answers with what it received and records it).
- `fastgw_gateway`: a factory, `server = await fastgw_gateway(config, base_dir=None)`, serving `config` (a dict or
  YAML text) on a free loopback port in the test's event loop; every gateway made is shut down at teardown.
- `pytest_asyncio_loop_factories`: imported into a conftest.py too, every async test and fixture there runs on
  uvloop, the loop `fastgw serve` runs on (needs pytest-asyncio >= 1.4).

Needs pytest and pytest-asyncio: `pip install 'fastgw[testing]'` (docs/plugins.md, Testing, has the two pytest
settings the kit expects).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import uvloop

from fastgw.server.server import Server
from fastgw.testing import EchoUpstream, running_gateway

GatewayFactory = Callable[..., Awaitable[Server]]


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Callable[[], Any]]:
    """pytest-asyncio's hook: run async tests and fixtures on uvloop, as the gateway serves. Transports, timers
    and signal handling differ from asyncio's own loop in ways a gateway notices."""
    return {"uvloop": uvloop.new_event_loop}


@pytest_asyncio.fixture
async def echo_upstream() -> AsyncIterator[EchoUpstream]:
    async with EchoUpstream() as up:
        yield up


@pytest_asyncio.fixture
async def fastgw_gateway() -> AsyncIterator[GatewayFactory]:
    async with contextlib.AsyncExitStack() as stack:

        async def make(config: dict[str, Any] | str, base_dir: str | Path | None = None) -> Server:
            return await stack.enter_async_context(running_gateway(config, base_dir=base_dir))

        yield make
