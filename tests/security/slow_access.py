"""A plugin for the edge tests (loaded through `plugin_modules`): an access phase that takes `seconds` (an
authorizer, a cache lock, Redis), then lets the request through."""

from __future__ import annotations

import asyncio

import msgspec

from fastgw.plugins.base import Context, Plugin


class SlowAccessConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    seconds: float = 1.0


class SlowAccess(Plugin):
    name = "slow-access"
    priority = 900
    Config = SlowAccessConfig

    async def access(self, ctx: Context, conf: SlowAccessConfig) -> None:
        await asyncio.sleep(conf.seconds)
