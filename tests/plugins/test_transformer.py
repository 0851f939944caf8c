"""request-transformer and response-transformer: headers, query, path, templates; what the upstream saw."""

from __future__ import annotations

import asyncio
import logging

import pytest

from fastgw.testing import http_request
from tests.plugins.conftest import TWICE, route_config

REQUEST = {
    "remove": {"headers": ["x-drop"], "query": ["debug"]},
    "rename": {"headers": {"x-old": "x-new"}, "query": {"q": "search"}},
    "set": {"headers": {"x-user": "$consumer.username", "x-tier": "${consumer.custom.tier}-plan"},
            "query": {"page": "1"}},
    "add": {"headers": {"x-added": "$request.header.x-src", "x-missing": "$request.header.x-absent"},
            "query": {"lang": "en"}},
    "append": {"headers": {"x-multi": "from-gw"}, "query": {"tag": "$request.path.name"}},
}  # fmt: skip


async def test_request_transformer_headers_and_query_with_templates(upstream, gateway, consumers):
    cfg = route_config(upstream, {}, consumers=consumers)
    cfg["routes"] = [{"path": "/users/{name}", "integration": {"type": "http", "upstream": "backend"},
                      "plugins": {"key-auth": {}, "request-transformer": REQUEST}}]  # fmt: skip
    gw = await gateway(cfg)
    for _ in TWICE:
        upstream.received.clear()
        r = await http_request(
            gw.port, "GET", "/users/ann?q=hats&debug=1&lang=fr&page=9&tag=a",
            headers={"apikey": "alice-key", "X-Drop": "1", "X-Old": "o", "X-Src": "web", "X-Multi": "client"},
        )  # fmt: skip
        assert r.status == 200
        (seen,) = upstream.received
        assert seen.header("x-drop") is None and seen.header("x-old") is None and seen.header("x-new") == "o"
        assert seen.header("x-user") == "alice" and seen.header("x-tier") == "gold-plan"
        assert seen.header("x-added") == "web" and seen.header("x-missing") is None
        assert [v for k, v in seen.headers if k.lower() == "x-multi"] == ["client", "from-gw"]
        assert seen.path == "/users/ann"
        query = seen.target.split("?", 1)[1].split("&")
        assert sorted(query) == sorted(["search=hats", "lang=fr", "page=1", "tag=a", "tag=ann"])


async def test_request_transformer_path_replaces_the_route_rewrite(upstream, gateway):
    cfg = route_config(upstream, {})
    cfg["routes"] = [{"path": "/v1/{id}", "integration": {"type": "http", "upstream": "backend", "path": "/old/{id}"},
                      "plugins": {"request-transformer": {"path": "/v2/items/$request.path.id/détail"}}}]  # fmt: skip
    gw = await gateway(cfg)
    for _ in TWICE:
        upstream.received.clear()
        r = await http_request(gw.port, "GET", "/v1/42?x=1")
        assert r.status == 200
        assert upstream.received[0].target == "/v2/items/42/d%C3%A9tail?x=1"


async def test_response_transformer(upstream, gateway):
    plugins = {"response-transformer": {
        "remove": {"headers": ["x-upstream"]}, "rename": {"headers": {"x-kept": "x-renamed"}},
        "set": {"headers": {"cache-control": "no-store"}}, "add": {"headers": {"x-path": "$context.path"}},
        "append": {"headers": {"x-kept2": "second"}}}}  # fmt: skip
    gw = await gateway(route_config(upstream, plugins))
    for _ in TWICE:
        r = await http_request(gw.port, "GET", "/headers?x-kept=1&x-kept2=first&cache-control=public")
        assert r.status == 200
        assert r.header("x-upstream") is None and r.header("x-kept") is None and r.header("x-renamed") == "1"
        assert r.header("cache-control") == "no-store" and r.header("x-path") == "/headers"
        assert [v for k, v in r.headers if k.lower() == "x-kept2"] == ["first", "second"]
        assert r.json()["path"] == "/headers"  # the body is untouched, its length still right


@pytest.mark.parametrize("bad", ["$request.header", "${nope.x}", "$consumer.age"])
def test_bad_templates_are_refused_at_load(bad):
    from fastgw.config.load import ConfigError, load_config_bytes

    yaml = f"plugins: {{response-transformer: {{set: {{headers: {{x: '{bad}'}}}}}}}}\n"
    with pytest.raises(ConfigError, match="unknown template reference"):
        load_config_bytes(yaml.encode(), "gw.yaml")


RESPONSE_BODY = {"body": {
    "remove": ["headers", "body_b64"], "rename": {"path": "route.path"},
    "set": {"gateway": "fastgw", "route.id": "$request.path.proxy", "count": 3},
    "add": {"method": "NOPE", "extra.flag": True}}}  # fmt: skip


@pytest.mark.parametrize("path", ["/echo-chunked", "/plain"])
async def test_response_transformer_edits_json_bodies_of_proxied_responses(upstream, gateway, path):
    """Whether the upstream sends a length or chunks, the client gets the edited JSON with its new length."""
    gw = await gateway(route_config(upstream, {"response-transformer": RESPONSE_BODY}))
    for _ in TWICE:
        r = await http_request(gw.port, "GET", path + "?q=1")
        assert r.status == 200 and r.header("transfer-encoding") is None
        assert int(r.header("content-length") or -1) == len(r.body)
        assert r.json() == {
            "method": "GET", "query": "q=1", "body": "", "body_length": 0,
            "route": {"path": path, "id": path.lstrip("/")}, "gateway": "fastgw", "count": 3,
            "extra": {"flag": True},
        }  # fmt: skip


async def test_response_body_edits_leave_other_bodies_alone(upstream, gateway, caplog):
    caplog.set_level(logging.INFO, "fastgw")
    cfg = route_config(upstream, {"response-transformer": RESPONSE_BODY}, limits={"max_filtered_response": 4096})
    gw = await gateway(cfg)
    for _ in TWICE:
        # Not JSON: unchanged, with a log line. Close-delimited: held until the end, then sent with a length.
        for path in ("/bytes/3000", "/chunked/3000", "/until-close/3000"):
            r = await http_request(gw.port, "GET", path)
            assert (r.status, r.body) == (200, b"x" * 3000), path
            assert r.header("content-length") == "3000", path
        # Over max_filtered_response: streamed unchanged (as it was framed), body_filter skipped.
        r = await http_request(gw.port, "GET", "/chunked/200000")
        assert (r.status, r.body, r.header("transfer-encoding")) == (200, b"x" * 200000, "chunked")
        r = await http_request(gw.port, "GET", "/bytes/200000")
        assert (r.status, r.body, r.header("content-length")) == (200, b"x" * 200000, "200000")
        # No body to edit.
        r = await http_request(gw.port, "HEAD", "/plain")
        assert (r.status, r.body) == (200, b"")
        r = await http_request(gw.port, "GET", "/status/204")
        assert (r.status, r.body) == (204, b"")
    assert any("not JSON; sent unchanged" in m for m in caplog.messages)
    assert any("over 4096 bytes" in m for m in caplog.messages)


async def test_response_body_edits_on_responses_made_in_the_gateway(gateway):
    cfg = {
        "routes": [
            {
                "path": "/m",
                "integration": {"type": "mock", "body": {"a": 1, "b": {"c": 2}}},
                "plugins": {"response-transformer": {"body": {"remove": ["b.c"], "set": {"d": "x"}}}},
            }
        ]
    }
    gw = await gateway(cfg)
    for _ in TWICE:
        r = await http_request(gw.port, "GET", "/m")
        assert r.json() == {"a": 1, "b": {}, "d": "x"} and int(r.header("content-length") or 0) == len(r.body)


def test_header_only_response_transformer_does_not_hold_bodies():
    from fastgw.config.load import load_config_bytes

    yaml = b"""
routes:
  - {path: /a, integration: {type: mock}, plugins: {response-transformer: {set: {headers: {x: y}}}}}
  - {path: /b, integration: {type: mock}, plugins: {response-transformer: {body: {remove: [x]}}}}
"""
    a, b = load_config_bytes(yaml, "gw.yaml").plugins.chains
    assert a is not None and b is not None
    assert (len(a.header_filter), len(a.body_filter)) == (1, 0)
    assert (len(b.header_filter), len(b.body_filter)) == (0, 1)


async def test_an_upstream_that_breaks_a_held_response_gives_a_clean_502(gateway):
    """Nothing of a held response was sent: when the upstream closes mid-body the client gets a JSON 502 (a
    streamed response could only be cut short)."""

    async def half_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"a": ')
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(half_answer, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        cfg = {"upstreams": {"broken": {"targets": [f"http://127.0.0.1:{port}"]}},
               "routes": [{"path": "/x", "integration": {"type": "http", "upstream": "broken"},
                           "plugins": {"response-transformer": RESPONSE_BODY}}]}  # fmt: skip
        gw = await gateway(cfg)
        for _ in TWICE:
            r = await http_request(gw.port, "GET", "/x")
            # The gateway's error is a response of the route like any other: its filters see it too.
            assert (r.status, r.json()["message"], r.json()["gateway"]) == (502, "Bad Gateway", "fastgw")
    finally:
        server.close()


async def test_headers_set_after_a_plugin_changed_the_query_reach_the_upstream(upstream, gateway, consumers):
    """request-id and request-transformer set headers after key-auth took its key out of the query (the upstream
    request made, its header map not): both reach the upstream (the later ones were lost)."""
    cfg = route_config(upstream, {}, consumers=consumers)
    plugins = {
        "key-auth": {"hide_credentials": True, "in_header": False},
        "request-id": {},
        "request-transformer": {"set": {"headers": {"x-user": "$consumer.username", "x-fixed": "1"}}},
    }
    cfg["routes"] = [{"path": "/x", "integration": {"type": "http", "upstream": "backend"}, "plugins": plugins}]
    gw = await gateway(cfg)
    for _ in TWICE:
        upstream.received.clear()
        r = await http_request(gw.port, "GET", "/x?apikey=alice-key&a=1")
        assert r.status == 200
        (seen,) = upstream.received
        assert seen.target == "/x?a=1"
        assert seen.header("x-user") == "alice" and seen.header("x-fixed") == "1"
        assert seen.header("x-request-id") == r.header("x-request-id") is not None
