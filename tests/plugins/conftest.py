from __future__ import annotations

from typing import Any

import pytest

from fastgw.testing import EchoUpstream

# Every plugin case runs twice (`twice` below): state must never leak from one request to the next.
TWICE = range(2)


def route_config(upstream: EchoUpstream, plugins: dict[str, Any], **top: Any) -> dict[str, Any]:
    """One proxied route `/{proxy+}` (and `/`) to `upstream` with `plugins`, plus top-level keys."""
    integ = {"type": "http", "upstream": "backend"}
    cfg: dict[str, Any] = {
        "upstreams": {"backend": {"targets": [upstream.url]}},
        "routes": [
            {"path": "/{proxy+}", "integration": integ, "plugins": plugins},
            {"path": "/", "integration": integ, "plugins": plugins},
        ],
    }
    cfg.update(top)
    return cfg


@pytest.fixture
def consumers() -> dict[str, Any]:
    return {
        "alice": {"groups": ["admin", "staff"], "custom": {"tier": "gold"},
                  "credentials": {"key-auth": [{"key": "alice-key"}]}},
        "bob": {"groups": ["staff"], "credentials": {"key-auth": [{"key": "bob-key"}]}},
    }  # fmt: skip
