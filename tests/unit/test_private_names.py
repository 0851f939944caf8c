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
