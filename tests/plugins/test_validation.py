"""request-validation and the request-transformer's JSON body edits, with bodies that arrive whole, late, chunked."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from fastgw.testing import RawConnection, http_request
from tests.plugins.conftest import TWICE, route_config

pytest.importorskip("jsonschema")

SCHEMA = {
    "type": "object",
    "required": ["name", "qty"],
    "properties": {"name": {"type": "string", "minLength": 1}, "qty": {"type": "integer", "minimum": 1},
                   "tags": {"type": "array", "items": {"type": "string"}}},
    "additionalProperties": False,
}  # fmt: skip
VALIDATION = {"request-validation": {
    "body_schema": SCHEMA,
    "query_schema": {"type": "object", "properties": {"page": {"type": "string", "pattern": "^[0-9]+$"}}},
    "headers_schema": {"type": "object", "required": ["x-client"]},
}}  # fmt: skip
JSON = {"Content-Type": "application/json", "X-Client": "t"}


async def test_valid_requests_pass_whole(upstream, gateway):
    gw = await gateway(route_config(upstream, VALIDATION))
    body = orjson.dumps({"name": "hat", "qty": 2, "tags": ["a"]})
    for _ in TWICE:
        upstream.received.clear()
        r = await http_request(gw.port, "POST", "/orders?page=3", body=body, headers=JSON)
        assert r.status == 200 and upstream.received[0].body == body


@pytest.mark.parametrize(
    ("path", "body", "headers", "errors"),
    [
        ("/o", b'{"name": "", "qty": 0, "extra": 1}', JSON, [
            "body: Additional properties are not allowed ('extra' was unexpected)",
            "body.name: '' should be non-empty", "body.qty: 0 is less than the minimum of 1"]),
        ("/o", b'{"name": "x", "qty": 1, "tags": [1]}', JSON, ["body.tags[0]: 1 is not of type 'string'"]),
        ("/o", b"{not json", JSON, None),
        ("/o", b"", JSON, ["body: a JSON body is required"]),
        ("/o", b'{"name": "x", "qty": 1}', {"Content-Type": "text/plain", "X-Client": "t"},
         ["body: content type 'text/plain' is not one of application/json"]),
        ("/o?page=x", b'{"name": "x", "qty": 1}', JSON, ["query.page: 'x' does not match '^[0-9]+$'"]),
        ("/o", b'{"name": "x", "qty": 1}', {"Content-Type": "application/json"},
         ["headers: 'x-client' is a required property"]),
    ],
)  # fmt: skip
async def test_invalid_requests_get_400_with_every_error(upstream, gateway, path, body, headers, errors):
    gw = await gateway(route_config(upstream, VALIDATION))
    for _ in TWICE:
        r = await http_request(gw.port, "POST", path, body=body, headers=headers)
        assert r.status == 400 and r.json()["message"] == "Request validation failed"
        if errors is None:
            assert r.json()["errors"][0].startswith("body: not valid JSON")
        else:
            assert sorted(r.json()["errors"]) == sorted(errors)
    assert upstream.received == []


async def test_a_body_arriving_late_or_chunked_is_validated_whole(upstream, gateway):
    gw = await gateway(route_config(upstream, VALIDATION))
    conn = await RawConnection.open(gw.port)
    try:
        for _ in TWICE:
            await conn.send(b"POST /o HTTP/1.1\r\nhost: t\r\nx-client: t\r\ncontent-type: application/json\r\n"
                            b"transfer-encoding: chunked\r\n\r\n")  # fmt: skip
            await asyncio.sleep(0.02)
            await conn.send(b'8\r\n{"name":\r\n')
            await asyncio.sleep(0.02)
            await conn.send(b'9\r\n "x", "qt\r\n6\r\ny": 1}\r\n0\r\n\r\n')
            r = await conn.response()
            assert r.status == 200 and upstream.received[-1].body == b'{"name": "x", "qty": 1}'
    finally:
        await conn.close()


def test_a_broken_schema_is_refused_at_load():
    from fastgw.config.load import ConfigError, load_config_bytes

    yaml = "plugins: {request-validation: {body_schema: {type: nope}}}\n"
    with pytest.raises(ConfigError, match="body_schema is not a valid JSON Schema"):
        load_config_bytes(yaml.encode(), "gw.yaml")


async def test_request_transformer_edits_json_bodies(upstream, gateway, consumers):
    plugins = {"key-auth": {}, "request-transformer": {"body": {
        "remove": ["secret", "meta.internal"], "rename": {"qty": "quantity"},
        "set": {"source": "gateway", "meta.user": "$consumer.username", "meta.n": 3},
        "add": {"name": "should-not-replace", "note": "$request.header.x-note"}}}}  # fmt: skip
    gw = await gateway(route_config(upstream, plugins, consumers=consumers))
    sent = {"name": "hat", "qty": 2, "secret": "s", "meta": {"internal": True, "keep": 1}}
    for _ in TWICE:
        upstream.received.clear()
        r = await http_request(gw.port, "POST", "/o", body=orjson.dumps(sent),
                               headers={"apikey": "alice-key", "Content-Type": "application/json"})  # fmt: skip
        assert r.status == 200
        seen = upstream.received[0]
        assert orjson.loads(seen.body) == {
            "name": "hat",
            "quantity": 2,
            "source": "gateway",
            "meta": {"keep": 1, "user": "alice", "n": 3},
        }
        assert seen.header("content-length") == str(len(seen.body))
        # Not JSON: sent as it is.
        r = await http_request(gw.port, "POST", "/o", body=b"plain text", headers={"apikey": "alice-key"})
        assert r.status == 200 and upstream.received[1].body == b"plain text"
