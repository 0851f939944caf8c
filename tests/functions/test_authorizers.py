"""Lambda authorizers (`lambda-authorizer`) as API Gateway runs them: real python and nodejs authorizer functions in
the gateway's worker pools, a real gateway, real sockets. Each authorizer writes every event it receives to a file,
so a test counts invocations (and reads the events) from the function's own side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from fastgw.cli import main
from fastgw.config.errors import ConfigError
from fastgw.config.load import load_config_bytes
from fastgw.testing import RawConnection, http_request
from tests.functions.conftest import ECHO_PY, needs_node, write
from tests.plugins.conftest import TWICE

AUTH_PY = """
import json, os

def _seen(event):
    with open(os.environ["SEEN"], "a") as f:
        f.write(json.dumps(event) + "\\n")

def _policy(principal, effect, resource, **context):
    return {"principalId": principal, "context": context or {"tenant": "acme", "n": 7, "ok": True},
            "policyDocument": {"Version": "2012-10-17",
                               "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}]}}

def token(event, context):
    _seen(event)
    tok = event["authorizationToken"].removeprefix("Bearer ")
    arn = event["methodArn"]
    if tok == "unauthorized":
        raise Exception("Unauthorized")
    if tok == "boom":
        raise RuntimeError("the authorizer broke")
    if tok == "malformed":
        return {"principalId": "x"}
    if tok == "nested":
        return _policy("x", "Allow", arn, user={"id": 1})
    if tok == "smuggle":
        return _policy("alice\\r\\nx-admin: true\\r\\n\\r\\nGET /internal HTTP/1.1", "Allow", arn)
    if tok == "smuggle-nul":
        return _policy("alice\\0", "Allow", arn)
    if tok == "smuggle-context":
        return _policy("carol", "Allow", arn, tenant="acme\\r\\nx-admin: true")
    if tok in ("public", "not-prod"):
        base = arn.split("/", 1)[0]
        if tok == "public":
            return _policy("user-public", "Allow", base + "/*/GET/public/*")
        doc = _policy("user-not-prod", "Allow", base + "/*/GET/*")
        doc["policyDocument"]["Statement"].append(
            {"Action": "execute-api:Invoke", "Effect": "Deny", "Resource": base + "/*/GET/Prod/*"})
        return doc
    if tok == "tab":
        return _policy("tab\\tbed", "Allow", arn, tenant="a\\tb")
    if tok == "deny":
        return _policy("user-deny", "Deny", arn)
    if tok == "elsewhere":
        return _policy("user-elsewhere", "Allow", arn.rsplit("/", 2)[0] + "/GET/nowhere")
    if tok == "wild":
        base = arn.split("/", 1)[0]
        doc = _policy("user-wild", "Allow", [base + "/*/GET/items/*", base + "/Prod/GET/"])
        doc["policyDocument"]["Statement"].append(
            {"Action": ["execute-api:*"], "Effect": "Deny", "Resource": base + "/*/POST/items/?"})
        return doc
    return _policy("user-" + tok, "Allow", arn)

def request(event, context):
    _seen(event)
    if event["headers"].get("x-user") != "ann":
        return _policy("nobody", "Deny", event["methodArn"])
    return _policy("ann", "Allow", "*", tenant=event["queryStringParameters"]["tenant"])

def http_v1(event, context):
    _seen(event)
    effect = "Allow" if event["identitySource"] == "good" else "Deny"
    return _policy("p-" + event["identitySource"], effect, event["methodArn"], plan="gold", seats=3)
"""

AUTH_JS = """
const fs = require("fs");
exports.simple = async (event) => {
  fs.appendFileSync(process.env.SEEN, JSON.stringify(event) + "\\n");
  const token = event.identitySource[0];
  if (token === "throw") throw new Error("the node authorizer broke");
  return {isAuthorized: token === "yes", context: {user: "u-" + token, level: 3, tags: ["a", "b"]}};
};
exports.token = async (event) => {
  fs.appendFileSync(process.env.SEEN, JSON.stringify(event) + "\\n");
  if (event.authorizationToken === "nope") throw new Error("Unauthorized");
  return {principalId: "node-user", policyDocument: {Version: "2012-10-17",
          Statement: [{Action: "execute-api:Invoke", Effect: "Allow", Resource: event.methodArn}]}};
};
"""

EXPLICIT_DENY = b'{"Message":"User is not authorized to access this resource with an explicit deny"}'
NOT_ALLOWED = b'{"Message":"User is not authorized to access this resource"}'


def functions(tmp_path: Path) -> dict[str, Any]:
    write(tmp_path / "fn", "echo.py", ECHO_PY)
    write(tmp_path / "auth", "auth.py", AUTH_PY)
    write(tmp_path / "authjs", "index.js", AUTH_JS)
    env = {"SEEN": str(tmp_path / "seen.jsonl")}
    return {
        "echo": {"runtime": "python", "handler": "echo.handler", "code": "fn"},
        "auth": {"runtime": "python", "handler": "auth.token", "code": "auth", "environment": env},
        "auth_request": {"runtime": "python", "handler": "auth.request", "code": "auth", "environment": env},
        "auth_v1": {"runtime": "python", "handler": "auth.http_v1", "code": "auth", "environment": env},
        "auth_js": {"runtime": "nodejs", "handler": "index.simple", "code": "authjs", "environment": env},
        "auth_js_token": {"runtime": "nodejs", "handler": "index.token", "code": "authjs", "environment": env},
    }


def rest_config(tmp_path: Path, authorizer: dict[str, Any], api_type: str = "rest") -> dict[str, Any]:
    integ = {"type": "lambda", "function": "echo"}
    return {
        "functions": functions(tmp_path),
        "apis": {
            "shop": {
                "type": api_type,
                "id": "abc123",
                "plugins": {"lambda-authorizer": authorizer},
                "routes": [
                    {"path": "/", "methods": ["GET"], "integration": integ},
                    {"path": "/items/{id}", "methods": ["GET", "POST"], "integration": integ},
                    {"path": "/other", "methods": ["GET"], "integration": integ},
                ],
                "stages": {"Prod": {"variables": {"color": "blue"}}}
                if api_type == "rest"
                else {"$default": {"variables": {"color": "blue"}}},
            }
        },
    }


def seen(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "seen.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def arn(method: str, path: str, stage: str = "Prod") -> str:
    return f"arn:aws:execute-api:local:000000000000:abc123/{stage}/{method}/{path}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": token}


async def test_token_authorizer_allows_denies_and_fails_as_api_gateway(fgw, tmp_path):
    srv = await fgw(rest_config(tmp_path, {"function": "auth", "ttl": 0}))
    for _ in TWICE:
        before = len(seen(tmp_path))
        r = await http_request(srv.port, "GET", "/Prod/items/1")
        assert (r.status, r.body) == (401, b'{"message":"Unauthorized"}')
        assert r.header("x-amzn-ErrorType") == "UnauthorizedException"
        assert len(seen(tmp_path)) == before  # a missing identity source never reaches the function

        r = await http_request(srv.port, "GET", "/Prod/items/1", headers=bearer("alice"))
        assert r.status == 200, r.body
        event = r.json()["event"]
        authz = event["requestContext"]["authorizer"]
        assert isinstance(authz.pop("integrationLatency"), int)
        # REST: principalId and the context flattened, every value a string.
        assert authz == {"principalId": "user-alice", "tenant": "acme", "n": "7", "ok": "true"}
        assert seen(tmp_path)[-1] == {
            "type": "TOKEN",
            "authorizationToken": "alice",
            "methodArn": arn("GET", "items/1"),
        }

        r = await http_request(srv.port, "GET", "/Prod/items/1", headers=bearer("deny"))
        assert (r.status, r.body) == (403, EXPLICIT_DENY)
        assert r.header("x-amzn-ErrorType") == "AccessDeniedException"
        r = await http_request(srv.port, "GET", "/Prod/items/1", headers=bearer("elsewhere"))
        assert (r.status, r.body) == (403, NOT_ALLOWED)
        r = await http_request(srv.port, "GET", "/Prod/items/1", headers=bearer("unauthorized"))
        assert (r.status, r.body) == (401, b'{"message":"Unauthorized"}')
        for broken in ("boom", "malformed", "nested"):
            r = await http_request(srv.port, "GET", "/Prod/items/1", headers=bearer(broken))
            assert (r.status, r.body) == (500, b'{"message": null}'), broken
            assert r.header("x-amzn-ErrorType") == "AuthorizerConfigurationException"
        r = await http_request(srv.port, "GET", "/Prod/", headers=bearer("root"))
        assert r.status == 200 and seen(tmp_path)[-1]["methodArn"] == arn("GET", "")
        assert len(seen(tmp_path)) == before + 8  # ttl 0: every request asked the function


@pytest.mark.parametrize("stage_prefix", [True, False])
async def test_the_method_arn_loses_only_the_prefix_the_route_is_served_under(fgw, tmp_path, stage_prefix):
    """Served under /Prod, /Prod/public/x is the resource public/x; served at the root (stage_prefix false, as `sam
    local` serves a template), /Prod/public/x is the resource Prod/public/x, which a policy for GET/public/* does not
    admit and a Deny of GET/Prod/* refuses."""
    cfg = rest_config(tmp_path, {"function": "auth", "ttl": 0})
    cfg["apis"]["shop"]["stage_prefix"] = stage_prefix
    cfg["apis"]["shop"]["routes"] = [
        {"path": "/{proxy+}", "methods": ["GET"], "integration": {"type": "lambda", "function": "echo"}}
    ]
    srv = await fgw(cfg)
    root = "/Prod" if stage_prefix else ""
    for _ in TWICE:
        r = await http_request(srv.port, "GET", root + "/public/x", headers=bearer("public"))
        assert r.status == 200, r.body
        assert seen(tmp_path)[-1]["methodArn"] == arn("GET", "public/x")
        r = await http_request(srv.port, "GET", root + "/Prod/public/x", headers=bearer("public"))
        assert (r.status, r.body) == (403, NOT_ALLOWED)
        assert seen(tmp_path)[-1]["methodArn"] == arn("GET", "Prod/public/x")
        r = await http_request(srv.port, "GET", root + "/Prod/x", headers=bearer("not-prod"))
        assert (r.status, r.body) == (403, EXPLICIT_DENY)
        r = await http_request(srv.port, "GET", root + "/x", headers=bearer("not-prod"))
        assert r.status == 200, r.body


async def test_validation_expression_refuses_without_calling_the_function(fgw, tmp_path):
    srv = await fgw(rest_config(tmp_path, {"function": "auth", "ttl": 0, "validation_expression": "Bearer [a-z]+"}))
    for _ in TWICE:
        before = len(seen(tmp_path))
        for token in ("Bearer 123", "bearer abc", "Bearer abc x", "xBearer abc"):
            r = await http_request(srv.port, "GET", "/Prod/items/1", headers=bearer(token))
            assert (r.status, r.body) == (401, b'{"message":"Unauthorized"}'), token
        assert len(seen(tmp_path)) == before
        r = await http_request(srv.port, "GET", "/Prod/items/1", headers=bearer("Bearer abc"))
        assert r.status == 200
        assert seen(tmp_path)[-1]["authorizationToken"] == "Bearer abc" and len(seen(tmp_path)) == before + 1


async def test_an_identity_source_sent_twice_is_refused_without_calling_the_function(fgw, tmp_path):
    """Issue 19, item 5: the authorizer would judge one value while the route's backend may read the other."""
    sources = "method.request.header.Authorization, method.request.querystring.tenant"
    srv = await fgw(rest_config(tmp_path, {"function": "auth_request", "type": "request", "identity_source": sources}))
    for _ in TWICE:
        conn = await RawConnection.open(srv.port)
        await conn.send(
            b"GET /Prod/items/1?tenant=t1 HTTP/1.1\r\nHost: a\r\nAuthorization: ann\r\nAuthorization: bob\r\n\r\n"
        )
        r = await conn.response()
        await conn.close()
        assert r.status == 400 and "More than one" in r.json()["message"], r.body
        r = await http_request(srv.port, "GET", "/Prod/items/1?tenant=t1&tenant=t2", headers=bearer("ann"))
        assert r.status == 400 and "More than one" in r.json()["message"], r.body
    assert seen(tmp_path) == []


async def test_policy_resources_with_wildcards(fgw, tmp_path):
    srv = await fgw(rest_config(tmp_path, {"function": "auth", "ttl": 0}))
    for _ in TWICE:
        wild = bearer("wild")
        assert (await http_request(srv.port, "GET", "/Prod/items/1", headers=wild)).status == 200
        assert (await http_request(srv.port, "GET", "/Prod/items/abc", headers=wild)).status == 200
        assert (await http_request(srv.port, "GET", "/Prod/", headers=wild)).status == 200
        r = await http_request(srv.port, "POST", "/Prod/items/7", headers=wild)
        assert (r.status, r.body) == (403, EXPLICIT_DENY)  # `?`: one character
        r = await http_request(srv.port, "POST", "/Prod/items/77", headers=wild)
        assert (r.status, r.body) == (403, NOT_ALLOWED)  # neither the Deny (`?`) nor an Allow (GET only) covers it
        r = await http_request(srv.port, "GET", "/Prod/other", headers=wild)
        assert (r.status, r.body) == (403, NOT_ALLOWED)


async def test_cached_answers_skip_the_function_and_their_policy_applies_elsewhere(fgw, tmp_path):
    srv = await fgw(rest_config(tmp_path, {"function": "auth", "ttl": 300}))
    r = await http_request(srv.port, "GET", "/Prod/items/1", headers=bearer("carl"))
    assert r.status == 200 and len(seen(tmp_path)) == 1
    for _ in TWICE:
        r = await http_request(srv.port, "GET", "/Prod/items/1", headers=bearer("carl"))
        assert r.status == 200, r.body
        authz = r.json()["event"]["requestContext"]["authorizer"]
        assert authz["principalId"] == "user-carl" and authz["tenant"] == "acme"
        # The cached policy allows GET /items/1 only: another path within the TTL is refused, as on AWS.
        r = await http_request(srv.port, "GET", "/Prod/other", headers=bearer("carl"))
        assert (r.status, r.body) == (403, NOT_ALLOWED)
        assert len(seen(tmp_path)) == 1
    r = await http_request(srv.port, "GET", "/Prod/items/1", headers=bearer("dora"))
    assert r.status == 200 and len(seen(tmp_path)) == 2  # another identity: asked


async def test_request_authorizer_with_header_query_and_stage_variable(fgw, tmp_path):
    # As REST's identitySource is written: one string, comma-separated.
    sources = "method.request.header.X-User, method.request.querystring.tenant, stageVariables.color"
    srv = await fgw(rest_config(tmp_path, {"function": "auth_request", "type": "request", "identity_source": sources}))
    for _ in TWICE:
        r = await http_request(srv.port, "GET", "/Prod/items/9", headers={"X-User": "ann"})
        assert (r.status, r.body) == (401, b'{"message":"Unauthorized"}')
        r = await http_request(srv.port, "GET", "/Prod/items/9?tenant=", headers={"X-User": "ann"})
        assert r.status == 401  # empty counts as missing
        r = await http_request(srv.port, "GET", "/Prod/items/9?tenant=t1", headers={"X-User": "bob"})
        assert (r.status, r.body) == (403, EXPLICIT_DENY)
        assert len(seen(tmp_path)) == 1  # bob's deny, cached (ttl 300 by default); the 401s never called
    r = await http_request(srv.port, "GET", "/Prod/items/9?tenant=t1&x=2", headers={"X-User": "ann"})
    assert r.status == 200
    assert r.json()["event"]["requestContext"]["authorizer"]["tenant"] == "t1"
    event = seen(tmp_path)[-1]
    ctx = event.pop("requestContext")
    assert ctx["stage"] == "Prod" and ctx["resourcePath"] == "/items/{id}" and ctx["apiId"] == "abc123"
    assert ctx["accountId"] == "000000000000" and ctx["httpMethod"] == "GET"
    assert event == {
        "type": "REQUEST",
        "methodArn": arn("GET", "items/9"),
        "resource": "/items/{id}",
        "path": "/items/9",
        "httpMethod": "GET",
        "headers": {"host": "test.local", "connection": "close", "x-user": "ann"},
        "multiValueHeaders": {"host": ["test.local"], "connection": ["close"], "x-user": ["ann"]},
        "queryStringParameters": {"tenant": "t1", "x": "2"},
        "multiValueQueryStringParameters": {"tenant": ["t1"], "x": ["2"]},
        "pathParameters": {"id": "9"},
        "stageVariables": {"color": "blue"},
    }
    # The cache's key is the three values: the same identity again is answered from it.
    assert (await http_request(srv.port, "GET", "/Prod/items/9?tenant=t1", headers={"X-User": "ann"})).status == 200
    assert len(seen(tmp_path)) == 2


@needs_node
async def test_http_api_simple_responses_from_a_node_authorizer(fgw, tmp_path):
    authorizer = {"function": "auth_js", "api": "http", "type": "request", "simple_responses": True, "ttl": 0,
                  "identity_source": ["$request.header.Authorization"]}  # fmt: skip
    srv = await fgw(rest_config(tmp_path, authorizer, api_type="http"))
    for _ in TWICE:
        r = await http_request(srv.port, "GET", "/items/3")
        assert (r.status, r.body) == (401, b'{"message":"Unauthorized"}')
        r = await http_request(srv.port, "GET", "/items/3", headers=bearer("no"))
        assert (r.status, r.body) == (403, b'{"message":"Forbidden"}')
        r = await http_request(srv.port, "GET", "/items/3", headers=bearer("throw"))
        assert (r.status, r.body) == (500, b'{"message":"Internal Server Error"}')
        r = await http_request(srv.port, "GET", "/items/3?q=1", headers=bearer("yes"))
        assert r.status == 200, r.body
        # HTTP API payload 2.0: the context as it was returned, under `lambda`.
        assert r.json()["event"]["requestContext"]["authorizer"] == {
            "lambda": {"user": "u-yes", "level": 3, "tags": ["a", "b"]}
        }
        event = seen(tmp_path)[-1]
        assert event["version"] == "2.0" and event["type"] == "REQUEST"
        assert event["routeArn"] == arn("GET", "items/3", stage="$default") and event["identitySource"] == ["yes"]
        assert event["routeKey"] == "GET /items/{id}" and event["rawPath"] == "/items/3"
        assert event["rawQueryString"] == "q=1" and event["pathParameters"] == {"id": "3"}
        assert event["headers"]["authorization"] == "yes" and event["stageVariables"] == {"color": "blue"}
        assert "body" not in event and "isBase64Encoded" not in event


async def test_http_api_payload_1_0_policy(fgw, tmp_path):
    authorizer = {"function": "auth_v1", "api": "http", "type": "request", "payload_format": "1.0",
                  "identity_source": ["$request.header.X-Key"]}  # fmt: skip
    srv = await fgw(rest_config(tmp_path, authorizer, api_type="http"))
    for _ in TWICE:
        r = await http_request(srv.port, "GET", "/items/5", headers={"X-Key": "good"})
        assert r.status == 200, r.body
        assert r.json()["event"]["requestContext"]["authorizer"] == {"lambda": {"plan": "gold", "seats": 3}}
        r = await http_request(srv.port, "GET", "/items/5", headers={"X-Key": "bad"})
        assert (r.status, r.body) == (403, b'{"message":"Forbidden"}')
    event = seen(tmp_path)[0]
    assert event["version"] == "1.0" and event["type"] == "REQUEST"
    assert event["identitySource"] == event["authorizationToken"] == "good"
    assert event["methodArn"] == arn("GET", "items/5", stage="$default") and event["resource"] == "/items/{id}"
    assert event["headers"]["x-key"] == "good" and "body" not in event
    assert len(seen(tmp_path)) == 2  # cached (ttl 300 by default): one call per identity


@needs_node
async def test_node_token_authorizer(fgw, tmp_path):
    srv = await fgw(rest_config(tmp_path, {"function": "auth_js_token", "ttl": 0}))
    for _ in TWICE:
        r = await http_request(srv.port, "POST", "/Prod/items/2", headers=bearer("t"))
        assert r.status == 200
        assert r.json()["event"]["requestContext"]["authorizer"]["principalId"] == "node-user"
        r = await http_request(srv.port, "POST", "/Prod/items/2", headers=bearer("nope"))
        assert (r.status, r.body) == (401, b'{"message":"Unauthorized"}')  # throw new Error("Unauthorized")


async def test_principal_and_context_reach_an_http_upstream(fgw, tmp_path, upstream):
    cfg = rest_config(
        tmp_path,
        {
            "function": "auth",
            "upstream_headers": {"X-Principal": "principalId", "X-Tenant": "tenant", "X-None": "absent"},
        },
    )
    cfg["upstreams"] = {"backend": {"targets": [upstream.url]}}
    cfg["apis"]["shop"]["routes"].append(
        {"path": "/proxied", "methods": ["GET"], "integration": {"type": "http", "upstream": "backend"}}
    )
    srv = await fgw(cfg)
    for _ in TWICE:
        upstream.received.clear()
        r = await http_request(srv.port, "GET", "/Prod/proxied", headers={**bearer("eve"), "X-Principal": "forged"})
        assert r.status == 200
        (got,) = upstream.received
        assert got.header("x-principal") == "user-eve" and got.header("x-tenant") == "acme"
        assert got.header("x-none") is None
        r = await http_request(srv.port, "GET", "/Prod/proxied", headers=bearer("deny"))
        assert r.status == 403 and len(upstream.received) == 1


async def test_a_principal_or_header_context_with_a_control_character_is_a_malformed_answer(fgw, tmp_path, upstream):
    """A principal no consumer claims names the consumer (X-Consumer-Username) and a context value upstream_headers
    names becomes a header: CR/LF/NUL in either would smuggle a header, or a second request onto the pooled
    upstream connection. API Gateway answers 500 to an answer it cannot use; the upstream receives nothing."""
    cfg = rest_config(tmp_path, {"function": "auth", "ttl": 0, "upstream_headers": {"X-Tenant": "tenant"}})
    cfg["consumers"] = {"zed": {}}  # with consumers, the upstream receives X-Consumer-Username
    cfg["upstreams"] = {"backend": {"targets": [upstream.url]}}
    cfg["apis"]["shop"]["routes"].append(
        {"path": "/proxied", "methods": ["GET"], "integration": {"type": "http", "upstream": "backend"}}
    )
    srv = await fgw(cfg)
    for _ in TWICE:
        upstream.received.clear()
        for token in ("smuggle", "smuggle-nul", "smuggle-context"):
            r = await http_request(srv.port, "GET", "/Prod/proxied", headers=bearer(token))
            assert (r.status, r.body) == (500, b'{"message": null}'), token
        assert upstream.received == []
        r = await http_request(srv.port, "GET", "/Prod/proxied", headers=bearer("tab"))  # a tab is a header's own
        assert r.status == 200
        (got,) = upstream.received
        assert got.header("x-consumer-username") == "tab\tbed" and got.header("x-tenant") == "a\tb"


async def test_the_principal_is_the_consumer_rate_limits_count(fgw, tmp_path):
    cfg = rest_config(tmp_path, {"function": "auth"})
    cfg["apis"]["shop"]["plugins"]["rate-limit"] = {"rate": 1, "burst": 1, "period": 60, "key": "consumer"}
    srv = await fgw(cfg)
    assert (await http_request(srv.port, "GET", "/Prod/items/1", headers=bearer("fay"))).status == 200
    r = await http_request(srv.port, "GET", "/Prod/items/1", headers=bearer("fay"))
    assert r.status == 429  # fay's bucket
    assert (await http_request(srv.port, "GET", "/Prod/items/1", headers=bearer("gus"))).status == 200


def test_fastgw_invoke_runs_the_authorizer(tmp_path, capsys):
    import yaml

    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(rest_config(tmp_path, {"function": "auth", "ttl": 0})))
    assert main(["invoke", str(path), "GET", "/Prod/items/1", "--json"]) in (0, 1)
    out = orjson.loads(capsys.readouterr().out)
    assert out["status"] == 401 and "function" not in out
    assert main(["invoke", str(path), "GET", "/Prod/items/1", "-H", "Authorization: deny", "--json"]) in (0, 1)
    assert orjson.loads(capsys.readouterr().out)["status"] == 403
    assert main(["invoke", str(path), "GET", "/Prod/items/1", "-H", "Authorization: ivy", "--json"]) == 0
    out = orjson.loads(capsys.readouterr().out)
    assert out["status"] == 200
    assert out["function"]["event"]["requestContext"]["authorizer"]["principalId"] == "user-ivy"


@pytest.mark.parametrize(
    ("conf", "path", "message"),
    [
        ({"function": "nope"}, ".function", "no function named 'nope'"),
        ({"function": "auth", "api": "http"}, ".type", "HTTP API authorizers are of type request"),
        ({"function": "auth", "simple_responses": True}, ".simple_responses", "payload_format 2.0"),
        ({"function": "auth", "type": "request", "validation_expression": "x"}, ".validation_expression", "token"),
        ({"function": "auth", "identity_source": ["method.request.querystring.t"]}, ".identity_source", "one header"),
        ({"function": "auth", "type": "request", "identity_source": []}, ".identity_source", "caching"),
        ({"function": "auth", "validation_expression": "("}, ".validation_expression", "regular expression"),
        (
            {"function": "auth", "type": "request", "identity_source": ["$context.nope"]},
            ".identity_source[0]",
            "$context.apiId",
        ),
        ({"function": "auth", "ttl": 3601}, ".ttl", "<= 3600"),
    ],
)
def test_config_errors_name_the_key(conf, path, message):
    raw = orjson.dumps(
        {
            "functions": {"auth": {"runtime": "python", "handler": "a.h"}},
            "routes": [{"path": "/", "integration": {"type": "mock"}, "plugins": {"lambda-authorizer": conf}}],
        }
    )
    with pytest.raises(ConfigError) as err:
        load_config_bytes(raw, "gw.json")
    assert err.value.path == "$.routes[0].plugins.lambda-authorizer" + path
    assert message in str(err.value)


async def test_multi_auth_with_a_lambda_authorizer(fgw, tmp_path):
    cfg = rest_config(tmp_path, {"function": "auth"})
    api = cfg["apis"]["shop"]
    multi = [{"lambda-authorizer": {"function": "auth", "ttl": 0}}, {"key-auth": {}}]
    api["plugins"] = {"multi-auth": {"auth_plugins": multi}}
    cfg["consumers"] = {"kim": {"credentials": {"key-auth": [{"key": "kim-key"}]}}}
    srv = await fgw(cfg)
    for _ in TWICE:
        r = await http_request(srv.port, "GET", "/Prod/items/1", headers=bearer("lee"))
        assert r.status == 200 and r.json()["event"]["requestContext"]["authorizer"]["principalId"] == "user-lee"
        # The authorizer (tried first, asynchronously) denies; key-auth, tried next, passes.
        r = await http_request(srv.port, "GET", "/Prod/items/1", headers={**bearer("deny"), "apikey": "kim-key"})
        assert r.status == 200 and r.json()["event"]["requestContext"]["authorizer"]["principalId"] == "kim"
        r = await http_request(srv.port, "GET", "/Prod/items/1", headers={"apikey": "kim-key"})
        assert r.status == 200
        # Neither: the first plugin's answer.
        r = await http_request(srv.port, "GET", "/Prod/items/1", headers={**bearer("deny"), "apikey": "bad"})
        assert (r.status, r.body) == (403, EXPLICIT_DENY)
        r = await http_request(srv.port, "GET", "/Prod/items/1")
        assert (r.status, r.body) == (401, b'{"message":"Unauthorized"}')


async def test_a_consumer_claims_its_principal_for_acls_and_consumer_headers(fgw, tmp_path, upstream):
    cfg = rest_config(tmp_path, {"function": "auth", "ttl": 0})
    cfg["consumers"] = {
        "alice": {"groups": ["admins"], "credentials": {"lambda-authorizer": [{"principal_id": "user-ann"}]}},
        "zed": {"groups": ["others"]},
    }
    cfg["apis"]["shop"]["plugins"]["acl"] = {"allow": ["admins"]}
    cfg["upstreams"] = {"backend": {"targets": [upstream.url]}}
    cfg["apis"]["shop"]["routes"].append(
        {"path": "/proxied", "methods": ["GET"], "integration": {"type": "http", "upstream": "backend"}}
    )
    srv = await fgw(cfg)
    for _ in TWICE:
        upstream.received.clear()
        r = await http_request(srv.port, "GET", "/Prod/proxied", headers=bearer("ann"))
        assert r.status == 200, r.body
        (got,) = upstream.received
        assert got.header("x-consumer-username") == "alice" and got.header("x-consumer-groups") == "admins"
        r = await http_request(srv.port, "GET", "/Prod/items/1", headers=bearer("ann"))
        assert r.status == 200, r.body
        assert r.json()["event"]["requestContext"]["authorizer"]["principalId"] == "user-ann"  # AWS's, unchanged
        r = await http_request(srv.port, "GET", "/Prod/proxied", headers=bearer("bo"))
        assert r.status == 403  # user-bo: authenticated, no consumer claims it, so in no group
        assert len(upstream.received) == 1


def test_two_consumers_cannot_claim_one_principal():
    consumers = {n: {"credentials": {"lambda-authorizer": [{"principal_id": "p"}]}} for n in ("a", "b")}
    raw = orjson.dumps(
        {
            "functions": {"auth": {"runtime": "python", "handler": "a.h"}},
            "consumers": consumers,
            "routes": [
                {"path": "/", "integration": {"type": "mock"}, "plugins": {"lambda-authorizer": {"function": "auth"}}}
            ],
        }
    )
    with pytest.raises(ConfigError, match="claim the same principal 'p'"):
        load_config_bytes(raw, "gw.json")


def test_per_request_work_is_done_once_at_load(tmp_path):
    """A header identity source knows its wire names, and a route its resource and ARN prefix, from load on: the
    request path no longer rebuilds them (header_names, plain_template, the ARN's fixed part)."""
    from fastgw.gateway import Gateway
    from fastgw.plugins.lambda_authorizer import parse_source

    assert parse_source("$request.header.X-Token").wire == {b"x-token", b"x_token"}
    assert parse_source("method.request.querystring.t").wire == frozenset()
    cfg = rest_config(tmp_path, {"function": "auth"})
    cfg["apis"]["shop"]["routes"].append(
        {"path": "/n/{id:[0-9]+}", "methods": ["GET"], "integration": {"type": "lambda", "function": "echo"}}
    )
    gw = Gateway(load_config_bytes(orjson.dumps(cfg), str(tmp_path / "gw.json"), tmp_path))
    try:
        info = next(r.info for r in gw.routes if r.info is not None and r.info.path == "/n/{id:[0-9]+}")
        assert (info.resource, info.prefix) == ("/n/{id}", "/Prod")
        assert info.arn_base == "arn:aws:execute-api:local:000000000000:abc123/Prod/"
    finally:
        gw.close()
