"""`multi-auth`: several authentication plugins on one route, and the request passes when one of them does.

APISIX's shape: `multi-auth: {auth_plugins: [{key-auth: {...}}, {jwt-auth: {...}}, {lambda-authorizer: {...}}]}`.
The plugins are tried in the order given; the first that lets the request through has named its consumer (as it
would alone) and the rest are not tried. When every one refuses, the client gets the first plugin's answer
(APISIX answers its own 401 instead; the first plugin's answer tells the client what the route expects first, e.g.
its `WWW-Authenticate` challenge). A 400 from any of them (a malformed request, such as a credential sent twice)
ends the trial at once: that request is refused, whatever another plugin would say. A plugin that raises fails the
request (500), as it would alone.

Once one passes, every other plugin of the list whose configuration sets `hide_credentials` has its credential
taken out of the upstream request too (`remove_credential`, what its own hide_credentials does): a wrong `apikey`
beside a valid token must not reach a backend that was promised it never sees keys.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable
from typing import Annotated, Any

import msgspec

from fastgw.plugins.base import PHASES, Context, Plugin, Response
from fastgw.plugins.chain import ConfigAt, PluginConfigError, PluginError, loading, prepare_plugin

# Plugins in this band authenticate (docs/plugins.md's table): 2000 itself is acl, which needs a consumer already.
AUTH_BAND = range(2001, 3000)


class MultiAuthConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # Each item names one authentication plugin and its configuration: [{key-auth: {}}, {jwt-auth: {...}}].
    auth_plugins: Annotated[list[dict[str, Any]], msgspec.Meta(min_length=2)]


class MultiAuth(Plugin):
    name = "multi-auth"
    priority = 2700  # before the single auth plugins: a route may carry one of them besides (all must pass)
    Config = MultiAuthConfig

    def prepare(self, conf: MultiAuthConfig) -> Any:
        registry = loading().registry
        subs: list[tuple[Any, Any, str, bool]] = []
        for i, item in enumerate(conf.auth_plugins):
            at = f".auth_plugins[{i}]"
            if len(item) != 1:
                raise ConfigAt(at, f"expected one plugin name with its configuration, got {len(item)} keys")
            ((name, raw),) = item.items()
            try:
                cls = registry.find(name)
            except PluginError as exc:  # an installed package that cannot be used, met while looking for `name`
                raise ConfigAt(at, str(exc)) from None
            if cls is None or name == self.name:
                known = ", ".join(sorted(n for n, c in registry.known().items() if _authenticates(c)))
                raise ConfigAt(at, f"{name!r} is not an authentication plugin (these are: {known})")
            if not _authenticates(cls):
                raise ConfigAt(
                    at, f"{name!r} is not an authentication plugin: multi-auth takes plugins of priority 2001-2999 "
                    "with an access phase and no other phase",
                )  # fmt: skip
            try:
                plugin, prepared = prepare_plugin(registry, name, raw, f"{at}.{name}")
            except PluginConfigError as exc:
                raise ConfigAt(exc.path, exc.message) from None
            hide = (isinstance(raw, dict) and raw.get("hide_credentials") is True
                    and callable(getattr(plugin, "remove_credential", None)))  # fmt: skip
            subs.append((plugin, prepared, name, hide))
        return tuple(subs)

    def access(self, ctx: Context, subs: Any) -> Response | Awaitable[Response | None] | None:
        first: Response | None = None
        for i, (plugin, conf, name, _) in enumerate(subs):
            result = plugin.access(ctx, conf)
            if result is None:
                _hide_others(ctx, subs, i)
                return None
            if result.__class__ is Response:
                if result.status == 400:
                    return result  # a malformed request (a credential sent twice): no other plugin may pass it
                if first is None:
                    first = result
                continue
            if inspect.isawaitable(result):
                return self._go_on(ctx, subs, i, result, first)
            raise TypeError(f"{name} returned {type(result).__name__}, not None or a Response")
        return first

    async def _go_on(self, ctx: Context, subs: Any, i: int, pending: Any, first: Response | None) -> Response | None:
        """The rest of `access` once a plugin answered with an awaitable (lambda-authorizer, jwt-auth fetching keys)."""
        result = await pending
        while True:
            if result is None:
                _hide_others(ctx, subs, i)
                return None
            if not isinstance(result, Response):
                raise TypeError(f"{subs[i][2]} returned {type(result).__name__}, not None or a Response")
            if result.status == 400:
                return result
            if first is None:
                first = result
            i += 1
            if i == len(subs):
                return first
            plugin, conf, _, _ = subs[i]
            result = plugin.access(ctx, conf)
            if inspect.isawaitable(result):
                result = await result


def _hide_others(ctx: Context, subs: Any, passed: int) -> None:
    """Remove the credentials of the plugins other than the one that passed, where their hide_credentials asks it."""
    for j, (plugin, conf, _, hide) in enumerate(subs):
        if hide and j != passed:
            plugin.remove_credential(ctx, conf)


def _authenticates(cls: Any) -> bool:
    phases = [p for p in PHASES if callable(getattr(cls, p, None))]
    return cls.priority in AUTH_BAND and phases == ["access"] and cls.name != MultiAuth.name


PLUGINS = (MultiAuth,)
