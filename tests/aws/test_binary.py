"""Binary bodies as API Gateway passes them (docs/functions.md, Binary bodies): a REST API's BinaryMediaTypes
decide whether a request body reaches the function base64-encoded (its Content-Type is one of them) or as text, and
whether a function's base64 body is decoded for the client (the first media type of its Accept header is one of
them); an HTTP API has no binary media types: non-text bodies are base64, base64 answers always decoded. A SAM
template, real Python and Node.js workers, real sockets."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from fastgw.config.errors import ConfigError
from fastgw.config.load import load_config
from fastgw.testing import http_request
from tests.aws.conftest import serving, write
from tests.functions.conftest import needs_node

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))  # not UTF-8: it survives only as base64

# Each function: a base64 body comes back as the same bytes, base64 again (image/png), with their sha256 in a header
# (so the test sees what the function got); a text body comes back in JSON, with the event's isBase64Encoded.
PY = """
import base64, hashlib, json

def handler(event, context):
    body = event.get("body") or ""
    if event["isBase64Encoded"]:
        raw = base64.b64decode(body)
        digest = hashlib.sha256(raw).hexdigest()
        return {"statusCode": 200, "headers": {"Content-Type": "image/png", "x-sha256": digest},
                "body": base64.b64encode(raw).decode(), "isBase64Encoded": True}
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"},
            "body": json.dumps({"text": body, "isBase64Encoded": event["isBase64Encoded"]})}
"""

NODE = """
const crypto = require("node:crypto");

exports.handler = async (event) => {
  const body = event.body || "";
  if (event.isBase64Encoded) {
    const raw = Buffer.from(body, "base64");
    return {statusCode: 200, headers: {"Content-Type": "image/png",
            "x-sha256": crypto.createHash("sha256").update(raw).digest("hex")},
            body: raw.toString("base64"), isBase64Encoded: true};
  }
  return {statusCode: 200, headers: {"Content-Type": "application/json"},
          body: JSON.stringify({text: body, isBase64Encoded: event.isBase64Encoded})};
};
"""

TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Globals:
  Function: {Timeout: 10}
Resources:
  Rest:
    Type: AWS::Serverless::Api
    Properties:
      StageName: Prod
      BinaryMediaTypes: ["image~1png", "application~1octet-stream"]
  Http:
    Type: AWS::Serverless::HttpApi
  Py:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: py
      Handler: app.handler
      Runtime: python3.12
      Events:
        Rest: {Type: Api, Properties: {RestApiId: !Ref Rest, Path: /py, Method: post}}
        Http: {Type: HttpApi, Properties: {ApiId: !Ref Http, Path: /h/py, Method: post}}
  Node:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: node
      Handler: index.handler
      Runtime: nodejs20.x
      Events:
        Rest: {Type: Api, Properties: {RestApiId: !Ref Rest, Path: /node, Method: post}}
        Http: {Type: HttpApi, Properties: {ApiId: !Ref Http, Path: /h/node, Method: post}}
"""

RUNTIMES = [pytest.param("py", id="python"), pytest.param("node", id="nodejs", marks=needs_node)]


def template(folder: Path) -> Path:
    write(folder / "py", "app.py", PY)
    write(folder / "node", "index.js", NODE)
    return write(folder, "template.yaml", TEMPLATE)


@pytest.mark.asyncio
@pytest.mark.parametrize("fn", RUNTIMES)
async def test_rest_api_png_round_trip_with_binary_media_types(tmp_path, fn):
    async with serving(template(tmp_path)) as srv:
        png = {"Content-Type": "image/png", "Accept": "image/png"}
        r = await http_request(srv.port, "POST", f"/{fn}", body=PNG, headers=png)
        assert r.status == 200, r.body
        assert r.header("x-sha256") == hashlib.sha256(PNG).hexdigest()  # the function got the bytes, base64
        assert r.body == PNG and r.header("content-type") == "image/png"  # and the client gets them back
        # The first Accept type decides (AWS: "API Gateway uses the first Accept header"): not a binary media type,
        # the client gets the function's base64 text as it is.
        for accept in ("application/json", "text/html, image/png", None):
            headers = {"Content-Type": "image/png", **({"Accept": accept} if accept else {})}
            r = await http_request(srv.port, "POST", f"/{fn}", body=PNG, headers=headers)
            assert r.status == 200 and r.body == base64.b64encode(PNG), accept
        # application/octet-stream is one too; media type parameters and case do not matter.
        headers = {"Content-Type": "Application/Octet-Stream; x=1", "Accept": "image/png;q=0.9"}
        r = await http_request(srv.port, "POST", f"/{fn}", body=PNG, headers=headers)
        assert r.body == PNG


@pytest.mark.asyncio
@pytest.mark.parametrize("fn", RUNTIMES)
async def test_rest_api_text_bodies_stay_text(tmp_path, fn):
    async with serving(template(tmp_path)) as srv:
        for ctype in ("application/json", "text/plain; charset=utf-8", "image/jpeg", None):
            headers = {"Content-Type": ctype} if ctype else {}
            r = await http_request(srv.port, "POST", f"/{fn}", body='{"word": "grüß"}'.encode(), headers=headers)
            assert r.status == 200, r.body
            # Not a binary media type (image/jpeg neither: the list names image/png): text, as AWS passes it.
            assert json.loads(r.body) == {"text": '{"word": "grüß"}', "isBase64Encoded": False}, ctype


@pytest.mark.asyncio
@pytest.mark.parametrize("fn", RUNTIMES)
async def test_http_api_ignores_binary_media_types(tmp_path, fn):
    async with serving(template(tmp_path)) as srv:
        # Its own rule: a non-text Content-Type is base64, and a base64 answer is decoded whatever the Accept.
        for accept in ("application/json", None):
            headers = {"Content-Type": "image/jpeg", **({"Accept": accept} if accept else {})}
            r = await http_request(srv.port, "POST", f"/h/{fn}", body=PNG, headers=headers)
            assert r.status == 200 and r.body == PNG, accept
            assert r.header("x-sha256") == hashlib.sha256(PNG).hexdigest()
        r = await http_request(
            srv.port, "POST", f"/h/{fn}", body=b'{"a": 1}', headers={"Content-Type": "application/json"}
        )
        assert json.loads(r.body) == {"text": '{"a": 1}', "isBase64Encoded": False}


@pytest.mark.asyncio
async def test_wildcards_and_openapi_binary_media_types(fastgw_gateway, tmp_path):
    write(tmp_path / "py", "app.py", PY)
    write(
        tmp_path,
        "api.yaml",
        """
        openapi: "3.0.1"
        info: {title: t, version: "1"}
        x-amazon-apigateway-binary-media-types: ["image/*"]
        paths:
          /up:
            post:
              x-amazon-apigateway-integration:
                {type: aws_proxy, httpMethod: POST, uri: "arn:aws:lambda:us-east-1:123456789012:function:py"}
        """,
    )
    fn = {"runtime": "python", "handler": "app.handler", "code": "py"}
    route = {"path": "/any", "methods": ["POST"], "integration": {"type": "lambda", "function": "py"}}
    cfg = {
        "functions": {"py": fn},
        "apis": {
            "img": {"type": "rest", "openapi": "api.yaml", "stages": {"v1": {}}},
            "all": {"type": "rest", "binary_media_types": ["*/*"], "routes": [route], "stages": {"v2": {}}},
        },
    }
    gw = await fastgw_gateway(cfg, base_dir=tmp_path)
    # image/* (from the definition) takes image/jpeg and an Accept of image/webp, not application/json.
    r = await http_request(
        gw.port, "POST", "/v1/up", body=PNG, headers={"Content-Type": "image/jpeg", "Accept": "image/webp"}
    )
    assert r.status == 200 and r.body == PNG
    r = await http_request(gw.port, "POST", "/v1/up", body=b"[1]", headers={"Content-Type": "application/json"})
    assert json.loads(r.body) == {"text": "[1]", "isBase64Encoded": False}
    # */* takes every body (JSON too) and every Accept, a missing one included.
    r = await http_request(gw.port, "POST", "/v2/any", body=b"[1]", headers={"Content-Type": "application/json"})
    assert r.body == b"[1]" and r.header("x-sha256") == hashlib.sha256(b"[1]").hexdigest()
    r = await http_request(gw.port, "POST", "/v2/any", body=PNG)
    assert r.body == PNG


def test_binary_media_types_that_are_not_a_list_of_media_types_are_config_errors(tmp_path):
    path = template(tmp_path)
    path.write_text(TEMPLATE.replace('["image~1png", "application~1octet-stream"]', "image~1png"))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "$.Resources.Rest.Properties.BinaryMediaTypes" in str(err.value) and "list of media types" in str(err.value)
    cfg = tmp_path / "gw.json"
    api = {"type": "rest", "binary_media_types": ["png"], "stages": {"v1": {}}}
    cfg.write_text(json.dumps({"apis": {"a": api}}))
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert "$.apis.a.binary_media_types[0]" in str(err.value)
