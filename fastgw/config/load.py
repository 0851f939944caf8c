"""Load a config file (YAML or JSON) into the schema's Structs, cross-check it, and build its route table.

Every error is a `ConfigError` naming the file, the key path (`$.routes[3].integration.upstream`) and what was
expected; nothing here binds a socket, so `fastgw check` runs exactly this.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec
import yaml

from fastgw.config.schema import Config, HttpIntegration, Upstream
from fastgw.core import RouteConflict, Router, parse_template

_MSGSPEC_PATH = re.compile(r"^(?P<msg>.*?)(?: - at `(?P<path>\$[^`]*)`)?$", re.S)
# `{name}` or `{name+}` in a path template (the route's, or an http integration's upstream path).
TEMPLATE_REF = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\+?\}")


class ConfigError(Exception):
    """A config that cannot be served: says where (file and key path) and what was expected."""

    def __init__(self, source: str, path: str, message: str) -> None:
        self.source = source
        self.path = path
        self.message = message
        super().__init__(f"{source}: {path}: {message}")


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config, where it came from, and its frozen router (whose routes are indices into
    `config.routes`)."""

    config: Config
    source: str
    router: Router


def default_config_path() -> Path:
    """The built-in quickstart served by `fastgw serve` with no CONFIG."""
    return Path(str(resources.files("fastgw") / "examples" / "quickstart.yaml"))


def load_config(path: str | Path) -> LoadedConfig:
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(source, "$", f"cannot read the file: {exc.strerror or exc}") from None
    return load_config_bytes(raw, source)


def load_config_bytes(raw: bytes, source: str = "<config>") -> LoadedConfig:
    data = _parse(raw, source)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, "$", f"expected a mapping at the top level, got {type(data).__name__}")
    try:
        config = msgspec.convert(data, Config, strict=True)
    except msgspec.ValidationError as exc:
        m = _MSGSPEC_PATH.match(str(exc))
        assert m is not None
        path = _name_upstream(m.group("path") or "$", data)
        raise ConfigError(source, path, m.group("msg")) from None
    router = _check(config, source)
    return LoadedConfig(config=config, source=source, router=router)


def _name_upstream(path: str, data: dict[str, Any]) -> str:
    """msgspec writes a mapping key as `[...]`; say which upstream it was (the one that fails on its own)."""
    prefix = "$.upstreams[...]"
    upstreams = data.get("upstreams")
    if not path.startswith(prefix) or not isinstance(upstreams, dict):
        return path
    for name, value in upstreams.items():
        try:
            msgspec.convert(value, Upstream, strict=True)
        except msgspec.ValidationError:
            return f"$.upstreams.{name}{path[len(prefix) :]}"
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


def _check(config: Config, source: str) -> Router:
    """Cross-checks the schema cannot express; builds and returns the frozen router."""
    for i, cidr in enumerate(config.server.trusted_proxies):
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ConfigError(
                source, f"$.server.trusted_proxies[{i}]", f"expected an IP address or CIDR, got {cidr!r}"
            ) from None

    names: dict[str, int] = {}
    router = Router()
    for i, route in enumerate(config.routes):
        at = f"$.routes[{i}]"
        if route.name is not None:
            if route.name in names:
                raise ConfigError(
                    source, f"{at}.name", f"route name {route.name!r} is already used by $.routes[{names[route.name]}]"
                )
            names[route.name] = i
        try:
            _, params = parse_template(route.path)
        except ValueError as exc:
            raise ConfigError(source, f"{at}.path", str(exc)) from None
        integ = route.integration
        if isinstance(integ, HttpIntegration):
            _check_http(config, integ, params, source, f"{at}.integration")
        label = f"{at} ({route.name + ': ' if route.name else ''}{','.join(route.methods)} {route.path}"
        label += f" host {route.host})" if route.host else ")"
        try:
            router.add(i, route.methods, route.path, host=route.host, name=label)
        except RouteConflict as exc:
            raise ConfigError(source, at, str(exc)) from None
        except ValueError as exc:
            raise ConfigError(source, f"{at}.host", str(exc)) from None
    router.freeze()
    return router


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
