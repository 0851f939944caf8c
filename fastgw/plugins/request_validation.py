"""`request-validation`: check the JSON body, the query parameters and the headers against JSON Schemas before the
request goes on; a failure answers 400 with the list of what failed (every error, not just the first).

Query parameters are validated as an object of strings (a parameter given several times: a list of strings),
headers as an object of lower-cased names to strings. Needs the `validation` extra (jsonschema)."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from fastgw.plugins.base import Context, Plugin, Response

_MAX_ERRORS = 20


class RequestValidationConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    body_schema: dict[str, Any] | None = None
    query_schema: dict[str, Any] | None = None
    headers_schema: dict[str, Any] | None = None
    # With a body_schema, bodies must have one of these content types (parameters such as charset ignored).
    content_types: list[str] = msgspec.field(default_factory=lambda: ["application/json"])


class Prepared(msgspec.Struct, frozen=True):
    body: Any
    query: Any
    headers: Any
    content_types: frozenset[str]


def _validator(schema: dict[str, Any] | None, key: str) -> Any:
    if schema is None:
        return None
    try:
        from jsonschema import validators
        from jsonschema.exceptions import SchemaError
    except ImportError:
        raise ValueError("request-validation needs jsonschema: pip install 'fastgw[validation]'") from None
    cls = validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        raise ValueError(f"{key} is not a valid JSON Schema: {exc.message}") from None
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _where(prefix: str, path: Any) -> str:
    out = prefix
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


class RequestValidation(Plugin):
    name = "request-validation"
    priority = 1800
    Config = RequestValidationConfig

    def prepare(self, conf: RequestValidationConfig) -> Prepared:
        if conf.body_schema is None and conf.query_schema is None and conf.headers_schema is None:
            raise ValueError("give at least one of body_schema, query_schema, headers_schema")
        return Prepared(
            _validator(conf.body_schema, "body_schema"),
            _validator(conf.query_schema, "query_schema"),
            _validator(conf.headers_schema, "headers_schema"),
            frozenset(c.lower() for c in conf.content_types),
        )

    def needs_body(self, conf: Prepared) -> bool:
        return conf.body is not None

    def access(self, ctx: Context, conf: Prepared) -> Response | None:
        errors: list[str] = []
        req = ctx.request
        if conf.query is not None:
            query = {k: v[0] if len(v) == 1 else v for k, v in req.query.items()}
            errors += [f"{_where('query', e.absolute_path)}: {e.message}" for e in conf.query.iter_errors(query)]
        if conf.headers is not None:
            headers: dict[str, Any] = {}
            for k, v in req.headers:
                if k in headers:  # a header given several times is a list, as a repeated query parameter
                    prev = headers[k]
                    headers[k] = [*prev, v] if isinstance(prev, list) else [prev, v]
                else:
                    headers[k] = v
            errors += [f"{_where('headers', e.absolute_path)}: {e.message}" for e in conf.headers.iter_errors(headers)]
        if conf.body is not None:
            errors += self._body_errors(req.body or b"", req.header("content-type"), conf)
        if errors:
            return Response(400, {"message": "Request validation failed", "errors": errors[:_MAX_ERRORS]})
        return None

    @staticmethod
    def _body_errors(body: bytes, content_type: str | None, conf: Prepared) -> list[str]:
        if not body:
            return ["body: a JSON body is required"]
        ctype = (content_type or "").split(";", 1)[0].strip().lower()
        if ctype not in conf.content_types:
            return [f"body: content type {ctype or 'none'!r} is not one of {', '.join(sorted(conf.content_types))}"]
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return [f"body: not valid JSON ({exc})"]
        return [f"{_where('body', e.absolute_path)}: {e.message}" for e in conf.body.iter_errors(doc)]


PLUGINS = (RequestValidation,)
