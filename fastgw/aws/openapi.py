"""OpenAPI 3.0 and Swagger 2.0 definitions with API Gateway's extensions, read into fastgw routes.

Read: `x-amazon-apigateway-integration` (`aws_proxy` to a function, its ARN mapped back to the function's name;
`http_proxy` to a URL, which becomes an upstream; `mock`), `x-amazon-apigateway-any-method`, greedy `{name+}`
paths, the request validators with their models and required parameters (the `aws-request-validator` plugin of
`fastgw.aws.validator`, which answers as API Gateway does), `x-amazon-apigateway-cors` (the `cors` plugin), and
`x-amazon-apigateway-binary-media-types` (a REST API's `binary_media_types`). Used for a SAM API's DefinitionBody or
DefinitionUri, a CloudFormation API's Body, and `apis.NAME.openapi: FILE` in fastgw's own config.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastgw.aws import auth
from fastgw.aws import cors as cors_conf
from fastgw.aws._log import warn_once
from fastgw.config.errors import ConfigError

log = logging.getLogger("fastgw.aws")

METHODS = ("get", "put", "post", "delete", "options", "head", "patch")
ANY_METHOD = "x-amazon-apigateway-any-method"
INTEGRATION = "x-amazon-apigateway-integration"
VALIDATOR_PLUGIN = "fastgw.aws.validator:AwsRequestValidator"
# `function:NAME` in a Lambda ARN or an API Gateway invocation URI (an alias or version after a colon is dropped).
_FUNCTION = re.compile(r":function:([^:/]+)")
_PARAM = re.compile(r"\{([^}]+)\}")


@dataclass
class Result:
    routes: list[dict[str, Any]] = field(default_factory=list)  # each with "_at", its key path in the definition
    plugins: dict[str, Any] = field(default_factory=dict)  # the API's (cors)
    upstreams: dict[str, Any] = field(default_factory=dict)
    plugin_modules: list[str] = field(default_factory=list)
    binary_media_types: list[str] = field(default_factory=list)


def function_name(arn: str) -> str | None:
    m = _FUNCTION.search(arn)
    return m.group(1) if m else None


def read_file(path: Path, source: str, at: str) -> Any:
    """An OpenAPI file (YAML, with CloudFormation's short tags allowed, or JSON); errors name `source` and `at`."""
    from fastgw.aws.intrinsics import load_yaml
    from fastgw.config.parse import parse_json

    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(source, at, f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    if path.suffix == ".json":
        return parse_json(raw, str(path))  # fastgw's reader: a key given twice is an error, as in YAML
    return load_yaml(raw, str(path))


def expand_config(data: dict[str, Any], source: str, base: Path) -> dict[str, Any]:
    """fastgw's own config: each `apis.NAME.openapi: FILE` adds the file's routes to that API (after its own routes),
    its upstreams and its API-level plugins (the API's own configuration of a plugin wins)."""
    apis = data["apis"]
    if not any(isinstance(a, dict) and a.get("openapi") for a in apis.values()):
        return data
    functions: dict[str, Any] = data["functions"] if isinstance(data.get("functions"), dict) else {}
    out_apis = dict(apis)
    upstreams = dict(data.get("upstreams") or {})
    modules = list(data.get("plugin_modules") or [])
    for name, api in apis.items():
        if not isinstance(api, dict) or not isinstance(api.get("openapi"), str):
            continue
        path = base / api["openapi"]
        doc = read_file(path, source, f"$.apis.{name}.openapi")

        def lookup(arn: str) -> str | None:
            fname = function_name(arn)
            return fname if fname is not None and (fname in functions or fname.startswith("${")) else None

        result = translate(
            doc, str(path), "$", api_type=str(api.get("type", "rest")), functions=lookup, upstream_prefix=name
        )
        for up in result.upstreams:
            if up in upstreams:
                raise ConfigError(
                    source, f"$.upstreams.{up}", f"this name is also made for {path.name}'s http_proxy URL"
                )
        upstreams.update(result.upstreams)
        own = list(api.get("routes") or [])
        routes = own + [{k: v for k, v in r.items() if not k.startswith("_")} for r in result.routes]
        out_apis[name] = {**api, "routes": routes, "plugins": {**result.plugins, **(api.get("plugins") or {})}}
        if result.binary_media_types and api.get("type", "rest") == "rest":
            own_types = list(api.get("binary_media_types") or [])
            extra = [t for t in result.binary_media_types if t not in own_types]
            out_apis[name]["binary_media_types"] = own_types + extra
        modules += [m for m in result.plugin_modules if m not in modules]
    out = {**data, "apis": out_apis}
    if upstreams:
        out["upstreams"] = upstreams
    if modules:
        out["plugin_modules"] = modules
    return out


def translate(
    doc: Any,
    source: str,
    at: str,
    *,
    api_type: str,
    functions: Callable[[str], str | None],
    upstream_prefix: str,
) -> Result:
    """The routes of one definition. `functions(arn)` names the function an ARN stands for, or None."""
    if not isinstance(doc, dict):
        raise ConfigError(source, at, "expected an OpenAPI definition (a mapping with paths)")
    version = str(doc.get("openapi") or doc.get("swagger") or "")
    if not (version.startswith("3.") or version.startswith("2.")):
        raise ConfigError(source, f"{at}.openapi", f"expected OpenAPI 3.x or Swagger 2.0, got {version or 'none'!r}")
    paths = doc.get("paths") or {}
    if not isinstance(paths, dict):
        raise ConfigError(source, f"{at}.paths", "expected a mapping of paths")
    reader = _Reader(doc, source, at, api_type, functions, upstream_prefix)
    result = reader.result
    for path, item in paths.items():
        pat = f"{at}.paths.{path}"
        if not isinstance(item, dict):
            raise ConfigError(source, pat, "expected a path item (a mapping of methods)")
        shared = item.get("parameters") or []
        for key, op in item.items():
            if key == ANY_METHOD:
                method = "ANY"
            elif key in METHODS:
                method = key.upper()
            else:
                continue
            reader.operation(path, method, op if isinstance(op, dict) else {}, shared, f"{pat}.{key}")
    cors = doc.get("x-amazon-apigateway-cors")
    if isinstance(cors, dict):
        result.plugins["cors"] = cors_conf.openapi_cors(cors, source, f"{at}.x-amazon-apigateway-cors")
    binary = doc.get("x-amazon-apigateway-binary-media-types")
    if isinstance(binary, list):
        result.binary_media_types = [str(b) for b in binary]
    if any("aws-request-validator" in r.get("plugins", {}) for r in result.routes):
        result.plugin_modules.append(VALIDATOR_PLUGIN)
    return result


class _Reader:
    def __init__(
        self,
        doc: dict[str, Any],
        source: str,
        at: str,
        api_type: str,
        functions: Callable[[str], str | None],
        prefix: str,
    ) -> None:
        self.doc = doc
        self.source = source
        self.at = at
        self.api_type = api_type
        self.functions = functions
        self.prefix = prefix
        self.result = Result()
        self.validators = doc.get("x-amazon-apigateway-request-validators") or {}
        self.default_validator = doc.get("x-amazon-apigateway-request-validator")
        self.swagger = str(doc.get("swagger", "")).startswith("2.")
        self.authorizers = auth.openapi_authorizers(doc, source, at, api_type, functions)

    def operation(self, path: str, method: str, op: dict[str, Any], shared: list[Any], at: str) -> None:
        # An HTTP API's definition may share integrations: {$ref: "#/components/x-amazon-apigateway-integrations/x"}.
        integ = self.deref(op.get(INTEGRATION))
        if path == "/$default":  # an HTTP API's catch-all route (served at / and /{proxy+}: fastgw/config/load.py)
            paths = ["$default"]
        else:
            if not path.startswith("/"):
                raise ConfigError(
                    self.source, at.rpartition(".")[0], f"expected a path starting with '/', got {path!r}"
                )
            paths = [path]
        if not isinstance(integ, dict):
            # NOTE: a SAM event may supply it (SAM adds the integration of each event to the definition).
            warn_once(f"{self.source}: {at}: no {INTEGRATION}; the route is not served")
            return
        integration = self.integration(integ, f"{at}.{INTEGRATION}", paths[0])
        if integration is None:
            return
        plugins = self.validation(op, shared, at)
        requirements = op.get("security", self.doc.get("security"))
        chosen = auth.security(requirements, self.authorizers)
        if chosen:
            plugins = {**plugins, **auth.plugins_for(chosen)}
        name = str(op.get("operationId") or f"{method} {path}")
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip("_") or "route"
        for p in paths:
            label = name if len(paths) == 1 else f"{name}_{len(p)}"
            route: dict[str, Any] = {"path": p, "methods": [method], "name": label, "integration": dict(integration)}
            route["_at"] = at
            if plugins:
                route["plugins"] = plugins
            self.result.routes.append(route)

    def integration(self, integ: dict[str, Any], at: str, path: str) -> dict[str, Any] | None:
        kind = str(integ.get("type", "")).lower()
        uri = integ.get("uri")
        timeout = integ.get("timeoutInMillis")
        if kind == "aws_proxy":
            if not isinstance(uri, str):
                raise ConfigError(self.source, f"{at}.uri", "expected the function's invocation URI or ARN")
            fname = self.functions(uri)
            if fname is None:
                raise ConfigError(self.source, f"{at}.uri", f"names no function of this config or template: {uri!r}")
            out: dict[str, Any] = {"type": "lambda", "function": fname}
            fmt = integ.get("payloadFormatVersion")
            if fmt is not None:
                if str(fmt) not in ("1.0", "2.0"):
                    raise ConfigError(
                        self.source, f"{at}.payloadFormatVersion", f"expected '1.0' or '2.0', got {fmt!r}"
                    )
                out["payload_format"] = str(fmt)
            out["timeout"] = _seconds(timeout, 29.0 if self.api_type == "rest" else 30.0)
            return out
        if kind == "http_proxy":
            if not isinstance(uri, str):
                raise ConfigError(self.source, f"{at}.uri", "expected the URL requests go to")
            url = urlsplit(uri)
            if url.scheme not in ("http", "https") or not url.hostname:
                raise ConfigError(self.source, f"{at}.uri", f"expected an http(s) URL, got {uri!r}")
            port = url.port or (443 if url.scheme == "https" else 80)
            upstream = re.sub(r"[^A-Za-z0-9_.-]", "-", f"{self.prefix}-{url.hostname}-{port}")
            self.result.upstreams[upstream] = {"targets": [f"{url.scheme}://{url.hostname}:{port}"]}
            mapping = {}
            for k, v in (integ.get("requestParameters") or {}).items():
                if str(k).startswith("integration.request.path.") and str(v).startswith("method.request.path."):
                    mapping[str(k)[len("integration.request.path.") :]] = str(v)[len("method.request.path.") :]
            target = url.path or "/"
            target = _PARAM.sub(
                lambda m: "{" + mapping.get(m.group(1).rstrip("+"), m.group(1).rstrip("+")) + "}", target
            )
            out = {"type": "http", "upstream": upstream, "path": target}
            if timeout is not None:
                out["timeout"] = _seconds(timeout, 29.0)
            return out
        if kind == "mock":
            return _mock(integ)
        warn_once(f"{self.source}: {at}: integration type {kind!r} is not served (aws_proxy, http_proxy and mock are)")
        return None

    def validation(self, op: dict[str, Any], shared: list[Any], at: str) -> dict[str, Any]:
        name = op.get("x-amazon-apigateway-request-validator", self.default_validator)
        if not name:
            return {}
        validator = self.validators.get(name) if isinstance(self.validators, dict) else None
        if not isinstance(validator, dict):
            raise ConfigError(
                self.source, f"{at}.x-amazon-apigateway-request-validator",
                f"no request validator {name!r} in x-amazon-apigateway-request-validators",
            )  # fmt: skip
        conf: dict[str, Any] = {}
        if validator.get("validateRequestParameters"):
            required: dict[str, list[str]] = {}
            for p in [*shared, *(op.get("parameters") or [])]:
                p = self.deref(p)
                if isinstance(p, dict) and p.get("required") and p.get("in") in ("query", "header", "path"):
                    where = str({"query": "querystring"}.get(p["in"], p["in"]))
                    required.setdefault(where, []).append(str(p.get("name")))
            if required:
                conf["required"] = required
        if validator.get("validateRequestBody"):
            conf["validate_body"] = True
            schemas = self.body_schemas(op)
            if schemas:
                conf["body_schemas"] = schemas
        return {"aws-request-validator": conf} if conf else {}

    def body_schemas(self, op: dict[str, Any]) -> dict[str, Any]:
        """Content type -> JSON Schema (draft 4, as API Gateway's models), with the document's models inside it."""
        out: dict[str, Any] = {}
        if self.swagger:
            for p in op.get("parameters") or []:
                p = self.deref(p)
                if isinstance(p, dict) and p.get("in") == "body" and isinstance(p.get("schema"), dict):
                    for ctype in op.get("consumes") or self.doc.get("consumes") or ["application/json"]:
                        out[str(ctype)] = self.schema(p["schema"])
        else:
            body = self.deref(op.get("requestBody"))
            if isinstance(body, dict):
                for ctype, media in (body.get("content") or {}).items():
                    if isinstance(media, dict) and isinstance(media.get("schema"), dict):
                        out[str(ctype)] = self.schema(media["schema"])
        return out

    def schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        models = self.doc.get("definitions") if self.swagger else (self.doc.get("components") or {}).get("schemas")
        text = json.dumps(schema)
        if models:
            # Every model under `definitions`, references rewritten to point there (refs between models included).
            models_text = json.dumps(models).replace("#/components/schemas/", "#/definitions/")
            text = text.replace("#/components/schemas/", "#/definitions/")
            return {**json.loads(text), "definitions": json.loads(models_text)}
        return dict(json.loads(text))

    def deref(self, value: Any) -> Any:
        """A `$ref` to `#/...` replaced by what it points at (parameters and request bodies)."""
        seen = 0
        while (
            isinstance(value, dict)
            and isinstance(value.get("$ref"), str)
            and value["$ref"].startswith("#/")
            and seen < 16
        ):
            target: Any = self.doc
            for part in value["$ref"][2:].split("/"):
                target = target.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(target, dict) else None
            value, seen = target, seen + 1
        return value


def _seconds(millis: Any, default: float) -> float:
    try:
        return max(0.05, int(millis) / 1000) if millis is not None else default
    except (TypeError, ValueError):
        return default


def _mock(integ: dict[str, Any]) -> dict[str, Any]:
    """A mock integration: the status its request template names (`{"statusCode": 200}`), or the default
    response's, and the default response's JSON template as the body (used as it is: VTL is not run)."""
    status = 200
    template = (integ.get("requestTemplates") or {}).get("application/json")
    if isinstance(template, str):
        m = re.search(r'"statusCode"\s*:\s*(\d{3})', template)
        if m:
            status = int(m.group(1))
    responses = integ.get("responses") or {}
    default = responses.get("default") if isinstance(responses, dict) else None
    out: dict[str, Any] = {"type": "mock", "status": status}
    if isinstance(default, dict):
        if str(default.get("statusCode", "")).isdigit():
            out["status"] = int(default["statusCode"])
        body = (default.get("responseTemplates") or {}).get("application/json")
        if isinstance(body, str) and body.strip():
            try:
                out["body"] = json.loads(body)
            except ValueError:
                out["body"] = body
                out["headers"] = {"content-type": "application/json"}
        headers = {}
        for k, v in (default.get("responseParameters") or {}).items():
            if str(k).startswith("method.response.header.") and isinstance(v, str) and v.startswith("'"):
                headers[str(k)[len("method.response.header.") :]] = v.strip("'")
        if headers:
            out["headers"] = {**out.get("headers", {}), **headers}
    return out
