"""Load a config file (YAML or JSON) into the schema's Structs, cross-check it, and build its route table.

Every error is a `ConfigError` naming the file, the key path (`$.routes[3].integration.upstream`) and what was
expected; nothing here binds a socket, so `fastgw check` runs exactly this.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
import yaml

from fastgw.config.schema import (
    Api,
    Config,
    Function,
    HttpIntegration,
    Integration,
    LambdaIntegration,
    MockIntegration,
    Route,
    Stage,
    Upstream,
)
from fastgw.config.schema import (
    Consumer as ConsumerSpec,
)
from fastgw.core import RouteConflict, Router, parse_template
from fastgw.plugins.chain import PluginConfigError, PluginSetup
from fastgw.plugins.chain import build as build_plugins
from fastgw.routing import RouteTable, policy_flags

_MSGSPEC_PATH = re.compile(r"^(?P<msg>.*?)(?: - at `(?P<path>\$[^`]*)`)?$", re.S)
# `{name}` or `{name+}` in a path template (the route's, or an http integration's upstream path).
TEMPLATE_REF = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\+?\}")
# `${stageVariables.NAME}` in an API route's integration, replaced per stage when the config loads.
STAGE_VARIABLE = re.compile(r"\$\{stageVariables\.([A-Za-z0-9_]+)\}")
# `${server.host}` / `${server.port}` in an upstream target or a mock response: where this gateway listens (after
# --host/--port and FASTGW_HOST/FASTGW_PORT), so a config that points at the gateway itself follows it.
SERVER_REF = re.compile(r"\$\{server\.(host|port)\}")
# The integration types, for errors that name a wrong or missing one.
INTEGRATION_TYPES = ", ".join(sorted(str(t.__struct_config__.tag) for t in Integration.__args__))


class ConfigError(Exception):
    """A config that cannot be served: says where (file and key path) and what was expected."""

    def __init__(self, source: str, path: str, message: str) -> None:
        self.source = source
        self.path = path
        self.message = message
        super().__init__(f"{source}: {path}: {message}")


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
    label: str  # the route's name, or where it is in the config
    at: str  # the key path of the route in the config
    api: str | None = None
    api_type: str | None = None  # "rest" or "http"
    api_id: str = ""
    stage: str | None = None
    stage_variables: dict[str, str] | None = None


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


def default_config_path() -> Path:
    """The built-in quickstart served by `fastgw serve` with no CONFIG."""
    return Path(str(resources.files("fastgw") / "examples" / "quickstart.yaml"))


def load_config(path: str | Path, overrides: Sequence[Override] = ()) -> LoadedConfig:
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(source, "$", f"cannot read the file: {exc.strerror or exc}") from None
    return load_config_bytes(raw, source, Path(path).resolve().parent, overrides)


def load_config_bytes(
    raw: bytes, source: str = "<config>", base_dir: Path | None = None, overrides: Sequence[Override] = ()
) -> LoadedConfig:
    data = _parse(raw, source)
    if data is None:
        raise ConfigError(
            source, "$", "the config is empty: it needs at least one route (see fastgw serve's quickstart)"
        )
    if not isinstance(data, dict):
        raise ConfigError(source, "$", f"expected a mapping at the top level, got {type(data).__name__}")
    given = _apply_overrides(data, overrides)
    try:
        config = msgspec.convert(data, Config, strict=True)
    except msgspec.ValidationError as exc:
        m = _MSGSPEC_PATH.match(str(exc))
        assert m is not None
        path = _name_key(m.group("path") or "$", data)
        message = _explain(path, m.group("msg"))
        if path in given:
            o = given[path]
            raise ConfigError(o.describe(), path, f"{message} ({o.origin} overrides {path[2:]} of {source})") from None
        raise ConfigError(source, path, message) from None
    config = _resolve_server_refs(config)
    base = base_dir if base_dir is not None else Path.cwd()
    entries, rest_prefixes = _entries(config, source)
    _check_upstreams(config, source)
    _check_admin(config, source)
    _check_functions(config, source, base)
    router = _check(config, entries, source)
    try:
        plugins = build_plugins(config, entries)
    except PluginConfigError as exc:
        raise ConfigError(source, exc.path, exc.message) from None
    return LoadedConfig(
        config=config,
        source=source,
        router=router,
        entries=entries,
        base_dir=base,
        rest_prefixes=rest_prefixes,
        plugins=plugins,
        paths=_route_table(config, entries, router, rest_prefixes),
        overrides=tuple(overrides),
    )


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
    fresh = require_routes(load_config(running.source, running.overrides))
    changed = []
    pinned = list(running.overrides)
    for key in RESTART_ONLY:
        now, new = _setting(running.config, key), _setting(fresh.config, key)
        if now != new:
            changed.append(f"{key}: {now!r} -> {new!r}")
            pinned.append(Override(key, now, "the running gateway"))
    if not changed:
        return fresh, changed
    # Loaded again with those pinned, so that `${server.port}` and the like still say where the gateway listens.
    kept = load_config(running.source, pinned)
    return dataclasses.replace(kept, overrides=running.overrides), changed


def _setting(config: Config, key: str) -> Any:
    section, name = key.split(".")
    return getattr(getattr(config, section), name)


def _apply_overrides(data: dict[str, Any], overrides: Sequence[Override]) -> dict[str, Override]:
    """Set each override in the parsed file; returns them by key path, to name them in errors."""
    given = {}
    for o in overrides:
        section, name = o.key.split(".")
        table = data.setdefault(section, {})
        if isinstance(table, dict):  # anything else is the file's own error, reported as such
            table[name] = o.value
            given[f"$.{o.key}"] = o
    return given


def _explain(path: str, message: str) -> str:
    """msgspec's message, with the valid choices where it does not give them."""
    if path.endswith(".integration.type") and message.startswith("Invalid value"):
        return f"{message}: expected one of {INTEGRATION_TYPES}"
    if path.endswith(".integration") and "`type`" in message:
        return f"{message}: one of {INTEGRATION_TYPES}"
    if path.endswith(".integration") and message.startswith("Expected `object`"):
        return f"{message}: an integration is a mapping with a `type` ({INTEGRATION_TYPES})"
    if message.startswith("Invalid enum value"):
        choices = _choices(path)
        if choices:
            return f"{message}: expected one of {', '.join(choices)}"
    return message


def _choices(path: str) -> list[str] | None:
    """The values a `Literal` setting allows, found by following `path` through the schema."""
    tp: Any = Config
    for key, _index in re.findall(r"\.([^.\[]+)|\[([^\]]*)\]", path):
        tp = _unwrap(tp)
        if key:  # a field of a Struct (of one member of a union), or a key of a mapping
            fields = [
                typing.get_type_hints(t, include_extras=True)
                for t in _members(tp)
                if isinstance(t, type) and issubclass(t, msgspec.Struct)
            ]
            found = [f[key] for f in fields if key in f]
            if found:
                tp = found[0]
                continue
        if typing.get_origin(tp) not in (dict, list):
            return None
        tp = typing.get_args(tp)[-1]
    values = [v for t in _members(_unwrap(tp)) if typing.get_origin(t) is typing.Literal for v in typing.get_args(t)]
    return [str(v) for v in values] or None


def _unwrap(tp: Any) -> Any:
    return typing.get_args(tp)[0] if typing.get_origin(tp) is typing.Annotated else tp


def _members(tp: Any) -> list[Any]:
    return (
        [_unwrap(t) for t in typing.get_args(tp)] if typing.get_origin(tp) in (typing.Union, types.UnionType) else [tp]
    )


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


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_admin(config: Config, source: str) -> None:
    admin = config.admin
    if admin is not None and not admin.token and not is_loopback(admin.host):
        raise ConfigError(
            source,
            "$.admin.token",
            f"the admin API would listen on {admin.host}, which is not a loopback address, with no token: set a "
            "token or listen on 127.0.0.1",
        )


def _check_upstreams(config: Config, source: str) -> None:
    for name, upstream in config.upstreams.items():
        for i, url in enumerate(upstream.targets):
            problem = target_problem(url)
            if problem:
                raise ConfigError(source, f"$.upstreams.{name}.targets[{i}]", problem)


def target_problem(url: str) -> str | None:
    """Why `url` cannot be an upstream target (`http://host:port`), or None."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return f"expected http://host:port, got {url!r}: a target starts with its scheme, e.g. 'http://{url}'"
    if scheme == "https":
        return (
            f"expected http://host:port, got {url!r}: fastgw speaks plain HTTP/1.1 to upstreams (TLS to upstreams is "
            "not built yet); use an http:// target"
        )
    if scheme != "http":
        return f"expected http://host:port, got {url!r}: the scheme must be http"
    rest = rest[:-1] if rest.endswith("/") else rest
    if not rest or any(c in rest for c in "/?#") or any(c.isspace() for c in rest):
        return f"expected http://host:port, got {url!r}: a target is a host and port only (no path, query or spaces)"
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in 0-65535
    except ValueError:
        return f"expected http://host:port, got {url!r}: the port must be a number from 1 to 65535"
    if not parts.hostname:
        return f"expected http://host:port, got {url!r}: no host"
    return None


_KEYED: dict[str, type] = {"upstreams": Upstream, "functions": Function, "apis": Api, "consumers": ConsumerSpec}


def _name_key(path: str, data: dict[str, Any]) -> str:
    """msgspec writes a mapping key as `[...]`; say which entry it was (the first that fails on its own)."""
    for section, struct in _KEYED.items():
        prefix = f"$.{section}[...]"
        entries = data.get(section)
        if not path.startswith(prefix) or not isinstance(entries, dict):
            continue
        for name, value in entries.items():
            try:
                msgspec.convert(value, struct, strict=True)
            except msgspec.ValidationError:
                return _name_key(f"$.{section}.{name}{path[len(prefix) :]}", data)
    return path


def _parse(raw: bytes, source: str) -> Any:
    if source.endswith(".json"):
        try:
            return msgspec.json.decode(raw)
        except msgspec.DecodeError as exc:
            raise ConfigError(source, "$", f"invalid JSON: {exc}") from None
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" (line {mark.line + 1}, column {mark.column + 1})"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, "$", f"invalid YAML{where}: {problem}") from None


def _entries(config: Config, source: str) -> tuple[tuple[RouteEntry, ...], frozenset[str]]:
    """The route table: top-level routes as they are, then each API's routes once per stage."""
    entries = [
        RouteEntry(route=r, integration=r.integration, path=r.path, label=r.name or f"routes[{i}]", at=f"$.routes[{i}]")
        for i, r in enumerate(config.routes)
    ]
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
                prefix = "/" + stage_name
                if api.type == "rest":
                    rest_prefixes.add(prefix)
            for i, route in enumerate(api.routes):
                at = f"$.apis.{api_name}.routes[{i}]"
                if not route.path.startswith("/"):
                    raise ConfigError(source, f"{at}.path", f"expected a path starting with '/', got {route.path!r}")
                integ = _resolve_stage_variables(route.integration, stage_name, stage.variables, source, at)
                path = prefix + route.path if prefix and route.path != "/" else (prefix or route.path)
                entries.append(
                    RouteEntry(
                        route=route,
                        integration=integ,
                        path=path,
                        label=f"{api_name}:{route.name or f'routes[{i}]'}@{stage_name}",
                        at=at,
                        api=api_name,
                        api_type=api.type,
                        api_id=api_id,
                        stage=stage_name,
                        stage_variables=dict(stage.variables),
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


def _check_functions(config: Config, source: str, base: Path) -> None:
    for name, fn in config.functions.items():
        at = f"$.functions.{name}"
        code = (base / fn.code) if fn.code else base
        if not code.is_dir():
            raise ConfigError(source, f"{at}.code", f"expected a folder, {str(code)!r} is not one")
        if fn.warm > fn.concurrency:
            raise ConfigError(source, f"{at}.warm", f"at most concurrency ({fn.concurrency}), got {fn.warm}")
        problem = handler_problem(fn, code)
        if problem:
            raise ConfigError(source, f"{at}.handler", problem)


def handler_problem(fn: Function, code: Path) -> str | None:
    """Why `fn.handler` cannot name a handler in `code`, or None when its file is there."""
    if fn.runtime == "nodejs":
        module, dot, export = fn.handler.rpartition(".")
        if not dot or not module or not export:
            return f"expected FILE.EXPORT (e.g. index.handler), got {fn.handler!r}"
        if not any((code / f"{module}{ext}").is_file() for ext in (".mjs", ".js", ".cjs")):
            return f"no {module}.mjs, {module}.js or {module}.cjs in {str(code)!r}"
        return None
    if ":" in fn.handler:
        file, _, func = fn.handler.rpartition(":")
        if not file.endswith(".py") or not func.isidentifier():
            return f"expected FILE.py:FUNCTION or MODULE.FUNCTION, got {fn.handler!r}"
        if not (code / file).is_file():
            return f"no file {file!r} in {str(code)!r}"
        return None
    module, dot, func = fn.handler.rpartition(".")
    if not dot or not func.isidentifier() or not all(p.isidentifier() for p in module.split(".")):
        return f"expected MODULE.FUNCTION or FILE.py:FUNCTION, got {fn.handler!r}"
    # NOTE: the module may also be an installed one, so its absence from `code` is not an error here; a worker
    # that fails to import it says so in the log, and the invocation fails as Lambda's Runtime.ImportModuleError.
    return None


def _check(config: Config, entries: tuple[RouteEntry, ...], source: str) -> Router:
    """Cross-checks the schema cannot express; builds and returns the frozen router."""
    for i, cidr in enumerate(config.server.trusted_proxies):
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ConfigError(
                source, f"$.server.trusted_proxies[{i}]", f"expected an IP address or CIDR, got {cidr!r}"
            ) from None

    names: dict[tuple[str | None, str | None, str], str] = {}
    router = Router()
    for i, entry in enumerate(entries):
        route, at = entry.route, entry.at
        if route.name is not None:
            key = (entry.api, entry.stage, route.name)  # names are unique among top-level routes, and per API
            if key in names:
                raise ConfigError(source, f"{at}.name", f"route name {route.name!r} is already used by {names[key]}")
            names[key] = at
        try:
            _, params = parse_template(entry.path)
        except ValueError as exc:
            raise ConfigError(source, f"{at}.path", str(exc)) from None
        integ = entry.integration
        if isinstance(integ, HttpIntegration):
            _check_http(config, integ, params, source, f"{at}.integration")
        elif isinstance(integ, LambdaIntegration) and integ.function not in config.functions:
            known = ", ".join(sorted(config.functions)) or "none defined"
            where = f" (stage {entry.stage!r})" if entry.stage else ""
            raise ConfigError(
                source, f"{at}.integration.function", f"unknown function {integ.function!r}{where} (functions: {known})"
            )
        label = f"{at} ({route.name + ': ' if route.name else ''}{','.join(route.methods)} {entry.path}"
        label += f" host {route.host})" if route.host else ")"
        try:
            router.add(i, route.methods, entry.path, host=route.host, name=label)
        except RouteConflict as exc:
            raise ConfigError(source, at, str(exc)) from None
        except ValueError as exc:
            raise ConfigError(source, f"{at}.host", str(exc)) from None
    router.freeze()
    return router


def _route_table(
    config: Config, entries: tuple[RouteEntry, ...], router: Router, rest_prefixes: frozenset[str]
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
    return RouteTable(router, routes, policy_flags(top.escaped_slashes, top.backslash), rest_prefixes)


def _check_http(config: Config, integ: HttpIntegration, params: tuple[str, ...], source: str, at: str) -> None:
    if integ.upstream not in config.upstreams:
        known = ", ".join(sorted(config.upstreams)) or "none defined"
        raise ConfigError(source, f"{at}.upstream", f"unknown upstream {integ.upstream!r} (upstreams: {known})")
    if integ.strip_prefix is not None and not integ.strip_prefix.startswith("/"):
        raise ConfigError(
            source, f"{at}.strip_prefix", f"expected a path starting with '/', got {integ.strip_prefix!r}"
        )
    if integ.path is not None:
        if not integ.path.startswith("/"):
            raise ConfigError(source, f"{at}.path", f"expected a path starting with '/', got {integ.path!r}")
        for ref in TEMPLATE_REF.findall(integ.path):
            if ref not in params:
                have = ", ".join(params) or "none"
                raise ConfigError(
                    source, f"{at}.path", f"{{{ref}}} is not a parameter of the route's path (parameters: {have})"
                )
