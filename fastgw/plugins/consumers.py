"""Consumers as the request path sees them: who authenticated, in which groups, with which custom fields."""

from __future__ import annotations

from typing import Any


class Consumer:
    __slots__ = ("name", "groups", "custom", "name_b", "groups_b", "plugins")

    def __init__(self, name: str, groups: tuple[str, ...], custom: dict[str, str]) -> None:
        self.name = name
        self.groups = groups
        self.custom = custom
        # Plugin name -> (plugin, prepared conf) configured for this consumer, or None: switched off for it.
        self.plugins: dict[str, tuple[Any, Any] | None] = {}
        # What the upstream receives in the consumer headers, encoded once.
        self.name_b = name.encode()
        self.groups_b = ",".join(groups).encode()

    def __repr__(self) -> str:
        return f"Consumer({self.name!r}, groups={list(self.groups)!r})"
