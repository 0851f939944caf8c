"""SAM templates served as `sam local start-api` serves them: the SAM CLI's hello-world templates unchanged, the
function properties, events, APIs, Globals, parameters, env-vars and the stage layout, over real sockets with real
function workers."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from fastgw.config.errors import ConfigError
from fastgw.config.load import load_config
from fastgw.testing import http_request
from tests.aws.conftest import ECHO_PY, TEMPLATES, options, serving, write
from tests.functions.conftest import needs_node

MISSING = b'{"message":"Missing Authentication Token"}'
# The SAM CLI's python hello-world is the shipped example (examples/sam-hello), served here as users serve it.
HELLO_PYTHON = TEMPLATES.parents[2] / "examples" / "sam-hello" / "template.yaml"


@pytest.mark.parametrize(
    "template", [HELLO_PYTHON, pytest.param(TEMPLATES / "hello-nodejs" / "template.yaml", marks=needs_node)]
)
async def test_sam_init_hello_world_serves_unchanged(template):
    async with serving(template) as srv:
        r = await http_request(srv.port, "GET", "/hello")
        assert r.status == 200
        assert json.loads(r.body) == {"message": "hello world"}
        assert r.header("content-type") == "application/json"
        # sam local's layout: no stage in the path; anything else is API Gateway's Missing Authentication Token.
        for method, path in (("GET", "/Prod/hello"), ("POST", "/hello"), ("GET", "/")):
            r = await http_request(srv.port, method, path)
            assert (r.status, r.body) == (403, MISSING)


async def test_stage_prefix_serves_under_the_stage_as_a_deployed_api():
    async with serving(HELLO_PYTHON, stage_prefix=True) as srv:
        r = await http_request(srv.port, "GET", "/Prod/hello")
        assert (r.status, json.loads(r.body)) == (200, {"message": "hello world"})
        r = await http_request(srv.port, "GET", "/hello")
        assert (r.status, r.body) == (403, MISSING)


def _echo_template(tmp_path: Path, resources: str, extra: str = "") -> Path:
    write(tmp_path, "src/app.py", ECHO_PY)
    text = "AWSTemplateFormatVersion: '2010-09-09'\nTransform: AWS::Serverless-2016-10-31\n"
    text += textwrap.dedent(extra).strip("\n") + "\n"
    text += "Resources:\n" + textwrap.indent(textwrap.dedent(resources).strip("\n"), "  ") + "\n"
    path = tmp_path / "template.yaml"
    path.write_text(text)
    return path


async def test_event_carries_the_stage_in_request_context_not_in_the_path(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="fastgw.aws")
    template = _echo_template(
        tmp_path,
        """
        Echo:
          Type: AWS::Serverless::Function
          Properties:
            CodeUri: src
            Handler: app.handler
            Runtime: python3.9
            Events:
              Items:
                Type: Api
                Properties: {Path: "/items/{id}", Method: ANY, RestApiId: !Ref MyApi}
        MyApi:
          Type: AWS::Serverless::Api
          Properties:
            StageName: dev
            Variables: {color: blue}
    """,
    )
    async with serving(template) as srv:
        r = await http_request(srv.port, "PATCH", "/items/7?q=1")
        assert r.status == 200
        event = json.loads(r.body)["event"]
        assert event["path"] == "/items/7"
        assert event["resource"] == "/items/{id}"
        assert event["pathParameters"] == {"id": "7"}
        assert event["requestContext"]["stage"] == "dev"
        assert event["stageVariables"] == {"color": "blue"}
        assert event["httpMethod"] == "PATCH"
    async with serving(template, stage_prefix=True) as srv:
        r = await http_request(srv.port, "GET", "/dev/items/7")
        event = json.loads(r.body)["event"]
        assert (event["path"], event["requestContext"]["path"]) == ("/items/7", "/dev/items/7")
    said = [r.getMessage() for r in caplog.records if r.name == "fastgw.aws"]
    assert any(m.endswith("1 functions; MyApi (rest, stage dev) at /") for m in said), said
    assert any(m.endswith("1 functions; MyApi (rest, stage dev) at /dev") for m in said), said


async def test_parameters_intrinsics_globals_and_env_vars(tmp_path):
    template = _echo_template(
        tmp_path,
        """
        Echo:
          Type: AWS::Serverless::Function
          Properties:
            CodeUri: src
            Handler: app.handler
            Runtime: python3.13
            MemorySize: 256
            Environment:
              Variables:
                STAGE: !Ref Stage
                SUB: !Sub "${Stage}-${AWS::Region}-${Echo.Arn}"
                SUB_LIST: !Sub ["${A}/${!Literal}", {A: !Ref Stage}]
                JOINED: !Join ["-", [a, !Ref Stage, !Select [1, !Split [",", "x,y,z"]]]]
                SIZE: !FindInMap [Sizes, !Ref Stage, Size]
                B64: !Base64 hi
                PROD_ONLY: !If [IsProd, "yes", "no"]
                BOTH: !If [ProdAndEu, "yes", "no"]
                EITHER: !If [ProdOrTest, "yes", "no"]
                TABLE: !Ref Table
                TABLE_ARN: !GetAtt Table.Arn
                DROPPED: !If [IsProd, "kept", !Ref AWS::NoValue]
                FROM_FILE: template
                IMPORTED: !ImportValue other-stack-output
            Events:
              Get:
                Type: Api
                Properties: {Path: /echo, Method: get}
        Table:
          Type: AWS::DynamoDB::Table
        Queue:
          Type: AWS::SQS::Queue
        """,
        """
        Globals:
          Function:
            Timeout: 5
            Environment:
              Variables: {GLOBAL: g, FROM_FILE: global}
        Parameters:
          Stage: {Type: String, Default: test, AllowedValues: [test, prod]}
        Mappings:
          Sizes:
            test: {Size: small}
            prod: {Size: large}
        Conditions:
          IsProd: !Equals [!Ref Stage, prod]
          IsEu: !Equals [!Ref "AWS::Region", eu-west-1]
          ProdAndEu: !And [!Condition IsProd, !Condition IsEu]
          ProdOrTest: !Or [!Condition IsProd, !Not [!Condition IsProd]]
        """,
    )
    env_file = tmp_path / "env.json"
    env_file.write_text(
        json.dumps({"Echo": {"FROM_FILE": "env.json", "UNDECLARED": "x"}, "Parameters": {"GLOBAL": "p"}})
    )
    given = {"parameter_overrides": {"Stage": "prod", "AWS::Region": "eu-west-1"}, "env_vars": str(env_file)}
    async with serving(template, **given) as srv:
        r = await http_request(srv.port, "GET", "/echo")
        assert r.status == 200, r.body
        env = json.loads(r.body)["env"]
    arn = "arn:aws:lambda:eu-west-1:123456789012:function:Echo"
    assert env["STAGE"] == "prod"
    assert env["SUB"] == f"prod-eu-west-1-{arn}"
    assert env["SUB_LIST"] == "prod/${Literal}"
    assert env["JOINED"] == "a-prod-y"
    assert env["SIZE"] == "large"
    assert env["B64"] == "aGk="
    assert (env["PROD_ONLY"], env["BOTH"], env["EITHER"]) == ("yes", "yes", "yes")
    assert env["TABLE"] == "Table"
    assert env["TABLE_ARN"] == "arn:aws:dynamodb:eu-west-1:123456789012:Table"
    assert env["DROPPED"] == "kept"
    assert env["IMPORTED"] == ""  # cannot resolve locally: a warning, empty
    assert env["FROM_FILE"] == "env.json"  # the function's own entry wins over Globals
    assert env["GLOBAL"] == "p"  # the file's Parameters apply to every function
    assert "UNDECLARED" not in env  # as sam: only variables the template declares
    assert env["AWS_SAM_LOCAL"] == "true"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    loaded = load_config(template)
    assert loaded.config.functions["Echo"].timeout == 5
    assert loaded.config.functions["Echo"].environment["STAGE"] == "test"
    assert loaded.config.functions["Echo"].environment["DROPPED"] == ""


def test_what_cannot_run_locally_is_a_warning_listed_once(tmp_path, caplog):
    template = _echo_template(
        tmp_path,
        """
        Echo:
          Type: AWS::Serverless::Function
          Properties:
            CodeUri: src
            Handler: app.handler
            Runtime: python3.12
            Events:
              Get: {Type: Api, Properties: {Path: /, Method: get}}
              Queue: {Type: SQS, Properties: {Queue: !GetAtt Jobs.Arn}}
        Jobs: {Type: AWS::SQS::Queue}
        Bucket: {Type: AWS::S3::Bucket}
        Java:
          Type: AWS::Serverless::Function
          Properties: {CodeUri: src, Handler: a.b, Runtime: java21}
    """,
    )
    with caplog.at_level(logging.WARNING, logger="fastgw.aws"):
        load_config(template)
        load_config(template)
    lines = [r.getMessage() for r in caplog.records]
    assert sum("not run locally" in line and "Jobs (AWS::SQS::Queue)" in line and "Bucket (AWS::S3::Bucket)" in line
               for line in lines) == 1  # fmt: skip
    assert sum("runtime 'java21' is not run" in line for line in lines) == 1
    assert sum("event Queue of type SQS is not served" in line for line in lines) == 1


@pytest.mark.parametrize(
    ("resources", "path", "message"),
    [
        ("Method: fetch", "$.Resources.Hello.Properties.Events.Hello.Properties.Method", "expected an HTTP method"),
        ("Path: hello", "$.Resources.Hello.Properties.Events.Hello.Properties.Path", "starting with '/'"),
        ("RestApiId: Nope", "$.Resources.Hello.Properties.Events.Hello.Properties.RestApiId", "expected a Ref"),
    ],
)
def test_template_errors_name_the_template_and_its_key_path(tmp_path, resources, path, message):
    props = {"Path": "/hello", "Method": "get"}
    key, _, value = resources.partition(": ")
    props[key] = value
    template = _echo_template(
        tmp_path,
        f"""
        Hello:
          Type: AWS::Serverless::Function
          Properties:
            CodeUri: src
            Handler: app.handler
            Runtime: python3.12
            Events:
              Hello: {{Type: Api, Properties: {json.dumps(props)}}}
    """,
    )
    with pytest.raises(ConfigError) as err:
        load_config(template)
    assert (err.value.source, err.value.path) == (str(template), path)
    assert message in err.value.message


def test_function_property_errors_name_the_template_key(tmp_path):
    template = _echo_template(
        tmp_path,
        """
        Hello:
          Type: AWS::Serverless::Function
          Properties: {CodeUri: src, Handler: nothere.handler, Runtime: nodejs20.x, MemorySize: 64}
    """,
    )
    with pytest.raises(ConfigError) as err:
        load_config(template)
    assert err.value.path == "$.Resources.Hello.Properties.MemorySize"
    template.write_text(template.read_text().replace(", MemorySize: 64", ""))
    with pytest.raises(ConfigError) as err:
        load_config(template)
    assert err.value.path == "$.Resources.Hello.Properties.Handler"
    assert "no nothere.mjs" in err.value.message


def test_parameters_without_a_default_need_an_override(tmp_path):
    template = _echo_template(
        tmp_path,
        """
        Hello:
          Type: AWS::Serverless::Function
          Properties: {CodeUri: src, Handler: app.handler, Runtime: python3.12, Environment: {Variables: {K: !Ref Key}}}
    """,
        "Parameters: {Key: {Type: String}}",
    )
    with pytest.raises(ConfigError) as err:
        load_config(template)
    assert err.value.path == "$.Parameters.Key" and "--parameter-overrides Key=VALUE" in err.value.message
    assert (
        load_config(template, options(parameter_overrides={"Key": "v"})).config.functions["Hello"].environment["K"]
        == "v"
    )
    with pytest.raises(ConfigError) as err:
        load_config(template, options(parameter_overrides={"Nope": "v"}))
    assert err.value.source == "--parameter-overrides"


@needs_node
async def test_zip_code_uri_commonjs_handler_and_foreach(tmp_path):
    with zipfile.ZipFile(tmp_path / "fn.zip", "w") as zf:
        zf.writestr(
            "lib/index.js",
            "exports.handler = async (e) => ({statusCode: 200, body: process.env.WHO + ' ' + e.rawPath});",
        )
    write(tmp_path, "src/app.py", ECHO_PY)
    template = write(
        tmp_path,
        "template.yaml",
        """
        Transform: [AWS::LanguageExtensions, AWS::Serverless-2016-10-31]
        Resources:
          Fn::ForEach::Greeters:
            - Who
            - [Ann, Bob]
            - ${Who}Function:
                Type: AWS::Serverless::Function
                Properties:
                  CodeUri: fn.zip
                  Handler: lib/index.handler
                  Runtime: nodejs18.x
                  Environment: {Variables: {WHO: !Ref Who}}
                  Events:
                    Hi: {Type: HttpApi, Properties: {Path: "/hi/&{Who}", Method: GET}}
    """,
    )
    async with serving(template) as srv:
        for who in ("Ann", "Bob"):
            r = await http_request(srv.port, "GET", f"/hi/{who}")
            assert (r.status, r.body) == (200, f"{who} /hi/{who}".encode())
        r = await http_request(srv.port, "GET", "/hi/Cid")
        assert (r.status, r.body) == (404, b'{"message":"Not Found"}')  # an HTTP API's miss


async def test_http_api_default_route_payload_and_cors(tmp_path):
    template = _echo_template(
        tmp_path,
        """
        Echo:
          Type: AWS::Serverless::Function
          Properties:
            CodeUri: src
            Handler: app.handler
            Runtime: python3.12
            Events:
              Everything: {Type: HttpApi, Properties: {ApiId: !Ref Http}}
              Old: {Type: HttpApi, Properties: {ApiId: !Ref Http, Path: /v1, Method: post, PayloadFormatVersion: "1.0"}}
        Http:
          Type: AWS::Serverless::HttpApi
          Properties:
            StageVariables: {tier: gold}
            CorsConfiguration: {AllowOrigins: ["https://app.example"], AllowMethods: [GET, POST], MaxAge: 60}
    """,
    )
    async with serving(template) as srv:
        for path in ("/", "/any/thing"):
            r = await http_request(srv.port, "DELETE", path)
            event = json.loads(r.body)["event"]
            assert (event["version"], event["rawPath"]) == ("2.0", path)
            assert event["stageVariables"] == {"tier": "gold"}
        r = await http_request(srv.port, "POST", "/v1")
        assert json.loads(r.body)["event"]["httpMethod"] == "POST"  # payload format 1.0
        preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
        r = await http_request(srv.port, "OPTIONS", "/any", headers=preflight)
        assert r.status in (200, 204)
        assert r.header("access-control-allow-origin") == "https://app.example"
        assert r.header("access-control-max-age") == "60"


async def test_rest_api_cors_from_sam_quoted_values(tmp_path):
    template = _echo_template(
        tmp_path,
        """
        Echo:
          Type: AWS::Serverless::Function
          Properties:
            CodeUri: src
            Handler: app.handler
            Runtime: python3.12
            Events:
              Get: {Type: Api, Properties: {Path: /c, Method: get}}
    """,
        """
        Globals:
          Api:
            Cors: {AllowOrigin: "'https://site.example'", AllowMethods: "'GET,OPTIONS'", AllowHeaders: "'X-Custom'"}
    """,
    )
    async with serving(template) as srv:
        r = await http_request(srv.port, "OPTIONS", "/c", headers={"Origin": "https://site.example",
                                                                   "Access-Control-Request-Method": "GET"})  # fmt: skip
        assert r.header("access-control-allow-origin") == "https://site.example"
        assert r.header("access-control-allow-headers") == "X-Custom"
        r = await http_request(srv.port, "GET", "/c", headers={"Origin": "https://site.example"})
        assert r.status == 200 and r.header("access-control-allow-origin") == "https://site.example"


async def test_cloudformation_apis_rest_body_and_http_quick_create(tmp_path):
    template = _echo_template(
        tmp_path,
        """
        Echo:
          Type: AWS::Lambda::Function
          Properties:
            Code: src
            Handler: app.handler
            Runtime: python3.12
        Inline:
          Type: AWS::Lambda::Function
          Properties:
            Code: {ZipFile: "def handler(event, context):\\n    return {'statusCode': 201, 'body': 'inline'}\\n"}
            Handler: index.handler
            Runtime: python3.11
        Rest:
          Type: AWS::ApiGateway::RestApi
          Properties:
            Body:
              swagger: "2.0"
              info: {title: rest}
              paths:
                /pets/{proxy+}:
                  x-amazon-apigateway-any-method:
                    x-amazon-apigateway-integration:
                      type: aws_proxy
                      httpMethod: POST
                      uri: !Sub "arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Echo.Arn}/\
                        invocations"
        RestStage:
          Type: AWS::ApiGateway::Stage
          Properties: {RestApiId: !Ref Rest, StageName: v1, Variables: {k: v}}
        Quick:
          Type: AWS::ApiGatewayV2::Api
          Properties: {ProtocolType: HTTP, Target: !GetAtt Inline.Arn, RouteKey: "GET /inline"}
    """,
    )
    async with serving(template) as srv:
        r = await http_request(srv.port, "PUT", "/pets/a/b")
        event = json.loads(r.body)["event"]
        assert (event["pathParameters"], event["requestContext"]["stage"]) == ({"proxy": "a/b"}, "v1")
        assert event["stageVariables"] == {"k": "v"}
        r = await http_request(srv.port, "GET", "/inline")
        assert (r.status, r.body) == (201, b"inline")


def test_cli_check_routes_and_invoke_take_a_template_and_its_flags(tmp_path):
    template = _echo_template(
        tmp_path,
        """
        Echo:
          Type: AWS::Serverless::Function
          Properties:
            CodeUri: src
            Handler: app.handler
            Runtime: python3.12
            Environment: {Variables: {MODE: !Ref Mode}}
            Events:
              Get: {Type: Api, Properties: {Path: /m, Method: get}}
    """,
        "Parameters: {Mode: {Type: String}}",
    )
    run = lambda *a: subprocess.run([sys.executable, "-m", "fastgw", *a], capture_output=True, text=True, timeout=60)  # noqa: E731
    r = run("check", str(template))
    assert r.returncode == 1 and "$.Parameters.Mode" in r.stderr
    r = run("check", str(template), "--parameter-overrides", "Mode=fast")
    assert r.returncode == 0, r.stderr
    assert "ok (1 routes, 0 upstreams, 1 functions, 1 apis)" in r.stdout
    r = run("routes", str(template), "--parameter-overrides", "ParameterKey=Mode,ParameterValue=x", "--stage-prefix")
    assert r.returncode == 0 and "/Prod/m" in r.stdout
    r = run("invoke", str(template), "GET", "/m", "--parameter-overrides", "Mode=slow", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(json.loads(r.stdout)["body"])["env"]["MODE"] == "slow"
    config = write(tmp_path, "fastgw.yaml", "routes: [{path: /, integration: {type: mock}}]")
    r = run("check", str(config), "--stage-prefix")
    assert r.returncode == 1 and "is for SAM/CloudFormation templates" in r.stderr


@pytest.mark.parametrize(
    "module", ["fastgw.aws", "fastgw.aws.sam", "fastgw.aws.sam_functions", "fastgw.aws.openapi", "fastgw.aws.validator"]
)
def test_each_module_imports_first_in_a_fresh_interpreter(module):
    # fastgw.config's package imports the loader, which imports fastgw.aws: no order of imports may be circular.
    r = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


async def test_fastgw_serve_process_with_the_template_flags(tmp_path):
    from tests.integration.gwprocess import GatewayProcess

    template = _echo_template(
        tmp_path,
        """
        Echo:
          Type: AWS::Serverless::Function
          Properties:
            CodeUri: src
            Handler: app.handler
            Runtime: python3.12
            Environment: {Variables: {MODE: !Ref Mode, FROM_FILE: template}}
            Events:
              Get: {Type: Api, Properties: {Path: /m, Method: get}}
        """,
        "Parameters: {Mode: {Type: String}}",
    )
    (tmp_path / "env.json").write_text(json.dumps({"Echo": {"FROM_FILE": "file"}}))
    gw = GatewayProcess(template, "--parameter-overrides", "Mode=fast", "--env-vars", str(tmp_path / "env.json"),
                        "--stage-prefix")  # fmt: skip
    await gw.start()
    try:
        r = await http_request(gw.port, "GET", "/Prod/m")
        assert r.status == 200
        env = json.loads(r.body)["env"]
        assert (env["MODE"], env["FROM_FILE"]) == ("fast", "file")
        r = await http_request(gw.port, "GET", "/m")
        assert (r.status, r.body) == (403, MISSING)
    finally:
        await gw.stop()


async def test_a_json_template(tmp_path, monkeypatch):
    monkeypatch.delenv("AWS_REGION", raising=False)  # sam local's default region, us-east-1
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    write(tmp_path, "src/app.py", ECHO_PY)
    template = tmp_path / "template.json"
    template.write_text(json.dumps({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Transform": "AWS::Serverless-2016-10-31",
        "Resources": {"Echo": {"Type": "AWS::Serverless::Function", "Properties": {
            "CodeUri": "src", "Handler": "app.handler", "Runtime": "python3.12",
            "Environment": {"Variables": {"ARN": {"Fn::GetAtt": ["Echo", "Arn"]}}},
            "Events": {"Get": {"Type": "Api", "Properties": {"Path": "/j", "Method": "GET"}}}}}},
    }))  # fmt: skip
    async with serving(template) as srv:
        r = await http_request(srv.port, "GET", "/j")
        assert json.loads(r.body)["env"]["ARN"] == "arn:aws:lambda:us-east-1:123456789012:function:Echo"


def test_deployment_stage_and_globals_error_paths(tmp_path):
    template = _echo_template(
        tmp_path,
        """
        Echo:
          Type: AWS::Lambda::Function
          Properties: {Code: src, Handler: app.handler, Runtime: python3.12}
        Rest:
          Type: AWS::ApiGateway::RestApi
          Properties:
            Body:
              openapi: 3.0.1
              paths:
                /x:
                  get:
                    x-amazon-apigateway-integration: {type: aws_proxy, uri: !GetAtt Echo.Arn}
        Deploy:
          Type: AWS::ApiGateway::Deployment
          Properties: {RestApiId: !Ref Rest, StageName: beta, StageDescription: {Variables: {v: "1"}}}
        """,
    )
    loaded = load_config(template)
    (entry,) = loaded.entries
    assert (entry.stage, entry.stage_variables, entry.path) == ("beta", {"v": "1"}, "/x")
    template = _echo_template(
        tmp_path,
        """
        Echo:
          Type: AWS::Serverless::Function
          Properties:
            CodeUri: src
            Handler: app.handler
            Runtime: python3.12
            Events:
              Get: {Type: Api, Properties: {Path: /c, Method: get}}
        """,
        "Globals: {Api: {Cors: 42}}",
    )
    with pytest.raises(ConfigError) as err:
        load_config(template)
    assert err.value.path == "$.Globals.Api.Cors"


def test_a_template_without_resources_says_so(tmp_path):
    template = write(tmp_path, "template.yaml", "AWSTemplateFormatVersion: '2010-09-09'\nDescription: empty\n")
    with pytest.raises(ConfigError) as err:
        load_config(template)
    assert (err.value.path, err.value.message) == ("$.Resources", "expected a mapping of resources")


async def test_sam_request_model_and_request_parameters_validate(tmp_path):
    template = _echo_template(
        tmp_path,
        """
        Api:
          Type: AWS::Serverless::Api
          Properties:
            StageName: dev
            Models:
              Order: {type: object, required: [qty], properties: {qty: {type: integer}}}
        Echo:
          Type: AWS::Serverless::Function
          Properties:
            CodeUri: src
            Handler: app.handler
            Runtime: python3.12
            Events:
              Post:
                Type: Api
                Properties:
                  RestApiId: !Ref Api
                  Path: /orders
                  Method: post
                  RequestModel: {Model: Order, Required: true, ValidateBody: true, ValidateParameters: true}
                  RequestParameters:
                    - method.request.header.X-Optional
                    - method.request.querystring.tenant: {Required: true}
              Unvalidated:
                Type: Api
                Properties:
                  RestApiId: !Ref Api
                  Path: /loose
                  Method: post
                  RequestModel: {Model: Order, Required: true}
        """,
    )
    async with serving(template) as srv:
        r = await http_request(srv.port, "POST", "/orders", body=b'{"qty": 1}')
        assert (r.status, r.body) == (400, b'{"message":"Missing required request parameters: [tenant]"}')
        r = await http_request(srv.port, "POST", "/orders?tenant=t", body=b'{"qty": "one"}')
        assert (r.status, r.body) == (400, b'{"message":"Invalid request body"}')
        r = await http_request(srv.port, "POST", "/orders?tenant=t", body=b'{"qty": 1}')
        assert r.status == 200
        r = await http_request(srv.port, "POST", "/loose", body=b"anything")  # no ValidateBody / ValidateParameters
        assert r.status == 200


def test_values_only_aws_has_are_errors_only_where_fastgw_needs_them(tmp_path):
    template = _echo_template(
        tmp_path,
        """
        Echo:
          Type: AWS::Serverless::Function
          Properties:
            CodeUri: src
            Handler: app.handler
            Runtime: python3.12
            Events:
              Get: {Type: Api, Properties: {Path: /a, Method: get}}
              Stream: {Type: SQS, Properties: {Queue: !ImportValue shared-queue-arn}}
        """,
    )
    assert [e.path for e in load_config(template).entries] == ["/a"]
    text = template.read_text().replace("Runtime: python3.12", "Runtime: !ImportValue runtime-of-the-day")
    template.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(template)
    assert err.value.path == "$.Resources.Echo.Properties.Runtime.Fn::ImportValue"
    assert "has no value outside AWS" in err.value.message


def test_a_number_that_is_not_one_names_its_key(tmp_path):
    template = _echo_template(
        tmp_path,
        """
        Echo:
          Type: AWS::Serverless::Function
          Properties:
            CodeUri: src
            Handler: app.handler
            Runtime: python3.12
            Events:
              Get: {Type: Api, Properties: {Path: /a, Method: get}}
        """,
        """Globals: {Api: {Cors: {AllowOrigin: "'*'", MaxAge: "'ten'"}}}""",
    )
    with pytest.raises(ConfigError) as err:
        load_config(template)
    assert err.value.path == "$.Globals.Api.Cors.MaxAge"
    assert err.value.message == "expected a whole number, got " + repr("'ten'")


def test_an_unexpected_shape_is_a_config_error_not_a_traceback(tmp_path):
    template = _echo_template(
        tmp_path,
        """
        Api:
          Type: AWS::Serverless::Api
          Properties:
            StageName: dev
            Auth: {Authorizers: {A: {FunctionArn: !GetAtt Echo.Arn, Identity: just-a-string}}}
        Echo:
          Type: AWS::Serverless::Function
          Properties: {CodeUri: src, Handler: app.handler, Runtime: python3.12}
        """,
    )
    with pytest.raises(ConfigError) as err:
        load_config(template)
    assert err.value.path == "$" and err.value.message.startswith("cannot read a SAM/CloudFormation template")


def test_a_template_with_a_key_given_twice_is_a_config_error(tmp_path):
    """Issue 19, item 9: a second `Auth:` on an event would silently replace the first (and open the route); the
    short tags (`!Ref`, `!Sub` on a scalar, a sequence or a mapping) read as before around it."""
    template = _echo_template(
        tmp_path,
        """
        Hello:
          Type: AWS::Serverless::Function
          Properties:
            CodeUri: !Sub "${Here}"
            Handler: app.handler
            Runtime: python3.12
            Environment: {Variables: {A: !Ref Here, B: !Join ["-", [x, !Select [1, [a, b]]]]}}
            Events:
              Hello:
                Type: Api
                Properties:
                  Path: /hello
                  Method: get
                  Auth: {Authorizer: Gate}
                  Auth: {Authorizer: NONE}
        """,
        extra="Parameters: {Here: {Type: String, Default: src}}",
    )
    with pytest.raises(ConfigError) as err:
        load_config(template)
    assert (err.value.source, err.value.path) == (
        str(template),
        "$.Resources.Hello.Properties.Events.Hello.Properties.Auth",
    )
    assert "given twice in one mapping (lines 18 and 19)" in err.value.message
    text = "".join(line for line in template.read_text().splitlines(True) if "Gate" not in line)
    template.write_text(text.replace("Auth: {Authorizer: NONE}", "Auth: {Authorizer: NONE, ApiKeyRequired: false}"))
    loaded = load_config(template)  # the same template with one Auth: the tags as before
    assert any(e.path == "/hello" for e in loaded.entries)
    assert loaded.config.functions["Hello"].environment == {"A": "src", "B": "x-b", "AWS_SAM_LOCAL": "true"}


def test_a_json_template_with_a_key_given_twice_is_a_config_error(tmp_path):
    write(tmp_path, "src/app.py", ECHO_PY)
    template = tmp_path / "template.json"
    template.write_text(
        '{"Transform": "AWS::Serverless-2016-10-31",\n'
        ' "Resources": {"Hello": {"Type": "AWS::Serverless::Function",\n'
        '   "Properties": {"CodeUri": "src", "Handler": "app.handler", "Runtime": "python3.12",\n'
        '     "Events": {"Hello": {"Type": "Api", "Properties": {"Path": "/hello", "Method": "get",\n'
        '       "Auth": {"Authorizer": "Gate"},\n'
        '       "Auth": {"Authorizer": "NONE"}}}}}}}}\n'
    )
    with pytest.raises(ConfigError) as err:
        load_config(template)
    assert (err.value.source, err.value.path) == (
        str(template),
        "$.Resources.Hello.Properties.Events.Hello.Properties.Auth",
    )
    assert "given twice in one object (lines 5 and 6)" in err.value.message
