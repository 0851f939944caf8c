"""Authorizers of templates and OpenAPI definitions translated into the `lambda-authorizer`, `jwt-auth` and
`multi-auth` plugins' configuration (issue 21, item 3). The translation is checked on the config it produces; the
TOKEN-authorizer template is also served end to end. Authorizers fastgw does not run (Cognito, IAM, API keys) fail
closed: their routes answer 401 unless --unenforced-auth open serves them as sam local does."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml

from fastgw.aws import sam
from fastgw.aws.intrinsics import load_yaml
from fastgw.config.errors import ConfigError
from fastgw.config.load import load_config
from fastgw.testing import http_request
from tests.aws.conftest import ECHO_PY, TEMPLATES, serving, write
from tests.functions.conftest import needs_node

TOKEN = TEMPLATES / "token-authorizer" / "template.yaml"


def _translate(template: Path) -> dict:
    return sam.translate(load_yaml(template.read_bytes(), str(template)), str(template), template.parent, {})


def _routes(config: dict, api: str) -> dict[str, dict]:
    return {f"{','.join(r['methods'])} {r['path']}": r.get("plugins", {}) for r in config["apis"][api]["routes"]}


def test_rest_token_authorizer_default_and_none():
    routes = _routes(_translate(TOKEN), "MyApi")
    assert routes["GET /"] == {
        "lambda-authorizer": {
            "function": "MyAuthFunction",
            "type": "token",
            "api": "rest",
            "payload_format": "1.0",
            "simple_responses": False,
            "identity_source": ["method.request.header.Authorization"],
            "validation_expression": "^Bearer [A-Za-z]+$",
            "ttl": 60,
        }
    }
    assert routes["GET /public"] == {}  # Auth.Authorizer: NONE


def _template(tmp_path: Path, text: str) -> Path:
    write(tmp_path, "src/app.py", ECHO_PY)
    return write(tmp_path, "template.yaml", "Transform: AWS::Serverless-2016-10-31\n" + text)


def test_rest_request_authorizer_identity_sources(tmp_path):
    template = _template(
        tmp_path,
        """
        Resources:
          Api:
            Type: AWS::Serverless::Api
            Properties:
              StageName: dev
              Auth:
                Authorizers:
                  Req:
                    FunctionPayloadType: REQUEST
                    FunctionArn: !GetAtt Auth.Arn
                    Identity:
                      Headers: [X-Key]
                      QueryStrings: [token]
                      StageVariables: [realm]
                      Context: [sourceIp]
                      ReauthorizeEvery: 0
          Auth:
            Type: AWS::Serverless::Function
            Properties: {CodeUri: src, Handler: app.handler, Runtime: python3.12}
          Fn:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: src
              Handler: app.handler
              Runtime: python3.12
              Events:
                Open: {Type: Api, Properties: {RestApiId: !Ref Api, Path: /open, Method: get}}
                Guarded:
                  Type: Api
                  Properties: {RestApiId: !Ref Api, Path: /guarded, Method: post, Auth: {Authorizer: Req}}
    """.replace("\n        ", "\n"),
    )
    routes = _routes(_translate(template), "Api")
    assert routes["GET /open"] == {}  # no DefaultAuthorizer
    conf = routes["POST /guarded"]["lambda-authorizer"]
    assert (conf["type"], conf["ttl"], conf["function"]) == ("request", 0, "Auth")
    assert conf["identity_source"] == [
        "method.request.header.X-Key", "method.request.querystring.token", "stageVariables.realm", "context.sourceIp",
    ]  # fmt: skip


def test_http_api_lambda_and_jwt_authorizers(tmp_path):
    template = _template(
        tmp_path,
        """
        Resources:
          Http:
            Type: AWS::Serverless::HttpApi
            Properties:
              Auth:
                DefaultAuthorizer: Lam
                Authorizers:
                  Lam:
                    FunctionArn: !GetAtt Auth.Arn
                    AuthorizerPayloadFormatVersion: "2.0"
                    EnableSimpleResponses: true
                    Identity: {Headers: [Authorization], ReauthorizeEvery: 30}
                  Oidc:
                    IdentitySource: $request.header.Authorization
                    JwtConfiguration: {issuer: "https://idp.example/pool", audience: [app]}
          Auth:
            Type: AWS::Serverless::Function
            Properties: {CodeUri: src, Handler: app.handler, Runtime: python3.12}
          Fn:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: src
              Handler: app.handler
              Runtime: python3.12
              Events:
                A: {Type: HttpApi, Properties: {ApiId: !Ref Http, Path: /a, Method: get}}
                B:
                  Type: HttpApi
                  Properties:
                    ApiId: !Ref Http
                    Path: /b
                    Method: get
                    Auth: {Authorizer: Oidc, AuthorizationScopes: [read]}
    """.replace("\n        ", "\n"),
    )
    routes = _routes(_translate(template), "Http")
    assert routes["GET /a"]["lambda-authorizer"] == {
        "function": "Auth", "type": "request", "api": "http", "payload_format": "2.0", "simple_responses": True,
        "identity_source": ["method.request.header.Authorization"], "validation_expression": None, "ttl": 30,
    }  # fmt: skip
    assert routes["GET /b"] == {
        "jwt-auth": {
            "issuer": "https://idp.example/pool",
            "jwks_url": "https://idp.example/pool/.well-known/jwks.json",
            "header_names": ["authorization"],
            "audience": ["app"],
            "scopes": ["read"],
        }
    }


def test_openapi_security_schemes_and_any_of(tmp_path):
    write(tmp_path, "fn/app.py", ECHO_PY)
    write(
        tmp_path,
        "api.yaml",
        """
        swagger: "2.0"
        securityDefinitions:
          tok:
            type: apiKey
            name: Authorization
            in: header
            x-amazon-apigateway-authtype: custom
            x-amazon-apigateway-authorizer:
              type: token
              authorizerUri: arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/AUTHZ_ARN/invocations
              identityValidationExpression: "^Bearer .+$"
              authorizerResultTtlInSeconds: 120
          jwt:
            type: oauth2
            x-amazon-apigateway-authorizer:
              type: jwt
              identitySource: $request.header.X-Jwt
              jwtConfiguration: {issuer: "https://issuer.example", audience: [a1]}
          key: {type: apiKey, name: x-api-key, in: header}
        security: [{tok: []}]
        paths:
          /default:
            get:
              x-amazon-apigateway-integration: {type: aws_proxy, uri: "arn:aws:lambda:us-east-1:1:function:echo"}
          /either:
            get:
              security: [{tok: []}, {jwt: [scope1]}]
              x-amazon-apigateway-integration: {type: aws_proxy, uri: "arn:aws:lambda:us-east-1:1:function:echo"}
          /open:
            get:
              security: []
              x-amazon-apigateway-integration: {type: aws_proxy, uri: "arn:aws:lambda:us-east-1:1:function:echo"}
    """.replace("AUTHZ_ARN", "arn:aws:lambda:us-east-1:1:function:authz"),
    )
    config = write(
        tmp_path,
        "fastgw.yaml",
        """
        functions:
          echo: {runtime: python, code: fn, handler: app.handler}
          authz: {runtime: python, code: fn, handler: app.handler}
        apis: {a: {type: rest, openapi: api.yaml, stages: {v1: {}}}}
    """,
    )
    from fastgw.aws import openapi

    data = openapi.expand_config(yaml.safe_load(config.read_text()), str(config), tmp_path)
    routes = _routes(data, "a")
    tok = {
        "function": "authz", "type": "token", "api": "rest", "payload_format": "1.0", "simple_responses": False,
        "identity_source": ["method.request.header.Authorization"], "validation_expression": "^Bearer .+$",
        "ttl": 120,
    }  # fmt: skip
    assert routes["GET /default"] == {"lambda-authorizer": tok}
    jwt = {"issuer": "https://issuer.example", "jwks_url": "https://issuer.example/.well-known/jwks.json",
           "header_names": ["x-jwt"], "audience": ["a1"], "scopes": ["scope1"]}  # fmt: skip
    assert routes["GET /either"] == {"multi-auth": {"auth_plugins": [{"lambda-authorizer": tok}, {"jwt-auth": jwt}]}}
    assert routes["GET /open"] == {}


def test_authorizer_errors_name_the_key(tmp_path):
    template = _template(
        tmp_path,
        """
        Resources:
          Api:
            Type: AWS::Serverless::Api
            Properties:
              StageName: dev
              Auth: {DefaultAuthorizer: Missing, Authorizers: {}}
          Fn:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: src
              Handler: app.handler
              Runtime: python3.12
              Events:
                A: {Type: Api, Properties: {RestApiId: !Ref Api, Path: /a, Method: get}}
    """.replace("\n        ", "\n"),
    )
    with pytest.raises(ConfigError) as err:
        load_config(template)
    assert err.value.path == "$.Resources.Api.Properties.Auth.DefaultAuthorizer"


@needs_node
async def test_token_authorizer_template_end_to_end(caplog):
    with caplog.at_level(logging.WARNING, logger="fastgw.aws"):
        async with serving(TOKEN) as srv:
            r = await http_request(srv.port, "GET", "/public")
            assert (r.status, json.loads(r.body)["message"]) == (200, "hello")
            r = await http_request(srv.port, "GET", "/")
            assert (r.status, r.body) == (401, b'{"message":"Unauthorized"}')
            r = await http_request(srv.port, "GET", "/", headers={"Authorization": "Bearer unauthorized"})
            assert r.status == 401
            r = await http_request(srv.port, "GET", "/", headers={"Authorization": "Bearer deny"})
            assert r.status == 403
            r = await http_request(srv.port, "GET", "/", headers={"Authorization": "Bearer allow"})
            assert r.status == 200
            authorizer = json.loads(r.body)["authorizer"]
            assert (authorizer["principalId"], authorizer["tier"]) == ("user", "gold")


SIMPLE_AUTHORIZER = """
def handler(event, context):
    return {"isAuthorized": event["headers"].get("authorization") == "secret", "context": {"who": "simple"}}
"""


async def test_http_api_simple_response_authorizer_end_to_end(tmp_path):
    write(tmp_path, "src/authz.py", SIMPLE_AUTHORIZER)
    template = _template(
        tmp_path,
        """
        Resources:
          Http:
            Type: AWS::Serverless::HttpApi
            Properties:
              Auth:
                DefaultAuthorizer: Simple
                Authorizers:
                  Simple:
                    FunctionArn: !GetAtt Authz.Arn
                    AuthorizerPayloadFormatVersion: "2.0"
                    EnableSimpleResponses: true
                    Identity: {Headers: [Authorization]}
          Authz:
            Type: AWS::Serverless::Function
            Properties: {CodeUri: src, Handler: authz.handler, Runtime: python3.12}
          Fn:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: src
              Handler: app.handler
              Runtime: python3.12
              Events:
                Get: {Type: HttpApi, Properties: {ApiId: !Ref Http, Path: /data, Method: get}}
    """.replace("\n        ", "\n"),
    )
    async with serving(template) as srv:
        r = await http_request(srv.port, "GET", "/data")
        assert r.status == 401  # no identity source at all
        r = await http_request(srv.port, "GET", "/data", headers={"Authorization": "wrong"})
        assert r.status == 403
        r = await http_request(srv.port, "GET", "/data", headers={"Authorization": "secret"})
        assert r.status == 200
        assert json.loads(r.body)["event"]["requestContext"]["authorizer"]["lambda"]["who"] == "simple"


TOKEN_OR_KEY = """
def token(event, context):
    effect = "Allow" if event["authorizationToken"] == "Bearer good" else "Deny"
    return _policy(effect, event["methodArn"], "by-token")


def key(event, context):
    effect = "Allow" if (event.get("queryStringParameters") or {}).get("key") == "k1" else "Deny"
    return _policy(effect, event["methodArn"], "by-key")


def _policy(effect, arn, who):
    statement = [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": arn}]
    return {"principalId": who, "policyDocument": {"Version": "2012-10-17", "Statement": statement}}
"""

ANY_OF = """
openapi: 3.0.1
components:
  securitySchemes:
    tok:
      type: apiKey
      name: Authorization
      in: header
      x-amazon-apigateway-authorizer:
        type: token
        authorizerUri: arn:aws:lambda:us-east-1:1:function:by-token
        authorizerResultTtlInSeconds: 0
    key:
      type: apiKey
      name: key
      in: query
      x-amazon-apigateway-authorizer:
        type: request
        identitySource: method.request.querystring.key
        authorizerUri: arn:aws:lambda:us-east-1:1:function:by-key
        authorizerResultTtlInSeconds: 0
paths:
  /either:
    get:
      security: [{tok: []}, {key: []}]
      x-amazon-apigateway-integration: {type: aws_proxy, uri: "arn:aws:lambda:us-east-1:1:function:echo"}
"""


async def test_openapi_any_of_two_lambda_authorizers_end_to_end(tmp_path):
    write(tmp_path, "fn/app.py", ECHO_PY)
    write(tmp_path, "fn/authz.py", TOKEN_OR_KEY)
    write(tmp_path, "api.yaml", ANY_OF)
    config = write(
        tmp_path,
        "fastgw.yaml",
        """
        functions:
          echo: {runtime: python, code: fn, handler: app.handler}
          by-token: {runtime: python, code: fn, handler: authz.token}
          by-key: {runtime: python, code: fn, handler: authz.key}
        apis: {a: {type: rest, openapi: api.yaml, stages: {v1: {}}}}
        logging: {access_log: false}
    """,
    )
    async with serving(config) as srv:
        r = await http_request(srv.port, "GET", "/v1/either", headers={"Authorization": "Bearer good"})
        assert r.status == 200
        assert json.loads(r.body)["event"]["requestContext"]["authorizer"]["principalId"] == "by-token"
        r = await http_request(srv.port, "GET", "/v1/either?key=k1")
        assert r.status == 200
        assert json.loads(r.body)["event"]["requestContext"]["authorizer"]["principalId"] == "by-key"
        r = await http_request(srv.port, "GET", "/v1/either?key=nope", headers={"Authorization": "Bearer bad"})
        assert r.status in (401, 403)
        r = await http_request(srv.port, "GET", "/v1/either")
        assert r.status == 401


UNENFORCED = """
Resources:
  Api:
    Type: AWS::Serverless::Api
    Properties:
      StageName: dev
      Auth:
        DefaultAuthorizer: Pool
        Authorizers:
          Pool: {UserPoolArn: arn:aws:cognito-idp:us-east-1:1:userpool/x}
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src
      Handler: app.handler
      Runtime: python3.12
      Events:
        Pool: {Type: Api, Properties: {RestApiId: !Ref Api, Path: /pool, Method: get}}
        Iam: {Type: Api, Properties: {RestApiId: !Ref Api, Path: /iam, Method: get, Auth: {Authorizer: AWS_IAM}}}
        Open: {Type: Api, Properties: {RestApiId: !Ref Api, Path: /open, Method: get, Auth: {Authorizer: NONE}}}
  IamApi:
    Type: AWS::Serverless::Api
    Properties: {StageName: dev, Auth: {DefaultAuthorizer: AWS_IAM}}
  Fn2:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src
      Handler: app.handler
      Runtime: python3.12
      Events:
        Def: {Type: Api, Properties: {RestApiId: !Ref IamApi, Path: /default-iam, Method: get}}
"""


@pytest.mark.parametrize("mode", ["closed", "open"])
async def test_authorizers_fastgw_does_not_run_fail_closed_unless_asked_open(tmp_path, caplog, mode):
    """Cognito, an event's AWS_IAM and an API's DefaultAuthorizer AWS_IAM were served with no auth at all: now 401
    (nothing reaches the function) unless --unenforced-auth open, and listed once at start either way."""
    template = _template(tmp_path, UNENFORCED)
    given = {"unenforced_auth": "open"} if mode == "open" else {}
    with caplog.at_level(logging.WARNING, logger="fastgw.aws"):
        async with serving(template, **given) as srv:
            for path in ("/pool", "/iam", "/default-iam"):
                r = await http_request(srv.port, "GET", path)
                if mode == "closed":
                    assert (r.status, r.body) == (401, b'{"message":"Unauthorized"}'), path
                else:
                    assert r.status == 200, (path, r.body)
            r = await http_request(srv.port, "GET", "/open")
            assert r.status == 200
    said = [rec.getMessage() for rec in caplog.records if "does not run" in rec.getMessage()]
    assert len(said) == 1 and all(p in said[0] for p in ("GET /pool", "GET /iam", "GET /default-iam"))
    assert ("WITHOUT authorization" in said[0]) == (mode == "open")


def test_an_openapi_alternative_fastgw_does_not_run_admits_nobody_but_leaves_the_others(tmp_path):
    write(tmp_path, "auth/auth.py", "def handler(event, context):\n    return {}\n")
    write(
        tmp_path,
        "api.yaml",
        """
        openapi: 3.0.1
        components:
          securitySchemes:
            key: {type: apiKey, name: x-api-key, in: header}
            fn:
              type: apiKey
              name: Authorization
              in: header
              x-amazon-apigateway-authorizer:
                type: token
                authorizerUri: arn:aws:lambda:us-east-1:1:function:auth
        paths:
          /either:
            get:
              security: [{key: []}, {fn: []}]
              x-amazon-apigateway-integration: {type: mock, requestTemplates: {application/json: '{"statusCode": 200}'}}
          /key:
            get:
              security: [{key: []}]
              x-amazon-apigateway-integration: {type: mock, requestTemplates: {application/json: '{"statusCode": 200}'}}
    """,
    )
    config = write(
        tmp_path,
        "fastgw.yaml",
        """
        functions: {auth: {runtime: python, code: auth, handler: auth.handler}}
        apis: {a: {type: rest, openapi: api.yaml, stages: {v1: {}}}}
    """,
    )
    routes = {r.path: r for r in (e.route for e in load_config(config).entries)}
    assert set(routes["/either"].plugins) == {"lambda-authorizer"}  # the API key alternative admits nobody
    assert routes["/key"].integration.status == 401 and not routes["/key"].plugins


def test_the_unenforced_auth_flag_on_the_command_line(tmp_path, capsys):
    from fastgw.cli import main

    template = _template(tmp_path, UNENFORCED)
    main(["invoke", str(template), "GET", "/pool", "--json"])
    assert json.loads(capsys.readouterr().out)["status"] == 401
    assert main(["invoke", str(template), "GET", "/pool", "--json", "--unenforced-auth", "open"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == 200
    assert main(["check", str(template), "--unenforced-auth", "open"]) == 0
