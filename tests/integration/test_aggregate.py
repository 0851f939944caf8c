"""The aggregate integration with real backends: parallel calls, merges, sequence, partial failure, pass-through."""

from __future__ import annotations

import asyncio
import time

import pytest

from fastgw.testing import http_request
from tests.integration.targets import FlakyTarget, refused_port

pytestmark = pytest.mark.asyncio


def aggregate_config(upstreams: dict[str, str], backends: list[dict], **integ: object) -> dict:
    return {
        "upstreams": {name: {"targets": [url]} for name, url in upstreams.items()},
        "routes": [
            {"path": "/profile/{id}", "integration": {"type": "aggregate", "backends": backends, **integ}},
            {"path": "/plain/{id}", "plugins": {"request-id": {}},
             "integration": {"type": "aggregate", "backends": backends, **integ}},
        ],
    }  # fmt: skip


async def test_two_backends_in_parallel_merged_under_their_groups(gateway, upstream):
    async with FlakyTarget("orders") as orders:
        orders.mode = "slow:300"
        users_up = upstream  # the echo upstream: answers what it received
        cfg = aggregate_config(
            {"users": users_up.url, "orders": orders.url},
            [
                {"upstream": "users", "path": "/users/{id}", "group": "user", "allow": ["method", "path", "query"]},
                {"upstream": "orders", "path": "/orders?user={id}", "group": "orders", "rename": {"target": "from"}},
            ],
        )
        gw = await gateway(cfg)
        # A slow user backend too: parallel calls take the longest of the two, not the sum.
        cfg_path = "/profile/42"
        t0 = time.monotonic()
        r = await http_request(gw.port, "GET", cfg_path, headers={"x-trace": "t1"})
        assert time.monotonic() - t0 < 0.9
        assert r.status == 200 and r.header("x-fastgw-completed") == "true"
        body = r.json()
        assert body["user"] == {"method": "GET", "path": "/users/42", "query": ""}
        assert body["orders"] == {"from": "orders", "path": "/orders?user=42", "body": ""}
        assert users_up.received[0].header("x-trace") == "t1"  # the client's headers go to the backends


async def test_partial_failure_carries_what_succeeded(gateway, upstream):
    backends = [
        {"upstream": "users", "path": "/users/{id}", "group": "user", "allow": ["path"]},
        {"upstream": "down", "path": "/orders", "group": "orders"},
    ]
    cfg = aggregate_config({"users": upstream.url, "down": f"http://127.0.0.1:{refused_port()}"}, backends)
    gw = await gateway(cfg)
    r = await http_request(gw.port, "GET", "/profile/7")
    assert r.status == 200 and r.header("x-fastgw-completed") == "false"
    assert r.json() == {"user": {"path": "/users/7"}}

    cfg = aggregate_config(
        {"users": upstream.url, "down": f"http://127.0.0.1:{refused_port()}"}, backends, partial_status=502
    )
    gw = await gateway(cfg)
    r = await http_request(gw.port, "GET", "/profile/7")
    assert r.status == 502 and r.json() == {"user": {"path": "/users/7"}}


async def test_all_failed_is_502(gateway):
    cfg = aggregate_config(
        {"a": f"http://127.0.0.1:{refused_port()}", "b": f"http://127.0.0.1:{refused_port()}"},
        [{"upstream": "a", "path": "/a"}, {"upstream": "b", "path": "/b"}],
    )
    gw = await gateway(cfg)
    r = await http_request(gw.port, "GET", "/profile/1")
    assert r.status == 502 and r.json() == {"message": "Bad Gateway"}
    assert r.header("x-fastgw-completed") == "false"


async def test_backend_timeout_is_a_partial_failure(gateway, upstream):
    async with FlakyTarget("slow") as slow:
        slow.mode = "hang"
        cfg = aggregate_config(
            {"users": upstream.url, "slow": slow.url},
            [
                {"upstream": "users", "path": "/u/{id}", "allow": ["path"]},
                {"upstream": "slow", "path": "/s", "group": "slow", "timeout": 0.3},
            ],
        )
        gw = await gateway(cfg)
        t0 = time.monotonic()
        r = await http_request(gw.port, "GET", "/profile/3")
        assert time.monotonic() - t0 < 2
        assert r.status == 200 and r.json() == {"path": "/u/3"} and r.header("x-fastgw-completed") == "false"


async def test_sequential_backend_uses_an_earlier_answer(gateway, upstream):
    async with FlakyTarget("orders") as orders:
        cfg = aggregate_config(
            {"users": upstream.url, "orders": orders.url},
            [
                {"upstream": "users", "path": "/users/{id}", "group": "user", "allow": ["path"]},
                # The echo's answer has "path": "/users/{id}": used as the next call's query.
                {"upstream": "orders", "path": "/orders?of={resp0.path}", "group": "orders", "target": "path"},
            ],
        )
        gw = await gateway(cfg)
        r = await http_request(gw.port, "GET", "/profile/9")
        assert r.status == 200, r.body
        assert r.json() == {"user": {"path": "/users/9"}, "orders": "/orders?of=%2Fusers%2F9"}


async def test_single_backend_passes_a_404_through(gateway, upstream):
    cfg = aggregate_config({"users": upstream.url}, [{"upstream": "users", "path": "/status/404"}])
    gw = await gateway(cfg)
    r = await http_request(gw.port, "GET", "/profile/1")
    assert r.status == 404
    assert r.header("x-upstream") == "echo" and r.header("content-type") == "application/json"
    assert r.json()["path"] == "/status/404"
    assert r.header("x-fastgw-completed") is None


async def test_plugins_run_around_the_aggregate(gateway, upstream):
    cfg = aggregate_config(
        {"a": upstream.url, "b": upstream.url},
        [{"upstream": "a", "path": "/a", "group": "a", "allow": ["path"]},
         {"upstream": "b", "path": "/b", "group": "b", "allow": ["path"]}],
    )  # fmt: skip
    gw = await gateway(cfg)
    r = await http_request(gw.port, "GET", "/plain/1")
    assert r.status == 200 and r.header("x-request-id")
    assert r.json() == {"a": {"path": "/a"}, "b": {"path": "/b"}}
    for _ in range(2):  # twice: nothing of one request leaks into the next
        again = await http_request(gw.port, "GET", "/plain/2")
        assert again.json() == {"a": {"path": "/a"}, "b": {"path": "/b"}}
        assert again.header("x-request-id") != r.header("x-request-id")


async def test_client_going_away_abandons_the_calls(gateway):
    async with FlakyTarget("slow") as slow:
        slow.mode = "hang"
        cfg = aggregate_config({"s": slow.url}, [{"upstream": "s", "path": "/s", "timeout": 30}])
        gw = await gateway(cfg)
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(b"GET /profile/1 HTTP/1.1\r\nHost: t\r\n\r\n")
        await asyncio.sleep(0.2)
        assert slow.hits == 1
        writer.close()
        await asyncio.sleep(0.3)
        assert not slow._writers  # the backend connection was closed with the client's


async def test_a_function_backend_beside_an_upstream(gateway, upstream, tmp_path):
    (tmp_path / "quota.py").write_text(
        "import json\n"
        "def handler(event, context):\n"
        "    user = event['pathParameters']['id']\n"
        "    return {'statusCode': 200, 'body': json.dumps({'user': user, 'left': 7, 'path': event['rawPath']})}\n"
    )
    cfg = aggregate_config(
        {"users": upstream.url},
        [
            {"upstream": "users", "path": "/users/{id}", "group": "user", "allow": ["path"]},
            {"function": "quota", "group": "quota"},
        ],
    )
    cfg["functions"] = {"quota": {"runtime": "python", "handler": "quota.handler", "warm": 0}}
    gw = await gateway(cfg, base_dir=tmp_path)
    r = await http_request(gw.port, "GET", "/profile/5", timeout=20)
    assert r.status == 200, r.body
    assert r.json() == {"user": {"path": "/users/5"}, "quota": {"user": "5", "left": 7, "path": "/profile/5"}}
