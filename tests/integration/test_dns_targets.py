"""Targets named by DNS names: each address a target, resolved again at the interval, pools of kept addresses
kept. The resolver is the system's; the test stands in for DNS with its own answers (both addresses real
loopback servers: 127.0.0.1 and 127.0.0.2 on one port)."""

from __future__ import annotations

import asyncio
import time

import pytest

from fastgw.proxy import dns
from fastgw.testing import http_request
from tests.integration.targets import FlakyTarget, upstream_config

pytestmark = pytest.mark.asyncio


async def _until(cond, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_a_name_becomes_one_target_per_address_and_follows_changes(gateway, monkeypatch):
    async with FlakyTarget("one", "127.0.0.1") as one, FlakyTarget("two", "127.0.0.2", one.port) as two:
        answers = {"svc.test": ["127.0.0.1"]}
        asked: list[str] = []

        async def resolve(host: str, port: int) -> list[str]:
            asked.append(host)
            if host not in answers:
                raise OSError(f"{host}: no such name")
            return answers[host]

        monkeypatch.setattr(dns, "resolve", resolve)
        gw = await gateway(upstream_config([f"http://svc.test:{one.port}"], resolve_interval=0.2))
        up = gw.gateway.upstreams["backend"]
        await _until(lambda: [t.host for t in up.targets] == ["127.0.0.1"])
        r = await http_request(gw.port, "GET", "/")
        assert r.json()["target"] == "one"
        assert one.requests[-1][1] == "/"
        first = up.targets[0]

        answers["svc.test"] = ["127.0.0.1", "127.0.0.2"]
        await _until(lambda: len(up.live) == 2)
        assert up.targets[0] is first and len(first.idle) == 1  # the kept address kept its warm pool
        seen = {(await http_request(gw.port, "GET", "/")).json()["target"] for _ in range(4)}
        assert seen == {"one", "two"}

        answers["svc.test"] = ["127.0.0.2"]
        await _until(lambda: [t.host for t in up.live] == ["127.0.0.2"])
        assert first.closed
        assert {(await http_request(gw.port, "GET", "/")).json()["target"] for _ in range(3)} == {"two"}

        answers.clear()  # the name stops resolving: the last addresses stay
        n = len(asked)
        await _until(lambda: len(asked) > n + 1)
        assert (await http_request(gw.port, "GET", "/")).json()["target"] == "two"
        status = up.status()["targets"]
        assert status[0]["url"] == f"http://svc.test:{one.port}" and status[0]["address"] == "127.0.0.2"
        assert two.hits >= 5


async def test_host_header_is_the_name_not_the_address(gateway, upstream, monkeypatch):
    async def resolve(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    monkeypatch.setattr(dns, "resolve", resolve)
    gw = await gateway(upstream_config([f"http://api.internal:{upstream.port}"], resolve_interval=0.2))
    await _until(lambda: gw.gateway.upstreams["backend"].targets[0].host == "127.0.0.1")
    assert (await http_request(gw.port, "GET", "/")).status == 200
    assert upstream.received[-1].header("host") == f"api.internal:{upstream.port}"


async def test_system_resolver_resolves_localhost():
    assert "127.0.0.1" in await dns.system_resolve("localhost", 80)
    assert not dns.is_name("127.0.0.1") and not dns.is_name("[::1]") and dns.is_name("svc.test")
