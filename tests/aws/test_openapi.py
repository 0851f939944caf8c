"""OpenAPI 3.0 and Swagger 2.0 definitions with API Gateway's extensions, from fastgw's own config
(`apis.NAME.openapi`) and from a SAM template's DefinitionBody / DefinitionUri, over real sockets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fastgw.config.errors import ConfigError
from fastgw.config.load import load_config
from fastgw.testing import EchoUpstream, http_request
from tests.aws.conftest import ECHO_PY, serving, write

INVALID_BODY = b'{"message":"Invalid request body"}'

PETS_OAS3 = """
openapi: 3.0.1
info: {title: pets, version: "1"}
x-amazon-apigateway-request-validators:
  all: {validateRequestBody: true, validateRequestParameters: true}
  params-only: {validateRequestBody: false, validateRequestParameters: true}
x-amazon-apigateway-cors:
  allowOrigins: ["https://shop.example"]
  allowMethods: [GET, POST]
  maxAge: 300
x-amazon-apigateway-binary-media-types: [image/png]
paths:
  /pets:
    post:
      operationId: createPet
      x-amazon-apigateway-request-validator: all
      parameters:
        - {name: x-tenant, in: header, required: true, schema: {type: string}}
        - {name: dry, in: query, required: true, schema: {type: string}}
      requestBody:
        required: true
        content:
          application/json: {schema: {$ref: "#/components/schemas/Pet"}}
      x-amazon-apigateway-integration:
        type: aws_proxy
        httpMethod: POST
        uri: arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/ECHO_ARN/invocations
    get:
      x-amazon-apigateway-request-validator: params-only
      parameters:
        - {name: limit, in: query, required: true}
      x-amazon-apigateway-integration:
        type: aws_proxy
        uri: arn:aws:lambda:us-east-1:123456789012:function:echo:live
  /notes:
    post:
      x-amazon-apigateway-request-validator: all
      x-amazon-apigateway-integration: {type: aws_proxy, uri: "arn:aws:lambda:us-east-1:1:function:echo"}
  /files/{proxy+}:
    x-amazon-apigateway-any-method:
      parameters: [{name: proxy, in: path, required: true}]
      x-amazon-apigateway-integration:
        type: http_proxy
        httpMethod: ANY
        uri: UPSTREAM/static/{proxy}
        requestParameters: {integration.request.path.proxy: method.request.path.proxy}
  /health:
    get:
      x-amazon-apigateway-integration:
        type: mock
        requestTemplates: {application/json: '{"statusCode": 200}'}
        responses:
          default:
            statusCode: "200"
            responseParameters: {method.response.header.X-Mock: "'yes'"}
            responseTemplates: {application/json: '{"ok": true}'}
components:
  schemas:
    Pet:
      type: object
      required: [name]
      properties:
        name: {type: string, minLength: 1}
        owner: {$ref: "#/components/schemas/Owner"}
    Owner:
      type: object
      properties: {id: {type: integer}}
"""


async def _pets(tmp_path: Path, up: EchoUpstream) -> Path:
    write(tmp_path, "fn/app.py", ECHO_PY)
    oas = PETS_OAS3.replace("UPSTREAM", up.url).replace(
        "ECHO_ARN", "arn:aws:lambda:us-east-1:123456789012:function:echo"
    )
    write(tmp_path, "pets.yaml", oas)
    return write(
        tmp_path,
        "fastgw.yaml",
        """
        functions:
          echo: {runtime: python, code: fn, handler: app.handler}
        apis:
          pets:
            type: rest
            openapi: pets.yaml
            stages: {v1: {}}
        logging: {access_log: false}
    """,
    )


async def test_openapi_file_in_fastgw_config_serves_its_integrations(tmp_path):
    async with EchoUpstream() as up:
        config = await _pets(tmp_path, up)
        async with serving(config) as srv:
            ok = {"x-tenant": "t1", "content-type": "application/json"}
            r = await http_request(srv.port, "POST", "/v1/pets?dry=1", headers=ok, body=b'{"name": "rex"}')
            assert r.status == 200, r.body
            event = json.loads(r.body)["event"]
            assert (event["resource"], event["requestContext"]["stage"]) == ("/pets", "v1")
            r = await http_request(srv.port, "GET", "/v1/pets?limit=3")
            assert r.status == 200
            # http_proxy: the greedy path parameter fills the URL's {proxy}
            r = await http_request(srv.port, "DELETE", "/v1/files/a/b.txt?x=1")
            assert r.status == 200
            assert up.received[-1].method == "DELETE"
            assert up.received[-1].path.startswith("/static/a/b.txt")
            r = await http_request(srv.port, "GET", "/v1/health")
            assert (r.status, json.loads(r.body), r.header("x-mock")) == (200, {"ok": True}, "yes")
            # x-amazon-apigateway-cors
            preflight = {"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"}
            r = await http_request(srv.port, "OPTIONS", "/v1/pets", headers=preflight)
            assert r.header("access-control-allow-origin") == "https://shop.example"
            assert r.header("access-control-max-age") == "300"


async def test_request_validators_answer_with_api_gateways_bytes(tmp_path):
    async with EchoUpstream() as up:
        config = await _pets(tmp_path, up)
        async with serving(config) as srv:
            for _ in range(2):  # twice: nothing kept between requests
                r = await http_request(srv.port, "POST", "/v1/pets", body=b'{"name": "rex"}')
                assert (r.status, r.body) == (
                    400,
                    b'{"message":"Missing required request parameters: [x-tenant, dry]"}',
                )
                assert r.header("x-amzn-errortype") == "BadRequestException"
                assert r.header("content-type") == "application/json"
                r = await http_request(srv.port, "GET", "/v1/pets?limit=")
                assert (r.status, r.body) == (400, b'{"message":"Missing required request parameters: [limit]"}')
                base = {"x-tenant": "t", "content-type": "application/json"}
                for body in (b'{"name": ""}', b"{not json", b"", b'{"name": "a", "owner": {"id": "x"}}'):
                    r = await http_request(srv.port, "POST", "/v1/pets?dry=1", headers=base, body=body)
                    assert (r.status, r.body) == (400, INVALID_BODY), body
                    assert r.header("x-amzn-errortype") == "BadRequestException"
                r = await http_request(srv.port, "POST", "/v1/pets?dry=1", headers=base, body=b'{"name": "a"}')
                assert r.status == 200
                # A text body where only a JSON model is given: the JSON model still judges it.
                text = {**base, "content-type": "text/plain"}
                r = await http_request(srv.port, "POST", "/v1/pets?dry=1", headers=text, body=b"rex")
                assert (r.status, r.body) == (400, INVALID_BODY)
                # No model at all: API Gateway's Empty model, any JSON object (an empty body is {}).
                for body, status in ((b"[1]", 400), (b"nope", 400), (b"", 200), (b'{"a": 1}', 200)):
                    r = await http_request(srv.port, "POST", "/v1/notes", body=body)
                    assert r.status == status, body


def test_openapi_errors_name_the_definition_and_its_key_path(tmp_path):
    write(tmp_path, "fn/app.py", ECHO_PY)
    write(
        tmp_path,
        "api.yaml",
        """
        openapi: 3.0.1
        paths:
          /x:
            get:
              x-amazon-apigateway-integration:
                type: aws_proxy
                uri: arn:aws:lambda:us-east-1:1:function:nobody
    """,
    )
    config = write(
        tmp_path,
        "fastgw.yaml",
        """
        functions: {echo: {runtime: python, code: fn, handler: app.handler}}
        apis: {a: {type: http, openapi: api.yaml}}
    """,
    )
    with pytest.raises(ConfigError) as err:
        load_config(config)
    assert err.value.source == str(tmp_path / "api.yaml")
    assert err.value.path == "$.paths./x.get.x-amazon-apigateway-integration.uri"
    (tmp_path / "fastgw.yaml").write_text("apis: {a: {type: http, openapi: missing.yaml}}\n")
    with pytest.raises(ConfigError) as err:
        load_config(config)
    assert (err.value.source, err.value.path) == (str(config), "$.apis.a.openapi")


SWAGGER_BODY = """
swagger: "2.0"
info: {title: orders}
x-amazon-apigateway-request-validators:
  body: {validateRequestBody: true, validateRequestParameters: false}
x-amazon-apigateway-request-validator: body
paths:
  /orders:
    post:
      consumes: [application/json]
      parameters:
        - {in: body, name: order, required: true, schema: {$ref: "#/definitions/Order"}}
      x-amazon-apigateway-integration:
        type: aws_proxy
        httpMethod: POST
        uri: !Sub arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Orders.Arn}/invocations
definitions:
  Order:
    type: object
    required: [qty]
    properties: {qty: {type: integer, minimum: 1}}
"""


@pytest.mark.parametrize("where", ["DefinitionBody", "DefinitionUri"])
async def test_sam_api_definition_body_and_uri_with_events(tmp_path, where):
    write(tmp_path, "src/app.py", ECHO_PY)
    if where == "DefinitionBody":
        body = "DefinitionBody:\n" + "\n".join("          " + line for line in SWAGGER_BODY.strip().splitlines())
    else:
        write(tmp_path, "openapi.yaml", SWAGGER_BODY)
        body = "DefinitionUri: openapi.yaml"
    template = tmp_path / "template.yaml"
    template.write_text(
        "Transform: AWS::Serverless-2016-10-31\n"
        "Resources:\n"
        "  Orders:\n"
        "    Type: AWS::Serverless::Function\n"
        "    Properties:\n"
        "      CodeUri: src\n"
        "      Handler: app.handler\n"
        "      Runtime: python3.12\n"
        "      Events:\n"
        "        List: {Type: Api, Properties: {Path: /orders, Method: get, RestApiId: !Ref OrdersApi}}\n"
        "  OrdersApi:\n"
        "    Type: AWS::Serverless::Api\n"
        "    Properties:\n"
        "      StageName: live\n"
        f"      {body}\n"
    )
    async with serving(template) as srv:
        r = await http_request(
            srv.port, "POST", "/orders", headers={"content-type": "application/json"}, body=b'{"qty": 0}'
        )
        assert (r.status, r.body) == (400, INVALID_BODY)
        r = await http_request(
            srv.port, "POST", "/orders", headers={"content-type": "application/json"}, body=b'{"qty": 2}'
        )
        assert r.status == 200
        assert json.loads(r.body)["event"]["requestContext"]["stage"] == "live"
        r = await http_request(srv.port, "GET", "/orders")  # the event's route beside the definition's
        assert r.status == 200


async def test_http_api_definition_with_shared_integrations_and_default_route(tmp_path):
    write(tmp_path, "fn/app.py", ECHO_PY)
    write(
        tmp_path,
        "http.yaml",
        """
        openapi: 3.0.1
        paths:
          /$default:
            x-amazon-apigateway-any-method:
              x-amazon-apigateway-integration: {$ref: "#/components/x-amazon-apigateway-integrations/echo"}
        components:
          x-amazon-apigateway-integrations:
            echo: {type: aws_proxy, uri: "arn:aws:lambda:us-east-1:1:function:echo", payloadFormatVersion: "2.0"}
        """,
    )
    config = write(
        tmp_path,
        "fastgw.yaml",
        """
        functions: {echo: {runtime: python, code: fn, handler: app.handler}}
        apis: {h: {type: http, openapi: http.yaml}}
        logging: {access_log: false}
        """,
    )
    async with serving(config) as srv:
        for path in ("/", "/deep/er"):
            r = await http_request(srv.port, "PUT", path)
            assert r.status == 200
            assert json.loads(r.body)["event"]["rawPath"] == path


OPENAPI_TWICE_YAML = """openapi: 3.0.1
paths:
  /admin:
    get:
      security: [{key: []}]
      x-amazon-apigateway-integration: {type: http_proxy, httpMethod: GET, uri: "http://127.0.0.1:9/x"}
      security: []
"""
OPENAPI_TWICE_JSON = """{
  "openapi": "3.0.1",
  "paths": {
    "/admin": {
      "get": {
        "security": [{"key": []}],
        "x-amazon-apigateway-integration": {"type": "http_proxy", "httpMethod": "GET", "uri": "http://127.0.0.1:9/x"},
        "security": []
      }
    }
  }
}
"""


@pytest.mark.parametrize(("name", "text", "lines"), [("api.yaml", OPENAPI_TWICE_YAML, (5, 7)),
                                                     ("api.json", OPENAPI_TWICE_JSON, (6, 8))])  # fmt: skip
def test_an_openapi_file_with_a_key_given_twice_is_a_config_error(tmp_path, name, text, lines):
    """Issue 19, item 9: a second `security:` on an operation would silently replace the first (and open the route)."""
    (tmp_path / name).write_text(text)
    config = write(tmp_path, "fastgw.yaml", f"apis: {{a: {{type: http, openapi: {name}}}}}\n")
    with pytest.raises(ConfigError) as err:
        load_config(config)
    assert err.value.source == str(tmp_path / name)
    assert err.value.path == "$.paths./admin.get.security"
    assert (
        f"given twice in one {'mapping' if name.endswith('yaml') else 'object'} (lines {lines[0]} and {lines[1]})"
        in (err.value.message)
    )
