"""Load a config file (YAML or JSON) into the schema's Structs, cross-check it, and build its route table.

Every error is a `ConfigError` (`fastgw.config.errors`) naming the file, the key path
(`$.routes[3].integration.upstream`) and what was expected; the cross-checks are `fastgw.config.checks`. Nothing
here binds a socket, so `fastgw check` runs exactly this. Command-line and environment overrides, and what a
reload may change, are here too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import ipaddress
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from fastgw.aws import prepare as aws_prepare
from fastgw.config.checks import (
    check_admin,
    check_aggregate,
    check_functions,
    check_http,
    check_logging,
    check_tls,
    check_upstream,
    check_upstreams,
)
from fastgw.config.errors import MSGSPEC_PATH, ConfigError, explain, name_key
from fastgw.config.parse import parse_json, parse_yaml
from fastgw.config.schema import (
    AggregateIntegration,
    Config,
    HttpIntegration,
    Integration,
    LambdaIntegration,
    MockIntegration,
    Route,
    Stage,
    TargetSpec,
)
from fastgw.core import RouteConflict, Router, parse_template
from fastgw.plugins.chain import PluginConfigError, PluginSetup
from fastgw.plugins.chain import build as build_plugins
from fastgw.routing import HeaderRule, RouteTable, policy_flags
from fastgw.state import redis as redis_state

# `${stageVariables.NAME}` in an API route's integration, replaced per stage when the config loads.
STAGE_VARIABLE = re.compile(r"\$\{stageVariables\.([A-Za-z0-9_]+)\}")
# `${server.host}` / `${server.port}` in an upstream target or a mock response: where this gateway listens (after
# --host/--port and FASTGW_HOST/FASTGW_PORT), so a config that points at the gateway itself follows it.
SERVER_REF = re.compile(r"\$\{server\.(host|port)\}")

# A file's state as `serve --watch` compares it: mtime_ns, size, inode (a file replaced by rename, as editors save,
# has a new inode).
FileStamp = tuple[int, int, int]


def file_stamp(path: str | Path) -> FileStamp | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


@dataclass(frozen=True)
class Override:
    """A setting given on the command line or in the environment (`server.port` from `--port` or FASTGW_PORT):
    it wins over the config file, and an error in it names where it came from."""

    key: str  # "server.port": a section of the config and one of its keys
    value: Any
    origin: str  # "--port" or "FASTGW_PORT"

    def describe(self) -> str:
        return f"{self.origin} {self.value}" if self.origin.startswith("-") else f"{self.origin}={self.value}"


# Settings a running gateway cannot change: a reload keeps them as they are, and says a restart is needed.
RESTART_ONLY = (
    "server.host", "server.port", "server.workers", "server.backlog", "logging.access_log",
    "logging.access_log_format", "logging.access_log_path", "logging.format",
)  # fmt: skip


@dataclass(frozen=True)
class RouteEntry:
    """One route as served: a top-level route once, an API route once per stage (its path under the stage's
    prefix, its integration with the stage variables filled in)."""

    route: Route
    integration: Integration
    path: str  # as matched, stage prefix included
    label: str  # the route's name, or its methods and path template (_unnamed)
    at: str  # the key path of the route in the config
    api: str | None = None
    api_type: str | None = None  # "rest" or "http"
    api_id: str = ""
    stage: str | None = None
    stage_variables: dict[str, str] | None = None
    prefix: str = ""  # the stage prefix `path` is served under ("/Prod"), or "" (stage_prefix false, $default)
    binary_media_types: tuple[str, ...] = ()  # the API's (a REST API's: functions/integration.py)


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config, where it came from, its route table and its frozen router (whose routes are indices
    into `entries`)."""

    config: Config
    source: str
    router: Router
    # The router with the path policy before it and API Gateway's resource rules around it.
    paths: RouteTable
    entries: tuple[RouteEntry, ...] = ()
    # Folder that relative paths in the config (function code) are resolved against.
    base_dir: Path = Path(".")
    # First path segment of each REST API stage ("/Prod"): a miss under it answers as API Gateway does.
    rest_prefixes: frozenset[str] = frozenset()
    # Plugin chains (one per entry, None for none) and consumers.
    plugins: PluginSetup | None = None
    # What the command line and the environment set over the file (applied again on every reload).
    overrides: tuple[Override, ...] = ()
    # Routes told apart by request headers: the router's entry (index) -> its routes in the order they are tried,
    # each with its conditions (None: the route without `headers`, tried last).
    header_routes: dict[int, tuple[tuple[HeaderRule | None, int], ...]] = field(default_factory=dict)
    # The file's stamp taken just before it was read (None: not from a file): `serve --watch` knows from it that
    # the running config already serves a change, whoever reloaded it (SIGHUP, POST /reload, a rollback).
    stamp: FileStamp | None = None
    # The config as given (the file's schema as data, before overrides): what a deployment keeps.
    data: dict[str, Any] | None = None


def default_config_path() -> Path:
    """The built-in quickstart served by `fastgw serve` with no CONFIG."""
    # NOTE: by the package's path, not importlib.resources (which imports tempfile, shutil, zipfile...: 0.5 MiB
    # kept by every gateway); fastgw is installed as files (its extension, the examples it serves are read as such).
    return Path(__file__).resolve().parent.parent / "examples" / "quickstart.yaml"


def load_config(path: str | Path, overrides: Sequence[Override] = ()) -> LoadedConfig:
    source = str(path)
    # NOTE: stamped before the read, so a save that lands between the two leaves an older stamp than the bytes
    # read: the watch then loads once more (harmless) rather than never loading the newer file.
    stamp = file_stamp(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(source, "$", f"cannot read the file: {exc.strerror or exc}") from None
    return dataclasses.replace(load_config_bytes(raw, source, Path(path).resolve().parent, overrides), stamp=stamp)


def load_config_bytes(
    raw: bytes,
    source: str = "<config>",
    base_dir: Path | None = None,
    overrides: Sequence[Override] = (),
    *,
    as_json: bool = False,
) -> LoadedConfig:
    with paused_gc():
        return load_config_data(config_data(raw, source, base_dir, overrides, as_json=as_json), source, base_dir,
                                overrides)  # fmt: skip


def config_data(
    raw: bytes, source: str, base_dir: Path | None = None, overrides: Sequence[Override] = (), *, as_json: bool = False
) -> Any:
    """The config a file holds, as data in fastgw's schema (what a deployment keeps): a fastgw config as parsed, a
    SAM/CloudFormation template read into one, OpenAPI files named by `apis` read in (fastgw.aws)."""
    data, _ = aws_prepare(raw, source, base_dir, overrides, lambda r, s: _parse(r, s, as_json))
    return data


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection while a config is built: the hundreds of thousands of objects a large one
    makes set off full collections that find nothing to free (10,000 routes: `fastgw check` takes 1.95 s of CPU
    with them, 1.2 s without)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def load_config_data(
    data: Any, source: str = "<config>", base_dir: Path | None = None, overrides: Sequence[Override] = ()
) -> LoadedConfig:
    """Check a config given as data in fastgw's schema (a parsed file, a deployment, an admin API write). `data`
    is not changed (the overrides are set in copies); it is kept as `LoadedConfig.data`."""
    with paused_gc():
        return _load_config_data(data, source, base_dir, overrides)


def _load_config_data(data: Any, source: str, base_dir: Path | None, overrides: Sequence[Override]) -> LoadedConfig:
    if data is None:
        raise ConfigError(
            source, "$", "the config is empty: it needs at least one route (see fastgw serve's quickstart)"
        )
    if not isinstance(data, dict):
        raise ConfigError(source, "$", f"expected a mapping at the top level, got {type(data).__name__}")
    given_data = data
    # The template options (`aws.*`) were the SAM reader's (config_data); the others are set in the config.
    data, given = _apply_overrides(data, [o for o in overrides if not o.key.startswith("aws.")])
    try:
        config = _convert(data)
    except msgspec.ValidationError as exc:
        m = MSGSPEC_PATH.match(str(exc))
        assert m is not None
        path = name_key(m.group("path") or "$", data)
        message = explain(path, m.group("msg"), data)
        if path in given:
            o = given[path]
            raise ConfigError(o.describe(), path, f"{message} ({o.origin} overrides {path[2:]} of {source})") from None
        raise ConfigError(source, path, message) from None
    config = _resolve_server_refs(config)
    base = base_dir if base_dir is not None else Path.cwd()
    entries, rest_prefixes = _entries(config, source)
    check_upstreams(config, source)
    check_admin(config, source)
    check_logging(config, source)
    check_functions(config, source, base)
    check_tls(config, source, base)
    router, header_routes = _check(config, entries, source)
    if config.redis is not None and not redis_state.available():
        raise ConfigError(source, "$.redis", "needs the redis client: pip install 'fastgw[redis]'")
    if config.tracing is not None:
        _check_tracing(config, source)
    config = _with_usage_plans(config, source)
    redis_state.current = redis_state.configure(config.redis)
    try:
        plugins = build_plugins(config, entries, base)
    except PluginConfigError as exc:
        raise ConfigError(source, exc.path, exc.message) from None
    finally:
        redis_state.current = None
    return LoadedConfig(
        config=config,
        source=source,
        router=router,
        entries=entries,
        base_dir=base,
        rest_prefixes=rest_prefixes,
        plugins=plugins,
        paths=_route_table(config, entries, router, rest_prefixes, header_routes, source),
        overrides=tuple(overrides),
        header_routes=header_routes,
        data=given_data,
    )


_CHUNK = 500  # routes converted per call


def _convert(data: dict[str, Any]) -> Config:
    """`msgspec.convert(data, Config)`, the routes a few hundred at a time: one call over 10,000 routes holds the
    GIL for ~90 ms, a stall of the serving loop when a deployment is built beside it (control.plane). An invalid
    config is converted again whole, so its error names the path msgspec gives for it."""
    routes = data.get("routes")
    if not isinstance(routes, list) or len(routes) <= _CHUNK:
        return msgspec.convert(data, Config, strict=True)
    try:
        head = msgspec.convert({k: v for k, v in data.items() if k != "routes"}, Config, strict=True)
        converted: list[Route] = []
        for i in range(0, len(routes), _CHUNK):
            converted += msgspec.convert(routes[i : i + _CHUNK], list[Route], strict=True)
    except msgspec.ValidationError:
        return msgspec.convert(data, Config, strict=True)
    return msgspec.structs.replace(head, routes=converted)


def require_routes(loaded: LoadedConfig) -> LoadedConfig:
    """A config to serve (or to `fastgw check`) needs a route: with none, every request would answer 404."""
    if not loaded.entries:
        raise ConfigError(
            loaded.source, "$.routes", "no routes (here or under apis): every request would answer 404; add one"
        )
    return loaded


def reload_config(running: LoadedConfig) -> tuple[LoadedConfig, list[str]]:
    """Load `running`'s file again, with the same overrides, for a running gateway (SIGHUP). The settings it cannot
    change while running (RESTART_ONLY) keep their running values, so the rest of the new config serves as meant;
    the second value names each one the file changed, as `key: running -> in the file`. Raises ConfigError."""
    stamp = file_stamp(running.source)
    try:
        raw = Path(running.source).read_bytes()
    except OSError as exc:
        raise ConfigError(running.source, "$", f"cannot read the file: {exc.strerror or exc}") from None
    data = config_data(raw, running.source, running.base_dir, running.overrides)
    loaded, changed = reconfigure(running, data, running.source)
    return dataclasses.replace(loaded, stamp=stamp), changed


def reconfigure(running: LoadedConfig, data: Any, source: str | None = None) -> tuple[LoadedConfig, list[str]]:
    """Check `data` (the file's schema as data) as the next config of a running gateway: its overrides apply, and
    the settings only a restart changes keep their running values (see `reload_config`). Raises ConfigError."""
    source = source if source is not None else running.source
    fresh = require_routes(load_config_data(data, source, running.base_dir, running.overrides))
    changed = []
    pinned = list(running.overrides)
    for key in RESTART_ONLY:
        now, new = _setting(running.config, key), _setting(fresh.config, key)
        if now != new:
            changed.append(f"{key}: {now!r} -> {new!r}")
            pinned.append(Override(key, now, "the running gateway"))
    changed += _tls_listener_changes(running.config, fresh.config, pinned)
    if not changed:
        return fresh, changed
    # Loaded again with those pinned, so that `${server.port}` and the like still say where the gateway listens.
    kept = load_config_data(data, source, running.base_dir, pinned)
    return dataclasses.replace(kept, overrides=running.overrides), changed


def _check_tracing(config: Config, source: str) -> None:
    """The span export's endpoint, and the extra it needs (looked for, not imported: the SDK loads at start)."""
    import importlib.util
    from urllib.parse import urlsplit

    assert config.tracing is not None
    url = urlsplit(config.tracing.otlp_endpoint)
    if url.scheme not in ("http", "https") or not url.netloc:
        raise ConfigError(
            source, "$.tracing.otlp_endpoint", "expected an http(s) URL, e.g. http://127.0.0.1:4318/v1/traces"
        )
    try:
        found = all(
            importlib.util.find_spec(m) is not None
            for m in ("opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http.trace_exporter")
        )
    except ImportError:  # a parent package missing
        found = False
    if not found:
        raise ConfigError(source, "$.tracing", "OpenTelemetry export needs the otel extra: pip install 'fastgw[otel]'")


def _setting(config: Config, key: str) -> Any:
    section, name = key.split(".")
    return getattr(getattr(config, section), name)


def _tls_listener_changes(running: Config, fresh: Config, pinned: list[Override]) -> list[str]:
    """Which listeners speak TLS is fixed while running: a reload swaps certificates (and the versions, ciphers),
    not listeners. A changed `server.tls.port`, and `server.tls` added or removed, are pinned like RESTART_ONLY
    (the server keeps its listeners, and a TLS listener its certificates)."""
    now, new = running.server.tls, fresh.server.tls
    # NOTE: pinned, not only reported: under --workers N a worker started after the reload (one replacing a dead
    # one) binds what its config says, and must bind what its siblings do.
    if now is None and new is not None:
        pinned.append(Override("server.tls", None, "the running gateway"))
        return ["server.tls: none -> set (TLS listens after a restart)"]
    if now is not None and new is None:
        pinned.append(Override("server.tls", msgspec.to_builtins(now), "the running gateway"))
        return ["server.tls: set -> none (the TLS listener keeps its certificates until a restart)"]
    if now is not None and new is not None and now.port != new.port:
        pinned.append(Override("server.tls.port", now.port, "the running gateway"))
        return [f"server.tls.port: {now.port!r} -> {new.port!r}"]
    return []


def _apply_overrides(data: dict[str, Any], overrides: Sequence[Override]) -> tuple[dict[str, Any], dict[str, Override]]:
    """The config with each override set (in copies of the tables it changes: `data` stays as given); and the
    overrides by key path, to name them in errors."""
    given = {}
    if overrides:
        data = dict(data)
    for o in overrides:
        *sections, name = o.key.split(".")  # "server.port", or "server.tls.port"
        table: Any = data
        for section in sections:
            if not isinstance(table, dict):
                table = None
                break
            inner = table.get(section, {})
            table[section] = inner = dict(inner) if isinstance(inner, dict) else inner
            table = inner
        if isinstance(table, dict):  # anything else is the file's own error, reported as such
            table[name] = o.value
            given[f"$.{o.key}"] = o
    return data, given


def _resolve_server_refs(config: Config) -> Config:
    """Replace `${server.host}` and `${server.port}` in upstream targets and mock responses."""
    host = config.server.host
    values = {"host": f"[{host}]" if ":" in host else host, "port": str(config.server.port)}

    def sub(value: Any) -> Any:
        if isinstance(value, str):
            return SERVER_REF.sub(lambda m: values[m.group(1)], value) if "${server." in value else value
        if isinstance(value, list):
            return [sub(v) for v in value]
        if isinstance(value, dict):
            return {k: sub(v) for k, v in value.items()}
        if isinstance(value, TargetSpec):
            return msgspec.structs.replace(value, url=sub(value.url))
        return value

    def route(r: Route) -> Route:
        integ = r.integration
        if not isinstance(integ, MockIntegration):
            return r
        return msgspec.structs.replace(
            r, integration=msgspec.structs.replace(integ, body=sub(integ.body), headers=sub(integ.headers))
        )

    upstreams = {n: msgspec.structs.replace(u, targets=sub(u.targets)) for n, u in config.upstreams.items()}
    apis = {n: msgspec.structs.replace(a, routes=[route(r) for r in a.routes]) for n, a in config.apis.items()}
    return msgspec.structs.replace(config, upstreams=upstreams, routes=[route(r) for r in config.routes], apis=apis)


def _with_usage_plans(config: Config, source: str) -> Config:
    """A consumer attached to a usage plan gets the `usage-plan` plugin with that plan, among its own plugins (so
    it applies on every route where the consumer authenticates, as AWS applies a plan to its API keys)."""
    if not any(c.usage_plan for c in config.consumers.values()):
        return config
    consumers = dict(config.consumers)
    for name, c in config.consumers.items():
        if c.usage_plan is None:
            continue
        plan = config.usage_plans.get(c.usage_plan)
        if plan is None:
            known = ", ".join(sorted(config.usage_plans)) or "none"
            raise ConfigError(
                source, f"$.consumers.{name}.usage_plan", f"no usage plan {c.usage_plan!r} (plans: {known})"
            )
        if "usage-plan" in c.plugins:
            raise ConfigError(
                source, f"$.consumers.{name}.plugins.usage-plan", "set by `usage_plan`; give one of the two"
            )
        conf = {"plan": c.usage_plan, **msgspec.to_builtins(plan)}
        consumers[name] = msgspec.structs.replace(c, plugins={**c.plugins, "usage-plan": conf})
    return msgspec.structs.replace(config, consumers=consumers)


def _parse(raw: bytes, source: str, as_json: bool = False) -> Any:
    if as_json or source.endswith(".json"):
        return parse_json(raw, source)
    return parse_yaml(raw, source)


def _route_paths(route: Route, api_type: str, source: str, at: str) -> tuple[str, ...]:
    """The paths a route of an API is matched at: its own, or for an HTTP API's `path: $default` (AWS's catch-all
    route) `/` and `/{proxy+}` with every method, so it takes what no other route of the API does; its events say
    `$default` (functions/lambda_proxy.py)."""
    if route.path == "$default":
        if api_type != "http":
            raise ConfigError(source, f"{at}.path", "'$default' is an HTTP API's catch-all route; a REST API has none")
        if list(route.methods) != ["ANY"]:
            raise ConfigError(source, f"{at}.methods", "the $default route takes every method: leave methods out")
        return ("/", "/{proxy+}")
    if not route.path.startswith("/"):
        raise ConfigError(
            source, f"{at}.path", f"expected a path starting with '/' (or '$default'), got {route.path!r}"
        )
    return (route.path,)


def _unnamed(route: Route, path: str, taken: dict[str, int]) -> str:
    """The label of a route without a name, in metrics, the access log, cache keys and `fastgw routes`: its methods
    and path template (`GET /users/{id}`, `GET,POST api.example.com/users/{id}` with a host), which stay the same
    when other routes move. NOTE: routes that share all of it (they differ by header conditions) are told apart by
    ` #2`, ` #3` in config order; a name keeps a label fixed whatever changes."""
    label = f"{','.join(route.methods)} {route.host or ''}{path}"
    n = taken[label] = taken.get(label, 0) + 1
    return label if n == 1 else f"{label} #{n}"


def _entries(config: Config, source: str) -> tuple[tuple[RouteEntry, ...], frozenset[str]]:
    """The route table: top-level routes as they are, then each API's routes once per stage."""
    taken: dict[str, int] = {}
    entries = [
        RouteEntry(
            route=r, integration=r.integration, path=r.path, label=r.name or _unnamed(r, r.path, taken),
            at=f"$.routes[{i}]",
        )
        for i, r in enumerate(config.routes)
    ]  # fmt: skip
    rest_prefixes = set()
    for api_name, api in config.apis.items():
        stages = dict(api.stages)
        if not stages:
            if api.type == "rest":
                raise ConfigError(
                    source,
                    f"$.apis.{api_name}.stages",
                    "a REST API is served only through a stage: add one, e.g. stages: {Prod: {}}",
                )
            stages = {"$default": Stage()}
        api_id = api.id or _api_id(api_name)
        for stage_name, stage in stages.items():
            if stage_name == "$default":
                if api.type == "rest":
                    raise ConfigError(
                        source,
                        f"$.apis.{api_name}.stages",
                        "'$default' is an HTTP API stage; REST API stages are served under /{stage}",
                    )
                prefix = ""
            else:
                prefix = "/" + stage_name if api.stage_prefix else ""
                if api.type == "rest" and prefix:
                    rest_prefixes.add(prefix)
            in_stage: dict[str, int] = {}  # (labels are told apart within an API's stage)
            for i, route in enumerate(api.routes):
                at = f"$.apis.{api_name}.routes[{i}]"
                integ = _resolve_stage_variables(route.integration, stage_name, stage.variables, source, at)
                for route_path in _route_paths(route, api.type, source, at):
                    path = prefix + route_path if prefix and route_path != "/" else (prefix or route_path)
                    entries.append(
                        RouteEntry(
                            route=route,
                            integration=integ,
                            path=path,
                            label=f"{api_name}:{route.name or _unnamed(route, route_path, in_stage)}@{stage_name}",
                            at=at,
                            api=api_name,
                            api_type=api.type,
                            api_id=api_id,
                            stage=stage_name,
                            stage_variables=dict(stage.variables),
                            prefix=prefix,
                            binary_media_types=tuple(api.binary_media_types),
                        )
                    )
    return tuple(entries), frozenset(rest_prefixes)


def _api_id(name: str) -> str:
    """A stable 10-character id like API Gateway's, derived from the API's name."""
    digest = hashlib.sha256(name.encode()).digest()
    return "".join("abcdefghijklmnopqrstuvwxyz0123456789"[b % 36] for b in digest[:10])


def _resolve_stage_variables(
    integ: Integration, stage: str, variables: dict[str, str], source: str, at: str
) -> Integration:
    if isinstance(integ, LambdaIntegration):
        fields: tuple[str, ...] = ("function",)
    elif isinstance(integ, HttpIntegration):
        fields = ("upstream", "path", "host")
    else:
        return integ
    changes = {}
    for name in fields:
        value = getattr(integ, name)
        if not isinstance(value, str) or "${" not in value:
            continue

        def sub(m: re.Match[str], name: str = name) -> str:
            var = m.group(1)
            if var not in variables:
                have = ", ".join(sorted(variables)) or "none"
                raise ConfigError(
                    source,
                    f"{at}.integration.{name}",
                    f"stage {stage!r} has no variable {var!r} (its variables: {have})",
                )
            return variables[var]

        changes[name] = STAGE_VARIABLE.sub(sub, value)
    return msgspec.structs.replace(integ, **changes) if changes else integ


def _check(
    config: Config, entries: tuple[RouteEntry, ...], source: str
) -> tuple[Router, dict[int, tuple[tuple[HeaderRule | None, int], ...]]]:
    """Cross-checks the schema cannot express; builds and returns the frozen router, and the routes it tells
    apart by headers (`LoadedConfig.header_routes`)."""
    for i, cidr in enumerate(config.server.trusted_proxies):
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ConfigError(
                source, f"$.server.trusted_proxies[{i}]", f"expected an IP address or CIDR, got {cidr!r}"
            ) from None

    for name, up in config.upstreams.items():
        check_upstream(up, source, f"$.upstreams.{name}")

    names: dict[tuple[str | None, str | None, str], str] = {}
    router = Router()
    # Routes with the same host, path and methods share one router entry (the first one's index) when headers
    # tell them apart; the others are not added to the router.
    groups: dict[tuple[str, str, frozenset[str]], list[tuple[HeaderRule | None, int]]] = {}
    # Such an entry ranks among constrained parameters by the highest priority of its routes.
    top: dict[tuple[str, str, frozenset[str]], int] = {}
    for entry in entries:
        gkey = ((entry.route.host or "").lower(), entry.path, frozenset(entry.route.methods))
        top[gkey] = max(top.get(gkey, entry.route.priority), entry.route.priority)
    for i, entry in enumerate(entries):
        route, at = entry.route, entry.at
        if route.name is not None:
            key = (entry.api, entry.stage, route.name)  # names are unique among top-level routes, and per API
            if key in names and names[key] != at:  # the same route at two paths ($default) is one name
                raise ConfigError(source, f"{at}.name", f"route name {route.name!r} is already used by {names[key]}")
            names[key] = at
        try:
            _, params = parse_template(entry.path)
        except ValueError as exc:
            raise ConfigError(source, f"{at}.path", str(exc)) from None
        integ = entry.integration
        if route.websocket and not isinstance(integ, HttpIntegration):
            raise ConfigError(source, f"{at}.websocket", "WebSockets are tunnelled on http integrations only")
        if isinstance(integ, HttpIntegration):
            check_http(config, integ, params, source, f"{at}.integration")
        elif isinstance(integ, AggregateIntegration):
            check_aggregate(config, integ, params, source, f"{at}.integration")
        elif isinstance(integ, LambdaIntegration) and integ.function not in config.functions:
            known = ", ".join(sorted(config.functions)) or "none defined"
            where = f" (stage {entry.stage!r})" if entry.stage else ""
            raise ConfigError(
                source, f"{at}.integration.function", f"unknown function {integ.function!r}{where} (functions: {known})"
            )
        label = f"{at} ({route.name + ': ' if route.name else ''}{','.join(route.methods)} {entry.path}"
        label += f" host {route.host})" if route.host else ")"
        rule = None
        if route.headers is not None:
            try:
                rule = HeaderRule(route.headers)
            except ValueError as exc:
                key, message = exc.args
                raise ConfigError(source, f"{at}.headers.{key}", message) from None
        group_key = ((route.host or "").lower(), entry.path, frozenset(route.methods))
        group = groups.setdefault(group_key, [])
        if group:
            first = entries[group[0][1]]
            same = [entries[j].at for r, j in group if (r.spec if r else None) == (rule.spec if rule else None)]
            if same and rule is None:  # two routes for the same requests: the router's own words
                group = []
            elif same:
                raise ConfigError(source, at, f"same path, host, methods and headers as {same[0]}")
            if (first.api, first.stage) != (entry.api, entry.stage):
                raise ConfigError(source, at, f"routes told apart by headers must be in one API and stage ({first.at})")
            if group:
                group.append((rule, i))
                continue
        group.append((rule, i))
        try:
            router.add(i, route.methods, entry.path, host=route.host, name=label, priority=top[group_key])
        except RouteConflict as exc:
            hint = " (routes told apart by headers must list the same methods)" if rule is not None else ""
            raise ConfigError(source, at, str(exc) + hint) from None
        except ValueError as exc:
            raise ConfigError(source, f"{at}.host", str(exc)) from None
    router.freeze()
    # More conditions first; among equals, the higher priority, then the config's order; the route without headers
    # last (sorted() keeps the config's order among equal keys).
    order = lambda c: (-len(c[0]), -entries[c[1]].route.priority) if c[0] is not None else (1, 0)  # noqa: E731
    header_routes = {g[0][1]: tuple(sorted(g, key=order)) for g in groups.values() if len(g) > 1 or g[0][0] is not None}
    return router, header_routes


def _route_table(
    config: Config,
    entries: tuple[RouteEntry, ...],
    router: Router,
    rest_prefixes: frozenset[str],
    header_routes: dict[int, tuple[tuple[HeaderRule | None, int], ...]],
    source: str,
) -> RouteTable:
    """Each route's path policy: its own fields, then its API's, then the top-level policy's."""
    top = config.path_policy
    routes = []
    for entry in entries:
        slashes, backslash = top.escaped_slashes, top.backslash
        api = config.apis[entry.api].path_policy if entry.api is not None else None
        for layer in (api, entry.route.path_policy):
            if layer is not None:
                slashes = layer.escaped_slashes or slashes
                backslash = layer.backslash or backslash
        routes.append((entry.path, entry.route.host, entry.api_type, policy_flags(slashes, backslash)))
    for first, members in header_routes.items():  # the path is normalized once, before the headers choose
        for _, i in members:
            if routes[i][3] != routes[first][3]:
                raise ConfigError(
                    source, f"{entries[i].at}.path_policy", f"routes told apart by headers need one path policy "
                    f"({entries[first].at} has another)"
                )  # fmt: skip
    return RouteTable(router, routes, policy_flags(top.escaped_slashes, top.backslash), rest_prefixes)
