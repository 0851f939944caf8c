"""CORS as templates and definitions write it, read into fastgw's `cors` plugin: SAM's `Cors` (REST: quoted header
values such as "'*'"), `CorsConfiguration` (HTTP API: lists), and OpenAPI's `x-amazon-apigateway-cors`."""

from __future__ import annotations

from typing import Any

from fastgw.aws.intrinsics import integer
from fastgw.config.errors import ConfigError

ALL_METHODS = ["GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS"]


def sam_cors(cors: Any, kind: str, source: str, at: str) -> dict[str, Any] | None:
    """SAM's Cors (REST: quoted header values, "'*'") or CorsConfiguration (HTTP API: lists) as fastgw's cors."""
    if cors is None or cors is False:
        return None
    if cors is True:
        return {"origins": ["*"], "headers": None}
    if isinstance(cors, str):
        return {"origins": [_unquote(cors)]}
    if not isinstance(cors, dict):
        raise ConfigError(source, at, "expected an origin (\"'*'\") or a mapping (AllowOrigin, AllowMethods...)")
    conf: dict[str, Any] = {}
    if kind == "rest":
        conf["origins"] = [_unquote(str(cors.get("AllowOrigin", "'*'")))]
        if "AllowMethods" in cors:
            conf["methods"] = [m.strip() for m in _unquote(str(cors["AllowMethods"])).split(",") if m.strip()]
        if "AllowHeaders" in cors:
            conf["headers"] = [h.strip() for h in _unquote(str(cors["AllowHeaders"])).split(",") if h.strip()]
        if "MaxAge" in cors:
            conf["max_age"] = integer(cors["MaxAge"], source, f"{at}.MaxAge")
        if cors.get("AllowCredentials"):
            conf["credentials"] = True
        return conf
    conf["origins"] = [str(o) for o in cors.get("AllowOrigins", ["*"])]
    if "AllowMethods" in cors:
        conf["methods"] = ALL_METHODS if "*" in cors["AllowMethods"] else [str(m) for m in cors["AllowMethods"]]
    if "AllowHeaders" in cors and "*" not in cors["AllowHeaders"]:
        conf["headers"] = [str(h) for h in cors["AllowHeaders"]]
    if "ExposeHeaders" in cors:
        conf["exposed_headers"] = [str(h) for h in cors["ExposeHeaders"]]
    if "MaxAge" in cors:
        conf["max_age"] = integer(cors["MaxAge"], source, f"{at}.MaxAge")
    if cors.get("AllowCredentials"):
        conf["credentials"] = True
    return conf


def _unquote(value: str) -> str:
    value = value.strip()
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == "'" else value


def openapi_cors(cors: dict[str, Any], source: str, at: str) -> dict[str, Any]:
    conf: dict[str, Any] = {"origins": [str(o) for o in cors.get("allowOrigins", ["*"])]}
    methods = cors.get("allowMethods")
    if isinstance(methods, list):
        conf["methods"] = ALL_METHODS if "*" in methods else [str(m) for m in methods]
    headers = cors.get("allowHeaders")
    if isinstance(headers, list) and "*" not in headers:
        conf["headers"] = [str(h) for h in headers]
    if isinstance(cors.get("exposeHeaders"), list):
        conf["exposed_headers"] = [str(h) for h in cors["exposeHeaders"]]
    if cors.get("maxAge") is not None:
        conf["max_age"] = integer(cors["maxAge"], source, f"{at}.maxAge")
    if cors.get("allowCredentials"):
        conf["credentials"] = True
    return conf
