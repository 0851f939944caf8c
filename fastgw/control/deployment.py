"""A deployment's identity and its differences: the canonical JSON of a config, its id, and what changed between
two configs (`fastgw diff`, `GET /deployments/{a}/diff/{b}`)."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import orjson

from fastgw.control.store import Deployment

_CANONICAL = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def canonical(config: dict[str, Any]) -> bytes:
    """The config as JSON with sorted keys: the same config is the same bytes whatever its file's layout."""
    return orjson.dumps(config, option=_CANONICAL)


def deployment_id(config: dict[str, Any] | bytes) -> str:
    raw = config if isinstance(config, bytes) else canonical(config)
    return hashlib.sha256(raw).hexdigest()[:16]


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def make(
    config: dict[str, Any], source: str, author: str = "", description: str = "", meta: dict[str, Any] | None = None
) -> Deployment:
    return Deployment(deployment_id(config), config, now(), source, author, description, dict(meta or {}))


def summary(deployment: Deployment, revision: int | None = None) -> dict[str, Any]:
    """A deployment as the admin API lists it (without its config)."""
    out: dict[str, Any] = {
        "id": deployment.id,
        "time": deployment.time,
        "source": deployment.source,
        "author": deployment.author,
        "description": deployment.description,
    }
    if revision is not None:
        out["revision"] = revision
    return out


def diff(before: Any, after: Any, path: str = "$") -> list[dict[str, Any]]:
    """What changed from `before` to `after`, key path by key path: `{"path", "op": "added"|"removed"|"changed",
    "before", "after"}`. Lists of objects that all have a distinct `name` are compared by name
    (`$.routes[name=users]`), other lists by position."""
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[dict[str, Any]] = []
        for key in before:
            sub = f"{path}.{key}"
            if key not in after:
                out.append({"path": sub, "op": "removed", "before": before[key]})
            else:
                out += diff(before[key], after[key], sub)
        for key in after:
            if key not in before:
                out.append({"path": f"{path}.{key}", "op": "added", "after": after[key]})
        return out
    if isinstance(before, list) and isinstance(after, list):
        named_before, named_after = _by_name(before), _by_name(after)
        if named_before is not None and named_after is not None:
            return [{**d, "path": _named_path(path, d["path"])} for d in diff(named_before, named_after, "")]
        out = []
        for i in range(max(len(before), len(after))):
            sub = f"{path}[{i}]"
            if i >= len(after):
                out.append({"path": sub, "op": "removed", "before": before[i]})
            elif i >= len(before):
                out.append({"path": sub, "op": "added", "after": after[i]})
            else:
                out += diff(before[i], after[i], sub)
        return out
    if before == after and type(before) is type(after):
        return []
    return [{"path": path, "op": "changed", "before": before, "after": after}]


def _by_name(items: list[Any]) -> dict[str, Any] | None:
    if not items or not all(isinstance(i, dict) and isinstance(i.get("name"), str) for i in items):
        return None
    named = {i["name"]: i for i in items}
    return named if len(named) == len(items) else None


def _named_path(path: str, sub: str) -> str:
    # sub is ".NAME" or ".NAME.rest" (from a diff rooted at ""): the name is the first segment.
    name, dot, rest = sub[1:].partition(".")
    return f"{path}[name={name}]" + (dot + rest if rest else "")


def render(changes: list[dict[str, Any]]) -> str:
    """The changes as `fastgw diff` prints them: `+ path: value`, `- path: value`, `~ path: before -> after`."""
    lines = []
    for c in changes:
        if c["op"] == "added":
            lines.append(f"+ {c['path']}: {_short(c['after'])}")
        elif c["op"] == "removed":
            lines.append(f"- {c['path']}: {_short(c['before'])}")
        else:
            lines.append(f"~ {c['path']}: {_short(c['before'])} -> {_short(c['after'])}")
    return "\n".join(lines)


def _short(value: Any) -> str:
    text = orjson.dumps(value, option=_CANONICAL).decode()
    return text if len(text) <= 200 else text[:197] + "..."
