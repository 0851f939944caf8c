"""`aws-request-validator`: API Gateway's request validators (`x-amazon-apigateway-request-validators`), answering as
API Gateway does. fastgw's `request-validation` plugin lists every error it finds; API Gateway answers one line, and
clients written against it match on that line, so an OpenAPI definition's validators get this plugin instead.

- Required request parameters (query string, headers, path) missing or empty: 400
  `{"message":"Missing required request parameters: [a, b]"}`, listed in the order of their
  `method.request.<where>.<name>` keys, as API Gateway's BAD_REQUEST_PARAMETERS gateway response.
- A body that is not JSON or does not match its model (JSON Schema draft 4): 400
  `{"message":"Invalid request body"}` (BAD_REQUEST_BODY). The model is the request content type's, else the
  `$default` one, else the `application/json` one, else API Gateway's `Empty` model (any JSON object); an empty
  body is validated as `{}` (as LocalStack, whose API Gateway tests are checked against AWS, does).

Both with `x-amzn-ErrorType: BadRequestException` and the bytes of API Gateway's default gateway response template
`{"message":$context.error.messageString}` (no space, as its Missing Authentication Token answer).
Needs the `validation` extra (jsonschema).
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from fastgw.plugins.base import Context, Plugin, Response

_HEADERS = [("content-type", "application/json"), ("x-amzn-errortype", "BadRequestException")]
INVALID_BODY = b'{"message":"Invalid request body"}'


class Required(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    querystring: list[str] = msgspec.field(default_factory=list)
    header: list[str] = msgspec.field(default_factory=list)
    path: list[str] = msgspec.field(default_factory=list)


# API Gateway's `Empty` model: what a body validator checks when the method has no model.
EMPTY_MODEL = {"$schema": "http://json-schema.org/draft-04/schema#", "title": "Empty Schema", "type": "object"}


class AwsRequestValidatorConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    required: Required | None = None
    validate_body: bool = False
    body_schemas: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)  # content type -> JSON Schema


class Prepared(msgspec.Struct, frozen=True):
    required: tuple[tuple[str, str], ...]  # (where, name), in API Gateway's order
    bodies: dict[str, Any]  # content type (lower-cased) -> validator
    fallback: Any  # the validator of a content type without its own model (None: bodies are not validated)


class AwsRequestValidator(Plugin):
    name = "aws-request-validator"
    priority = 1810  # with request-validation (1800), before rate limits spend a token on a refused request
    Config = AwsRequestValidatorConfig

    def prepare(self, conf: AwsRequestValidatorConfig) -> Prepared:
        required: list[tuple[str, str]] = []
        if conf.required is not None:
            for where in ("header", "path", "querystring"):
                required += [(where, n) for n in getattr(conf.required, where)]
        required.sort(key=lambda r: f"method.request.{r[0]}.{r[1]}")
        bodies: dict[str, Any] = {}
        fallback = None
        if conf.validate_body:
            try:
                from jsonschema import Draft4Validator
                from jsonschema.exceptions import SchemaError
            except ImportError:
                raise ValueError("aws-request-validator needs jsonschema: pip install 'fastgw[validation]'") from None
            for ctype, schema in conf.body_schemas.items():
                try:
                    Draft4Validator.check_schema(schema)
                except SchemaError as exc:
                    raise ValueError(f"body_schemas.{ctype} is not a valid JSON Schema: {exc.message}") from None
                bodies[ctype.lower()] = Draft4Validator(schema)
            fallback = bodies.get("$default") or bodies.get("application/json") or Draft4Validator(EMPTY_MODEL)
        return Prepared(tuple(required), bodies, fallback)

    def needs_body(self, conf: Prepared) -> bool:
        return conf.fallback is not None

    def access(self, ctx: Context, conf: Prepared) -> Response | None:
        req = ctx.request
        if conf.required:
            missing = []
            for where, name in conf.required:
                if where == "header":
                    value = req.header(name.lower())
                elif where == "querystring":
                    values = req.query.get(name)
                    value = values[0] if values else None
                else:
                    continue  # a path parameter is there whenever the route matched
                if not value:
                    missing.append(name)
            if missing:
                body = orjson.dumps({"message": f"Missing required request parameters: [{', '.join(missing)}]"})
                return Response(400, body, headers=_HEADERS)
        if conf.fallback is not None:
            ctype = (req.header("content-type") or "application/json").split(";", 1)[0].strip().lower()
            validator = conf.bodies.get(ctype, conf.fallback)
            try:
                doc = orjson.loads(req.body or b"{}")
            except orjson.JSONDecodeError:
                return Response(400, INVALID_BODY, headers=_HEADERS)
            if not validator.is_valid(doc):
                return Response(400, INVALID_BODY, headers=_HEADERS)
        return None


PLUGINS = (AwsRequestValidator,)
