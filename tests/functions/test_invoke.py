"""`fastgw invoke`: one request through the whole gateway without a port, reported like API Gateway's Test tab."""

from __future__ import annotations

import orjson
import pytest

from fastgw.cli import main
from tests.functions.conftest import write

CONFIG = """
functions:
  greet: {runtime: python, handler: app.greet, code: fn}
apis:
  shop:
    type: rest
    routes:
      - {path: '/hello/{name}', methods: [POST], integration: {type: lambda, function: greet}}
    stages:
      Prod: {variables: {tone: warm}}
"""

APP = """
import json
def greet(event, context):
    print("greeting", event["pathParameters"]["name"])
    if event["queryStringParameters"] and event["queryStringParameters"].get("fail"):
        raise RuntimeError("asked to fail")
    return {"statusCode": 200, "headers": {"x-tone": event["stageVariables"]["tone"]},
            "body": json.dumps({"hello": event["pathParameters"]["name"], "body": event["body"]})}
"""


@pytest.fixture
def config(tmp_path):
    write(tmp_path / "fn", "app.py", APP)
    path = tmp_path / "gw.yaml"
    path.write_text(CONFIG)
    return str(path)


def test_invoke_json_shows_event_result_and_logs(config, capsys):
    assert main(["invoke", config, "post", "/Prod/hello/ann", "-H", "X-Trace: 1", "-d", "hi", "--json"]) == 0
    out = orjson.loads(capsys.readouterr().out)
    assert out["status"] == 200 and orjson.loads(out["body"]) == {"hello": "ann", "body": "hi"}
    assert out["headers"]["x-tone"] == "warm" and out["route"] == "shop:POST /hello/{name}@Prod"
    fn = out["function"]
    event = fn["event"]
    assert event["httpMethod"] == "POST" and event["path"] == "/hello/ann" and event["resource"] == "/hello/{name}"
    assert event["headers"]["x-trace"] == "1" and event["body"] == "hi"
    assert event["requestContext"]["identity"]["sourceIp"] == "test-invoke-source-ip"
    assert fn["result"]["statusCode"] == 200 and fn["request_id"] == event["requestContext"]["requestId"]
    assert fn["logs"] == ["greeting ann"]


def test_invoke_shows_why_a_function_failed(config, capsys):
    assert main(["invoke", config, "POST", "/Prod/hello/bob", "-q", "fail=1", "--json"]) == 1
    out = orjson.loads(capsys.readouterr().out)
    assert out["status"] == 502 and orjson.loads(out["body"]) == {"message": "Internal server error"}
    assert out["function"]["error"]["errorType"] == "RuntimeError"
    assert out["function"]["error"]["errorMessage"] == "asked to fail"
    assert any("raise RuntimeError" in frame for frame in out["function"]["error"]["stackTrace"])
    assert out["error"] == "function error RuntimeError: asked to fail"


def test_invoke_text_layout_and_misses(config, capsys):
    assert main(["invoke", config, "POST", "/Prod/hello/cy"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("Request: POST /Prod/hello/cy\nStatus: 200\nLatency: ")
    assert "Endpoint request body after transformations: {" in text and "Function log: greeting cy" in text
    assert text.rstrip().endswith("Method completed with status: 200")
    assert main(["invoke", config, "GET", "/Prod/hello/cy", "--json"]) == 0
    out = orjson.loads(capsys.readouterr().out)
    assert out["status"] == 403 and "function" not in out  # nothing was invoked
    assert main(["invoke", config, "GET", "/x", "-H", "no-colon"]) == 2


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_invoke_of_a_failing_upstream_exits_1_and_logs_why(tmp_path, capsys):
    path = tmp_path / "gw.yaml"
    path.write_text(
        f"""
upstreams: {{down: {{targets: ["http://127.0.0.1:{_closed_port()}"]}}}}
routes:
  - {{path: /down, integration: {{type: http, upstream: down}}}}
  - {{path: /fine, integration: {{type: mock, status: 503, body: maintenance}}}}
"""
    )
    assert main(["invoke", str(path), "GET", "/down"]) == 1
    text = capsys.readouterr().out
    assert "Status: 502" in text
    log = text[text.index("\nLog\n") :]
    failed = [line for line in log.splitlines() if "Execution failed: " in line]
    # The upstream's failure, in the log section: why (the exchange's reason), and the gateway's own log line.
    assert failed and "connect to http://127.0.0.1:" in failed[0] and "failed" in failed[0], log
    assert any("Gateway log: " in line and "route=ANY /down -> 502" in line for line in log.splitlines()), log
    assert main(["invoke", str(path), "GET", "/down", "--json"]) == 1
    out = orjson.loads(capsys.readouterr().out)
    assert out["status"] == 502 and "connect to" in out["error"] and "-> 502" in out["gateway_log"][-1]
    # A 503 the route itself answers is an answer, not a failure of the integration.
    assert main(["invoke", str(path), "GET", "/fine"]) == 0
    assert "Execution failed" not in capsys.readouterr().out
