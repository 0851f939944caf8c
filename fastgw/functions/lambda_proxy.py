"""Lambda proxy integration, as API Gateway documents it: the request as an event (payload format 1.0 for REST
APIs, 2.0 for HTTP APIs) and the function's return value as the response, with the same rules and errors.

Everything here is a pure function of its arguments, so the event and response rules are tested without a
socket; `fastgw/functions/integration.py` wires them to the client connection and the worker pools.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson

from fastgw.functions.pool import ACCOUNT_ID

# Errors byte for byte as API Gateway sends them (docs/functions.md gives the source of each): REST APIs put a
# space after the colon in these, HTTP APIs do not.
REST_ERROR = (502, b'{"message": "Internal server error"}')
HTTP_ERROR = (500, b'{"message":"Internal Server Error"}')
REST_TIMEOUT_ERROR = (504, b'{"message": "Endpoint request timed out"}')
HTTP_TIMEOUT_ERROR = (503, b'{"message":"Service Unavailable"}')
THROTTLED_ERROR = (429, b'{"message":"Too Many Requests"}')


def timeout_error(rest: bool) -> tuple[int, bytes]:
    """The answer when the integration timeout passes: REST APIs 504, HTTP APIs (and routes outside APIs) 503."""
    return REST_TIMEOUT_ERROR if rest else HTTP_TIMEOUT_ERROR


_V1_RESPONSE_KEYS = frozenset({"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"})
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Set by the gateway from the response's framing, never by the function.
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te", "trailer"})
_TEXT_TYPES = re.compile(
    rb"^(text/|application/(json|xml|javascript|x-www-form-urlencoded|graphql|ld\+json)|[^;]*\+(json|xml))", re.I
)


class MalformedResponse(Exception):
    """The function's return value is not a valid proxy response; the message says exactly what is wrong."""


@dataclass(frozen=True)
class Call:
    """What the event is made of: the request as received and the route it matched."""

    method: str
    path: str  # the whole path the client asked for (stage prefix included), normalized
    query: bytes | None
    headers: list[tuple[bytes, bytes]]  # names lower-cased, in arrival order
    body: bytes
    source_ip: str
    http10: bool
    request_id: str
    time_ns: int
    resource: str  # the route's template, without the stage ("/{proxy+}")
    methods: tuple[str, ...]  # the route's methods
    params: dict[str, str]
    stage: str  # "$default" outside any API
    stage_variables: dict[str, str] | None
    api_id: str
    host: str
    # Who an auth plugin of the route identified: {"principalId", "consumer", "groups", custom fields...}, or what a
    # Lambda authorizer answered (fastgw/plugins/lambda_authorizer.py).
    authorizer: dict[str, Any] | None = None
    # The claims and scopes of a JWT that jwt-auth validated.
    jwt: tuple[dict[str, Any], list[str]] | None = None
    # A REST API's binary media types (its rule for the body: see `_body`); None: an HTTP API's rule.
    binary_types: tuple[str, ...] | None = None


DEFAULT_ROUTE = "$default"  # an HTTP API's catch-all route, as its routeKey and resource name it


def request_time(time_ns: int) -> str:
    """`12/Mar/2020:19:03:58 +0000`, API Gateway's requestTime."""
    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(time_ns // 1_000_000_000))


def _media_type(value: bytes | str) -> str:
    """`image/png` of `Image/PNG; q=1`: the type without parameters, lower-cased."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return value.split(";", 1)[0].strip().lower()


def binary_match(media_type: str, binary_types: tuple[str, ...]) -> bool:
    """Whether a media type is one of an API's binary media types, as API Gateway matches them: exactly, or by a
    wildcard in the list (`*/*` any type, `image/*` any image; a `*` in the media type itself is no wildcard)."""
    if not media_type:
        return "*/*" in binary_types
    major = media_type.split("/", 1)[0]
    return any(t in ("*/*", media_type) or (t.endswith("/*") and t[:-2] == major) for t in binary_types)


def _body(call: Call) -> tuple[str | None, bool]:
    """The body as API Gateway passes it to a Lambda proxy integration (docs/functions.md, Binary bodies).

    A REST API (binary_types given) base64-encodes it when its Content-Type is one of the API's binary media types
    (no Content-Type counts as application/json, API Gateway's default) and passes anything else as UTF-8 text, as
    API Gateway does; an HTTP API, which has no binary media types, passes text types as they are and base64-encodes
    the rest."""
    if not call.body:
        return None, False
    ctype = next((v for k, v in call.headers if k == b"content-type"), b"")
    if call.binary_types is not None:
        if binary_match(_media_type(ctype) or "application/json", call.binary_types):
            return base64.b64encode(call.body).decode("ascii"), True
        # NOTE: bytes that are not UTF-8 reach the function as U+FFFD, as they reach a REST API's Lambda.
        return call.body.decode("utf-8", "replace"), False
    if not ctype or _TEXT_TYPES.match(ctype.strip()):
        try:
            return call.body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(call.body).decode("ascii"), True


def _s(b: bytes) -> str:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return b.decode("latin-1")  # header octets that are not UTF-8: kept one character per byte


def _stage_path(call: Call) -> str:
    """The path without the stage prefix (what `path` is in a 1.0 event)."""
    if call.stage != "$default":
        prefix = "/" + call.stage
        if call.path == prefix:
            return "/"
        if call.path.startswith(prefix + "/"):
            return call.path[len(prefix) :]
    return call.path


def _domain(call: Call) -> tuple[str, str]:
    domain = call.host or f"{call.api_id}.execute-api.localhost"
    return domain, domain.split(".", 1)[0]


def event_v1(call: Call) -> dict[str, Any]:
    headers: dict[str, str] = {}
    multi_headers: dict[str, list[str]] = {}
    for k, v in call.headers:
        name, value = _s(k), _s(v)
        headers[name] = value
        multi_headers.setdefault(name, []).append(value)
    query: dict[str, str] | None = None
    multi_query: dict[str, list[str]] | None = None
    if call.query:
        pairs = parse_qsl(call.query.decode("latin-1"), keep_blank_values=True)
        if pairs:
            query, multi_query = {}, {}
            for qk, qv in pairs:
                query[qk] = qv
                multi_query.setdefault(qk, []).append(qv)
    body, b64 = _body(call)
    domain, prefix = _domain(call)
    ua = headers.get("user-agent")
    return {
        "resource": call.resource,
        "path": _stage_path(call),
        "httpMethod": call.method,
        "headers": headers or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": dict(call.params) or None,
        "stageVariables": call.stage_variables or None,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": call.api_id,
            "domainName": domain,
            "domainPrefix": prefix,
            "extendedRequestId": call.request_id,
            "httpMethod": call.method,
            "identity": {
                "accessKey": None,
                "accountId": None,
                "caller": None,
                "cognitoAuthenticationProvider": None,
                "cognitoAuthenticationType": None,
                "cognitoIdentityId": None,
                "cognitoIdentityPoolId": None,
                "principalOrgId": None,
                "sourceIp": call.source_ip,
                "user": None,
                "userAgent": ua,
                "userArn": None,
            },
            "path": call.path,
            "protocol": "HTTP/1.0" if call.http10 else "HTTP/1.1",
            "requestId": call.request_id,
            "requestTime": request_time(call.time_ns),
            "requestTimeEpoch": call.time_ns // 1_000_000,
            "resourceId": DEFAULT_ROUTE if call.resource == DEFAULT_ROUTE else _resource_id(call.resource),
            "resourcePath": call.resource,
            "stage": call.stage,
            **({"authorizer": _authorizer_v1(call)} if call.authorizer else {}),
        },
        "body": body,
        "isBase64Encoded": b64,
    }


def _authorizer_v1(call: Call) -> dict[str, Any]:
    out: dict[str, Any] = dict(call.authorizer or {})
    if call.jwt is not None:
        out["claims"], out["scopes"] = call.jwt[0], call.jwt[1] or None  # as a Cognito/JWT authorizer's
    return out


def _authorizer_v2(call: Call) -> dict[str, Any]:
    if call.jwt is not None:
        return {"jwt": {"claims": call.jwt[0], "scopes": call.jwt[1] or None}}
    return {"lambda": dict(call.authorizer or {})}


def _resource_id(resource: str) -> str:
    """A stable 6-character id for the resource, like API Gateway's."""
    return hashlib.sha256(resource.encode()).hexdigest()[:6]


def event_v2(call: Call) -> dict[str, Any]:
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for k, v in call.headers:
        if k == b"cookie":
            cookies.extend(c.strip() for c in _s(v).split(";") if c.strip())
            continue
        name, value = _s(k), _s(v)
        headers[name] = headers[name] + "," + value if name in headers else value
    if call.resource == DEFAULT_ROUTE:
        route_key = DEFAULT_ROUTE  # AWS: the $default route's events say so, whatever the method and path
    else:
        route_key = f"{'ANY' if 'ANY' in call.methods else call.method} {call.resource}"
    domain, prefix = _domain(call)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": call.path,
        "rawQueryString": call.query.decode("latin-1") if call.query else "",
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    if call.query:
        query: dict[str, str] = {}
        for qk, qv in parse_qsl(call.query.decode("latin-1"), keep_blank_values=True):
            query[qk] = query[qk] + "," + qv if qk in query else qv
        if query:
            event["queryStringParameters"] = query
    event["requestContext"] = {
        "accountId": ACCOUNT_ID,
        "apiId": call.api_id,
        # As a JWT authorizer's claims, or a Lambda authorizer's context, appear in an HTTP API event.
        **({"authorizer": _authorizer_v2(call)} if call.authorizer else {}),
        "domainName": domain,
        "domainPrefix": prefix,
        "http": {
            "method": call.method,
            "path": call.path,
            "protocol": "HTTP/1.0" if call.http10 else "HTTP/1.1",
            "sourceIp": call.source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": call.request_id,
        "routeKey": route_key,
        "stage": call.stage,
        "time": request_time(call.time_ns),
        "timeEpoch": call.time_ns // 1_000_000,
    }
    body, b64 = _body(call)
    if body is not None:
        event["body"] = body
    if call.params:
        event["pathParameters"] = dict(call.params)
    event["isBase64Encoded"] = b64
    if call.stage_variables:
        event["stageVariables"] = dict(call.stage_variables)
    return event


# -- responses ------------------------------------------------------------------------------------------------

Headers = list[tuple[str, str]]


def _header_value(name: str, value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if not isinstance(value, str):
        raise MalformedResponse(f"{where}.{name} must be a string, got {type(value).__name__}")
    if "\r" in value or "\n" in value or "\0" in value:
        raise MalformedResponse(f"{where}.{name} contains CR, LF or NUL")
    return value


def _header_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not _TOKEN.match(name):
        raise MalformedResponse(f"{where} has an invalid header name {name!r}")
    return name


def _status(value: dict[str, Any]) -> int:
    status = value.get("statusCode")
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if isinstance(status, bool) or not isinstance(status, int):
        raise MalformedResponse(
            "statusCode is missing" if status is None else f"statusCode must be an integer, got {status!r}"
        )
    if not 200 <= status <= 599:
        raise MalformedResponse(f"statusCode must be between 200 and 599, got {status}")
    return status


def _decode_body(value: dict[str, Any], decode: bool = True) -> bytes:
    body = value.get("body")
    if body is None:
        return b""
    if not isinstance(body, str):
        raise MalformedResponse(f"body must be a string, got {type(body).__name__} (use JSON.stringify / json.dumps)")
    b64 = value.get("isBase64Encoded", False)
    if not isinstance(b64, bool):
        raise MalformedResponse(f"isBase64Encoded must be a boolean, got {b64!r}")
    if b64:
        # NOTE: checked even where it is passed on as text (decode false): a function that says base64 and sends
        # something else is a bug to see locally, whatever the client's Accept header.
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise MalformedResponse("body is not valid base64 although isBase64Encoded is true") from None
        if decode:
            return raw
    return body.encode("utf-8", "surrogatepass")


def _finish(headers: Headers) -> Headers:
    kept = [(k, v) for k, v in headers if k.lower() not in _FRAMING]
    if not any(k.lower() == "content-type" for k, _ in kept):
        kept.append(("Content-Type", "application/json"))
    return kept


def response_v1(value: Any, rest: bool, decode: bool = True) -> tuple[int, Headers, bytes]:
    """A 1.0 response: an object with statusCode and a string body; on REST APIs no other keys. With `decode`
    false (a REST API whose client did not ask for a binary media type) a base64 body is sent as the text it is."""
    if not isinstance(value, dict):
        raise MalformedResponse(
            f"the function returned {json_kind(value)}; payload format 1.0 needs an object with statusCode and body"
        )
    if rest:
        unknown = sorted(set(value) - _V1_RESPONSE_KEYS)
        if unknown:
            raise MalformedResponse(
                f"unknown key(s) {', '.join(map(repr, unknown))}; a REST API accepts only "
                + ", ".join(sorted(_V1_RESPONSE_KEYS))
            )
    status = _status(value)
    body = _decode_body(value, decode)
    merged: dict[str, list[str]] = {}
    multi = value.get("multiValueHeaders")
    if multi is not None:
        if not isinstance(multi, dict):
            raise MalformedResponse(f"multiValueHeaders must be an object, got {json_kind(multi)}")
        for k, vs in multi.items():
            name = _header_name(k, "multiValueHeaders")
            if not isinstance(vs, list):
                raise MalformedResponse(f"multiValueHeaders.{name} must be a list, got {json_kind(vs)}")
            merged[name] = [_header_value(name, v, "multiValueHeaders") for v in vs]
    for name, v in _single_headers(value):
        # API Gateway merges the two; a name given in both keeps the multiValueHeaders values.
        if name not in merged:
            merged[name] = [v]
    return status, _finish([(k, v) for k, vs in merged.items() for v in vs]), body


def _single_headers(value: dict[str, Any]) -> Headers:
    single = value.get("headers")
    if single is None:
        return []
    if not isinstance(single, dict):
        raise MalformedResponse(f"headers must be an object, got {json_kind(single)}")
    out: Headers = []
    for k, v in single.items():
        name = _header_name(k, "headers")
        out.append((name, _header_value(name, v, "headers")))
    return out


def response_v2(value: Any, decode: bool = True) -> tuple[int, Headers, bytes]:
    """A 2.0 response: an object with statusCode is taken as a response; anything else is the body of a 200 with
    Content-Type application/json: a string as it is (AWS's own example: `"Hello from Lambda!"` becomes the body
    `Hello from Lambda!`), any other value as JSON."""
    if not isinstance(value, dict) or "statusCode" not in value:
        body = value.encode() if isinstance(value, str) else orjson.dumps(value)
        return 200, [("Content-Type", "application/json")], body
    status = _status(value)
    body = _decode_body(value, decode)
    headers = _single_headers(value)
    cookies = value.get("cookies")
    if cookies is not None:
        if not isinstance(cookies, list):
            raise MalformedResponse(f"cookies must be a list of strings, got {json_kind(cookies)}")
        for c in cookies:
            headers.append(("Set-Cookie", _header_value("cookies", c, "cookies")))
    return status, _finish(headers), body


def decode_for(binary_types: tuple[str, ...] | None, accept: bytes | None) -> bool:
    """Whether a function's base64 body (`isBase64Encoded: true`) is decoded to bytes for the client. An HTTP API
    always decodes it; a REST API only when the first media type of the request's Accept header is one of its
    binary media types (API Gateway: "uses the first Accept header from clients to determine if a response should
    return binary media"), else the client gets the base64 text."""
    if binary_types is None:
        return True
    first = accept.split(b",", 1)[0] if accept else b""
    return binary_match(_media_type(first), binary_types)


def json_kind(value: Any) -> str:
    """What a JSON value is, in words for an error message ("an array", "null", ...)."""
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return "an object" if isinstance(value, dict) else type(value).__name__
