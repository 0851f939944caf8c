"""The plugin API end to end: registration checks, chains built from global/API/route config, phases on a real
gateway with a real echo upstream, failures that answer 500 without killing anything."""

from __future__ import annotations

import logging

import pytest

from fastgw.config.load import ConfigError, load_config_bytes
from fastgw.plugins.chain import Registry
from fastgw.testing import RawConnection, http_request
from tests.plugins import sample
from tests.plugins.conftest import TWICE, route_config

MODS = ["tests.plugins.sample:Tracer", "tests.plugins.sample:Second", "tests.plugins.sample:Slow",
        "tests.plugins.sample:Boom"]  # fmt: skip


def load(yaml: str):
    return load_config_bytes(yaml.encode(), "gw.yaml")


@pytest.mark.parametrize(
    ("cls", "why"),
    [
        ("Misspelled", "has a method 'acess', which is not a phase: did you mean 'access'?"),
        ("BadSignature", "access must be `def access(self, ctx, conf)`"),
        ("NoPhases", "defines none of the phases"),
        ("Duplicate", "a plugin named 'request-id' is already registered (built-in"),
    ],
)
def test_broken_plugin_classes_are_refused_at_load_with_the_reason(cls, why):
    with pytest.raises(ConfigError) as info:
        load(f"plugin_modules: ['tests.plugins.sample:{cls}']\n")
    assert info.value.path == "$.plugin_modules" and why in info.value.message, str(info.value)


@pytest.mark.parametrize(
    ("yaml", "path", "what"),
    [
        ("plugins: {nope: {}}", "$.plugins.nope", "unknown plugin 'nope' (installed: acl, basic-auth"),
        ("routes: [{path: /, integration: {type: mock}, plugins: {cors: {max_age: soon}}}]",
         "$.routes[0].plugins.cors.max_age", "Expected `int | null`, got `str`"),
        ("routes: [{path: /, integration: {type: mock}, plugins: {acl: {}}}]",
         "$.routes[0].plugins.acl", "give at least one of allow or deny"),
        ("plugins: {cors: {origins: ['*'], credentials: true}}", "$.plugins.cors", "cannot be used with credentials"),
        ("plugins: {request-transformer: {set: {headers: {x: '$request.nothing.x'}}}}",
         "$.plugins.request-transformer", "unknown template reference"),
        ("consumers: {a: {credentials: {cors: [{}]}}}", "$.consumers.a.credentials.cors",
         "'cors' is not a plugin that takes credentials (basic-auth, jwt-auth, key-auth, lambda-authorizer)"),
        ("consumers: {a: {credentials: {key-auth: [{keyy: x}]}}}", "$.consumers.a.credentials.key-auth[0]",
         "Object contains unknown field `keyy`"),
        ("plugin_modules: ['no.such.module:X']", "$.plugin_modules", "cannot import no.such.module"),
    ],
)  # fmt: skip
def test_plugin_config_errors_name_the_key_path(yaml, path, what):
    with pytest.raises(ConfigError) as info:
        load(yaml + "\n")
    assert info.value.path == path and what in info.value.message, str(info.value)


def test_chains_are_ordered_by_priority_and_scoped():
    loaded = load(
        "plugin_modules: " + str(MODS) + "\n"
        "plugins: {tracer: {tag: global}, request-id: {}}\n"
        "apis:\n  shop:\n    type: http\n    plugins: {tracer: {tag: api}, second: {}}\n"
        "    routes:\n"
        "      - {path: /a, integration: {type: mock}}\n"
        "      - {path: /b, integration: {type: mock}, plugins: {tracer: {tag: route}, second: false}}\n"
        "routes:\n  - {path: /top, integration: {type: mock}, plugins: {request-id: false}}\n"
    )
    assert loaded.plugins is not None
    chains = dict(zip([e.path for e in loaded.entries], loaded.plugins.chains, strict=True))
    names = {p: [n for _, _, _, n in c.request] if c else [] for p, c in chains.items()}
    # rewrite phases first, then access phases; each in priority order (request-id 3950 > tracer 700 > second 600).
    assert names["/top"] == ["tracer", "tracer"]
    assert names["/a"] == ["request-id", "tracer", "second", "tracer", "second"]
    assert names["/b"] == ["request-id", "tracer", "tracer"]
    assert chains["/a"].request[1][1].tag == "api" and chains["/b"].request[1][1].tag == "route"
    assert chains["/top"].request[0][1].tag == "global"


def test_installed_plugins_have_phases_and_priorities():
    reg = Registry.load()
    prios = {n: c.priority for n, c in reg.classes.items()}
    assert prios["request-id"] > prios["ip-restriction"] > prios["cors"] > prios["key-auth"] > prios["acl"]
    assert prios["acl"] > prios["request-transformer"] > prios["response-transformer"]


async def test_phases_run_in_order_and_change_what_the_upstream_gets(upstream, gateway):
    plugins = {"tracer": {"tag": "one"}, "second": {"tag": "two"}, "request-id": {}}
    gw = await gateway(route_config(upstream, plugins, plugin_modules=MODS))
    for _ in TWICE:
        upstream.received.clear()
        sample.LOGGED.clear()
        r = await http_request(gw.port, "GET", "/x")
        assert r.status == 200
        (seen,) = upstream.received
        # Both rewrites, then both accesses, each in priority order (the last access set the header).
        assert seen.header("x-trace") == "rewrite:one,rewrite:two,access:one,access:two"
        assert [v for k, v in r.headers if k == "x-trace-response"] == ["one", "two"]
        rid = r.header("x-request-id")
        assert rid and seen.header("x-request-id") == rid
        assert sorted(sample.LOGGED) == [("one", 200, rid), ("two", 200, rid)]


async def test_a_response_from_access_short_circuits(upstream, gateway):
    gw = await gateway(route_config(upstream, {"tracer": {"deny_path": "/no"}}, plugin_modules=MODS))
    for _ in TWICE:
        r = await http_request(gw.port, "GET", "/no")
        assert r.status == 418 and r.json() == {"message": "denied by tracer", "trace": ["rewrite:t", "access:t"]}
        assert r.header("x-trace-response") == "t"  # header_filter runs on plugin answers too
    assert upstream.received == []


async def test_async_phase(upstream, gateway):
    gw = await gateway(route_config(upstream, {"slow": {}}, plugin_modules=MODS))
    for _ in TWICE:
        r = await http_request(gw.port, "GET", "/x")
        assert r.status == 200 and upstream.received[-1].header("x-slow") == "waited"


@pytest.mark.parametrize("where", ["access", "header_filter", "body_filter"])
async def test_a_failing_plugin_answers_500_and_the_connection_and_gateway_go_on(upstream, gateway, where, caplog):
    gw = await gateway(route_config(upstream, {"boom": {"where": where}}, plugin_modules=MODS))
    conn = await RawConnection.open(gw.port)
    try:
        for _ in TWICE:
            await conn.send(b"GET /x HTTP/1.1\r\nhost: t\r\n\r\n")
            r = await conn.response()
            assert (r.status, r.json()) == (500, {"message": "Internal server error"})
    finally:
        await conn.close()
    assert any("plugin boom failed" in m and "ANY /{proxy+}" in m for m in caplog.messages), caplog.messages
    assert any("boom in " + where in (r.exc_text or "") for r in caplog.records if r.levelno >= logging.ERROR)
    if where == "access":
        assert upstream.received == []


async def test_header_filter_sees_mock_function_and_error_responses(upstream, gateway, tmp_path):
    cfg = {
        "plugin_modules": MODS,
        "plugins": {"tracer": {"tag": "g"}},
        "upstreams": {"down": {"targets": ["http://127.0.0.1:9"], "connect_timeout": 2}},
        "routes": [
            {"path": "/mock", "integration": {"type": "mock", "status": 201, "body": "hi"}},
            {"path": "/down", "integration": {"type": "http", "upstream": "down"}},
        ],
    }
    gw = await gateway(cfg)
    for _ in TWICE:
        r = await http_request(gw.port, "GET", "/mock")
        assert (r.status, r.body, r.header("x-trace-response")) == (201, b"hi", "g")
        r = await http_request(gw.port, "GET", "/down")
        assert r.status == 502 and r.header("x-trace-response") == "g"


async def test_consumer_headers_cannot_be_forged(upstream, gateway, consumers):
    cfg = route_config(upstream, {}, consumers=consumers)
    cfg["routes"].insert(0, {"path": "/auth/{p+}", "integration": {"type": "http", "upstream": "backend"},
                             "plugins": {"key-auth": {}}})  # fmt: skip
    gw = await gateway(cfg)
    for _ in TWICE:
        upstream.received.clear()
        forged = {"X-Consumer-Username": "alice", "X-Consumer-Groups": "admin"}
        r = await http_request(gw.port, "GET", "/open", headers=forged)
        assert r.status == 200
        r = await http_request(gw.port, "GET", "/auth/x", headers={**forged, "apikey": "bob-key"})
        assert r.status == 200
        open_seen, auth_seen = upstream.received
        assert open_seen.header("x-consumer-username") is None and open_seen.header("x-consumer-groups") is None
        assert auth_seen.header("x-consumer-username") == "bob" and auth_seen.header("x-consumer-groups") == "staff"
        assert [v for k, v in auth_seen.headers if k.lower() == "x-consumer-username"] == ["bob"]


def test_cli_lists_plugins_and_hashes_passwords(capsys, monkeypatch, tmp_path):
    import io

    from fastgw.cli import main
    from fastgw.plugins.basic_auth import verify_password

    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert lines["jwt-auth"][1:4] == ["2600", "access", "yes"] and lines["cors"][2] == "rewrite,header_filter"
    cfg = tmp_path / "gw.yaml"
    cfg.write_text("plugin_modules: ['tests.plugins.sample:Tracer']\n")
    assert main(["plugins", str(cfg)]) == 0
    assert "tracer" in capsys.readouterr().out

    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse\n"))
    assert main(["hash-password", "--iterations", "1000"]) == 0
    stored = capsys.readouterr().out.strip()
    assert stored.startswith("pbkdf2_sha256$1000$") and verify_password("correct horse", stored)
    assert not verify_password("correct horse!", stored)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["hash-password"]) == 2
