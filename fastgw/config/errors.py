"""Config errors that say where and what: `ConfigError` (file, key path, message), and msgspec's messages made
clearer (the entry a mapping key names, the choices a setting allows, the name a misspelling was meant to be)."""

from __future__ import annotations

import difflib
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


# msgspec's words for a key the schema does not have, and for a value outside a pattern of alternatives.
UNKNOWN_FIELD = re.compile(r"^Object contains unknown field `(?P<key>[^`]*)`$")
PATTERN_CHOICES = re.compile(r"^Expected `str` matching regex '\^\((?P<alts>[A-Za-z0-9_|-]+)\)\$'$")


def did_you_mean(word: str, choices: typing.Iterable[str], hints: typing.Mapping[str, str] | None = None) -> str:
    """` (did you mean 'x'?)` for the choice closest to `word` (or the one `hints` maps it to), else ``."""
    choices = list(choices)
    hint = (hints or {}).get(word) or (hints or {}).get(word.lower())
    if hint is not None and hint in choices:
        return f" (did you mean {hint!r}?)"
    folded = {c.lower(): c for c in choices}
    if word.lower() in folded:  # `get` for `GET`: a case slip
        return f" (did you mean {folded[word.lower()]!r}?)"
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def struct_fields(root: Any, path: str) -> list[str]:
    """The keys the schema allows at `path` (a key path from `root`'s `$`), or [] where `path` is no Struct."""
    tp = _type_at(root, path)
    return sorted(
        {
            f
            for t in _members(_unwrap(tp))
            if isinstance(t, type) and issubclass(t, msgspec.Struct)
            for f in t.__struct_encode_fields__
        }
    )


def explain(path: str, message: str, data: Any = None, root: Any = Config) -> str:
    """msgspec's message, with the valid choices where it does not give them and the name a misspelled key or
    value was probably meant to be (`data` is the document the path reads, for the value)."""
    m = UNKNOWN_FIELD.match(message)
    if m:
        return message + did_you_mean(m.group("key"), struct_fields(root, path))
    m = PATTERN_CHOICES.match(message)
    if m:
        alts = m.group("alts").split("|")
        value = _value_at(data, path)
        hint = did_you_mean(value, alts) if isinstance(value, str) else ""
        return f"expected one of {', '.join(alts)}, got {value!r}{hint}" if isinstance(value, str) else message
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
    tp = _type_at(Config, path)
    values = [v for t in _members(_unwrap(tp)) if typing.get_origin(t) is typing.Literal for v in typing.get_args(t)]
    return [str(v) for v in values] or None


_STEPS = re.compile(r"\.([^.\[]+)|\[([^\]]*)\]")


def _type_at(root: Any, path: str) -> Any:
    """The schema's type at `path`, or None where the path leaves the schema."""
    tp: Any = root
    for key, _index in _STEPS.findall(path):
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
    return tp


def _value_at(data: Any, path: str) -> Any:
    for key, index in _STEPS.findall(path):
        if key and isinstance(data, dict):
            data = data.get(key)
        elif index.isdigit() and isinstance(data, list) and int(index) < len(data):
            data = data[int(index)]
        else:
            return None
    return data


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
