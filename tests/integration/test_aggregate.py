"""The aggregate integration with real backends: parallel calls, merges, sequence, partial failure, pass-through."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from fastgw.config.errors import ConfigError
from fastgw.config.load import load_config_bytes
from fastgw.testing import RawConnection, http_request
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


async def test_a_function_backend_called_with_post_gets_the_body(gateway, upstream, tmp_path):
    (tmp_path / "audit.py").write_text(
        "import json\n"
        "def handler(event, context):\n"
        "    return {'statusCode': 200, 'body': json.dumps({'method': event['requestContext']['http']['method'],\n"
        "                                                   'body': event['body']})}\n"
    )
    backends = [
        {"upstream": "users", "path": "/users/{id}", "group": "user", "allow": ["method"]},
        {"function": "audit", "method": "POST", "group": "audit"},
    ]
    cfg = aggregate_config({"users": upstream.url}, backends)
    cfg["functions"] = {"audit": {"runtime": "python", "handler": "audit.handler", "warm": 0}}
    gw = await gateway(cfg, base_dir=tmp_path)
    r = await http_request(gw.port, "PUT", "/profile/5", body=b'{"seen": true}', timeout=20)
    assert r.status == 200, r.body
    assert r.json() == {"user": {"method": "GET"}, "audit": {"method": "POST", "body": '{"seen": true}'}}


async def test_return_error_details_names_each_failed_backend(gateway, upstream):
    # KrakenD's return_error_details: each failed backend's status and why, under the key given (issue 23)
    backends = [
        {"upstream": "users", "path": "/users/{id}", "group": "user", "allow": ["path"]},
        {"upstream": "users", "path": "/status/503", "group": "orders"},
        {"upstream": "down", "path": "/billing"},
        {"upstream": "users", "path": "/sleep/1000", "group": "slow", "timeout": 0.2},
    ]
    refused = f"http://127.0.0.1:{refused_port()}"
    cfg = aggregate_config({"users": upstream.url, "down": refused}, backends, return_error_details="errors")
    gw = await gateway(cfg)
    r = await http_request(gw.port, "GET", "/profile/7")
    assert r.status == 200 and r.header("x-fastgw-completed") == "false"
    body = r.json()
    assert body["user"] == {"path": "/users/7"}
    errors = body["errors"]
    assert set(errors) == {"orders", "backends[2]", "slow"}  # by group, else by index
    assert errors["orders"]["status"] == 503 and errors["orders"]["message"] == "answered 503"
    assert errors["orders"]["body"]["path"] == "/status/503"  # the backend's own answer, JSON as JSON
    assert errors["backends[2]"]["status"] == 502 and errors["backends[2]"]["message"] == "answered 502"
    assert errors["slow"] == {"status": 504, "message": "timed out after 0.2s"}


async def test_return_error_details_when_all_failed(gateway, upstream):
    backends = [
        {"upstream": "users", "path": "/status/404", "group": "a"},
        {"upstream": "users", "path": "/status/500"},
    ]
    gw = await gateway(aggregate_config({"users": upstream.url}, backends, return_error_details="why"))
    r = await http_request(gw.port, "GET", "/profile/7")
    assert r.status == 502
    body = r.json()
    assert body["message"] == "Bad Gateway"
    assert {k: v["status"] for k, v in body["why"].items()} == {"a": 404, "backends[1]": 500}
    # without the option nothing of the backends' answers reaches the client
    gw = await gateway(aggregate_config({"users": upstream.url}, backends))
    assert (await http_request(gw.port, "GET", "/profile/7")).json() == {"message": "Bad Gateway"}


async def test_return_error_details_key_may_not_be_a_group(upstream):
    backends = [{"upstream": "users", "path": "/a", "group": "errors"}, {"upstream": "users", "path": "/b"}]
    cfg = aggregate_config({"users": upstream.url}, backends, return_error_details="errors")
    with pytest.raises(ConfigError) as err:
        load_config_bytes(orjson.dumps(cfg), "gw.json")
    assert "$.routes[0].integration.return_error_details" in str(err.value)
    assert "backends[0]'s group" in str(err.value)


async def test_backends_call_with_their_method_and_the_client_body(gateway, upstream):
    # KrakenD's backend `method`: POST, PUT and PATCH carry the client's body; GET (the default) carries none
    backends = [
        {"upstream": "users", "path": "/users/{id}", "method": "POST", "group": "created", "allow": ["method", "body"]},
        {"upstream": "users", "path": "/audit/{id}", "method": "PUT", "group": "audit", "allow": ["method", "body"]},
        {"upstream": "users", "path": "/users/{id}", "group": "read", "allow": ["method", "body"]},
        {"upstream": "users", "path": "/cache/{id}", "method": "DELETE", "group": "purge", "allow": ["method"]},
    ]
    gw = await gateway(aggregate_config({"users": upstream.url}, backends))
    payload = b'{"name": "ada"}'
    r = await http_request(gw.port, "POST", "/profile/7", body=payload, headers={"content-type": "application/json"})
    assert r.status == 200 and r.header("x-fastgw-completed") == "true"
    body = r.json()
    assert body["created"] == {"method": "POST", "body": payload.decode()}
    assert body["audit"] == {"method": "PUT", "body": payload.decode()}
    assert body["read"] == {"method": "GET", "body": ""}
    assert body["purge"] == {"method": "DELETE"}
    seen = {(rq.method, rq.path): rq for rq in upstream.received}
    assert seen[("POST", "/users/7")].header("content-type") == "application/json"
    assert seen[("POST", "/users/7")].header("content-length") == str(len(payload))
    assert seen[("GET", "/users/7")].header("content-type") is None  # no body, no description of one
    assert seen[("DELETE", "/cache/7")].body == b""


async def test_a_body_still_on_its_way_is_collected_for_the_backends(gateway, upstream):
    backends = [
        {"upstream": "users", "path": "/users/{id}", "method": "PATCH", "group": "a", "allow": ["body"]},
        {"upstream": "users", "path": "/orders/{id}", "method": "POST", "group": "b", "allow": ["body"]},
    ]
    gw = await gateway(aggregate_config({"users": upstream.url}, backends))
    conn = await RawConnection.open(gw.port)
    # Expect: 100-continue, then the body in chunks after the gateway said to go on
    await conn.send(
        b"PATCH /profile/3 HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\nexpect: 100-continue\r\n\r\n"
    )
    cont = await conn.response(head_only=True)
    assert cont.status == 100
    await conn.send(b"5\r\nhello\r\n")
    await asyncio.sleep(0.05)
    await conn.send(b"6\r\n world\r\n0\r\n\r\n")
    r = await conn.response()
    await conn.close()
    assert r.status == 200 and r.json() == {"a": {"body": "hello world"}, "b": {"body": "hello world"}}
