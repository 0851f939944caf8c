"""The configuration schema: msgspec Structs only (frozen, keyword-only, unknown keys refused).

Loading, cross-checks and error messages live in `fastgw.config.load`. Durations are seconds (float), sizes bytes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta, Struct, field

Seconds = Annotated[float, Meta(gt=0, le=86_400, description="seconds")]
Port = Annotated[int, Meta(ge=0, le=65_535)]
Name = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=128)]
HttpMethod = Annotated[str, Meta(pattern=r"^(ANY|GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS|TRACE)$")]
# Checked by fastgw.config.load.target_problem, which says what is wrong (a missing scheme, https, a path).
TargetURL = Annotated[str, Meta(description="http://host:port")]
Status = Annotated[int, Meta(ge=100, le=599)]


class _Base(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class ServerConfig(_Base, frozen=True):
    host: str = "127.0.0.1"
    port: Port = 8000
    workers: Annotated[int, Meta(ge=1, le=256)] = 1
    # Sent as `Server` on responses the gateway makes, and when the upstream sent none. "" sends none.
    server_header: str = "fastgw"
    # Adds `Via: 1.1 fastgw` to the request sent upstream and to the response sent back.
    via: bool = True
    # Peers (CIDRs) whose X-Forwarded-For / -Proto / -Host are trusted and kept; from anyone else they are replaced.
    trusted_proxies: list[str] = field(default_factory=list)
    # How long in-flight requests may run after SIGTERM/SIGINT before their connections are closed.
    shutdown_timeout: Seconds = 10.0
    backlog: Annotated[int, Meta(ge=1, le=65_535)] = 2048


class Limits(_Base, frozen=True):
    max_url_length: Annotated[int, Meta(ge=16, le=1_048_576)] = 8192  # 414 beyond
    max_header_size: Annotated[int, Meta(ge=256, le=1_048_576)] = 32_768  # 431 beyond (all header lines)
    max_header_field_size: Annotated[int, Meta(ge=64, le=1_048_576)] = 8192  # 431 beyond (one field: name + value)
    max_headers: Annotated[int, Meta(ge=1, le=10_000)] = 100  # 431 beyond
    max_body_size: Annotated[int, Meta(ge=0)] = 10 * 1024 * 1024  # 413 beyond; 0 = no limit
    # A proxied response on a route with body_filter phases is held whole up to this size; a bigger one streams
    # to the client unchanged (its body_filter phases skipped, with a log line).
    max_filtered_response: Annotated[int, Meta(ge=0)] = 10 * 1024 * 1024
    header_timeout: Seconds = 10.0  # whole request head must arrive within this; else 408 and close
    keepalive_timeout: Seconds = 60.0  # idle client connection closed after this


class PathPolicy(_Base, frozen=True):
    """What the gateway does with paths that backends read differently (docs/security.md). A route's or an API's
    policy inherits each field left out from the wider one; the top-level one defaults to the safe choices."""

    # `%2F` / `%5C` in a path: refused with 400 (reject, the default), kept encoded inside their segment and
    # forwarded so (keep; a segment a decoding backend would read as a dot-segment is still refused), or decoded
    # into separators, normalized, and the normalized form forwarded (decode). Envoy's REJECT_REQUEST,
    # KEEP_UNCHANGED, UNESCAPE_AND_FORWARD.
    escaped_slashes: Literal["reject", "keep", "decode"] | None = None
    # A backslash in a path: refused with 400 (reject, the default), or read as `/` (separator).
    backslash: Literal["reject", "separator"] | None = None


class LoggingConfig(_Base, frozen=True):
    level: Literal["debug", "info", "warning", "error"] = "info"
    # The gateway's own log on stderr: readable lines, or one JSON object a line.
    format: Literal["text", "json"] = "text"
    access_log: bool = True
    access_log_format: Literal["json", "text"] = "json"
    # A file (appended to, reopened on SIGUSR1 for logrotate); default: stdout. Relative to the working directory.
    access_log_path: str | None = None


class AdminConfig(_Base, frozen=True):
    """The admin API's own listener (docs/admin-api.md). A non-loopback host needs a token."""

    host: str = "127.0.0.1"
    port: Port = 9901
    # Sent as `Authorization: Bearer <token>`; with one set, every admin request must carry it.
    token: str | None = None
    # /metrics (Prometheus), which needs the `metrics` extra; false: no counters are kept at all.
    metrics: bool = True
    # Where deployments (every config that went live) are kept. Default: `<config file>.deployments/` beside it.
    deployments_dir: str | None = None


class PoolConfig(_Base, frozen=True):
    max_idle: Annotated[int, Meta(ge=0, le=100_000)] = 128  # idle keep-alive connections kept per target
    idle_timeout: Seconds = 60.0


class Upstream(_Base, frozen=True):
    targets: Annotated[list[TargetURL], Meta(min_length=1)]
    connect_timeout: Seconds = 5.0
    read_timeout: Seconds = 60.0  # longest wait for the response head, and between body reads
    send_timeout: Seconds = 60.0  # longest wait for the upstream to accept request bytes
    pool: PoolConfig = field(default_factory=PoolConfig)


class HttpIntegration(_Base, frozen=True, tag="http"):
    upstream: str
    # Removed from the start of the path before it goes upstream ("/api" makes /api/users go as /users).
    strip_prefix: str | None = None
    # Upstream path template; {param} (and {name+}) are filled from the route's parameters.
    path: str | None = None
    # Send the client's Host upstream (true), or the target's host:port (false, the default).
    preserve_host: bool = False
    # Send exactly this Host upstream.
    host: str | None = None


class MockIntegration(_Base, frozen=True, tag="mock"):
    status: Status = 200
    headers: dict[str, str] = field(default_factory=dict)
    # A string is sent as it is (text/plain unless a content-type header is given); anything else as JSON.
    body: str | dict | list | int | float | bool | None = None


class LambdaIntegration(_Base, frozen=True, tag="lambda"):
    """Lambda proxy integration: the request becomes an API Gateway event for a function of `functions`."""

    # A name in `functions`; may use `${stageVariables.NAME}`, resolved per stage when the config loads.
    function: str
    # The event and response format: "1.0" (REST APIs) or "2.0" (HTTP APIs). Default: the API's type decides
    # (rest -> 1.0, http -> 2.0); 2.0 for routes outside any API.
    payload_format: Literal["1.0", "2.0"] | None = None
    # API Gateway's integration timeout: past it a REST API answers 504 {"message": "Endpoint request timed out"},
    # an HTTP API (and a route outside APIs) 503 {"message":"Service Unavailable"}.
    timeout: Seconds = 29.0


Integration = HttpIntegration | MockIntegration | LambdaIntegration


# Plugin name -> its configuration (checked against the plugin's own Config when the config loads), or `false`
# to switch off a plugin configured at a wider level (globally, or on the route's API).
PluginName = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9_.-]*$", max_length=128)]
Plugins = dict[PluginName, Any]


class Route(_Base, frozen=True):
    path: str
    integration: Integration
    name: Name | None = None
    methods: Annotated[list[HttpMethod], Meta(min_length=1)] = field(default_factory=lambda: ["ANY"])
    host: str | None = None
    plugins: Plugins = field(default_factory=dict)
    path_policy: PathPolicy | None = None  # fields left out: the API's, then the top-level policy's


EnvName = Annotated[str, Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class Function(_Base, frozen=True):
    """A handler run by a pool of worker processes, invoked with an API Gateway event (Lambda's model)."""

    runtime: Literal["python", "nodejs"]
    # python: "module.func" (looked up under `code`) or "file.py:func"; nodejs: "index.handler" (file index.mjs,
    # index.js or index.cjs in `code`, export `handler`).
    handler: str
    # The folder holding the code, relative to the config file. Default: the config file's folder.
    code: str | None = None
    timeout: Seconds = 3.0  # Lambda's default: past it the invocation fails and its worker is replaced
    memory_size: Annotated[int, Meta(ge=128, le=10_240)] = 128  # reported to the handler, as Lambda does
    environment: dict[EnvName, str] = field(default_factory=dict)
    # Worker processes, i.e. invocations at once; started on demand, the first `warm` ones when serving starts.
    concurrency: Annotated[int, Meta(ge=1, le=1000)] = 4
    warm: Annotated[int, Meta(ge=0, le=1000)] = 1
    # Invocations waiting for a free worker; beyond it the client gets 429 {"message": "Too Many Requests"}.
    queue: Annotated[int, Meta(ge=0, le=100_000)] = 100


StageName = Annotated[str, Meta(pattern=r"^(\$default|[A-Za-z0-9_-]+)$", max_length=128)]


class Stage(_Base, frozen=True):
    variables: dict[Annotated[str, Meta(pattern=r"^[A-Za-z0-9_]+$")], str] = field(default_factory=dict)


class Api(_Base, frozen=True):
    """AWS-style API: routes deployed to stages. A REST API serves each stage under `/{stage}`; an HTTP API's
    `$default` stage is served without a prefix."""

    type: Literal["rest", "http"] = "rest"
    routes: list[Route] = field(default_factory=list)
    # Default: none for a REST API (it is served only through a stage), `$default` for an HTTP API.
    stages: dict[StageName, Stage] = field(default_factory=dict)
    # `requestContext.apiId` in events. Default: derived from the API's name.
    id: Annotated[str, Meta(pattern=r"^[a-z0-9]{1,32}$")] | None = None
    plugins: Plugins = field(default_factory=dict)
    path_policy: PathPolicy | None = None  # for the API's routes; fields left out: the top-level policy's


class Consumer(_Base, frozen=True):
    """An identity clients authenticate as (with key-auth, basic-auth, jwt-auth...)."""

    groups: list[Name] = field(default_factory=list)
    custom: dict[str, str] = field(default_factory=dict)  # free fields, e.g. tier: gold (templates, logs)
    # Plugin name -> that plugin's credentials for this consumer (each checked against the plugin's Credential).
    credentials: dict[PluginName, list[Any]] = field(default_factory=dict)
    # Plugins for this consumer's requests, on every route where it authenticates (replacing the route's own
    # configuration of the same plugin; `false` switches one off). Only plugins that run after authentication.
    plugins: Plugins = field(default_factory=dict)


class ConsumerHeaders(_Base, frozen=True):
    """Headers telling the upstream who the consumer is; any the client sent are removed. null: not sent."""

    username: str | None = "X-Consumer-Username"
    groups: str | None = "X-Consumer-Groups"


class Config(_Base, frozen=True):
    routes: list[Route] = field(default_factory=list)
    # Plugins on every route (a route's or its API's own configuration of the same plugin replaces this one).
    plugins: Plugins = field(default_factory=dict)
    # Extra plugin classes by dotted path ("package.module:ClassName"), beside the built-in ones and those
    # installed under the `fastgw.plugins` entry-point group.
    plugin_modules: list[str] = field(default_factory=list)
    consumers: dict[Name, Consumer] = field(default_factory=dict)
    consumer_headers: ConsumerHeaders = field(default_factory=ConsumerHeaders)
    functions: dict[Name, Function] = field(default_factory=dict)
    apis: dict[Name, Api] = field(default_factory=dict)
    upstreams: dict[Name, Upstream] = field(default_factory=dict)
    server: ServerConfig = field(default_factory=ServerConfig)
    limits: Limits = field(default_factory=Limits)
    path_policy: PathPolicy = field(default_factory=PathPolicy)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    admin: AdminConfig | None = None  # no admin listener unless configured
