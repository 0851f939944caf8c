"""Config errors that say where and what: `ConfigError` (file, key path, message), and msgspec's messages made
clearer (the entry a mapping key names, the choices a setting allows)."""

from __future__ import annotations

import re
import types
import typing
from typing import Any

import msgspec

from fastgw.config.schema import Api, Config, Function, Integration, Upstream
from fastgw.config.schema import Consumer as ConsumerSpec

# A bad mapping key reads "... - at `key` in `$.path`": the key path is the mapping's.
MSGSPEC_PATH = re.compile(r"^(?P<msg>.*?)(?: - at (?:`key` in )?`(?P<path>\$[^`]*)`)?$", re.S)
# The integration types, for errors that name a wrong or missing one.
INTEGRATION_TYPES = ", ".join(sorted(str(t.__struct_config__.tag) for t in Integration.__args__))


class ConfigError(Exception):
    """A config that cannot be served: says where (file and key path) and what was expected."""

    def __init__(self, source: str, path: str, message: str) -> None:
        self.source = source
        self.path = path
        self.message = message
        super().__init__(f"{source}: {path}: {message}")


def explain(path: str, message: str) -> str:
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


_KEYED: dict[str, type] = {"upstreams": Upstream, "functions": Function, "apis": Api, "consumers": ConsumerSpec}


def name_key(path: str, data: dict[str, Any]) -> str:
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
                return name_key(f"$.{section}.{name}{path[len(prefix) :]}", data)
    return path
