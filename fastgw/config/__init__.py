"""The config: schema.py (msgspec Structs), load.py (files -> Structs, cross-checks, errors), parse.py (YAML and
JSON readers), errors.py (errors that name the file and key path).

NOTE: the package itself imports nothing, so that a module of it (errors.py, which the plugin chain uses for its
"did you mean") can be imported without load.py, which imports the plugin chain back. Its names come on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ConfigError", "LoadedConfig", "default_config_path", "load_config", "load_config_bytes"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from fastgw.config import load

        return getattr(load, name)
    raise AttributeError(f"module 'fastgw.config' has no attribute {name!r}")
