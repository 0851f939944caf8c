"""Retries on another target (nginx's proxy_next_upstream error timeout), with real targets that fail."""

from __future__ import annotations

import asyncio
import logging

import pytest

from fastgw.testing import RawConnection, http_request
from tests.integration.targets import FlakyTarget, refused_port, upstream_config

pytestmark = pytest.mark.asyncio


async def test_get_with_one_target_stopped_always_succeeds_on_the_other(gateway):
    # The report: with one of two targets stopped, six GETs gave 200 502 200 200 502 502.
    async with FlakyTarget("b") as b:
        gw = await gateway(upstream_config([f"http://127.0.0.1:{refused_port()}", b.url]))
        statuses = [(await http_request(gw.port, "GET", f"/n/{i}")).status for i in range(6)]
        assert statuses == [200] * 6
        assert b.hits == 6
        status = gw.gateway.upstreams["backend"].status()
        assert status["retries"]["done"] == 3  # every other request picked the stopped one first


async def test_post_never_sent_goes_to_another_target_by_default(gateway):
    # Issue 19, item 7: a dead target of two gave 1,049 POST 502s in 7 s with default settings. A POST whose
    # connection was refused never left the gateway: it goes to the other target, its body whole.
    async with FlakyTarget("b") as b:
        gw = await gateway(upstream_config([f"http://127.0.0.1:{refused_port()}", b.url]))
        statuses = []
        for i in range(6):  # round-robin: every other request picks the stopped target first
            r = await http_request(gw.port, "POST", "/orders", body=b'{"n": %d}' % i)
            statuses.append(r.status)
        assert statuses == [200] * 6
        assert [body for _, _, body in b.requests] == [b'{"n": %d}' % i for i in range(6)]


async def test_post_that_was_sent_is_not_retried_by_default(gateway):
    async with FlakyTarget("a") as a, FlakyTarget("b") as b:
        a.mode = "reset"  # the request reached `a`, which reset the connection: it may have acted on it
        gw = await gateway(upstream_config([a.url, b.url], retries={"attempts": 2}, health={"passive": None}))
        r = await http_request(gw.port, "POST", "/orders", body=b"{}")
        assert r.status == 502 and r.json() == {"message": "Bad Gateway"}
        assert a.hits == 1 and b.hits == 0  # counted by `a` as it read it, then reset


async def test_post_is_retried_with_its_body_where_the_route_allows_it(gateway):
    async with FlakyTarget("a") as a, FlakyTarget("b") as b:
        a.mode = "reset"
        cfg = upstream_config(
            [a.url, b.url],
            route={"retry_non_idempotent": True},
            retries={"methods": ["GET", "POST"]},
        )
        gw = await gateway(cfg)
        r = await http_request(gw.port, "POST", "/orders", body=b'{"item": 42}')
        assert r.status == 200 and r.json()["target"] == "b"
        assert a.requests[0][2] == b.requests[0][2] == b'{"item": 42}'  # the same body, replayed


async def test_streamed_body_is_replayed_from_the_buffer(gateway):
    async with FlakyTarget("a") as a, FlakyTarget("b") as b:
        a.mode = "reset"
        gw = await gateway(upstream_config([a.url, b.url]))
        conn = await RawConnection.open(gw.port)
        await conn.send(b"PUT /doc HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await asyncio.sleep(0.1)  # the first part is on its way to `a` before the rest arrives
        await conn.send(b"6\r\n world\r\n0\r\n\r\n")
        r = await conn.response()
        await conn.close()
        assert r.status == 200 and r.json() == {"target": "b", "path": "/doc", "body": "hello world"}
        assert a.hits == 1


async def test_body_over_the_replay_buffer_is_not_retried(gateway):
    async with FlakyTarget("a") as a, FlakyTarget("b") as b:
        a.mode = "reset"
        gw = await gateway(upstream_config([a.url, b.url], retries={"max_replay_body": 16}))
        r = await http_request(gw.port, "PUT", "/doc", body=b"y" * 100)
        assert r.status == 502
        assert b.hits == 0
        r = await http_request(gw.port, "PUT", "/doc", body=b"y" * 10)  # b's turn: fine
        assert r.status == 200


async def test_reset_before_any_byte_is_retried_reset_mid_body_is_not(gateway):
    async with FlakyTarget("a") as a, FlakyTarget("b") as b:
        a.mode = "reset"
        gw = await gateway(upstream_config([a.url, b.url]))
        r = await http_request(gw.port, "GET", "/x")
        assert r.status == 200 and r.json()["target"] == "b"
        assert a.hits == 1

        a.mode = "reset-mid-body"
        b.hits = 0
        results = []
        for _ in range(2):  # one of the two goes to `a` first
            conn = await RawConnection.open(gw.port)
            await conn.send(b"GET /y HTTP/1.1\r\nHost: t\r\n\r\n")
            try:
                results.append((await conn.response()).status)
            except (asyncio.IncompleteReadError, ConnectionError, ValueError):
                results.append("cut")  # the head reached the client: the only honest signal left is a cut
            await conn.close()
        assert sorted(map(str, results)) == ["200", "cut"]
        assert b.hits == 1  # never retried once a byte reached the client


async def test_statuses_are_retried_only_when_listed(gateway):
    async with FlakyTarget("a") as a, FlakyTarget("b") as b:
        a.mode = "status:503"
        gw = await gateway(upstream_config([a.url, b.url]))
        first = await http_request(gw.port, "GET", "/")
        assert first.status == 503  # not listed: the target's answer passes through

    async with FlakyTarget("a") as a, FlakyTarget("b") as b:
        a.mode = "status:503"
        gw = await gateway(upstream_config([a.url, b.url], retries={"when": ["error", "timeout", "http_503"]}))
        for _ in range(4):
            r = await http_request(gw.port, "GET", "/")
            assert r.status == 200 and r.json()["target"] == "b"
        assert a.hits == 2


async def test_last_answer_passes_through_when_every_target_answers_5xx(gateway):
    async with FlakyTarget("a") as a, FlakyTarget("b") as b:
        a.mode = b.mode = "status:502"
        gw = await gateway(upstream_config([a.url, b.url], retries={"when": ["http_502"]}))
        r = await http_request(gw.port, "GET", "/")
        assert r.status == 502 and r.json()["target"] == "b"
        assert a.hits == b.hits == 1  # attempts: 2


async def test_per_try_timeout_moves_on_to_another_target(gateway):
    async with FlakyTarget("a") as a, FlakyTarget("b") as b:
        a.mode = "hang"
        gw = await gateway(upstream_config([a.url, b.url], retries={"per_try_timeout": 0.3}))
        r = await http_request(gw.port, "GET", "/", timeout=10)
        assert r.status == 200 and r.json()["target"] == "b"


async def test_attempts_one_switches_retries_off(gateway):
    async with FlakyTarget("b") as b:
        gw = await gateway(upstream_config([f"http://127.0.0.1:{refused_port()}", b.url], retries={"attempts": 1}))
        assert (await http_request(gw.port, "GET", "/")).status == 502


async def test_the_budget_stops_retries_multiplying_load(gateway, caplog):
    caplog.set_level(logging.WARNING, "fastgw.proxy")
    async with FlakyTarget("a") as a, FlakyTarget("b") as b:
        a.mode = b.mode = "reset"
        # (no passive ejection: with it, one of the two would leave the rotation and retries have nowhere to go)
        cfg = upstream_config([a.url, b.url], retries={"budget": 0.2, "budget_min": 2}, health={"passive": None})
        gw = await gateway(cfg)
        for _ in range(20):
            assert (await http_request(gw.port, "GET", "/")).status == 502
        retries = a.hits + b.hits - 20
        # At most budget_min + 20% of the requests: 2 + 0.2 * picks (the picks count retries' own picks too).
        assert 2 <= retries <= 2 + 0.2 * (20 + retries) + 1
        assert gw.gateway.upstreams["backend"].budget.refused == 20 - retries
        assert caplog.text.count("retry budget spent") == 1  # one line per 10 s window, not one per refusal
