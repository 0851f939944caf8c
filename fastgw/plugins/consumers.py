"""Consumers as the request path sees them: who authenticated, in which groups, with which custom fields."""

from __future__ import annotations


class Consumer:
    __slots__ = ("name", "groups", "custom")

    def __init__(self, name: str, groups: tuple[str, ...], custom: dict[str, str]) -> None:
        self.name = name
        self.groups = groups
        self.custom = custom

    def __repr__(self) -> str:
        return f"Consumer({self.name!r}, groups={list(self.groups)!r})"
