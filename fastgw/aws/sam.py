"""A SAM (or plain CloudFormation) template read into fastgw's config, as `sam local start-api` reads it: functions
with their code, runtime and environment; REST and HTTP APIs (explicit, implicit, or defined by OpenAPI) with
their stage, stage variables, CORS and authorizers; everything else listed once as what does not run locally.

Functions, their code and environment, Globals and the template's parameters are read by
fastgw.aws.sam_functions; this module reads the APIs and the events into routes. The result is a plain config dict,
checked afterwards like any config; what the template itself gets wrong is a `ConfigError` naming the template and
the key path (`$.Resources.Fn.Properties.Events.Hello.Properties.Method`).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from fastgw.aws import auth, cors, openapi
from fastgw.aws._log import warn_once
from fastgw.aws.intrinsics import Unresolved, is_intrinsic, number, variable_text
from fastgw.aws.sam_functions import FUNCTION_TYPES, FunctionResources
from fastgw.config.errors import ConfigError

log = logging.getLogger("fastgw.aws")

# Read into routes; everything else in Resources is listed as not running locally.
SERVED_TYPES = (
    *FUNCTION_TYPES, "AWS::Serverless::Api", "AWS::Serverless::HttpApi", "AWS::ApiGateway::RestApi",
    "AWS::ApiGateway::Stage", "AWS::ApiGatewayV2::Api", "AWS::ApiGatewayV2::Stage",
)  # fmt: skip
# Resources that only wire what is read above (permissions, roles, deployments): neither served nor worth a warning.
QUIET_TYPES = (
    "AWS::Lambda::Permission", "AWS::IAM::Role", "AWS::IAM::Policy", "AWS::ApiGateway::Deployment",
    "AWS::ApiGatewayV2::Deployment", "AWS::Lambda::Version", "AWS::Lambda::Alias", "AWS::Logs::LogGroup",
    "AWS::ApiGateway::Account", "AWS::ApiGatewayV2::Integration", "AWS::ApiGatewayV2::Route",
)  # fmt: skip
IMPLICIT_REST = "ServerlessRestApi"
IMPLICIT_HTTP = "ServerlessHttpApi"


def translate(doc: dict[str, Any], source: str, base: Path, options: dict[str, Any]) -> dict[str, Any]:
    """The fastgw config (a dict) a template stands for. `options`: parameter_overrides (dict), env_vars (a file
    name), stage_prefix (bool)."""
    try:
        return _Template(doc, source, base, options).config()
    except Unresolved as exc:  # a value fastgw needs that only AWS has (Fn::ImportValue, Fn::GetAZs...)
        raise ConfigError(source, exc.at, f"{exc.message}; give a literal value (or a parameter)") from None


class _Template(FunctionResources):
    def __init__(self, doc: dict[str, Any], source: str, base: Path, options: dict[str, Any]) -> None:
        super().__init__(doc, source, base, options)
        self.apis: dict[str, dict[str, Any]] = {}
        self.upstreams: dict[str, Any] = {}
        self.plugin_modules: list[str] = []

    # -- the whole template -----------------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        not_local: list[str] = []
        for name, res in self.resources.items():
            at = f"$.Resources.{name}"
            if not isinstance(res, dict) or not isinstance(res.get("Type"), str):
                raise ConfigError(self.source, at, "expected a resource: a mapping with a Type")
            if not self._included(res, at):
                continue
            kind = res["Type"]
            if kind in FUNCTION_TYPES:
                self._function(name, res, at)
            elif kind not in SERVED_TYPES and kind not in QUIET_TYPES:
                not_local.append(f"{name} ({kind})")
        for name, res in self.resources.items():
            if not isinstance(res, dict) or not self._included(res, f"$.Resources.{name}"):
                continue
            at = f"$.Resources.{name}"
            if res["Type"] == "AWS::Serverless::Api":
                self._sam_api(name, self._props(res, at, "Api"), at, "rest")
            elif res["Type"] == "AWS::Serverless::HttpApi":
                self._sam_api(name, self._props(res, at, "HttpApi"), at, "http")
            elif res["Type"] == "AWS::ApiGateway::RestApi":
                self._cfn_rest_api(name, self._props(res, at), at)
            elif res["Type"] == "AWS::ApiGatewayV2::Api":
                self._cfn_http_api(name, self._props(res, at), at)
        for name, res in self.resources.items():
            if isinstance(res, dict) and res.get("Type") == "AWS::Serverless::Function" and name in self.functions:
                self._events(name, self._props(res, f"$.Resources.{name}", "Function"), f"$.Resources.{name}")
        if not_local:
            warn_once(f"{self.source}: not run locally (only functions and APIs are): {', '.join(not_local)}")
        config: dict[str, Any] = {"functions": self.functions, "apis": {}}
        for name, api in self.apis.items():
            if not any(r["methods"] for r in api["routes"]):
                continue
            api_conf = {k: v for k, v in api.items() if not k.startswith("_")}
            api_conf["routes"] = [
                {k: v for k, v in r.items() if not k.startswith("_")} for r in api["routes"] if r["methods"]
            ]
            config["apis"][name] = api_conf
        served = []
        for name, api in config["apis"].items():
            for stage in api["stages"] or {"$default": {}}:
                at = "/" if stage == "$default" or not api.get("stage_prefix", True) else f"/{stage}"
                served.append(f"{name} ({api['type']}, stage {stage}) at {at}")
        warn_once(
            f"{self.source}: {len(self.functions)} functions; " + ("; ".join(served) or "no APIs"), level=logging.INFO
        )
        if self.upstreams:
            config["upstreams"] = self.upstreams
        if self.plugin_modules:
            config["plugin_modules"] = sorted(set(self.plugin_modules))
        return config

    # -- APIs -------------------------------------------------------------------------------------------------

    def _api(self, name: str, kind: str, at: str) -> dict[str, Any]:
        api = self.apis.get(name)
        if api is None:
            api = self.apis[name] = {"type": kind, "routes": [], "stages": {}, "plugins": {}, "_at": at, "_keys": {}}
            if kind == "rest":
                api["stage_prefix"] = self.stage_prefix
        return api

    def _sam_api(self, name: str, props: dict[str, Any], at: str, kind: str, pat: str | None = None) -> None:
        """An explicit SAM API (its properties at `at`.Properties), or an implicit one (`pat`: Globals.Api)."""
        pat = pat or f"{at}.Properties"
        api = self._api(name, kind, at)
        stage = self.value(props, "StageName", pat, "Prod" if kind == "rest" else "$default")
        variables = self.value(props, "Variables" if kind == "rest" else "StageVariables", pat, {})
        if not isinstance(variables, dict):
            raise ConfigError(self.source, f"{pat}.Variables", "expected a mapping of stage variables")
        api["stages"] = {str(stage): {"variables": {k: variable_text(v) for k, v in variables.items()}}}
        if kind == "http" and str(stage) != "$default":
            api["stage_prefix"] = self.stage_prefix
        cors_key = "Cors" if kind == "rest" else "CorsConfiguration"
        if cors_key in props:
            given = self.value(props, cors_key, pat)
            conf = cors.sam_cors(given, kind, self.source, f"{pat}.{cors_key}")
            if conf is not None:
                api["plugins"]["cors"] = conf
        if "BinaryMediaTypes" in props and kind == "rest":
            self._binary_types(api, self.value(props, "BinaryMediaTypes", pat), f"{pat}.BinaryMediaTypes")
        if "Models" in props:
            models = self.value(props, "Models", pat)
            if not isinstance(models, dict):
                raise ConfigError(self.source, f"{pat}.Models", "expected a mapping of model names to JSON Schemas")
            api["_models"] = models
        if "Auth" in props:
            api["_authorizers"], api["_default_auth"] = auth.sam_authorizers(
                self.value(props, "Auth", pat), kind, self.source, f"{pat}.Auth", self.function_of_arn
            )
        body, body_at, body_source = None, "", self.source
        if "DefinitionBody" in props:
            body_at = f"{pat}.DefinitionBody"
            body = self._resolve_body(props["DefinitionBody"], body_at)
        elif "DefinitionUri" in props:
            body, body_source, body_at = self._definition_uri(props, pat)
        if body is not None:
            self._openapi(name, api, body, body_source, body_at, kind)

    def _binary_types(self, api: dict[str, Any], given: Any, at: str, source: str | None = None) -> None:
        """A REST API's binary media types, added to those it has. SAM writes `image~1png` for `image/png` (a JSON
        pointer's escape, as SAM documents it); CloudFormation and OpenAPI write `image/png`."""
        if not isinstance(given, list) or not all(isinstance(t, str) for t in given):
            raise ConfigError(
                source or self.source, at, "expected a list of media types, e.g. ['image/png', 'image/*']"
            )
        have: list[str] = api.setdefault("binary_media_types", [])
        for t in given:
            t = t.replace("~1", "/")
            if t not in have:
                have.append(t)

    def _definition_uri(self, props: dict[str, Any], at: str) -> tuple[Any, str, str]:
        uri = self.value(props, "DefinitionUri", at)
        if not isinstance(uri, str) or uri.startswith("s3://"):
            raise ConfigError(self.source, f"{at}.DefinitionUri", "expected a local OpenAPI file (S3 is not read)")
        path = self.base / uri
        doc = openapi.read_file(path, self.source, f"{at}.DefinitionUri")
        return self._resolve_body(doc, "$", str(path)), str(path), "$"

    def _resolve_body(self, body: Any, at: str, source: str | None = None) -> Any:
        try:
            return self.resolver.resolved(body, at)
        except Unresolved as exc:
            raise ConfigError(source or self.source, exc.at, exc.message) from None

    def _openapi(self, name: str, api: dict[str, Any], body: Any, source: str, at: str, kind: str) -> None:
        result = openapi.translate(
            body, source, at, api_type=kind, functions=self.function_of_arn, upstream_prefix=name
        )
        for route in result.routes:
            self._add_route(api, route, route.pop("_at"), source)
        api["plugins"] = {**result.plugins, **api["plugins"]}
        if result.binary_media_types and kind == "rest":
            self._binary_types(api, result.binary_media_types, f"{at}.x-amazon-apigateway-binary-media-types", source)
        self.upstreams.update(result.upstreams)
        self.plugin_modules += result.plugin_modules

    def function_of_arn(self, arn: str) -> str | None:
        """The function an ARN (or invocation URI) names, when the template has it."""
        fname = openapi.function_name(arn)
        if fname is None:
            return None
        if fname in self.functions or fname in self.skipped_functions:
            return fname
        return None

    def _cfn_rest_api(self, name: str, props: dict[str, Any], at: str) -> None:
        pat = f"{at}.Properties"
        api = self._api(name, "rest", at)
        # Its stages: AWS::ApiGateway::Stage resources, else a Deployment's StageName (the older way), else "Prod".
        api["stages"] = (
            self._cfn_stages(name, "AWS::ApiGateway::Stage", "RestApiId", "Variables")
            or self._cfn_stages(name, "AWS::ApiGateway::Deployment", "RestApiId", "StageDescription.Variables")
            or {"Prod": {}}
        )
        if "BinaryMediaTypes" in props:
            self._binary_types(api, self.value(props, "BinaryMediaTypes", pat), f"{pat}.BinaryMediaTypes")
        if "Body" in props:
            self._openapi(
                name, api, self._resolve_body(props["Body"], f"{pat}.Body"), self.source, f"{pat}.Body", "rest"
            )
        elif "BodyS3Location" in props:
            warn_once(f"{self.source}: {name}: its OpenAPI body is in S3 (BodyS3Location); not served")

    def _cfn_http_api(self, name: str, props: dict[str, Any], at: str) -> None:
        pat = f"{at}.Properties"
        protocol = str(self.value(props, "ProtocolType", pat, "HTTP"))
        if protocol != "HTTP":
            warn_once(f"{self.source}: {name}: a {protocol} API is not served (HTTP APIs are)")
            return
        api = self._api(name, "http", at)
        stages = self._cfn_stages(name, "AWS::ApiGatewayV2::Stage", "ApiId", "StageVariables")
        api["stages"] = stages or {"$default": {}}
        if any(s != "$default" for s in api["stages"]):
            api["stage_prefix"] = self.stage_prefix
        if "Body" in props:
            self._openapi(
                name, api, self._resolve_body(props["Body"], f"{pat}.Body"), self.source, f"{pat}.Body", "http"
            )
            return
        if "Target" not in props:
            return
        # Quick create: one route (RouteKey, `$default` unless given) to the target, with the default stage.
        target = str(self.value(props, "Target", pat))
        fname = self.function_of_arn(target)
        if fname is None:
            raise ConfigError(self.source, f"{pat}.Target", f"expected a function of this template, got {target!r}")
        if fname in self.skipped_functions:
            return
        route_key = str(self.value(props, "RouteKey", pat, "$default"))
        integration = {"type": "lambda", "function": fname, "timeout": 30.0}
        for i, route in enumerate(_route_key_routes(route_key, self.source, f"{pat}.RouteKey")):
            route = {**route, "name": f"{name}.{i}", "integration": integration}
            self._add_route(api, route, f"{pat}.Target", self.source)
        if "CorsConfiguration" in props:
            conf = cors.sam_cors(
                self.value(props, "CorsConfiguration", pat), "http", self.source, f"{pat}.CorsConfiguration"
            )
            if conf is not None:
                api["plugins"]["cors"] = conf

    def _cfn_stages(self, api: str, kind: str, ref_key: str, var_key: str) -> dict[str, Any]:
        stages: dict[str, Any] = {}
        for sname, res in self.resources.items():
            if not isinstance(res, dict) or res.get("Type") != kind:
                continue
            at = f"$.Resources.{sname}.Properties"
            props = self._props(res, f"$.Resources.{sname}")
            if self.value(props, ref_key, at) != api:
                continue
            if "StageName" not in props and kind == "AWS::ApiGateway::Deployment":
                continue
            stage = str(self.value(props, "StageName", at, "$default"))
            variables: Any = props
            for key in var_key.split("."):
                variables = self.value(variables, key, at, {}) if isinstance(variables, dict) else {}
            stages[stage] = {"variables": {k: variable_text(v) for k, v in (variables or {}).items()}}
        return stages

    # -- events -----------------------------------------------------------------------------------------------

    def _events(self, fname: str, props: dict[str, Any], at: str) -> None:
        # NOTE: each event is resolved on its own, and only Api and HttpApi events' properties, so a queue's
        # Fn::ImportValue in an SQS event (which is not served) is no error.
        events = props.get("Events") or {}
        if isinstance(events, dict) and is_intrinsic(events):
            events = self.value(props, "Events", f"{at}.Properties", {})
        if not isinstance(events, dict):
            raise ConfigError(self.source, f"{at}.Properties.Events", "expected a mapping of events")
        for ename, event in events.items():
            eat = f"{at}.Properties.Events.{ename}"
            if not isinstance(event, dict):
                raise ConfigError(self.source, eat, "expected an event: a mapping with a Type")
            etype = self.value(event, "Type", eat)
            if etype not in ("Api", "HttpApi"):
                warn_once(f"{self.source}: {fname}: event {ename} of type {etype} is not served (Api and HttpApi are)")
                continue
            ep = event.get("Properties") or {}
            if not isinstance(ep, dict):
                raise ConfigError(self.source, f"{eat}.Properties", "expected a mapping")
            self._event(fname, ename, etype, ep, f"{eat}.Properties")

    def _event(self, fname: str, ename: str, etype: str, props: dict[str, Any], at: str) -> None:
        rest = etype == "Api"
        api_key = "RestApiId" if rest else "ApiId"
        api_name = self.value(props, api_key, at)
        if api_name is None:
            api_name = IMPLICIT_REST if rest else IMPLICIT_HTTP
            if api_name not in self.apis:
                glob = self.globals.get("Api" if rest else "HttpApi")
                self._sam_api(
                    api_name,
                    glob if isinstance(glob, dict) else {},
                    f"$.Globals.{'Api' if rest else 'HttpApi'}",
                    "rest" if rest else "http",
                    pat=f"$.Globals.{'Api' if rest else 'HttpApi'}",
                )
        if not isinstance(api_name, str) or api_name not in self.apis:
            raise ConfigError(
                self.source, f"{at}.{api_key}", f"expected a Ref to an API of this template, got {api_name!r}"
            )
        api = self.apis[api_name]
        if api["type"] != ("rest" if rest else "http"):
            want = "AWS::Serverless::Api" if rest else "AWS::Serverless::HttpApi"
            raise ConfigError(self.source, f"{at}.{api_key}", f"{api_name} is not an {want}")
        path = self.value(props, "Path", at)
        method = self.value(props, "Method", at)
        if rest and (path is None or method is None):
            missing = "Path" if path is None else "Method"
            raise ConfigError(self.source, f"{at}.{missing}", "required for an Api event")
        timeout = 29.0
        integration: dict[str, Any] = {"type": "lambda", "function": fname}
        if not rest:
            fmt = str(self.value(props, "PayloadFormatVersion", at, "2.0"))
            if fmt not in ("1.0", "2.0"):
                raise ConfigError(self.source, f"{at}.PayloadFormatVersion", f"expected '1.0' or '2.0', got {fmt!r}")
            integration["payload_format"] = fmt
            timeout = number(self.value(props, "TimeoutInMillis", at, 30000)) / 1000
        integration["timeout"] = timeout
        if path is None and method is None:
            routes = _route_key_routes("$default", self.source, at)
        else:
            if not isinstance(path, str) or not path.startswith("/"):
                raise ConfigError(self.source, f"{at}.Path", f"expected a path starting with '/', got {path!r}")
            m = str(method or "ANY").upper()
            if m == "X-AMAZON-APIGATEWAY-ANY-METHOD":
                m = "ANY"
            if m not in ("ANY", "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
                raise ConfigError(
                    self.source, f"{at}.Method", f"expected an HTTP method (get, post, ..., or any), got {method!r}"
                )
            routes = [{"path": path, "methods": [m]}]
        plugins = {**self._event_validation(api, props, at), **self._event_auth(api, props, at)}
        for i, route in enumerate(routes):
            name = f"{fname}.{ename}" + (f".{i}" if i else "")
            entry = {**route, "name": name, "integration": dict(integration)}
            if plugins:
                entry["plugins"] = plugins
            self._add_route(api, entry, at, self.source, replace=True)

    def _event_validation(self, api: dict[str, Any], props: dict[str, Any], at: str) -> dict[str, Any]:
        """An Api event's RequestModel (a model of its API's `Models`, ValidateBody, ValidateParameters) and
        RequestParameters (`method.request.querystring.q`, or `{...: {Required: true}}`), as SAM turns them into a
        request validator: only when ValidateBody or ValidateParameters is given (the other is then false)."""
        model = self.value(props, "RequestModel", at)
        if model is None:
            return {}
        mat = f"{at}.RequestModel"
        if not isinstance(model, dict) or not isinstance(model.get("Model"), str):
            raise ConfigError(self.source, mat, "expected {Model: NAME, Required, ValidateBody, ValidateParameters}")
        if "ValidateBody" not in model and "ValidateParameters" not in model:
            return {}
        models = api.get("_models", {})
        if model["Model"] not in models:
            known = ", ".join(sorted(models)) or "none"
            raise ConfigError(self.source, f"{mat}.Model", f"no model {model['Model']!r} in the API's Models ({known})")
        conf: dict[str, Any] = {}
        if model.get("ValidateBody"):
            conf["validate_body"] = True
            conf["body_schemas"] = {"application/json": models[model["Model"]]}
        if model.get("ValidateParameters"):
            required: dict[str, list[str]] = {}
            for i, param in enumerate(self.value(props, "RequestParameters", at, []) or []):
                if isinstance(param, str):
                    key, needed = param, False
                elif isinstance(param, dict) and len(param) == 1:
                    ((key, spec),) = param.items()
                    needed = bool(spec.get("Required")) if isinstance(spec, dict) else False
                else:
                    raise ConfigError(self.source, f"{at}.RequestParameters[{i}]", "expected method.request.WHERE.NAME")
                where, _, pname = str(key).removeprefix("method.request.").partition(".")
                if where not in ("header", "querystring", "path") or not pname:
                    raise ConfigError(
                        self.source, f"{at}.RequestParameters[{i}]", f"expected method.request.WHERE.NAME, got {key!r}"
                    )
                if needed:
                    required.setdefault(where, []).append(pname)
            if required:
                conf["required"] = required
        if not conf:
            return {}
        self.plugin_modules.append(openapi.VALIDATOR_PLUGIN)
        return {"aws-request-validator": conf}

    def _event_auth(self, api: dict[str, Any], props: dict[str, Any], at: str) -> dict[str, Any]:
        """The auth plugins of one event's route: its own Auth.Authorizer, or its API's DefaultAuthorizer."""
        event_auth = self.value(props, "Auth", at)
        authorizers = api.get("_authorizers", {})
        chosen = auth.event_authorizers(event_auth, authorizers, api.get("_default_auth"), self.source, at)
        return auth.plugins_for(chosen)

    def _add_route(
        self, api: dict[str, Any], route: dict[str, Any], at: str, source: str, replace: bool = False
    ) -> None:
        keys: dict[tuple[str, str], int] = api["_keys"]
        routes: list[dict[str, Any]] = api["routes"]
        for m in route["methods"]:
            key = (_template_key(route["path"]), m)
            if key in keys:
                i = keys[key]
                if not replace or routes[i].get("_from_event"):
                    raise ConfigError(
                        source, at, f"{m} {route['path']} is already a route of this API ({routes[i]['name']})"
                    )
                # An event replaces the definition's integration for its path and method, as SAM does.
                routes[i] = {**routes[i], "methods": [x for x in routes[i]["methods"] if x != m]}
        if replace:
            route["_from_event"] = True
        for m in route["methods"]:
            keys[(_template_key(route["path"]), m)] = len(routes)
        routes.append(route)


def _template_key(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path.rstrip("/") or "/")


def _route_key_routes(route_key: str, source: str, at: str) -> list[dict[str, Any]]:
    """An HTTP API route key ("GET /pets", "ANY /{proxy+}", "$default") as routes; `$default` catches every path."""
    if route_key == "$default":
        return [{"path": "$default", "methods": ["ANY"]}]  # served at / and /{proxy+} (fastgw/config/load.py)
    method, _, path = route_key.partition(" ")
    if not path.startswith("/"):
        raise ConfigError(source, at, f"expected '$default' or 'METHOD /path', got {route_key!r}")
    return [{"path": path, "methods": [method.upper()]}]
