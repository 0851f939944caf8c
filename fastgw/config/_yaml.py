"""The YAML reader of fastgw.config.parse (its docstring says what it builds and why from the parser's events): a
module of its own so that only a YAML config imports PyYAML (0.9 MiB of every process: a JSON config, a store's or
the admin API's deployment do not need it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
    StreamStartEvent,
)
from yaml.nodes import ScalarNode

from fastgw.config.errors import ConfigError

_Loader: Any = getattr(yaml, "CSafeLoader", None) or yaml.SafeLoader
C_LOADER = _Loader is not yaml.SafeLoader

_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
_MAP_TAGS = (None, "!", "tag:yaml.org,2002:map")
_SEQ_TAGS = (None, "!", "tag:yaml.org,2002:seq")
_NO_KEY = object()


class _Merge:
    """The `<<` key of a mapping: the mappings it names fill the keys the mapping does not give itself."""


_MERGE_KEY = _Merge()


Tags = Callable[[str, Any], Any]


def parse_yaml(raw: bytes, source: str, loader: Any = None, tags: Tags | None = None) -> Any:
    """The document in `raw` (None for an empty one). Raises ConfigError."""
    ld = (loader or _Loader)(raw)
    try:
        return _build(ld, source, tags)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" (line {mark.line + 1}, column {mark.column + 1})"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, "$", f"invalid YAML{where}: {problem}") from None
    finally:
        ld.dispose()


def _key_path(path: str, key: Any) -> str:
    return f"{path}.{key}"


def _local(tag: str | None) -> bool:
    return tag is not None and tag.startswith("!") and not tag.startswith("!!") and tag != "!"


def _build(ld: Any, source: str, tags: Tags | None = None) -> Any:
    get = ld.get_event
    ev = get()
    assert isinstance(ev, StreamStartEvent)
    ev = get()
    if isinstance(ev, StreamEndEvent):
        return None
    assert isinstance(ev, DocumentStartEvent)
    resolvers = ld.yaml_implicit_resolvers
    wildcard = None in resolvers
    constructors = ld.yaml_constructors
    plain_cache: dict[str, Any] = {}
    anchors: dict[str, Any] = {}

    def scalar(ev: ScalarEvent) -> Any:
        tag, value = ev.tag, ev.value
        if tag is None or tag == "!":
            if not ev.implicit[0]:
                return value  # quoted (or a block scalar): a string
            if value in plain_cache:
                return plain_cache[value]
            if not wildcard and (value[0] if value else "") not in resolvers:
                return value
            tag = ld.resolve(ScalarNode, value, ev.implicit)
            if tag == _STR:
                out = value
            elif tag == _MERGE:
                out = _MERGE_KEY
            else:
                out = constructors[tag](ld, ScalarNode(tag, value, ev.start_mark, ev.end_mark, ev.style))
            plain_cache[value] = out
            return out
        if tag == _STR:
            return value
        if tags is not None and _local(tag):
            return tags(tag, value)
        node = ScalarNode(tag, value, ev.start_mark, ev.end_mark, ev.style)
        return ld.construct_object(node, deep=True)  # an explicit tag: safe_load's constructor, or its error

    # Each open collection: [container, path, key waiting for its value (mappings), lines of keys, merges, line,
    # a local tag for `tags` (or None), its anchor when tagged (what the alias names is the hook's value)].
    stack: list[list[Any]] = []
    root: Any = None

    def add(value: Any, line: int) -> None:
        nonlocal root
        if not stack:
            root = value
            return
        top = stack[-1]
        container = top[0]
        if isinstance(container, list):
            container.append(value)
            return
        key = top[2]
        if key is _NO_KEY:  # this is a key
            if isinstance(value, (dict, list)):
                raise ConfigError(source, top[1], f"a mapping key must be a plain value (line {line})")
            if value is not _MERGE_KEY and value in container:
                first = top[3][value]
                raise ConfigError(
                    source,
                    _key_path(top[1], value),
                    f"given twice in one mapping (lines {first} and {line}): the second would replace the first "
                    "without a word; keep one",
                )
            top[2] = value
            top[3][value] = line
            return
        top[2] = _NO_KEY
        if key is _MERGE_KEY:
            sources = value if isinstance(value, list) else [value]
            if not all(isinstance(s, dict) for s in sources):
                raise ConfigError(source, top[1], f"`<<` merges mappings, or a list of them (line {line})")
            top[4].extend(sources)
            return
        container[key] = value

    def _tagged(top: list[Any]) -> Any:
        if top[6] is None:
            return top[0]
        assert tags is not None
        out = tags(top[6], top[0])
        if top[7] is not None:
            anchors[top[7]] = out
        return out

    def path_of_next() -> str:
        if not stack:
            return "$"
        top = stack[-1]
        if isinstance(top[0], list):
            return f"{top[1]}[{len(top[0])}]"
        return _key_path(top[1], top[2]) if top[2] is not _NO_KEY else top[1]

    while True:
        ev = get()
        cls = type(ev)
        if cls is ScalarEvent:
            value = scalar(ev)
            if ev.anchor is not None:
                anchors[ev.anchor] = value
            add(value, ev.start_mark.line + 1)
        elif cls is MappingStartEvent:
            hooked = tags is not None and _local(ev.tag)
            if ev.tag not in _MAP_TAGS and not hooked:
                raise ConfigError(source, path_of_next(), f"the tag {ev.tag} is not supported in a config")
            d: dict[Any, Any] = {}
            if ev.anchor is not None and not hooked:
                anchors[ev.anchor] = d
            stack.append([d, path_of_next(), _NO_KEY, {}, [], ev.start_mark.line + 1, ev.tag if hooked else None,
                          ev.anchor])  # fmt: skip
        elif cls is SequenceStartEvent:
            hooked = tags is not None and _local(ev.tag)
            if ev.tag not in _SEQ_TAGS and not hooked:
                raise ConfigError(source, path_of_next(), f"the tag {ev.tag} is not supported in a config")
            seq: list[Any] = []
            if ev.anchor is not None and not hooked:
                anchors[ev.anchor] = seq
            stack.append([seq, path_of_next(), None, None, None, ev.start_mark.line + 1, ev.tag if hooked else None,
                          ev.anchor])  # fmt: skip
        elif cls is MappingEndEvent:
            top = stack.pop()
            d = top[0]
            for merged in top[4]:  # the first mapping named wins, then the next (as safe_load merges)
                for k, v in merged.items():
                    if k not in d:
                        d[k] = v
            add(_tagged(top), top[5])
        elif cls is SequenceEndEvent:
            top = stack.pop()
            add(_tagged(top), top[5])
        elif cls is AliasEvent:
            if ev.anchor not in anchors:
                raise ConfigError(source, path_of_next(), f"found undefined alias {ev.anchor!r}")
            add(anchors[ev.anchor], ev.start_mark.line + 1)
        elif cls is DocumentEndEvent:
            break
        else:  # pragma: no cover - the parser emits nothing else inside a document
            raise ConfigError(source, "$", f"unexpected YAML event {cls.__name__}")
    ev = get()
    if not isinstance(ev, StreamEndEvent):
        raise ConfigError(source, "$", "expected one YAML document, found another (---): keep one per file")
    return root
