"""Consumers as the request path sees them: who authenticated, in which groups, with which custom fields."""

from __future__ import annotations

import re
from typing import Any

# NOTE: a consumer's name and groups reach the upstream as header values (X-Consumer-Username, X-Consumer-Groups,
# fastgw.core.phases.add_consumer_headers writes the bytes as they are): a control character (CR, LF, NUL, any but
# tab) would end the header, or the request, where the name says. Refused here, where they are encoded once.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def unsafe_in_header(text: str) -> bool:
    """True when `text` holds a control character (other than tab) and so cannot be a header value."""
    return _CONTROL.search(text) is not None


class Consumer:
    __slots__ = ("name", "groups", "custom", "name_b", "groups_b", "plugins")

    def __init__(self, name: str, groups: tuple[str, ...], custom: dict[str, str]) -> None:
        for text in (name, *groups):
            if unsafe_in_header(text):
                raise ValueError(f"consumer name or group {text!r}: a control character cannot go into a header")
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
