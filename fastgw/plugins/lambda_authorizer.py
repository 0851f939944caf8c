"""`lambda-authorizer`: a function of the config decides who may call the route, as API Gateway's Lambda authorizers.

The function (python or nodejs, one of `functions:`) runs in the same worker pools as the routes' functions. What it
receives and how its answer is read are API Gateway's: REST `TOKEN` and `REQUEST` authorizers, HTTP API authorizers
with payload 1.0 or 2.0 and simple responses. The IAM policy it returns is matched against the request's method ARN
(`arn:aws:execute-api:local:000000000000:{apiId}/{stage}/{METHOD}/{path}`, the region and account fastgw's functions
see), with `*` and `?` wildcards; an explicit Deny wins, and without a matching Allow the answer is 403. Answers are
cached by the values of the identity sources for `ttl` seconds (API Gateway's 300 by default), and a cached policy
is matched against each later request's own method ARN, as on AWS (a policy for one path refuses another).

The principal becomes the request's consumer (ACLs, rate-limit keys, the access log): the consumer whose
`lambda-authorizer` credential names that principalId, else a consumer of that name without groups. `principalId`
and the `context` reach the route's function in `requestContext.authorizer` (REST: flattened, values as strings;
HTTP API payload 2.0: `requestContext.authorizer.lambda`), and an `http` route's upstream in the headers
`upstream_headers` names. The answers to the client are API Gateway's own, byte for byte (docs/functions.md,
"Lambda authorizers"). The event is built by the same pure functions as a route's Lambda proxy event
(fastgw.functions.lambda_proxy).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Awaitable
from typing import Annotated, Any, Literal

import msgspec

from fastgw.functions import lambda_proxy as lp
from fastgw.functions.pool import Throttled
from fastgw.plugins import _credentials as credentials
from fastgw.plugins.base import Context, Plugin, Response
from fastgw.plugins.chain import ConfigAt, loading
from fastgw.plugins.consumers import Consumer, unsafe_in_header

log = logging.getLogger("fastgw.plugins.lambda_authorizer")

_JSON = "application/json"
# REST API answers, byte for byte as API Gateway sends them (with the x-amzn-ErrorType it names them by).
REST_UNAUTHORIZED = Response(
    401, b'{"message":"Unauthorized"}', {"x-amzn-ErrorType": "UnauthorizedException"}, content_type=_JSON
)
REST_EXPLICIT_DENY = Response(
    403,
    b'{"Message":"User is not authorized to access this resource with an explicit deny"}',
    {"x-amzn-ErrorType": "AccessDeniedException"},
    content_type=_JSON,
)
REST_NOT_ALLOWED = Response(
    403,
    b'{"Message":"User is not authorized to access this resource"}',
    {"x-amzn-ErrorType": "AccessDeniedException"},
    content_type=_JSON,
)
REST_ERROR = Response(
    500, b'{"message": null}', {"x-amzn-ErrorType": "AuthorizerConfigurationException"}, content_type=_JSON
)
# HTTP API answers.
HTTP_UNAUTHORIZED = Response(401, b'{"message":"Unauthorized"}', content_type=_JSON)
HTTP_FORBIDDEN = Response(403, b'{"message":"Forbidden"}', content_type=_JSON)
HTTP_ERROR = Response(500, b'{"message":"Internal Server Error"}', content_type=_JSON)

CACHE_MAX = 10_000  # answers remembered per authorizer configuration; the oldest goes first
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# $context.X identity sources fastgw knows (the request's, as API Gateway names them).
CONTEXT_VARIABLES = ("apiId", "domainName", "httpMethod", "identity.sourceIp", "path", "resourcePath", "routeKey",
                     "stage")  # fmt: skip


class LambdaAuthorizerConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    function: Annotated[str, msgspec.Meta(min_length=1)]  # a name in `functions:`
    type: Literal["token", "request"] = "token"  # REST API authorizer types; HTTP API authorizers are `request`
    api: Literal["rest", "http"] = "rest"  # whose event and answer rules apply
    payload_format: Literal["1.0", "2.0"] = "2.0"  # http only (a REST authorizer has one event format)
    simple_responses: bool = False  # http + 2.0 only: {"isAuthorized": bool, "context": {...}}
    # Where the identity comes from, in API Gateway's syntax (both REST's and HTTP API's are accepted): a list, or
    # one string of comma-separated sources as REST's identitySource is written. Default: the Authorization header.
    identity_source: list[str] | str | None = None
    validation_expression: str | None = None  # token only: a regex the whole token must match, else 401
    ttl: Annotated[int, msgspec.Meta(ge=0, le=3600)] = 300  # seconds an answer is cached (0: never)
    # Headers the upstream of an `http` route receives: header name -> "principalId" or a key of the context.
    upstream_headers: dict[str, str] = msgspec.field(default_factory=dict)


class PrincipalCredential(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`consumers.NAME.credentials.lambda-authorizer: [{principal_id: ...}]`: requests whose authorizer answers this
    principalId are that consumer's (its groups for acl, its own plugins)."""

    principal_id: Annotated[str, msgspec.Meta(min_length=1)]


class Source:
    """One identity source: where its value is read from."""

    __slots__ = ("where", "name", "text", "wire")

    def __init__(self, where: str, name: str, text: str) -> None:
        self.where = where  # header | query | stage | context
        self.name = name
        self.text = text
        # A header source's names on the wire (its `_` spelling too, counted as the same header), made once.
        self.wire = credentials.header_names((name,)) if where == "header" else frozenset()


_SOURCE = re.compile(
    r"^(?:(?:method|route)\.request\.|\$request\.)(?P<where>header|querystring)\.(?P<name>.+)$"
    r"|^\$?stageVariables\.(?P<stage>.+)$|^\$?context\.(?P<context>.+)$"
)


def parse_source(text: str) -> Source:
    m = _SOURCE.match(text.strip())
    if m is None:
        raise ValueError(
            f"identity_source {text!r}: expected method.request.header.NAME, method.request.querystring.NAME, "
            "$request.header.NAME, $request.querystring.NAME, stageVariables.NAME or $context.NAME"
        )
    if m.group("where"):
        return Source("header" if m.group("where") == "header" else "query", m.group("name"), text)
    if m.group("stage"):
        return Source("stage", m.group("stage"), text)
    name = m.group("context")
    if name not in CONTEXT_VARIABLES:
        raise ValueError(f"identity_source {text!r}: fastgw knows $context.{', $context.'.join(CONTEXT_VARIABLES)}")
    return Source("context", name, text)


class Prepared:
    """One configuration of the authorizer, checked, with its answers' cache."""

    __slots__ = ("conf", "function", "rest", "token", "v2", "simple", "sources", "pattern", "ttl_ns", "cache",
                 "headers", "header_keys", "unauthorized", "error")  # fmt: skip

    def __init__(self, conf: LambdaAuthorizerConfig, sources: list[Source], pattern: re.Pattern[str] | None) -> None:
        self.conf = conf
        self.function = conf.function
        self.rest = conf.api == "rest"
        self.token = conf.type == "token"
        self.v2 = conf.api == "http" and conf.payload_format == "2.0"
        self.simple = conf.simple_responses
        self.sources = sources
        self.pattern = pattern
        self.ttl_ns = conf.ttl * 1_000_000_000
        self.cache: dict[tuple[str, ...], tuple[int, Verdict]] = {}
        self.headers = list(conf.upstream_headers.items())
        self.header_keys = frozenset(key for _, key in self.headers if key != "principalId")
        self.unauthorized = REST_UNAUTHORIZED if self.rest else HTTP_UNAUTHORIZED
        self.error = REST_ERROR if self.rest else HTTP_ERROR


class Malformed(Exception):
    """The function's answer is not one API Gateway accepts; the message says why (logged, never sent)."""


class Verdict:
    """What an answer decides: a simple yes/no, or a policy matched against each request's method ARN."""

    __slots__ = ("principal", "allowed", "statements", "context", "v1", "v2")

    def __init__(
        self,
        principal: str | None,
        allowed: bool | None,
        statements: list[tuple[bool, re.Pattern[str], re.Pattern[str]]],
        context: dict[str, Any],
        rest: bool,
    ) -> None:
        self.principal = principal
        self.allowed = allowed  # a simple response's isAuthorized; None: decided by `statements`
        self.statements = statements  # (is Allow, actions, resources), each a compiled wildcard pattern
        self.context = context
        # What the route's function sees in requestContext.authorizer: REST and payload 1.0 flatten the context
        # and pass its values as strings; payload 2.0 passes it as it is, under `lambda`.
        flat: dict[str, Any] = {k: _as_string(v) for k, v in context.items()}
        if principal is not None:
            flat["principalId"] = principal
        self.v1 = flat
        self.v2 = dict(context)

    def decide(self, arn: str) -> bool | None:
        """True: allowed; False: explicitly denied; None: no statement allows it."""
        if self.allowed is not None:
            return self.allowed
        allowed = None
        for allow, actions, resources in self.statements:
            if actions.fullmatch("execute-api:Invoke") and resources.fullmatch(arn):
                if not allow:
                    return False
                allowed = True
        return allowed


def _as_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def wildcard(patterns: list[str], ignore_case: bool = False) -> re.Pattern[str]:
    """IAM's wildcards: `*` any run of characters (`/` too), `?` one character; the rest literally."""
    alts = ["".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in p) for p in patterns]
    return re.compile("|".join(f"(?:{a})" for a in alts) or "(?!)", re.S | (re.I if ignore_case else 0))


def _strings(value: Any, what: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    raise Malformed(f"{what} must be a string or a non-empty list of strings, got {value!r}")


def read_answer(value: Any, prep: Prepared) -> Verdict:
    """The function's return value as API Gateway reads it. Raises Malformed."""
    if not isinstance(value, dict):
        raise Malformed(f"the authorizer returned {lp.json_kind(value)}, not an object")
    context = value.get("context")
    if context is None:
        context = {}
    if not isinstance(context, dict):
        raise Malformed(f"context must be an object, got {lp.json_kind(context)}")
    if prep.rest or not prep.v2:
        # NOTE: REST APIs (and payload 1.0) refuse a context whose values are not strings, numbers or booleans:
        # the client gets 500 AuthorizerConfigurationException, as here.
        for k, v in context.items():
            if not isinstance(v, (str, int, float, bool)):
                raise Malformed(f"context.{k} must be a string, a number or a boolean, got {lp.json_kind(v)}")
    # NOTE: the principal becomes the consumer's name (X-Consumer-Username) and, like a context value that
    # upstream_headers names, a header value: a control character in it would split the upstream request (a header,
    # a request smuggled behind it on a pooled connection). API Gateway answers 500 to an answer it cannot use.
    for k in prep.header_keys:
        v = context.get(k)
        if v is not None and unsafe_in_header(_as_string(v)):
            raise Malformed(f"context.{k} (an upstream header) holds a control character")
    if prep.simple:
        allowed = value.get("isAuthorized")
        if not isinstance(allowed, bool):
            raise Malformed(f"isAuthorized must be a boolean (simple responses), got {allowed!r}")
        return Verdict(None, allowed, [], context, prep.rest)
    principal = value.get("principalId")
    if not isinstance(principal, str):
        raise Malformed(f"principalId must be a string, got {lp.json_kind(principal)}")
    if unsafe_in_header(principal):
        raise Malformed(f"principalId {principal!r} holds a control character")
    doc = value.get("policyDocument")
    if not isinstance(doc, dict):
        raise Malformed(f"policyDocument must be an object, got {lp.json_kind(doc)}")
    raw = doc.get("Statement")
    items = [raw] if isinstance(raw, dict) else raw
    if not isinstance(items, list) or not items:
        raise Malformed("policyDocument.Statement must be an object or a non-empty list of them")
    statements = []
    for i, st in enumerate(items):
        if not isinstance(st, dict):
            raise Malformed(f"policyDocument.Statement[{i}] must be an object")
        effect = st.get("Effect")
        if effect not in ("Allow", "Deny"):
            raise Malformed(f"policyDocument.Statement[{i}].Effect must be Allow or Deny, got {effect!r}")
        actions = _strings(st.get("Action"), f"policyDocument.Statement[{i}].Action")
        resources = _strings(st.get("Resource"), f"policyDocument.Statement[{i}].Resource")
        statements.append((effect == "Allow", wildcard(actions, ignore_case=True), wildcard(resources)))
    return Verdict(principal, None, statements, context, prep.rest)


class LambdaAuthorizer(Plugin):
    name = "lambda-authorizer"
    priority = 2450  # after key-auth (2500), before basic-auth (2400)
    Config = LambdaAuthorizerConfig
    Credential = PrincipalCredential

    def __init__(self) -> None:
        self.principals: dict[str, Consumer] = {}

    def credentials(self, creds: list[tuple[Consumer, Any]]) -> None:
        index: dict[str, Consumer] = {}
        for consumer, cred in creds:
            other = index.get(cred.principal_id)
            if other is not None and other is not consumer:
                raise ValueError(
                    f"consumers {other.name!r} and {consumer.name!r} claim the same principal {cred.principal_id!r}"
                )
            index[cred.principal_id] = consumer
        self.principals = index

    def prepare(self, conf: LambdaAuthorizerConfig) -> Any:
        functions = loading().config.functions
        if conf.function not in functions:
            known = ", ".join(sorted(functions)) or "none"
            raise ConfigAt(".function", f"no function named {conf.function!r} in functions: (defined: {known})")
        if conf.api == "http" and conf.type == "token":
            raise ConfigAt(".type", "HTTP API authorizers are of type request (give identity_source for the token)")
        if conf.simple_responses and not (conf.api == "http" and conf.payload_format == "2.0"):
            raise ConfigAt(".simple_responses", "simple responses are for HTTP API authorizers with payload_format 2.0")
        if conf.validation_expression is not None and conf.type != "token":
            raise ConfigAt(".validation_expression", "a validation expression applies to token authorizers only")
        texts = conf.identity_source
        if isinstance(texts, str):
            texts = [t.strip() for t in texts.split(",") if t.strip()]
        if texts is None:
            texts = ["method.request.header.Authorization" if conf.api == "rest" else "$request.header.Authorization"]
        sources = []
        for i, text in enumerate(texts):
            try:
                sources.append(parse_source(text))
            except ValueError as exc:
                raise ConfigAt(f".identity_source[{i}]", str(exc)) from None
        if conf.type == "token" and (len(sources) != 1 or sources[0].where != "header"):
            raise ConfigAt(".identity_source", "a token authorizer reads its token from one header")
        if conf.ttl and not sources:
            raise ConfigAt(".identity_source", "caching (ttl > 0) needs at least one identity source: they are its key")
        pattern = None
        if conf.validation_expression is not None:
            try:
                pattern = re.compile(conf.validation_expression)
            except re.error as exc:
                raise ConfigAt(".validation_expression", f"not a valid regular expression: {exc}") from None
        for header, key in conf.upstream_headers.items():
            if not _HEADER_NAME.match(header):
                raise ConfigAt(f".upstream_headers.{header}", "not a valid header name")
            if not key:
                raise ConfigAt(f".upstream_headers.{header}", "name principalId or a key of the authorizer's context")
        return Prepared(conf, sources, pattern)

    def access(self, ctx: Context, prep: Prepared) -> Response | Awaitable[Response | None] | None:
        values = []
        for source in prep.sources:
            try:
                value = _identity(ctx, source)
            except _Twice:
                return credentials.twice(f"{source.name!r} (an identity source of the authorizer)")
            if not value:
                return prep.unauthorized  # a missing identity source: the function is not called
            values.append(value)
        if prep.pattern is not None and not prep.pattern.fullmatch(values[0]):
            return prep.unauthorized
        key = tuple(values)
        if prep.ttl_ns:
            hit = prep.cache.get(key)
            if hit is not None:
                if hit[0] > time.monotonic_ns():
                    verdict = hit[1]
                    # A simple response decides without a policy: no method ARN to build for it.
                    return self._apply(ctx, prep, verdict, method_arn(ctx) if verdict.allowed is None else "", 0)
                del prep.cache[key]
        return self._invoke(ctx, prep, key, method_arn(ctx))

    async def _invoke(self, ctx: Context, prep: Prepared, key: tuple[str, ...], arn: str) -> Response | None:
        pool = ctx.route.functions.get(prep.function)
        if pool is None:
            log.error("lambda-authorizer on route %s: function %s is not served here", ctx.route.name, prep.function)
            return prep.error
        event = build_event(ctx, prep, key, arn)
        request_id = str(uuid.uuid4())
        started = time.perf_counter()
        # NOTE: shielded, as the lambda integration does: an exchange that goes away mid-invocation must not leave
        # the worker waiting for an answer nobody collects.
        task = asyncio.ensure_future(pool.invoke(request_id, event))
        try:
            outcome = await asyncio.shield(task)
        except Throttled:
            log.warning("lambda-authorizer: function %s is at its concurrency and its queue is full", prep.function)
            return prep.error
        except Exception as exc:  # noqa: BLE001 - a worker that cannot start: the client gets the authorizer error
            log.error("lambda-authorizer: cannot invoke %s: %s", prep.function, exc)
            return prep.error
        latency = int((time.perf_counter() - started) * 1000)
        if not outcome.ok:
            err = outcome.error or {}
            message = err.get("errorMessage")
            if prep.rest and message == "Unauthorized":
                return prep.unauthorized  # `raise Exception("Unauthorized")`: API Gateway's documented way to 401
            log.error("lambda-authorizer %s (route %s, request %s) failed: %s: %s", prep.function, ctx.route.name,
                      request_id, err.get("errorType", "Error"), message)  # fmt: skip
            return prep.error
        try:
            verdict = read_answer(outcome.value, prep)
        except Malformed as exc:
            log.error("lambda-authorizer %s (route %s, request %s): malformed answer: %s", prep.function,
                      ctx.route.name, request_id, exc)  # fmt: skip
            return prep.error
        if prep.ttl_ns:
            cache = prep.cache
            if len(cache) >= CACHE_MAX:
                del cache[next(iter(cache))]
            cache[key] = (time.monotonic_ns() + prep.ttl_ns, verdict)
        return self._apply(ctx, prep, verdict, arn, latency)

    def _apply(self, ctx: Context, prep: Prepared, verdict: Verdict, arn: str, latency: int) -> Response | None:
        decision = verdict.decide(arn)
        if not decision:
            if not prep.rest:
                return HTTP_FORBIDDEN
            return REST_EXPLICIT_DENY if decision is False else REST_NOT_ALLOWED
        v1 = dict(verdict.v1)
        if verdict.principal is not None:
            v1["integrationLatency"] = latency
            consumer = self.principals.get(verdict.principal)
            if consumer is None:  # a principal no consumer claims: a consumer of that name, without groups
                consumer = Consumer(verdict.principal, (), {k: _as_string(v) for k, v in verdict.context.items()})
            ctx.consumer = consumer
        ctx.vars["lambda_authorizer"] = (v1, verdict.v2)
        for header, key in prep.headers:
            value = verdict.principal if key == "principalId" else verdict.context.get(key)
            if value is None:
                continue
            ctx.set_upstream_header(header, _as_string(value))  # read_answer refused control characters
        return None


class _Twice(Exception):
    """An identity source the request carries more than once (issue 19, item 5: refused, see _credentials)."""


def _identity(ctx: Context, source: Source) -> str | None:
    where = source.where
    if where == "header":
        wire = source.wire
        fields = [v for k, v in ctx.request.headers.raw() if k in wire]
        if len(fields) > 1:
            raise _Twice
        return credentials.text(fields[0]) if fields else None
    if where == "query":
        if credentials.query_count(ctx.request.query_string, (source.name,)) > 1:
            raise _Twice
        values = ctx.request.query.get(source.name)
        return values[0] if values else None
    route = ctx.route
    if where == "stage":
        return route.stage_variables.get(source.name)
    return _context_variable(ctx, source.name)


def _context_variable(ctx: Context, name: str) -> str:
    req, route = ctx.request, ctx.route
    if name == "httpMethod":
        return req.method
    if name == "path":
        return req.path
    if name == "resourcePath":  # as AWS shows it: without the template's constraints (API Gateway has none)
        return route.resource
    if name == "routeKey":  # as the route's own Lambda events name it (fastgw.functions.lambda_proxy.event_v2)
        if route.path == lp.DEFAULT_ROUTE:
            return lp.DEFAULT_ROUTE
        return f"{'ANY' if 'ANY' in route.methods else req.method} {route.resource}"
    if name == "stage":
        return route.stage or "$default"
    if name == "apiId":
        return str(route.api_id)
    if name == "domainName":
        return req.host
    return req.client_ip  # identity.sourceIp


def _stage(ctx: Context) -> str:
    return ctx.route.stage or "$default"


def method_arn(ctx: Context) -> str:
    """`arn:aws:execute-api:{region}:{account}:{apiId}/{stage}/{METHOD}/{path without the stage, no leading /}`.

    NOTE: only the prefix the route is actually served under is removed (RouteInfo.prefix): an API served at the
    root (stage_prefix false, as `sam local` serves a template) has none, and `/Prod/public/x` there is the resource
    path `Prod/public/x`, not `public/x` (which a policy for GET/public/* would admit)."""
    route = ctx.route
    path = ctx.request.path
    prefix = route.prefix
    if prefix:  # the router matched under it: the path is the prefix, or starts with it and a slash
        path = path[len(prefix) :] or "/"
    return f"{route.arn_base}{ctx.request.method}/{path[1:]}"


def build_event(ctx: Context, prep: Prepared, values: tuple[str, ...], arn: str) -> dict[str, Any]:
    """The event the authorizer function receives: API Gateway's TOKEN, REQUEST (REST), 1.0 or 2.0 (HTTP API)."""
    if prep.token:
        return {"type": "TOKEN", "authorizationToken": values[0], "methodArn": arn}
    req, route = ctx.request, ctx.route
    query = req.query_string
    call = lp.Call(
        method=req.method,
        path=req.path,
        query=query.encode("latin-1") if query else None,
        headers=[(k.encode("latin-1"), v.encode("utf-8", "surrogateescape")) for k, v in req.headers],
        body=b"",
        source_ip=req.client_ip,
        http10=False,
        request_id=str(uuid.uuid4()),
        time_ns=time.time_ns(),
        resource=route.resource,
        methods=tuple(route.methods),
        params=dict(req.params),
        stage=_stage(ctx),
        stage_variables=dict(route.stage_variables) or None,
        api_id=route.api_id,
        host=req.host,
    )
    if prep.v2:
        proxy = lp.event_v2(call)
        for drop in ("version", "body", "isBase64Encoded"):
            proxy.pop(drop, None)
        return {"version": "2.0", "type": "REQUEST", "routeArn": arn, "identitySource": list(values), **proxy}
    proxy = lp.event_v1(call)
    del proxy["body"], proxy["isBase64Encoded"]
    if prep.rest:
        return {"type": "REQUEST", "methodArn": arn, **proxy}
    joined = ",".join(values)
    return {"version": "1.0", "type": "REQUEST", "methodArn": arn, "identitySource": joined,
            "authorizationToken": joined, **proxy}  # fmt: skip


PLUGINS = (LambdaAuthorizer,)
