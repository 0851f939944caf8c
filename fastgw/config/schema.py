"""The configuration schema: msgspec Structs only (frozen, keyword-only, unknown keys refused).

Loading, cross-checks and error messages live in `fastgw.config.load`. Durations are seconds (float), sizes bytes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta, Struct, field

from fastgw.control.etcd_config import EtcdConfig

Seconds = Annotated[float, Meta(gt=0, le=86_400, description="seconds")]
Port = Annotated[int, Meta(ge=0, le=65_535)]
Name = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=128)]
HttpMethod = Annotated[str, Meta(pattern=r"^(ANY|GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS|TRACE)$")]
# Checked by fastgw.config.checks.target_problem, which says what is wrong (a missing scheme, a path, a port).
TargetURL = Annotated[str, Meta(description="http://host:port or https://host:port")]
Status = Annotated[int, Meta(ge=100, le=599)]


class _Base(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class Certificate(_Base, frozen=True):
    """A certificate (PEM, the leaf first, then its chain) and its private key (PEM, unencrypted), relative to the
    config file. The names it serves come from its subjectAltName DNS entries (its CN when it has none)."""

    cert_file: str
    key_file: str


class ServerTLS(_Base, frozen=True):
    """TLS termination. Without `port`, `server.port` serves TLS only; with it, TLS listens there beside plain HTTP
    on `server.port` (docs/operations.md, TLS, says why)."""

    # The default certificate (for clients asking for a name no certificate has, or for none), unless only
    # `certificates` is given: then its first one is.
    cert_file: str | None = None
    key_file: str | None = None
    # More certificates, chosen by the name the client asks for (SNI).
    certificates: list[Certificate] = field(default_factory=list)
    port: Port | None = None
    min_version: Literal["TLSv1.2", "TLSv1.3"] = "TLSv1.2"
    max_version: Literal["TLSv1.2", "TLSv1.3"] = "TLSv1.3"  # TLSv1.2 pins a benchmark, or an old client's bug
    # An OpenSSL cipher string for TLS 1.2 ("ECDHE-RSA-AES128-GCM-SHA256"); default: OpenSSL's secure defaults.
    ciphers: Annotated[str, Meta(min_length=1)] | None = None


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
    tls: ServerTLS | None = None  # no TLS listener unless configured


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
    # Longest wait for the next bytes of a request body on its way; past it the client gets 408 and is closed, and
    # the upstream connection is dropped without counting against the target (docs/security.md).
    body_timeout: Seconds = 30.0
    # Longest wait for a client to take any of the response bytes written to it (nginx's send_timeout); past it
    # the connection is cut and the upstream connection dropped without counting against the target.
    send_timeout: Seconds = 60.0


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


class TracingConfig(_Base, frozen=True):
    """OpenTelemetry export of a span per request (docs/operations.md, Tracing); needs the `otel` extra."""

    otlp_endpoint: str  # OTLP/HTTP (protobuf) traces endpoint, e.g. http://127.0.0.1:4318/v1/traces
    service_name: str = "fastgw"
    sample_ratio: Annotated[float, Meta(ge=0.0, le=1.0)] = 1.0  # of the trace ids (TraceIdRatioBased)
    headers: dict[str, str] = field(default_factory=dict)  # sent with every export (a collector's API key)
    resource_attributes: dict[str, str] = field(default_factory=dict)  # beside service.name
    timeout: Annotated[float, Meta(gt=0)] = 10.0  # seconds per export request
    flush_interval: Annotated[float, Meta(gt=0)] = 1.0  # seconds between batches (the processor's delay)
    max_batch: Annotated[int, Meta(ge=1)] = 512  # spans per export request
    max_queue: Annotated[int, Meta(ge=1)] = 2048  # spans held for export; more are dropped (never waited for)


class AdminToken(_Base, frozen=True):
    """A bearer token of the admin API: `read` may call every GET, `write` everything (docs/admin-api.md)."""

    name: Name  # who it is in the audit log ("ci", "alice")
    token: Annotated[str, Meta(min_length=16, max_length=4096)]
    role: Literal["read", "write"] = "read"


class AdminConfig(_Base, frozen=True):
    """The admin API's own listener (docs/admin-api.md). A non-loopback host needs a token."""

    host: str = "127.0.0.1"
    port: Port = 9901
    # Sent as `Authorization: Bearer <token>`; with one set, every admin request must carry it. `token` is a
    # write token named "admin" in the audit log; `tokens` gives named ones with a role.
    token: str | None = None
    tokens: list[AdminToken] = field(default_factory=list)
    # /metrics (Prometheus), which needs the `metrics` extra; false: no counters are kept at all.
    metrics: bool = True
    # Where deployments (every config that went live) are kept. Default: `<config file>.deployments/` beside it.
    deployments_dir: str | None = None
    # Seconds every worker has to load a new deployment (`--workers N`); one that has not by then fails the
    # deployment, and every worker keeps the previous one.
    deploy_timeout: Annotated[float, Meta(gt=0, le=3600)] = 120.0
    # Host names (beside the listener's own address, and localhost on a loopback one) a request's `Host` may
    # give: any other is refused with 403, so a web page cannot reach the API through DNS rebinding.
    hosts: list[Annotated[str, Meta(min_length=1, max_length=253)]] = field(default_factory=list)
    # Origins (`https://console.example.com`) whose web pages may call the API; a request with any other
    # `Origin` is refused with 403 (CSRF). Empty: no web page at all.
    allow_origins: list[Annotated[str, Meta(pattern=r"^https?://[^/\s]+$")]] = field(default_factory=list)


class PoolConfig(_Base, frozen=True):
    max_idle: Annotated[int, Meta(ge=0, le=100_000)] = 128  # idle keep-alive connections kept per target
    idle_timeout: Seconds = 60.0


class TargetSpec(_Base, frozen=True):
    url: TargetURL
    # Its share of the traffic relative to the other targets (round-robin, least-connections, random-two-choices)
    # or of the hash ring (consistent-hash).
    weight: Annotated[int, Meta(ge=1, le=1000)] = 1


Ratio = Annotated[float, Meta(ge=0, le=1)]
Count = Annotated[int, Meta(ge=1, le=1_000_000)]
RetryCondition = Literal["error", "timeout", "http_502", "http_503", "http_504"]


class RetryConfig(_Base, frozen=True):
    """nginx's `proxy_next_upstream`: when a try fails before any response byte reached the client, the request
    goes once more to another target. Never after a byte reached the client."""

    # Tries in all, the first one included (nginx's proxy_next_upstream_tries); 1 switches retries off. Never more
    # than the upstream has targets.
    attempts: Annotated[int, Meta(ge=1, le=10)] = 2
    # NOTE: not `on`, which YAML reads as the boolean true.
    # error: the connection failed, or was closed or reset before any response byte; timeout: connect, send or
    # the wait for the response head timed out; http_5xx: the target answered that status (its answer is dropped).
    when: list[RetryCondition] = field(default_factory=lambda: ["error", "timeout"])
    # Methods retried. POST and PATCH are retried only on routes with `retry_non_idempotent: true`.
    methods: list[HttpMethod] = field(default_factory=lambda: ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"])
    # The longest wait for a try's response head (at most read_timeout); past it the try counts as a timeout.
    per_try_timeout: Seconds | None = None
    # The retry budget (Envoy's retry_budget): over the last 10 s, retries are at most `budget` times the requests
    # plus `budget_min`, so an outage never multiplies the load on the targets left.
    budget: Ratio = 0.2
    budget_min: Annotated[int, Meta(ge=0, le=100_000)] = 10
    # A request body is kept up to this size to be sent again; a bigger one is not retried.
    max_replay_body: Annotated[int, Meta(ge=0, le=64 * 1024 * 1024)] = 64 * 1024


class ActiveCheck(_Base, frozen=True):
    """A request to every target every `interval`; `unhealthy_threshold` failures in a row take it out of
    rotation, `healthy_threshold` successes in a row bring it back. Run by each worker (docs/operations.md)."""

    path: str = "/"
    method: Literal["GET", "HEAD", "OPTIONS"] = "GET"
    interval: Seconds = 5.0
    timeout: Seconds = 2.0
    statuses: Annotated[list[Status], Meta(min_length=1)] = field(default_factory=lambda: [200, 204, 301, 302, 304])
    healthy_threshold: Annotated[int, Meta(ge=1, le=100)] = 2
    unhealthy_threshold: Annotated[int, Meta(ge=1, le=100)] = 3
    # Each wait is the interval plus up to this fraction of it, at random, so workers and targets are not checked
    # in lockstep.
    jitter: Ratio = 0.1
    host: str | None = None  # the Host sent; default the target's host:port


PassiveFailure = Literal["error", "timeout", "http_5xx"]


class PassiveCheck(_Base, frozen=True):
    """Envoy's outlier detection, on by default as nginx's `max_fails` is: a target that fails (what `failures`
    lists) `consecutive_failures` times in a row, or whose failure ratio over `min_requests` answers reaches
    `failure_ratio`, is ejected for `base_ejection` times the number of its ejections so far (at most
    `max_ejection`). Only on upstreams with more than one target: the only one is never ejected. With active checks
    configured, a passing active check ends an ejection early (`uneject_on_active_check`)."""

    consecutive_failures: Annotated[int, Meta(ge=1, le=10_000)] | None = 3
    failure_ratio: Annotated[float, Meta(gt=0, le=1)] | None = None
    min_requests: Count = 20  # answers over which the ratio is judged (then counting starts again)
    # What counts as a failure: error (the connection failed, was reset or closed before an answer), timeout
    # (connect, send, response head or body), http_5xx (an answer 500-599). 5xx is not counted by default: an
    # anonymous client that can make a handler answer 500 could otherwise eject healthy targets (nginx counts
    # only what proxy_next_upstream lists, `error timeout` by default).
    failures: Annotated[list[PassiveFailure], Meta(min_length=1)] = field(default_factory=lambda: ["error", "timeout"])
    base_ejection: Seconds = 10.0
    max_ejection: Seconds = 300.0
    # No more than this share of the targets is ejected at once (one may always be).
    max_ejected: Ratio = 0.5
    # With active checks on, a passing check ends an ejection at once (Envoy's
    # successful_active_health_check_uneject_host, on by default); false waits out the ejection time.
    uneject_on_active_check: bool = True


class HealthConfig(_Base, frozen=True):
    active: ActiveCheck | None = None
    # On by default (null switches it off); see PassiveCheck.
    passive: PassiveCheck | None = field(default_factory=PassiveCheck)


class BreakerConfig(_Base, frozen=True):
    """A circuit breaker per target: it opens (no traffic) on `consecutive_failures` failures in a row, or on an
    error ratio of `failure_ratio` over at least `min_requests` answers within `window` seconds; after `cool_down`
    it half-opens and lets `probes` requests through; as many successes close it, one failure opens it again."""

    consecutive_failures: Annotated[int, Meta(ge=1, le=10_000)] | None = 5
    failure_ratio: Annotated[float, Meta(gt=0, le=1)] | None = 0.5
    min_requests: Count = 20
    window: Seconds = 10.0
    cool_down: Seconds = 15.0
    probes: Annotated[int, Meta(ge=1, le=1000)] = 3


class UpstreamTLS(_Base, frozen=True):
    """TLS to `https://` targets."""

    verify: bool = True  # the target's certificate is checked (chain and name); false: only for tests
    ca_file: str | None = None  # a PEM bundle to trust instead of the system's (relative to the config file)
    server_name: str | None = None  # SNI and the name checked; default: the target's host
    # A client certificate (PEM, its chain after it) and its key, for targets that require one (mTLS); relative
    # to the config file. Both or neither.
    cert_file: str | None = None
    key_file: str | None = None


# header:NAME, cookie:NAME, ip (the client's address), path, consumer (the authenticated consumer's name).
HashKey = Annotated[str, Meta(pattern=r"^(header:[!#$%&'*+.^_`|~0-9A-Za-z-]+|cookie:[^\s;=]+|ip|path|consumer)$")]


class Upstream(_Base, frozen=True):
    # "http://host:port" or {url: "http://host:port", weight: 3}
    targets: Annotated[list[TargetURL | TargetSpec], Meta(min_length=1)]
    balancer: Literal["round-robin", "least-connections", "consistent-hash", "random-two-choices"] = "round-robin"
    # What consistent-hash hashes (required with it).
    hash_on: HashKey | None = None
    # Targets named by DNS names are resolved (each address a target) again this often.
    resolve_interval: Seconds = 30.0
    connect_timeout: Seconds = 5.0
    read_timeout: Seconds = 60.0  # longest wait for the response head, and between body reads
    send_timeout: Seconds = 60.0  # longest wait for the upstream to accept request bytes
    pool: PoolConfig = field(default_factory=PoolConfig)
    retries: RetryConfig = field(default_factory=RetryConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    breaker: BreakerConfig | None = None
    tls: UpstreamTLS = field(default_factory=UpstreamTLS)


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
    # The longest the whole exchange may take until the response head (retries included); 504 past it.
    timeout: Seconds | None = None
    # Retry POST and PATCH too (when the upstream's retries list them): only for handlers that are safe to repeat.
    retry_non_idempotent: bool = False


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


# A dotted path into a JSON answer: "data.user", "items.0.id".
JsonPath = Annotated[str, Meta(pattern=r"^[^.\s]+(\.[^.\s]+)*$")]


AggregateMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class AggregateBackend(_Base, frozen=True):
    """One call of an aggregate: an upstream and the path sent to it, or a function (invoked with the event of a
    request to `path`, the client's path by default). `{name}` in the path is a route parameter; `{respN.a.b}` a
    field of the answer of backend N (an earlier one: this call then waits for it)."""

    upstream: str | None = None
    function: str | None = None
    path: str | None = None
    # The method of the call, whatever the client's (as KrakenD's backend `method`); POST, PUT and PATCH carry the
    # client's body (and its Content-Type), the others none. GET by default: a client's write is never fanned out
    # to backends unless a backend says so.
    method: AggregateMethod = "GET"
    # Where its answer goes in the merged object (`{group: answer}`); none: its fields are merged at the top.
    group: Annotated[str, Meta(min_length=1)] | None = None
    # Only this part of its answer is taken (a JSON path into it).
    target: JsonPath | None = None
    # Fields of the answer kept (the rest dropped); none: all.
    allow: list[str] | None = None
    # Fields renamed (old: new), after `allow`.
    rename: dict[str, str] = field(default_factory=dict)
    timeout: Seconds = 5.0


class AggregateIntegration(_Base, frozen=True, tag="aggregate"):
    """Several backends called in parallel (or in sequence, where one uses another's answer), their JSON answers
    merged into one object. With one backend its answer passes through unchanged (status, headers, body)."""

    backends: Annotated[list[AggregateBackend], Meta(min_length=1, max_length=64)]
    # The status of a merged answer when some backends failed (it carries what succeeded, and
    # `X-Fastgw-Completed: false`). When all failed: 502 {"message": "Bad Gateway"}.
    partial_status: Literal[200, 502] = 200
    # KrakenD's `return_error_details`: the merged answer carries, under this key, what went wrong with each failed
    # backend (`{group or "backends[N]": {status, message, body}}`); none: failures are only logged.
    return_error_details: Annotated[str, Meta(min_length=1, max_length=128)] | None = None


Integration = HttpIntegration | MockIntegration | LambdaIntegration | AggregateIntegration


# Plugin name -> its configuration (checked against the plugin's own Config when the config loads), or `false`
# to switch off a plugin configured at a wider level (globally, or on the route's API).
PluginName = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9_.-]*$", max_length=128)]
Plugins = dict[PluginName, Any]


class WebSocketConfig(_Base, frozen=True):
    idle_timeout: Seconds = 300.0  # a tunnel where nothing passed for this long is closed


HeaderName = Annotated[str, Meta(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", max_length=256)]


class HeaderMatch(_Base, frozen=True):
    """One request header condition of a route, as Envoy's header matchers: exactly one of these."""

    exact: str | None = None  # the value, byte for byte (case-sensitive)
    prefix: str | None = None  # the value starts with this
    regex: str | None = None  # the whole value matches this Python regular expression (`(?i)` to ignore case)
    present: bool | None = None  # true: the header is sent (any value); false: it is not


class Route(_Base, frozen=True):
    path: str
    integration: Integration
    name: Name | None = None
    methods: Annotated[list[HttpMethod], Meta(min_length=1)] = field(default_factory=lambda: ["ANY"])
    host: str | None = None
    # Request headers the route needs, all of them: a value (exact), a list (any of them), or a HeaderMatch.
    # Routes with the same path, host and methods may differ only by these (canary releases, API versions): the
    # one with the most conditions that all hold takes the request, and one without `headers` takes the rest.
    headers: dict[HeaderName, str | list[str] | HeaderMatch] | None = None
    # Higher first among routes path specificity leaves tied: constrained parameters at one position, routes told
    # apart by headers with as many conditions (docs/configuration.md, Routing). Never above specificity.
    priority: Annotated[int, Meta(ge=-1_000_000, le=1_000_000)] = 0
    plugins: Plugins = field(default_factory=dict)
    path_policy: PathPolicy | None = None  # fields left out: the API's, then the top-level policy's
    # `Upgrade: websocket` requests are tunnelled to the target (http integrations only); true: the defaults.
    websocket: bool | WebSocketConfig = False


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
    # An OpenAPI 3.0 / Swagger 2.0 file with API Gateway's extensions (relative to the config file): its routes are
    # added after `routes` (docs/functions.md, From SAM and OpenAPI).
    openapi: str | None = None
    # Stages other than `$default` are served under `/{stage}`; false serves the API's one stage at the root, as
    # `sam local start-api` does (the stage still named in `requestContext.stage`).
    stage_prefix: bool = True
    # A REST API's binaryMediaTypes ("image/png", "image/*", "*/*"): a request body of such a Content-Type reaches a
    # function base64-encoded, any other as text; a function's base64 body is decoded for a client whose first
    # Accept type is one of them (docs/functions.md, Binary bodies). An HTTP API ignores them, as AWS does.
    binary_media_types: list[Annotated[str, Meta(pattern=r"^[^/\s;,]+/[^/\s;,]+$", max_length=256)]] = field(
        default_factory=list
    )


class Consumer(_Base, frozen=True):
    """An identity clients authenticate as (with key-auth, basic-auth, jwt-auth...)."""

    groups: list[Name] = field(default_factory=list)
    custom: dict[str, str] = field(default_factory=dict)  # free fields, e.g. tier: gold (templates, logs)
    # Plugin name -> that plugin's credentials for this consumer (each checked against the plugin's Credential).
    credentials: dict[PluginName, list[Any]] = field(default_factory=dict)
    # Plugins for this consumer's requests, on every route where it authenticates (replacing the route's own
    # configuration of the same plugin; `false` switches one off). Only plugins that run after authentication.
    plugins: Plugins = field(default_factory=dict)
    # A name in `usage_plans`: its throttling and quota apply to this consumer's requests (AWS usage plans).
    usage_plan: Name | None = None


class ConsumerHeaders(_Base, frozen=True):
    """Headers telling the upstream who the consumer is; any the client sent are removed. null: not sent."""

    username: str | None = "X-Consumer-Username"
    groups: str | None = "X-Consumer-Groups"


class RedisConfig(_Base, frozen=True):
    """The one Redis every plugin that shares state uses (rate-limit's redis and hybrid policies, quotas, the
    proxy-cache's redis backend). Redis slow or gone never holds a request longer than `timeout`."""

    # redis://[user:password@]host:port/db, or rediss:// for TLS.
    url: Annotated[str, Meta(pattern=r"^rediss?://")] = "redis://127.0.0.1:6379/0"
    password: str | None = None  # instead of one in the URL
    username: str | None = None
    # The longest a request waits for one Redis round trip (connecting included); then the plugin's failure
    # policy (fail_open / fail_closed) answers.
    timeout: Annotated[float, Meta(gt=0, le=10)] = 0.2
    connect_timeout: Annotated[float, Meta(gt=0, le=10)] = 0.2
    # Connections per worker process.
    pool_size: Annotated[int, Meta(ge=1, le=10_000)] = 32
    # After a failure, Redis is not tried again for a while (doubling from backoff_min up to backoff_max):
    # requests meanwhile get the failure policy at once instead of a timeout each.
    backoff_min: Annotated[float, Meta(ge=0, le=60)] = 0.05
    backoff_max: Annotated[float, Meta(gt=0, le=300)] = 2.0
    # Prefix of every key fastgw writes (several gateways' configs can share one Redis).
    key_prefix: Annotated[str, Meta(max_length=64)] = "fastgw:"
    tls_ca_file: str | None = None  # rediss://: a CA bundle other than the system's
    # A Redis Cluster: `url` names one node, the others are discovered. A bucket is one key; the buckets of one
    # request that share their key value share a hash slot (a `{hash tag}`), so they are decided in one script.
    cluster: bool = False


PlanPeriod = Literal["day", "week", "month"]


class Throttle(_Base, frozen=True):
    rate: Annotated[int, Meta(ge=1, le=1_000_000)]  # requests per second, steady
    burst: Annotated[int, Meta(ge=1, le=1_000_000)] | None = None  # default: rate


class Quota(_Base, frozen=True):
    limit: Annotated[int, Meta(ge=1)]  # requests per period (UTC calendar periods, weeks from Monday)
    period: PlanPeriod = "month"


class UsagePlan(_Base, frozen=True):
    """AWS usage plans: throttling and a quota for the consumers attached to the plan (`consumers.NAME.usage_plan`)."""

    throttle: Throttle | None = None
    quota: Quota | None = None
    # Where the plan applies: API names, or "api/stage". Empty: every route where the consumer authenticates.
    apis: list[str] = field(default_factory=list)
    # Where counts live: "redis" (the top-level `redis`, shared by every gateway) or "local" (per worker).
    # Default: redis when a `redis` section is configured.
    policy: Literal["local", "redis"] | None = None
    on_redis_failure: Literal["fail_open", "fail_closed"] = "fail_open"


class StoreConfig(_Base, frozen=True):
    """Where deployments are kept (docs/operations.md): `etcd` for a fleet of gateways sharing them. No `store`:
    a folder beside the config file (`admin.deployments_dir`)."""

    etcd: EtcdConfig | None = None


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
    redis: RedisConfig | None = None
    usage_plans: dict[Name, UsagePlan] = field(default_factory=dict)
    admin: AdminConfig | None = None  # no admin listener unless configured
    store: StoreConfig | None = None  # deployments in etcd (a fleet); none: a folder beside the config file
    tracing: TracingConfig | None = None  # no span export unless configured
