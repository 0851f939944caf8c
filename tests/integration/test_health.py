"""Health and failure with real targets: passive ejection, active checks, the breaker, timeouts, the status
object, balancers through the gateway, and a reload that keeps warm connections."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from pathlib import Path

import orjson
import pytest

from fastgw.config.load import load_config
from fastgw.server.server import Server
from fastgw.testing import RawConnection, http_request
from tests.integration.targets import FlakyTarget, refused_port, upstream_config

pytestmark = pytest.mark.asyncio


async def _who(port: int, path: str = "/", **kw) -> str:
    r = await http_request(port, "GET", path, **kw)
    return r.json()["target"] if r.status == 200 else str(r.status)


async def _until(cond, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_passive_checks_eject_a_failing_target_and_let_it_back(gateway, caplog):
    caplog.set_level(logging.WARNING, "fastgw.upstream")
    async with FlakyTarget("a") as a, FlakyTarget("b") as b:
        a.mode = "status:500"
        # 5xx answers count only when listed (issue 19: not by default, or a client could eject targets)
        passive = {"consecutive_failures": 3, "base_ejection": 0.6, "max_ejection": 5, "failures": ["http_5xx"]}
        gw = await gateway(upstream_config([a.url, b.url], health={"passive": passive}))
        seen = [await _who(gw.port) for _ in range(6)]
        assert seen == ["500", "b", "500", "b", "500", "b"]  # three failures in a row: ejected
        assert [await _who(gw.port) for _ in range(4)] == ["b"] * 4
        up = gw.gateway.upstreams["backend"]
        st = up.status()["targets"][0]
        assert st["in_rotation"] is False and st["ejections"] == 1 and st["ejected_for"] > 0
        assert "ejected for 0.6s (3 failures in a row" in caplog.text
        a.mode = "ok"
        await _until(lambda: up.targets[0].available, 3)
        assert "back in rotation" in caplog.text
        assert {await _who(gw.port) for _ in range(4)} == {"a", "b"}


def _checks(t: FlakyTarget) -> int:
    return sum(1 for m, p, _ in t.requests if p == "/hc")


async def test_a_passing_active_check_ends_a_passive_ejection(gateway, caplog):
    # Envoy re-admits an outlier-ejected host on its next passing active check (issue 23)
    caplog.set_level(logging.WARNING, "fastgw.upstream")
    async with FlakyTarget("a") as a, FlakyTarget("b") as b:
        # unhealthy_threshold high: only the passive checks take `a` out while it resets
        active = {"interval": 0.2, "timeout": 0.1, "unhealthy_threshold": 100, "path": "/hc"}
        passive = {"consecutive_failures": 2, "base_ejection": 30}
        gw = await gateway(upstream_config([a.url, b.url], health={"active": active, "passive": passive}))
        up = gw.gateway.upstreams["backend"]
        a.mode = "reset"
        assert [await _who(gw.port) for _ in range(6)] == ["b"] * 6  # a's resets retried on b
        st = up.status()["targets"][0]
        assert st["in_rotation"] is False and st["ejected_for"] > 25 and st["ejections"] == 1
        a.mode = "ok"
        checks = _checks(a)
        await _until(lambda: up.targets[0].available, 3)  # long before its 30 s are out
        assert _checks(a) > checks  # brought back by a check, not by a request
        assert "back in rotation: an active check passed" in caplog.text
        st = up.status()["targets"][0]
        assert st["in_rotation"] is True and st["ejected_for"] == 0 and st["ejections"] == 1
        assert {await _who(gw.port) for _ in range(4)} == {"a", "b"}


async def test_uneject_on_active_check_false_waits_out_the_ejection(gateway):
    async with FlakyTarget("a") as a, FlakyTarget("b") as b:
        active = {"interval": 0.1, "timeout": 0.05, "unhealthy_threshold": 100, "path": "/hc"}
        passive = {"consecutive_failures": 2, "base_ejection": 30, "uneject_on_active_check": False}
        gw = await gateway(upstream_config([a.url, b.url], health={"active": active, "passive": passive}))
        up = gw.gateway.upstreams["backend"]
        a.mode = "reset"
        assert [await _who(gw.port) for _ in range(6)] == ["b"] * 6
        a.mode = "ok"
        checks = _checks(a)
        await _until(lambda: _checks(a) >= checks + 3)
        assert up.targets[0].check_up and not up.targets[0].available
        assert [await _who(gw.port) for _ in range(4)] == ["b"] * 4


async def test_passive_ejection_never_takes_the_last_targets(gateway):
    async with FlakyTarget("a") as a, FlakyTarget("b") as b:
        a.mode = b.mode = "status:500"
        passive = {"consecutive_failures": 1, "max_ejected": 0.5, "failures": ["error", "timeout", "http_5xx"]}
        gw = await gateway(upstream_config([a.url, b.url], health={"passive": passive}))
        for _ in range(6):
            assert (await http_request(gw.port, "GET", "/")).status == 500
        assert len(gw.gateway.upstreams["backend"].live) == 1  # half of two may be ejected, not both


async def test_active_checks_take_a_stopped_target_out_and_back(gateway, caplog):
    caplog.set_level(logging.WARNING, "fastgw.upstream")
    async with FlakyTarget("a") as a, FlakyTarget("b") as b:
        active = {"interval": 0.1, "timeout": 0.05, "unhealthy_threshold": 2, "healthy_threshold": 2, "path": "/hc"}
        # attempts: 1, so that what the client sees is the balancer's choice alone
        cfg = upstream_config([a.url, b.url], health={"active": active}, retries={"attempts": 1})
        gw = await gateway(cfg)
        up = gw.gateway.upstreams["backend"]
        await _until(lambda: a.hits >= 2)
        assert a.requests[0][:2] == ("GET", "/hc")
        await a.stop()
        await _until(lambda: not up.targets[0].check_up)
        assert "unhealthy: 2 checks failed" in caplog.text
        assert [await _who(gw.port) for _ in range(4)] == ["b"] * 4
        await a.start()  # the same port again
        await _until(lambda: up.targets[0].check_up)
        assert "healthy: 2 checks passed" in caplog.text
        assert {await _who(gw.port) for _ in range(4)} == {"a", "b"}


async def test_active_checks_judge_by_status(gateway):
    async with FlakyTarget("a") as a:
        a.mode = "status:503"
        active = {"interval": 0.1, "timeout": 0.05, "unhealthy_threshold": 1}
        gw = await gateway(upstream_config([a.url], health={"active": active}))
        up = gw.gateway.upstreams["backend"]
        await _until(lambda: not up.targets[0].check_up)
        t0 = time.monotonic()
        r = await http_request(gw.port, "GET", "/")
        assert r.status == 503 and r.json() == {"message": "Service Unavailable"}
        assert time.monotonic() - t0 < 0.5  # at once, no connect attempted
        hits = a.hits
        await asyncio.sleep(0.05)
        assert a.hits - hits <= 1  # the client's request never reached it (only checks did)


async def test_breaker_opens_then_half_opens_then_closes(gateway, caplog):
    caplog.set_level(logging.WARNING, "fastgw.upstream")
    async with FlakyTarget("a") as a, FlakyTarget("b") as b:
        a.mode = "status:502"
        breaker = {"consecutive_failures": 2, "failure_ratio": None, "cool_down": 0.5, "probes": 2}
        gw = await gateway(upstream_config([a.url, b.url], breaker=breaker))
        up = gw.gateway.upstreams["backend"]
        assert [await _who(gw.port) for _ in range(4)] == ["502", "b", "502", "b"]
        assert up.targets[0].watch.breaker.state == "open"  # type: ignore[union-attr]
        hits = a.hits
        assert [await _who(gw.port) for _ in range(4)] == ["b"] * 4
        assert a.hits == hits  # open: no traffic at all
        a.mode = "ok"
        await _until(lambda: up.targets[0].watch.breaker.state == "half-open")  # type: ignore[union-attr]
        seen = [await _who(gw.port) for _ in range(6)]
        assert seen.count("a") >= 2
        assert up.targets[0].watch.breaker.state == "closed"  # type: ignore[union-attr]
        assert "circuit breaker open (2 failures in a row)" in caplog.text
        assert "circuit breaker closed (2 probes succeeded)" in caplog.text


async def test_half_open_failing_probe_opens_again(gateway):
    async with FlakyTarget("a") as a, FlakyTarget("b") as b:
        a.mode = "reset"
        breaker = {"consecutive_failures": 1, "failure_ratio": None, "cool_down": 0.3, "probes": 1}
        gw = await gateway(upstream_config([a.url, b.url], breaker=breaker))
        up = gw.gateway.upstreams["backend"]
        assert await _who(gw.port) == "b"  # a reset, retried on b; a's breaker opens
        brk = up.targets[0].watch.breaker  # type: ignore[union-attr]
        assert brk.state == "open"
        await _until(lambda: brk.state == "half-open")
        for _ in range(2):
            assert await _who(gw.port) == "b"
        assert brk.state == "open" and brk.opened == 2


async def test_read_timeout_before_and_after_the_head(gateway):
    async with FlakyTarget("a") as a:
        a.mode = "hang"
        gw = await gateway(upstream_config([a.url], read_timeout=0.3))
        t0 = time.monotonic()
        r = await http_request(gw.port, "GET", "/", timeout=10)
        assert r.status == 504 and r.json() == {"message": "Endpoint request timed out"}
        assert 0.3 <= time.monotonic() - t0 < 2


async def test_send_timeout_when_the_target_stops_reading(gateway):
    # A target that accepts a connection and never reads: the request body fills the buffers, then stalls.
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    port = lsock.getsockname()[1]
    try:
        gw = await gateway(upstream_config([f"http://127.0.0.1:{port}"], send_timeout=0.3, read_timeout=30))
        conn = await RawConnection.open(gw.port)
        size = 8 * 1024 * 1024
        await conn.send(b"PUT /big HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % size)
        block = b"z" * 65536
        t0 = time.monotonic()

        async def pump() -> None:
            for _ in range(size // len(block)):
                conn.writer.write(block)
                await conn.writer.drain()

        pumping = asyncio.ensure_future(pump())
        r = await asyncio.wait_for(conn.response(), 10)
        pumping.cancel()
        assert r.status == 504 and r.json() == {"message": "Endpoint request timed out"}
        assert time.monotonic() - t0 < 5
        await conn.close()
    finally:
        lsock.close()


async def test_total_route_timeout_covers_the_retries(gateway):
    async with FlakyTarget("a") as a, FlakyTarget("b") as b:
        a.mode = b.mode = "hang"
        cfg = upstream_config([a.url, b.url], route={"timeout": 0.6}, retries={"per_try_timeout": 0.4})
        gw = await gateway(cfg)
        t0 = time.monotonic()
        r = await http_request(gw.port, "GET", "/", timeout=10)
        elapsed = time.monotonic() - t0
        assert r.status == 504 and r.json() == {"message": "Endpoint request timed out"}
        assert 0.6 <= elapsed < 1.5  # not 2 x the per-try timeout plus ticks


async def test_no_target_in_rotation_answers_503_at_once(gateway):
    breaker = {"consecutive_failures": 1, "failure_ratio": None, "cool_down": 60}
    gw = await gateway(upstream_config([f"http://127.0.0.1:{refused_port()}"], breaker=breaker))
    assert (await http_request(gw.port, "GET", "/")).status == 502
    r = await http_request(gw.port, "GET", "/")
    assert r.status == 503 and r.json() == {"message": "Service Unavailable"}


async def test_status_object_is_data(gateway):
    async with FlakyTarget("a") as a:
        gw = await gateway(upstream_config([{"url": a.url, "weight": 3}], health={"passive": {}}))
        await http_request(gw.port, "GET", "/")
        st = gw.gateway.upstreams["backend"].status()
        orjson.dumps(st)  # plain data, ready for the admin API and metrics
        assert st["balancer"] == "round-robin" and st["in_rotation"] == 1
        (t,) = st["targets"]
        assert t["url"] == a.url and t["weight"] == 3 and t["in_rotation"] and t["idle"] == 1
        assert st["retries"] == {"done": 0, "refused_by_budget": 0}
        assert gw.gateway.upstream_status() == {"backend": st}


async def test_consistent_hash_by_header_through_the_gateway(gateway):
    async with FlakyTarget("a") as a, FlakyTarget("b") as b, FlakyTarget("c") as c:
        cfg = upstream_config([a.url, b.url, c.url], balancer="consistent-hash", hash_on="header:X-User")
        gw = await gateway(cfg)
        first = {u: await _who(gw.port, headers={"x-user": f"u{u}"}) for u in range(12)}
        again = {u: await _who(gw.port, headers={"x-user": f"u{u}"}) for u in range(12)}
        assert first == again and len(set(first.values())) > 1
        # No key: round-robin.
        assert {await _who(gw.port) for _ in range(3)} == {"a", "b", "c"}


async def test_consistent_hash_by_cookie_and_weights_through_the_gateway(gateway):
    async with FlakyTarget("a") as a, FlakyTarget("b") as b:
        cfg = upstream_config([a.url, b.url], balancer="consistent-hash", hash_on="cookie:session")
        gw = await gateway(cfg)
        sessions = {await _who(gw.port, headers={"cookie": f"theme=dark; session=s{i}"}) for i in range(3)}
        for i in range(3):
            assert await _who(gw.port, headers={"cookie": f"session=s{i}"}) == await _who(
                gw.port, headers={"cookie": f"x=1; session=s{i}"}
            )
        assert sessions <= {"a", "b"}

    async with FlakyTarget("a") as a, FlakyTarget("b") as b:
        gw = await gateway(upstream_config([{"url": a.url, "weight": 3}, b.url]))
        seen = [await _who(gw.port) for _ in range(8)]
        assert seen.count("a") == 6 and seen.count("b") == 2


async def test_least_connections_sends_to_the_idle_target(gateway):
    async with FlakyTarget("a") as a, FlakyTarget("b") as b:
        a.mode = "slow:800"
        gw = await gateway(upstream_config([a.url, b.url], balancer="least-connections"))
        slow = asyncio.ensure_future(http_request(gw.port, "GET", "/"))  # goes to a (ties: the first)
        await _until(lambda: a.hits == 1)
        assert [await _who(gw.port) for _ in range(3)] == ["b"] * 3  # a is busy
        assert (await slow).json()["target"] == "a"


async def test_reload_keeps_the_pools_of_surviving_targets(tmp_path: Path):
    async with FlakyTarget("a") as a, FlakyTarget("b") as b:
        cfg_path = tmp_path / "gw.json"
        cfg_path.write_bytes(orjson.dumps({**upstream_config([a.url]), "logging": {"access_log": False}}))
        server = Server(load_config(cfg_path), "127.0.0.1", 0)
        await server.start()
        try:
            assert await _who(server.port) == "a"
            assert a.connections == 1
            cfg_path.write_bytes(orjson.dumps({**upstream_config([a.url, b.url]), "logging": {"access_log": False}}))
            assert server.reload()
            seen = [await _who(server.port) for _ in range(4)]
            assert seen == ["a", "b", "a", "b"]
            assert a.connections == 1  # the warm connection was kept across the reload
        finally:
            await server.shutdown(timeout=1.0)


async def test_the_admin_api_lists_targets_with_their_health(gateway):
    async with FlakyTarget("a") as a, FlakyTarget("b") as b:
        active = {"interval": 0.1, "timeout": 0.05, "unhealthy_threshold": 2, "healthy_threshold": 2, "path": "/hc"}
        cfg = upstream_config([a.url, b.url], health={"active": active})
        cfg["admin"] = {"host": "127.0.0.1", "port": 0}
        gw = await gateway(cfg)
        up = gw.gateway.upstreams["backend"]
        await a.stop()
        await _until(lambda: not up.targets[0].check_up)
        assert gw.admin is not None
        r = await http_request(gw.admin.port, "GET", "/upstreams", host="127.0.0.1")
        (backend,) = r.json().values()
        health = {t["url"]: (t["health"], t["healthy"], t["in_rotation"]) for t in backend["targets"]}
        assert health == {a.url: ("unhealthy", False, False), b.url: ("healthy", True, True)}
        assert backend["balancer"] == "round-robin" and backend["retries"] == {"done": 0, "refused_by_budget": 0}
