"""A module's `_name` is its own: no module imports another module's private function, class or constant
(`from fastgw.aws.sam_functions import _number`) nor reaches one through the module (`lambda_proxy._kind`). What two
modules share gets a public name where it belongs. A private *module* (`fastgw/plugins/_credentials.py`) is its
package's: the modules of that package import it."""

from __future__ import annotations

import ast
from pathlib import Path

import fastgw

PACKAGE = Path(fastgw.__file__).parent

# Known, where this check does not hold yet, outside the packages it was first held in (admin, aws, control,
# functions, plugins): (file, the last word of what the check reports). core/steps.py takes phases' `_text`;
# cli.py reads two of _clictl's helpers.
KNOWN = {("core/steps.py", "_text"), ("cli.py", "(fastgw._clictl)")}


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(dotted: str) -> bool:
    base = PACKAGE.parent.joinpath(*dotted.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists() or base.with_suffix(".pyx").exists()


def _private_uses(source: str, here: str, package: str) -> list[str]:
    """What the module `here` (of `package`), written as `source`, uses of other modules' private names."""
    tree = ast.parse(source)
    aliases: dict[str, str] = {}  # a local name -> the fastgw module it stands for
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fastgw"):
            for alias in node.names:
                target = f"{node.module}.{alias.name}"
                if _is_module(target):
                    aliases[alias.asname or alias.name] = target
                    # A private module is its package's own (and its subpackages').
                    if alias.name.startswith("_") and not f"{package}.".startswith(f"{node.module}."):
                        found.append(f"{node.lineno}: from {node.module} import {alias.name} (another package's)")
                elif alias.name.startswith("_") and not alias.name.startswith("__") and node.module != here:
                    found.append(f"{node.lineno}: from {node.module} import {alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("fastgw") and alias.asname:
                    aliases[alias.asname] = alias.name
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"{node.lineno}: {node.value.id}.{node.attr} ({aliases[node.value.id]})")
    return found


def test_no_module_uses_another_modules_private_names():
    found = {}
    for path in PACKAGE.rglob("*.py"):
        here = _module_of(path)
        package = here if path.name == "__init__.py" else here.rpartition(".")[0]
        rel = path.relative_to(PACKAGE).as_posix()
        uses = [u for u in _private_uses(path.read_text(), here, package) if (rel, u.split()[-1]) not in KNOWN]
        if uses:
            found[rel] = uses
    assert found == {}


def test_the_check_sees_each_kind_of_use():
    # The check itself can fail: a module made of the mistakes it looks for, and of what is allowed.
    source = (
        "from fastgw.aws.intrinsics import _text, integer\n"  # another module's private function: no
        "from fastgw.functions import lambda_proxy as lp\n"
        "from fastgw.plugins import _credentials\n"  # another package's private module: no
        "from fastgw.aws import _log\n"  # its own package's: yes
        "lp._media_type, lp.json_kind\n"  # a private name through the module: no
    )
    uses = _private_uses(source, "fastgw.aws.probe", "fastgw.aws")
    assert [u.split(":")[0] for u in uses] == ["1", "3", "5"], uses


# -- the core's objects: plugins read them through the plugin API's public names ------------------------------------
# A plugin that reads a private field of the core (`ctx._reply_headers`, `req._raw_query`, `Headers()._key`) makes
# the core's field names a hidden interface: the core could not rename one without breaking a plugin. Plugins read
# the public names docs/plugins.md lists (`ctx.reply_headers`, `ctx.request.raw_query`, `header_key`...). In the
# modules of plugins (fastgw/plugins/, and any other module that defines a Plugin: trace-context, the request
# validator) no `x._name` is read for an `x` other than `self` or `cls`, unless `_name` belongs to a class of that
# same module (rate-limit's front calls its plugin's `_answer`) and is no private name of a core class.


def _core_private_names() -> frozenset[str]:
    """Every `_name` (not a dunder) of the core's classes, pure and compiled: fields, slots and methods."""
    from fastgw import core

    names: set[str] = set()
    sides = [core.TWINS]
    try:
        from fastgw import _core

        sides.append([_core])
    except ImportError:  # pragma: no cover - the pure core only
        pass
    for side in sides:
        for module in side:
            for name in core.TWINNED:
                obj = getattr(module, name, None)
                if isinstance(obj, type):
                    names |= {a for a in dir(obj) if a.startswith("_") and not a.startswith("__")}
                    names |= {a for a in getattr(obj, "__slots__", ()) if a.startswith("_") and not a.startswith("__")}
    return frozenset(names)


CORE_PRIVATE = _core_private_names()


def _own_members(tree: ast.Module) -> set[str]:
    """The names the module's own classes define: methods, class attributes, `__slots__`, `self.<name> = ...`."""
    own: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    own.add(item.name)
                elif isinstance(item, (ast.Assign, ast.AnnAssign)):
                    targets = item.targets if isinstance(item, ast.Assign) else [item.target]
                    own |= {t.id for t in targets if isinstance(t, ast.Name)}
                    if any(isinstance(t, ast.Name) and t.id == "__slots__" for t in targets) and item.value:
                        own |= {c.value for c in ast.walk(item.value) if isinstance(c, ast.Constant)}
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
        ):
            own.add(node.attr)
    return own


def _private_reads(source: str) -> list[str]:
    """What a plugin's module, written as `source`, reaches of other objects' private names."""
    tree = ast.parse(source)
    own = _own_members(tree) - CORE_PRIVATE
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            and node.attr not in own
        ):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def _defines_a_plugin(tree: ast.Module) -> bool:
    return any(
        isinstance(node, ast.ClassDef)
        and any((b.id if isinstance(b, ast.Name) else getattr(b, "attr", None)) == "Plugin" for b in node.bases)
        for node in ast.walk(tree)
    )


def _plugin_modules() -> list[Path]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("core/"):
            continue
        if rel.startswith("plugins/") or _defines_a_plugin(ast.parse(path.read_text())):
            found.append(path)
    return found


def test_plugins_read_the_core_through_public_names_only():
    modules = _plugin_modules()
    rels = {p.relative_to(PACKAGE).as_posix() for p in modules}
    # (the scan finds plugins outside fastgw/plugins/ too: trace-context, the request validator)
    assert {"plugins/proxy_cache.py", "plugins/transformer.py", "observability/tracing.py"} <= rels
    found = {}
    for path in modules:
        reads = _private_reads(path.read_text())
        if reads:
            found[path.relative_to(PACKAGE).as_posix()] = reads
    assert found == {}


# Known, outside the plugins: the refresh in the background (pipeline/exchange.py) copies the fields of the answered
# exchange's context onto a new one: the consumer without re-running what `consumer =` does, the upstream request and
# the runtime's own `_upstream_sets`. Every other read goes through the public names.
KNOWN_CORE = {
    ("pipeline/exchange.py", "_consumer"),
    ("pipeline/exchange.py", "_upstream"),
    ("pipeline/exchange.py", "_upstream_sets"),
}


def test_no_module_outside_the_core_reaches_a_core_objects_private_names():
    found = {}
    seen: set[tuple[str, str]] = set()
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("core/"):
            continue
        reads = [
            node
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Attribute)
            and node.attr in CORE_PRIVATE
            and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
        ]
        seen |= {(rel, node.attr) for node in reads} & KNOWN_CORE
        uses = [f"{node.lineno}: {ast.unparse(node)}" for node in reads if (rel, node.attr) not in KNOWN_CORE]
        if uses:
            found[rel] = uses
    assert found == {}
    assert seen == KNOWN_CORE  # no allowance outlives its read


def test_the_plugin_check_sees_each_kind_of_read():
    # The names it holds the core to are the core's own (so the check is not empty).
    assert {"_reply_headers", "_raw_query", "_req", "_upstream", "_query", "_key"} <= CORE_PRIVATE
    source = (
        "class Mine:\n"
        "    __slots__ = ('_state',)\n"
        "    def _answer(self): return self._state, self._other\n"  # its own fields, through self: yes
        "    def _query(self): ...\n"  # a core class's private name, even when the module has one of its own
        "def front(plugin, ctx, headers):\n"
        "    plugin._answer(), plugin._state\n"  # its own class's, from a function of the module: yes
        "    ctx._reply_headers, ctx.request._raw_query\n"  # a core object's private fields: no
        "    headers._key('x'), ctx.upstream_request_if_made._query\n"  # no
        "    ctx.reply_headers, ctx.request.raw_query\n"  # the public names: yes
        "    plugin._hidden\n"  # another's private name: no
    )
    reads = _private_reads(source)
    assert sorted(reads) == [
        "10: plugin._hidden",
        "7: ctx._reply_headers",
        "7: ctx.request._raw_query",
        "8: ctx.upstream_request_if_made._query",
        "8: headers._key",
    ], reads
