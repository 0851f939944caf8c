"""Authorizers of templates and OpenAPI definitions as fastgw plugins: Lambda authorizers (REST TOKEN and REQUEST,
HTTP API payload 1.0 and 2.0, simple responses) become the `lambda-authorizer` plugin, JWT authorizers `jwt-auth`,
and a method any of several authorizers may admit `multi-auth`.

The plugins' configuration (`lambda-authorizer: {function, type, api, payload_format, simple_responses,
identity_source, validation_expression, ttl}`, `multi-auth: {auth_plugins: [...]}`) is their interface; identity
sources are written as API Gateway writes a REST API's (`method.request.header.Authorization`,
`method.request.querystring.q`, `stageVariables.v`, `context.c`) for both API types.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastgw.aws.intrinsics import integer
from fastgw.config.errors import ConfigError

LAMBDA = "lambda-authorizer"
JWT = "jwt-auth"
MULTI = "multi-auth"
DEFAULT_TTL = 300

# One authorizer as a plugin: (plugin name, its configuration).
Authorizer = tuple[str, dict[str, Any]]

# An authorizer fastgw does not run (Cognito user pools, IAM, API keys, other x-amazon-apigateway-authorizer types):
# a marker in a route's plugins that fastgw.aws.close_unenforced settles once the whole config is read (401 unless
# the user asked for such routes open); it never reaches the plugin registry.
UNENFORCED = "aws-unenforced"


def unenforced(what: str) -> Authorizer:
    return UNENFORCED, {"what": what}


def plugins_for(authorizers: list[Authorizer]) -> dict[str, Any]:
    """A route's plugins for authorizers any one of which admits a request."""
    if not authorizers:
        return {}
    if len(authorizers) == 1:
        name, conf = authorizers[0]
        return {name: conf}
    return {MULTI: {"auth_plugins": [{name: conf} for name, conf in authorizers]}}


def lambda_authorizer(
    function: str,
    *,
    kind: str,
    api: str,
    identity_source: list[str],
    payload_format: str = "1.0",
    simple_responses: bool = False,
    validation_expression: str | None = None,
    ttl: int = DEFAULT_TTL,
) -> Authorizer:
    return LAMBDA, {
        "function": function,
        "type": kind,
        "api": api,
        "payload_format": payload_format,
        "simple_responses": simple_responses,
        "identity_source": identity_source,
        "validation_expression": validation_expression,
        "ttl": ttl,
    }


def jwt(issuer: str, audience: list[str] | None, headers: list[str], scopes: list[str] | None = None) -> Authorizer:
    """A JWT authorizer: the token's issuer and audience checked, its keys from the issuer's JWKS (Cognito's and
    most identity providers' `{issuer}/.well-known/jwks.json`; fastgw does not fetch OIDC discovery at load)."""
    conf: dict[str, Any] = {
        "issuer": issuer,
        "jwks_url": issuer.rstrip("/") + "/.well-known/jwks.json",
        "header_names": headers or ["authorization"],
    }
    if audience:
        conf["audience"] = audience
    if scopes:
        conf["scopes"] = scopes
    return JWT, conf


def _source(where: str, name: str) -> str:
    return {
        "header": f"method.request.header.{name}",
        "querystring": f"method.request.querystring.{name}",
        "stage": f"stageVariables.{name}",
        "context": f"context.{name}",
    }[where]


def http_source(value: str) -> str:
    """An HTTP API identity source (`$request.header.Authorization`) written as a REST API's."""
    v = value.strip()
    for prefix, where in (("$request.header.", "header"), ("$request.querystring.", "querystring"),
                          ("$stageVariables.", "stage"), ("$context.", "context")):  # fmt: skip
        if v.startswith(prefix):
            return _source(where, v[len(prefix) :])
    return v


def _identity(identity: dict[str, Any], plural_headers: bool) -> list[str]:
    out: list[str] = []
    headers = identity.get("Headers") if plural_headers else None
    if headers is None and identity.get("Header"):
        headers = [identity["Header"]]
    for h in headers or []:
        out.append(_source("header", str(h)))
    for key, where in (("QueryStrings", "querystring"), ("StageVariables", "stage"), ("Context", "context")):
        for v in identity.get(key) or []:
            out.append(_source(where, str(v)))
    return out


def sam_authorizers(
    auth: Any,
    kind: str,
    source: str,
    at: str,
    function_of_arn: Callable[[str], str | None],
) -> tuple[dict[str, Authorizer], str | None]:
    """A SAM Api's or HttpApi's `Auth`: its authorizers by name, and the default one's name (None: none)."""
    if auth is None:
        return {}, None
    if not isinstance(auth, dict):
        raise ConfigError(source, at, "expected a mapping (Authorizers, DefaultAuthorizer)")
    out: dict[str, Authorizer] = {}
    for name, spec in (auth.get("Authorizers") or {}).items():
        sat = f"{at}.Authorizers.{name}"
        if not isinstance(spec, dict):
            raise ConfigError(source, sat, "expected a mapping")
        if "FunctionArn" in spec:
            fname = function_of_arn(str(spec["FunctionArn"]))
            if fname is None:
                raise ConfigError(source, f"{sat}.FunctionArn", "expected the ARN of a function of this template")
            identity = spec.get("Identity") or {}
            ttl = integer(identity.get("ReauthorizeEvery", DEFAULT_TTL), source, f"{sat}.Identity.ReauthorizeEvery")
            if kind == "rest":
                payload = str(spec.get("FunctionPayloadType", "TOKEN")).upper()
                if payload not in ("TOKEN", "REQUEST"):
                    raise ConfigError(
                        source, f"{sat}.FunctionPayloadType", f"expected TOKEN or REQUEST, got {payload!r}"
                    )
                sources = _identity(identity, plural_headers=payload == "REQUEST")
                if payload == "TOKEN" and not sources:
                    sources = [_source("header", "Authorization")]
                out[name] = lambda_authorizer(
                    fname, kind=payload.lower(), api="rest", identity_source=sources,
                    validation_expression=identity.get("ValidationExpression"), ttl=ttl,
                )  # fmt: skip
            else:
                fmt = str(spec.get("AuthorizerPayloadFormatVersion", "2.0"))
                if fmt not in ("1.0", "2.0"):
                    raise ConfigError(
                        source, f"{sat}.AuthorizerPayloadFormatVersion", f"expected 1.0 or 2.0, got {fmt!r}"
                    )
                sources = _identity(identity, plural_headers=True) or [_source("header", "Authorization")]
                if "ReauthorizeEvery" not in identity:
                    ttl = 0  # an HTTP API caches only when told to
                out[name] = lambda_authorizer(
                    fname, kind="request", api="http", identity_source=sources, payload_format=fmt,
                    simple_responses=bool(spec.get("EnableSimpleResponses", False)), ttl=ttl,
                )  # fmt: skip
        elif "JwtConfiguration" in spec:
            jc = spec["JwtConfiguration"] or {}
            issuer = jc.get("issuer") or jc.get("Issuer")
            if not isinstance(issuer, str):
                raise ConfigError(source, f"{sat}.JwtConfiguration.issuer", "expected the issuer URL")
            audience = jc.get("audience") or jc.get("Audience")
            id_source = str(spec.get("IdentitySource", "$request.header.Authorization"))
            header = http_source(id_source).removeprefix("method.request.header.")
            out[name] = jwt(issuer, [str(a) for a in audience] if audience else None, [header.lower()])
        else:
            out[name] = unenforced(f"{sat} (a Cognito or IAM authorizer)")
    default = auth.get("DefaultAuthorizer")
    if default == "AWS_IAM":
        out.setdefault("AWS_IAM", unenforced(f"{at}.DefaultAuthorizer (AWS_IAM)"))
    if default is not None and default not in out:
        known = ", ".join(sorted(out)) or "none"
        raise ConfigError(source, f"{at}.DefaultAuthorizer", f"no authorizer {default!r} (its authorizers: {known})")
    return out, default if default in out else None


def event_authorizers(
    event_auth: Any, authorizers: dict[str, Authorizer], default: str | None, source: str, at: str
) -> list[Authorizer]:
    """An event's route: its own `Auth.Authorizer` (NONE: open) or the API's default, with its scopes."""
    name = default
    scopes = None
    if isinstance(event_auth, dict):
        if "Authorizer" in event_auth:
            name = event_auth["Authorizer"]
        scopes = event_auth.get("AuthorizationScopes")
    if name is None or name == "NONE":
        return []
    if name == "AWS_IAM" and name not in authorizers:
        return [unenforced(f"{at}.Auth.Authorizer (AWS_IAM)")]
    if name not in authorizers:
        known = ", ".join(sorted(authorizers)) or "none"
        raise ConfigError(
            source, f"{at}.Auth.Authorizer", f"no authorizer {name!r} on this API (its authorizers: {known})"
        )
    plugin, conf = authorizers[name]
    if scopes and plugin == JWT:
        conf = {**conf, "scopes": [str(s) for s in scopes]}
    return [(plugin, conf)]


def openapi_authorizers(
    doc: dict[str, Any], source: str, at: str, api_type: str, functions: Callable[[str], str | None]
) -> dict[str, Authorizer]:
    """`securitySchemes` (OpenAPI 3) or `securityDefinitions` (Swagger 2) with `x-amazon-apigateway-authorizer`."""
    if "securityDefinitions" in doc:
        schemes, sat = doc.get("securityDefinitions") or {}, f"{at}.securityDefinitions"
    else:
        schemes, sat = (doc.get("components") or {}).get("securitySchemes") or {}, f"{at}.components.securitySchemes"
    out: dict[str, Authorizer] = {}
    for name, scheme in schemes.items():
        spec = scheme.get("x-amazon-apigateway-authorizer") if isinstance(scheme, dict) else None
        if not isinstance(spec, dict):
            out[name] = unenforced(f"{sat}.{name} (not an x-amazon-apigateway-authorizer: API keys, IAM)")
            continue
        kind = str(spec.get("type", "token")).lower()
        xat = f"{sat}.{name}.x-amazon-apigateway-authorizer"
        if kind == "jwt":
            jc = spec.get("jwtConfiguration") or {}
            if not isinstance(jc.get("issuer"), str):
                raise ConfigError(source, f"{xat}.jwtConfiguration.issuer", "expected the issuer URL")
            header = http_source(str(spec.get("identitySource", "$request.header.Authorization")))
            audience = jc.get("audience")
            out[name] = jwt(jc["issuer"], [str(a) for a in audience] if audience else None,
                            [header.removeprefix("method.request.header.").lower()])  # fmt: skip
            continue
        if kind not in ("token", "request"):
            out[name] = unenforced(f"{xat} (type {kind!r}: token, request and jwt are run)")
            continue
        uri = spec.get("authorizerUri")
        fname = functions(uri) if isinstance(uri, str) else None
        if fname is None:
            raise ConfigError(source, f"{xat}.authorizerUri", f"names no function of this config or template: {uri!r}")
        raw_sources = str(
            spec.get("identitySource") or ("method.request.header." + str(scheme.get("name") or "Authorization"))
        )
        sources = [http_source(s) for s in raw_sources.split(",") if s.strip()]
        ttl = spec.get("authorizerResultTtlInSeconds")
        if api_type == "http":
            out[name] = lambda_authorizer(
                fname, kind="request", api="http", identity_source=sources,
                payload_format=str(spec.get("authorizerPayloadFormatVersion", "2.0")),
                simple_responses=bool(spec.get("enableSimpleResponses", False)),
                ttl=integer(ttl or 0, source, f"{xat}.authorizerResultTtlInSeconds"),
            )  # fmt: skip
        else:
            out[name] = lambda_authorizer(
                fname, kind=kind, api="rest", identity_source=sources,
                validation_expression=spec.get("identityValidationExpression"),
                ttl=integer(DEFAULT_TTL if ttl is None else ttl, source, f"{xat}.authorizerResultTtlInSeconds"),
            )  # fmt: skip
    return out


def security(requirements: Any, authorizers: dict[str, Authorizer]) -> list[Authorizer] | None:
    """An OpenAPI `security` list (any one requirement admits a request) as authorizers; None: nothing enforced
    (an empty list, or schemes that are not run)."""
    if not isinstance(requirements, list):
        return None
    out: list[Authorizer] = []
    for req in requirements:
        if not isinstance(req, dict):
            continue
        for name, scopes in req.items():
            if name in authorizers:
                plugin, conf = authorizers[name]
                if scopes and plugin == JWT:
                    conf = {**conf, "scopes": [str(s) for s in scopes]}
                out.append((plugin, conf))
    return out
