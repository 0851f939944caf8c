"""Finding plugins, checking them once, and building each route's phase chains when the config loads.

Plugins come from three places: the built-in ones (`fastgw/plugins/*.py`), installed packages exposing them in
the `fastgw.plugins` entry-point group, and dotted paths listed in the config's `plugin_modules`. A config load
imports only the built-in modules of the plugins it names, and reads the entry points only when it names a plugin
that is neither built in nor in `plugin_modules` (`Registry.find`): reading them imports `importlib.metadata` (with
`email`, `zipfile`, `csv`...) and every installed plugin package, and the built-ins import what they use (the
functions runtime for lambda-authorizer, the cache stores...): memory in every worker that a gateway not using them
does not need, as Kong loads only the plugins its `plugins` setting names. `fastgw plugins` and the admin API's list
load them all. A class is
checked when it is registered (name, priority, Config, phase names and signatures); a configuration is checked
against the plugin's Config when the config loads, with the key path in the error. Per route, the plugins that
apply (global, then the API's, then the route's own, each replacing the wider one by name) are ordered by
priority, and for each phase a tuple of (callable, conf, is_async, name) is kept: the request loop iterates
tuples, nothing is looked up by name per request.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
import sys
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from fastgw.config.errors import did_you_mean, explain
from fastgw.core import PhaseChain
from fastgw.plugins.base import PHASES, Plugin
from fastgw.plugins.consumers import Consumer

ENTRY_POINT_GROUP = "fastgw.plugins"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
# Methods a plugin class may define besides its phases.
_ALLOWED_METHODS = frozenset(
    {"prepare", "credentials", "body_limit", "needs_body", "uses", "max_held", "front", "step"}
)

# The built-in plugins by name, and the module whose PLUGINS has each (tests/plugins/test_discovery.py holds the two
# together): a config load imports the modules of the plugins it names, not all of them.
BUILTINS = {
    "request-id": "fastgw.plugins.request_id",
    "ip-restriction": "fastgw.plugins.ip_restriction",
    "cors": "fastgw.plugins.cors",
    "request-size-limit": "fastgw.plugins.request_size_limit",
    "request-validation": "fastgw.plugins.request_validation",
    "jwt-auth": "fastgw.plugins.jwt_auth",
    "key-auth": "fastgw.plugins.key_auth",
    "basic-auth": "fastgw.plugins.basic_auth",
    "lambda-authorizer": "fastgw.plugins.lambda_authorizer",
    "multi-auth": "fastgw.plugins.multi_auth",
    "acl": "fastgw.plugins.acl",
    "rate-limit": "fastgw.plugins.rate_limit",
    "usage-plan": "fastgw.plugins.usage_plan",
    "proxy-cache": "fastgw.plugins.proxy_cache",
    "request-transformer": "fastgw.plugins.transformer",
    "response-transformer": "fastgw.plugins.transformer",
}
BUILTIN_MODULES = tuple(dict.fromkeys(BUILTINS.values()))

Phase = tuple[Callable[..., Any], Any, bool, str]


class PluginError(Exception):
    """A plugin class that cannot be used (said when it is registered)."""


def check_plugin_class(cls: Any, origin: str) -> None:
    """Refuse, with a reason, a class that is not a usable plugin: checked once, never per call."""
    if not (isinstance(cls, type) and issubclass(cls, Plugin)):
        raise PluginError(f"{origin}: {cls!r} is not a subclass of fastgw.Plugin")
    name = getattr(cls, "name", "")
    if not isinstance(name, str) or not _NAME.match(name):
        raise PluginError(f"{origin}: {cls.__name__}.name must be a lower-case name like 'my-plugin', got {name!r}")
    prio = getattr(cls, "priority", None)
    if not isinstance(prio, int) or isinstance(prio, bool) or not 0 <= prio <= 1_000_000:
        raise PluginError(f"{origin}: plugin {name!r}: priority must be an integer 0-1000000, got {prio!r}")
    conf = getattr(cls, "Config", None)
    if not (isinstance(conf, type) and issubclass(conf, msgspec.Struct)):
        raise PluginError(f"{origin}: plugin {name!r}: Config must be a msgspec.Struct class")
    cred = getattr(cls, "Credential", None)
    if cred is not None and not (isinstance(cred, type) and issubclass(cred, msgspec.Struct)):
        raise PluginError(f"{origin}: plugin {name!r}: Credential must be a msgspec.Struct class or None")
    phases = [p for p in PHASES if callable(getattr(cls, p, None))]
    if not phases:
        raise PluginError(f"{origin}: plugin {name!r} defines none of the phases {', '.join(PHASES)}")
    for attr, value in vars(cls).items():
        if attr.startswith("_") or not callable(value) or attr in PHASES or attr in _ALLOWED_METHODS:
            continue
        if isinstance(value, (type, staticmethod, classmethod)):
            continue
        close = difflib.get_close_matches(attr, PHASES, n=1, cutoff=0.75)
        if close:
            raise PluginError(
                f"{origin}: plugin {name!r} has a method {attr!r}, which is not a phase: did you mean {close[0]!r}?"
            )
    for phase in phases:
        fn = getattr(cls, phase)
        if phase in ("header_filter", "body_filter") and inspect.iscoroutinefunction(fn):
            raise PluginError(
                f"{origin}: plugin {name!r}: {phase} must be a plain function (the response is on its way out)"
            )
        params = list(inspect.signature(fn).parameters.values())
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if len(positional) != 3 or any(p.kind in (p.VAR_POSITIONAL, p.KEYWORD_ONLY) for p in params):
            raise PluginError(
                f"{origin}: plugin {name!r}: {phase} must be `def {phase}(self, ctx, conf)`, "
                f"got {phase}{inspect.signature(fn)}"
            )


@dataclass
class Registry:
    """The plugin classes this config can use, by name, with one instance each."""

    classes: dict[str, type[Plugin]]  # what is registered so far: `complete()` for every installed plugin
    origins: dict[str, str]
    instances: dict[str, Plugin]
    discovered: bool = False  # the entry points were read
    modules: set[str] = field(default_factory=set)  # the built-in modules imported (BUILTINS)

    @classmethod
    def load(cls, extra: list[str] | None = None, base_dir: Path | None = None, *, discover: bool = True) -> Registry:
        """Built-ins, then the `fastgw.plugins` entry points, then `extra` dotted paths, whose modules may also lie
        in `base_dir` (the config's folder, as a function's `code:` does). Without `discover`, a built-in module is
        imported and the entry points read when `find` is asked for a name they have. Raises PluginError."""
        reg = cls({}, {}, {})
        if discover:
            reg.complete()
        if extra and base_dir is not None and str(base_dir) not in sys.path:
            # NOTE: appended, not put first: a module beside the config never shadows an installed one.
            sys.path.append(str(base_dir))
        for path in extra or ():
            reg.add(load_dotted(path), path)
        return reg

    def _builtin(self, module: str) -> None:
        if module in self.modules:
            return
        self.modules.add(module)
        for plugin in getattr(importlib.import_module(module), "PLUGINS", ()):
            self.add(plugin, f"built-in ({module})")

    def discover(self) -> None:
        """Register the plugins installed packages expose in the `fastgw.plugins` entry-point group (once). Raises
        PluginError for one that does not load, is not a plugin, or takes a name already registered."""
        if self.discovered:
            return
        self.discovered = True
        from importlib.metadata import entry_points  # NOTE: here, not at the top: memory a gateway may not need

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001 - a broken package is named, not a crash
                raise PluginError(f"entry point {ep.name} = {ep.value}: cannot load it: {exc}") from None
            self.add(plugin, f"entry point {ep.value}")

    def find(self, name: str) -> type[Plugin] | None:
        """The plugin class named `name`: a built-in or `plugin_modules` one, else an installed package's (the
        entry points are read at the first name they are needed for). Raises PluginError as `discover`."""
        found = self.classes.get(name)
        if found is None and name in BUILTINS:
            self._builtin(BUILTINS[name])
            found = self.classes.get(name)
        if found is None and not self.discovered:
            self.discover()
            found = self.classes.get(name)
        return found

    def complete(self) -> dict[str, type[Plugin]]:
        """Every plugin this config could name, by name (`fastgw plugins`, the lists in errors)."""
        for module in BUILTIN_MODULES:
            self._builtin(module)
        self.discover()
        return self.classes

    def known(self) -> dict[str, type[Plugin]]:
        """`complete()` for the lists in error messages: a broken installed package must not turn the config
        error being said into a traceback, so what could be registered is listed without it."""
        try:
            return self.complete()
        except PluginError:
            return self.classes

    def add(self, plugin: Any, origin: str) -> None:
        check_plugin_class(plugin, origin)
        if plugin.name in BUILTINS:  # a name a built-in has: that one first, so the clash is said
            self._builtin(BUILTINS[plugin.name])
        if plugin.name in self.classes and self.classes[plugin.name] is not plugin:
            raise PluginError(
                f"{origin}: a plugin named {plugin.name!r} is already registered ({self.origins[plugin.name]})"
            )
        self.classes[plugin.name] = plugin
        self.origins[plugin.name] = origin

    def instance(self, name: str) -> Plugin:
        inst = self.instances.get(name)
        if inst is None:
            inst = self.instances[name] = self.classes[name]()
        return inst


def load_dotted(path: str) -> Any:
    module, sep, attr = path.partition(":")
    if not sep or not module or not attr:
        raise PluginError(f"{path!r}: expected 'package.module:ClassName'")
    try:
        obj: Any = importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - any import failure is reported with the path
        raise PluginError(f"{path!r}: cannot import {module}: {exc}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise PluginError(f"{path!r}: {module} has no {attr}")
        obj = getattr(obj, part)
    return obj


def phases_of(cls: type[Plugin]) -> list[str]:
    return [p for p in PHASES if callable(getattr(cls, p, None))]


class Chain(PhaseChain):
    """The plugins of one route, phase by phase, in priority order (higher first). What the request loop reads
    (the phase tuples, the consumer settings) lives in the compiled base class."""

    __slots__ = ("names", "body_limit", "needs_body", "max_held", "entries", "off", "_variants", "_steps")

    def __init__(
        self,
        entries: list[tuple[Plugin, Any, str]],
        off: frozenset[str] = frozenset(),
        steps: dict[tuple[str, str, int], Phase] | None = None,
    ) -> None:
        super().__init__()
        # The phase tuples made from compiled steps, by (phase, plugin, configuration): a consumer's chain reuses
        # them, so the phase loop finds the one that ran in it (switch_chain compares phase tuples).
        self._steps: dict[tuple[str, str, int], Phase] = {} if steps is None else steps

        def phase(name: str) -> tuple[Phase, ...]:
            out: list[Phase] = []
            for plugin, conf, pname in entries:
                fn = getattr(plugin, name, None)
                if callable(fn) and plugin.uses(name, conf):
                    out.append(self._phase(plugin, name, fn, conf, pname))
            return tuple(out)

        # rewrite phases all run before any access phase (as in Kong and APISIX).
        self.request: tuple[Phase, ...] = phase("rewrite") + phase("access")
        self.header_filter = phase("header_filter")
        self.body_filter = phase("body_filter")
        self.log = phase("log")
        self.names = frozenset(pname for _, _, pname in entries)
        # The smallest body any plugin allows: a chunked body is collected (and refused past it) before the
        # phases run. None: bodies stream as usual.
        limits = [p.body_limit(conf) for p, conf, _ in entries if callable(getattr(p, "body_limit", None))]  # type: ignore[attr-defined]
        self.body_limit: int | None = min(limits) if limits else None
        # A plugin that reads or rewrites the body (`needs_body(conf)` true) gets it whole: it is collected
        # before the phases run, and the integration receives it (or the plugin's replacement) at once.
        self.needs_body = any(p.needs_body(conf) for p, conf, _ in entries if callable(getattr(p, "needs_body", None)))  # type: ignore[attr-defined]
        # A proxied response is held whole for the body_filter phases up to limits.max_filtered_response, or less
        # when every body_filter plugin of the route says it needs less (`max_held(conf)`: a cache that stores
        # nothing bigger lets bigger responses stream). None: the global limit.
        held: list[int | None] = []
        for plugin, conf, _ in entries:
            if callable(getattr(plugin, "body_filter", None)) and plugin.uses("body_filter", conf):
                asks = getattr(plugin, "max_held", None)
                held.append(asks(conf) if callable(asks) else None)
        self.max_held: int | None = max(held) if held and None not in held else None  # type: ignore[type-var]
        # Nothing about the body to do before the phases (PERF: one test per request instead of three).
        self.streams = self.body_limit is None and not self.needs_body
        # Set later: `strip` and `consumer_keys` by the gateway that serves the chain (the consumer header names
        # clients may not send, empty when no consumers are configured, and the (username, groups) header names
        # to tell the upstream); `per_consumer` when some consumer has plugins of its own (naming a consumer,
        # `ctx.consumer = ...`, then asks for_consumer).
        self.entries = entries
        self.off = off  # plugins the route (or its API, or the global scope) switched off with `false`
        # PERF: a plugin alone on its route may see the request before the context and the phase loop exist
        # (`Plugin.front`: a cache hit, one local limit); decided here, once.
        if len(entries) == 1 and self.streams:
            plugin, conf, _ = entries[0]
            self.front = plugin.front(conf)
        self._variants: dict[str, Chain | None] = {}

    def _phase(self, plugin: Plugin, name: str, fn: Callable[..., Any], conf: Any, pname: str) -> Phase:
        """The phase tuple of `plugin`'s phase `name`: its compiled step when it gives one (Plugin.step), else
        the phase itself."""
        key = (name, pname, id(conf))
        made = self._steps.get(key)
        if made is not None and made[1] is conf:
            return made
        step = plugin.step(name, conf)
        if step is None:
            return (fn, conf, inspect.iscoroutinefunction(fn), pname)
        made = self._steps[key] = (step, conf, False, pname)
        return made

    def for_consumer(self, consumer: Consumer) -> Chain | None:
        """This route's chain for `consumer`: its own plugin configurations replace the route's, add plugins the
        route lacks (except those the route switched off), or switch plugins off. None: nothing differs. Built on
        the consumer's first request on the route, then kept."""
        if not consumer.plugins:
            # NOTE: not remembered: a consumer without plugins of its own changes nothing, and consumers made per
            # request (lambda-authorizer's principals) would grow the table without bound.
            return None
        try:
            return self._variants[consumer.name]
        except KeyError:
            pass
        variant = None
        if consumer.plugins:
            merged = {name: (plugin, conf) for plugin, conf, name in self.entries}
            for name, pc in consumer.plugins.items():
                if name in self.off:
                    continue
                if pc is None:
                    merged.pop(name, None)
                else:
                    merged[name] = pc
            active = _ordered(merged)
            if active != self.entries:
                variant = Chain(active, self.off, self._steps)
                variant.strip, variant.consumer_keys = self.strip, self.consumer_keys
        self._variants[consumer.name] = variant
        return variant


@dataclass(frozen=True)
class PluginSetup:
    """What the loader hands the gateway: one chain per route entry (None: no plugins), the consumers."""

    registry: Registry
    chains: tuple[Chain | None, ...]
    consumers: dict[str, Consumer]


# Kong's and APISIX's names for what a fastgw plugin does, for "did you mean" when a config names one of them.
OTHER_GATEWAYS_NAMES = {
    "rate-limiting": "rate-limit",
    "rate-limiting-advanced": "rate-limit",
    "limit-count": "rate-limit",
    "limit-req": "rate-limit",
    "correlation-id": "request-id",
    "jwt": "jwt-auth",
    "request-size-limiting": "request-size-limit",
    "proxy-rewrite": "request-transformer",
    "body-validator": "request-validation",
    "request-validator": "request-validation",
}


def _msgspec_path(exc: msgspec.ValidationError) -> tuple[str, str]:
    text = str(exc)
    m = re.match(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", text, re.S)
    assert m is not None
    return m.group("msg"), m.group("path") or ""


class PluginConfigError(Exception):
    """A plugin configuration (or consumer credential) the config cannot use; `path` is its key path."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True)
class Loading:
    """What a plugin's `prepare` may see of the config being loaded (`loading()`)."""

    config: Any  # the whole Config (fastgw.config.schema)
    registry: Registry  # the plugins it can use, with their instances


_LOADING: ContextVar[Loading | None] = ContextVar("fastgw_plugins_loading", default=None)


def loading() -> Loading:
    """The config being loaded and its plugin registry, while plugin configurations are prepared: for a plugin whose
    configuration names something else in the config (lambda-authorizer: a function) or holds other plugins'
    configurations (multi-auth). Raises RuntimeError outside a load."""
    current = _LOADING.get()
    if current is None:
        raise RuntimeError("fastgw.plugins.chain.loading() is only known while a config loads (Plugin.prepare)")
    return current


def build(config: Any, entries: tuple[Any, ...], base_dir: Path | None = None) -> PluginSetup:
    """Check every plugin configuration and consumer credential of `config`, and build one chain per entry of
    the route table (`fastgw.config.load.RouteEntry`); `plugin_modules` may lie in `base_dir`. Raises
    PluginConfigError."""
    try:
        registry = Registry.load(config.plugin_modules, base_dir, discover=False)
    except PluginError as exc:
        raise PluginConfigError("$.plugin_modules", str(exc)) from None
    token = _LOADING.set(Loading(config, registry))
    try:
        return _build(config, entries, registry)
    finally:
        _LOADING.reset(token)


class ConfigAt(ValueError):
    """What a plugin's `prepare` raises for a key inside its configuration: `at` (`.function`,
    `.auth_plugins[1].jwt-auth.secret`) is added to the configuration's key path in the config error."""

    def __init__(self, at: str, message: str) -> None:
        super().__init__(message)
        self.at = at


def prepare_plugin(registry: Registry, name: str, raw: Any, at: str) -> tuple[Plugin, Any]:
    """The installed plugin `name` with its configuration `raw` (found at the key path `at`) converted to its Config
    (a wrong one explained, with a "did you mean"), and prepared. Raises PluginConfigError."""
    cls = registry.classes[name]
    try:
        conf = msgspec.convert({} if raw is None or raw is True else raw, cls.Config, strict=True)
    except msgspec.ValidationError as exc:
        msg, sub = _msgspec_path(exc)
        raise PluginConfigError(at + sub, explain("$" + sub, msg, raw, cls.Config)) from None
    plugin = registry.instance(name)
    try:
        return plugin, plugin.prepare(conf)
    except (ValueError, TypeError) as exc:
        raise PluginConfigError(at + getattr(exc, "at", ""), str(exc)) from None


def _find(registry: Registry, name: str, at: str) -> type[Plugin] | None:
    try:
        return registry.find(name)
    except PluginError as exc:  # an installed package that cannot be used, met while looking for `name`
        raise PluginConfigError(at, str(exc)) from None


def _build(config: Any, entries: tuple[Any, ...], registry: Registry) -> PluginSetup:
    prepared: dict[tuple[str, str], tuple[Plugin, Any] | None] = {}

    def configured(scope: str, name: str, raw: Any) -> tuple[Plugin, Any] | None:
        key = (scope, name)
        if key in prepared:
            return prepared[key]
        at = f"{scope}.plugins.{name}"
        cls = _find(registry, name, at)
        if cls is None:
            known = ", ".join(sorted(registry.known()))
            hint = did_you_mean(name, registry.classes, OTHER_GATEWAYS_NAMES)
            raise PluginConfigError(at, f"unknown plugin {name!r}{hint} (installed: {known})")
        if raw is False:
            prepared[key] = None  # switched off here
            return None
        result = prepare_plugin(registry, name, raw, at)
        prepared[key] = result
        return result

    # Every configuration is checked, even one no route uses (yet).
    for name, raw in config.plugins.items():
        configured("$", name, raw)
    for api_name, api in config.apis.items():
        for name, raw in api.plugins.items():
            configured(f"$.apis.{api_name}", name, raw)
    chains: list[Chain | None] = []
    steps: dict[tuple[str, str, int], Phase] = {}  # shared by the chains of this config (see Chain._steps)
    for entry in entries:
        scopes: list[tuple[str, dict[str, Any]]] = [("$", config.plugins)]
        if entry.api is not None:
            scopes.append((f"$.apis.{entry.api}", config.apis[entry.api].plugins))
        scopes.append((entry.at, entry.route.plugins))
        merged: dict[str, tuple[Plugin, Any] | None] = {}
        for scope, plugins in scopes:
            for name, raw in plugins.items():
                merged[name] = configured(scope, name, raw)
        active = _ordered(merged)
        off = frozenset(name for name, pc in merged.items() if pc is None)
        chains.append(Chain(active, off, steps) if active else None)

    consumers: dict[str, Consumer] = {}
    creds: dict[str, list[tuple[Consumer, Any]]] = {}
    for cname, c in config.consumers.items():
        consumer = Consumer(cname, tuple(c.groups), dict(c.custom))
        consumers[cname] = consumer
        for name, raw in c.plugins.items():
            consumer.plugins[name] = _for_consumer(registry, cname, name, configured(f"$.consumers.{cname}", name, raw))
        for pname, items in c.credentials.items():
            at = f"$.consumers.{cname}.credentials.{pname}"
            cls = _find(registry, pname, at)
            if cls is None or cls.Credential is None:
                takes = ", ".join(sorted(n for n, k in registry.known().items() if k.Credential is not None))
                raise PluginConfigError(at, f"{pname!r} is not a plugin that takes credentials ({takes})")
            for i, raw in enumerate(items):
                try:
                    cred = msgspec.convert(raw, cls.Credential, strict=True)
                except msgspec.ValidationError as exc:
                    msg, sub = _msgspec_path(exc)
                    raise PluginConfigError(f"{at}[{i}]{sub}", msg) from None
                creds.setdefault(pname, []).append((consumer, cred))
    for pname, cls in registry.classes.items():
        if cls.Credential is not None and (pname in creds or pname in registry.instances):
            try:
                registry.instance(pname).credentials(creds.get(pname, []))
            except (ValueError, TypeError) as exc:
                raise PluginConfigError(f"$.consumers (credentials for {pname})", str(exc)) from None
    with_plugins = [c for c in consumers.values() if c.plugins]
    for chain in chains:
        if chain is not None and with_plugins:
            chain.per_consumer = True
            # The body is collected before the phases run, before anyone is authenticated: a consumer's plugin
            # that needs it has it collected on every route its chains may serve.
            if not chain.needs_body and any(
                pc is not None and callable(getattr(pc[0], "needs_body", None)) and pc[0].needs_body(pc[1])
                for c in with_plugins
                for pc in c.plugins.values()
            ):
                chain.needs_body = True
                chain.streams = False
                chain.front = None  # the body is collected first: the usual way
    return PluginSetup(registry=registry, chains=tuple(chains), consumers=consumers)


def _ordered(merged: Mapping[str, tuple[Plugin, Any] | None]) -> list[tuple[Plugin, Any, str]]:
    """The plugins switched on, in the order they run: priority (higher first), then name."""
    active = [(pc[0], pc[1], name) for name, pc in merged.items() if pc is not None]
    active.sort(key=lambda e: (-e[0].priority, e[2]))
    return active


# Plugins at this priority and above run before a consumer can be known (authentication is 2000-2999).
_BEFORE_CONSUMERS = 2000


def _for_consumer(
    registry: Registry, cname: str, name: str, pc: tuple[Plugin, Any] | None
) -> tuple[Plugin, Any] | None:
    """Refuse a plugin configured per consumer that could not apply: one that runs before consumers are known, or
    limits bodies (checked before anyone authenticates)."""
    cls = registry.classes[name]
    at = f"$.consumers.{cname}.plugins.{name}"
    if cls.Credential is not None or cls.priority >= _BEFORE_CONSUMERS:
        raise PluginConfigError(
            at, f"{name!r} runs before the consumer is known (priority {cls.priority}); only plugins below "
            f"{_BEFORE_CONSUMERS} (rate limits, transformers, most third-party plugins) can be configured per consumer",
        )  # fmt: skip
    if callable(getattr(cls, "body_limit", None)):
        raise PluginConfigError(at, f"{name!r} limits request bodies, checked before the consumer is known")
    return pc
