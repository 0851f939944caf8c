"""A config file's bytes (YAML or JSON) into plain data, refusing a key given twice in one mapping.

YAML is built straight from the parser's events (libyaml's C parser, `yaml.CSafeLoader`, when PyYAML has it;
its pure-Python one otherwise), not through PyYAML's node graph: composing nodes and resolving each scalar by
regular expressions was most of the time of a large config (10,000 routes: 6.75 s with the pure loader, 1.8 s
with the C loader's composer, ~0.5 s built from the C parser's events). What is built is what `yaml.safe_load`
builds (the scalars go through its own resolver and constructors, remembered per value), with two differences:
a key given twice in a mapping is an error naming its key path and both lines (`safe_load` keeps the later one
without a word: a second top-level `plugins:` dropped a global key-auth, issue 19 item 9), and a collection with
an explicit tag other than `!!map`/`!!seq` (`!!set`, `!!omap`, `!!pairs`) is refused as no config needs one.

`tags`: a hook for local tags (`!Name`) on scalars, sequences and mappings, called with the tag and the value built
from the node (a str, a list, a dict): what CloudFormation's short forms (`!Ref X`, `!GetAtt A.B`, `!Sub`, `!If`...)
need in a SAM template or an OpenAPI file (fastgw.aws.intrinsics), read with the same duplicate-key check.

JSON goes through the standard library's decoder with a hook that sees every object's pairs, for the same check; a
key given twice is found again through the YAML reader (JSON is YAML's flow style) to name both lines.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from fastgw.config.errors import ConfigError

if TYPE_CHECKING:
    from fastgw.config._yaml import Tags


def parse_yaml(raw: bytes, source: str, loader: Any = None, tags: Tags | None = None) -> Any:
    """The document in `raw` (None for an empty one). Raises ConfigError."""
    # NOTE: PyYAML is imported at the first YAML document (fastgw/config/_yaml.py): 0.9 MiB a gateway serving a JSON
    # config, or deployments from a store or the admin API, does not keep (bench/README.md, "Idle memory").
    from fastgw.config import _yaml

    return _yaml.parse_yaml(raw, source, loader, tags)


def _key_path(path: str, key: Any) -> str:
    return f"{path}.{key}"


class _Twice(dict[str, Any]):
    """An object in which the JSON decoder met a key twice (`key`)."""

    key: Any = None


def parse_json(raw: bytes, source: str) -> Any:
    twice = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal twice
        out = dict(items)
        if len(out) != len(items):
            seen: set[str] = set()
            dup = _Twice(out)
            dup.key = next(k for k, _ in items if k in seen or seen.add(k))  # type: ignore[func-returns-value]
            twice = True
            return dup
        return out

    def constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    try:
        data = json.loads(raw, object_pairs_hook=pairs, parse_constant=constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(source, "$", f"invalid JSON: {exc}") from None
    if twice:
        path, key = _find_twice(data, "$")  # type: ignore[misc]
        try:  # JSON is YAML's flow style: its reader names both lines (a file it cannot read keeps this message)
            parse_yaml(raw, source)
        except ConfigError as exc:
            if exc.path == _key_path(path, key) and "given twice" in exc.message:
                raise ConfigError(source, exc.path, exc.message.replace("mapping", "object")) from None
        raise ConfigError(
            source, _key_path(path, key), "given twice in one object: the second would replace the first; keep one"
        )
    return data


def _find_twice(value: Any, path: str) -> tuple[str, Any] | None:
    if isinstance(value, _Twice):
        return path, value.key
    if isinstance(value, dict):
        items = value.items()
        for k, v in items:
            found = _find_twice(v, _key_path(path, k))
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = _find_twice(v, f"{path}[{i}]")
            if found is not None:
                return found
    return None
