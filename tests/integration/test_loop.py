"""The suite runs on the event loop the gateway serves on (tests/conftest.py chooses it)."""

from __future__ import annotations

import asyncio

import pytest_asyncio
import uvloop

from fastgw.testing import EchoUpstream, http_request


@pytest_asyncio.fixture
async def fixture_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


async def test_tests_and_their_fixtures_run_on_uvloop(fixture_loop, gateway, upstream: EchoUpstream):
    loop = asyncio.get_running_loop()
    assert isinstance(loop, uvloop.Loop), type(loop)
    assert fixture_loop is loop
    srv = await gateway(
        {
            "upstreams": {"b": {"targets": [upstream.url]}},
            "routes": [{"path": "/x", "integration": {"type": "http", "upstream": "b"}}],
        }
    )
    assert srv.state is not None and srv.state.loop is loop
    assert (await http_request(srv.port, "GET", "/x")).status == 200
