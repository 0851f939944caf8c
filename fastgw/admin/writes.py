"""What the admin API's writes change in a config (in the file's schema, as data): one named item of a section
(`/routes/{name}`, `/upstreams/{name}`, ...), or a global plugin. Each function takes the serving config (a copy)
and changes it in place, or raises Refused; the control plane then checks and deploys the result."""

from __future__ import annotations

from typing import Any

from fastgw.control.plane import Refused

MASK = "********"
# The sections the admin API writes item by item: the URL's first segment -> the config's key. Every one but
# `routes` is a mapping by name; `routes` is a list whose items carry their `name`.
SECTIONS = {
    "routes": "routes",
    "upstreams": "upstreams",
    "consumers": "consumers",
    "functions": "functions",
    "apis": "apis",
    "plugins": "plugins",  # the global plugins: name -> its configuration
}


def get_item(config: dict[str, Any], section: str, name: str) -> Any:
    if section == "routes":
        for route in config.get("routes") or []:
            if isinstance(route, dict) and route.get("name") == name:
                return route
        raise Refused(404, f"no route named {name!r} (only named top-level routes can be read and written here)")
    table = config.get(section) or {}
    if not isinstance(table, dict) or name not in table:
        raise Refused(404, f"no {section[:-1] if section != 'plugins' else 'global plugin'} {name!r}")
    return table[name]


def put_item(config: dict[str, Any], section: str, name: str, value: Any) -> bool:
    """Set the item; True when it was created (201), False when it replaced one (200)."""
    if section == "routes":
        if not isinstance(value, dict):
            raise Refused(400, "$: a route is an object ({path, integration, ...})", path="$")
        if value.get("name", name) != name:
            raise Refused(400, f"$.name: the body names the route {value['name']!r}, the URL {name!r}", path="$.name")
        value = {**value, "name": name}
        routes = config.setdefault("routes", [])
        if not isinstance(routes, list):
            raise Refused(400, "$.routes: the serving config's routes are not a list", path="$.routes")
        for i, route in enumerate(routes):
            if isinstance(route, dict) and route.get("name") == name:
                routes[i] = unmask(value, route)
                return False
        routes.append(value)
        return True
    table = config.setdefault(section, {})
    if not isinstance(table, dict):
        raise Refused(400, f"$.{section}: the serving config's {section} are not a mapping", path=f"$.{section}")
    created = name not in table
    table[name] = value if created else unmask(value, table[name])
    return created


def delete_item(config: dict[str, Any], section: str, name: str) -> None:
    get_item(config, section, name)  # 404 when there is none
    if section == "routes":
        config["routes"] = [r for r in config["routes"] if not (isinstance(r, dict) and r.get("name") == name)]
    else:
        del config[section][name]


def unmask(new: Any, old: Any) -> Any:
    """A secret sent back as the mask the admin API shows it with (`GET`, change, `PUT`) keeps its value."""
    if new == MASK and isinstance(old, str):
        return old
    if isinstance(new, dict) and isinstance(old, dict):
        return {k: unmask(v, old.get(k)) for k, v in new.items()}
    if isinstance(new, list) and isinstance(old, list):
        return [unmask(v, old[i] if i < len(old) else None) for i, v in enumerate(new)]
    return new
