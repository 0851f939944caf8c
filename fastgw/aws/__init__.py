"""AWS's own ways of writing an API, read into fastgw's config: SAM and CloudFormation templates (`sam.py`, with
the intrinsic functions of `intrinsics.py`) and OpenAPI definitions with API Gateway's extensions (`openapi.py`).

`prepare` is the one hook `fastgw.config.load` calls where a file is read: a template becomes a config (a plain
dict, then checked as any config is), and a config naming `apis.NAME.openapi` files gets their routes. The options
of `sam local start-api` (`--parameter-overrides`, `--env-vars`, `--stage-prefix`) travel as `Override`s with keys
under `aws.`, so a reload applies them again; they are taken out here, the rest is the file's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# A template names its resources at the top level; a fastgw config never has these keys.
_TEMPLATE = re.compile(
    rb"^(AWSTemplateFormatVersion|Resources|Transform)\s*:|\"(AWSTemplateFormatVersion|Resources)\"\s*:", re.M
)


def prepare(
    raw: bytes, source: str, base_dir: Path | None, overrides: Sequence[Any], parse: Callable[[bytes, str], Any]
) -> tuple[Any, list[Any]]:
    """(the config's data, the overrides that are the config's own). `overrides` are fastgw.config.load's
    `Override`s; those with keys under `aws.` are options of the template."""
    options = {o.key[4:]: o for o in overrides if o.key.startswith("aws.")}
    rest = [o for o in overrides if not o.key.startswith("aws.")]
    base = base_dir if base_dir is not None else Path.cwd()
    if _TEMPLATE.search(raw):
        from fastgw.aws import intrinsics, sam

        doc = intrinsics.load_yaml(raw, source) if not source.endswith(".json") else parse(raw, source)
        if isinstance(doc, dict) and ("AWSTemplateFormatVersion" in doc or "Transform" in doc or "Resources" in doc):
            try:
                config = sam.translate(doc, source, base, {k: o.value for k, o in options.items()})
            except (AttributeError, TypeError, KeyError, ValueError) as exc:
                raise _unreadable(source, "a SAM/CloudFormation template", exc) from None
            return _unenforced_authorizers(config, source), rest
        data = doc
    else:
        data = parse(raw, source)
    if options:
        # NOTE: imported here, not at the top: fastgw.config's package imports fastgw.config.load, which imports this
        # module, so a top-level import of fastgw.config.* here would be circular when fastgw.aws is imported first.
        from fastgw.config.errors import ConfigError

        o = next(iter(options.values()))
        raise ConfigError(o.describe(), "$", f"{o.origin} is for SAM/CloudFormation templates; {source} is not one")
    if isinstance(data, dict) and isinstance(data.get("apis"), dict):
        from fastgw.aws import openapi

        try:
            data = openapi.expand_config(data, source, base)
        except (AttributeError, TypeError, KeyError, ValueError) as exc:
            raise _unreadable(source, "an OpenAPI definition it names", exc) from None
        data = _unenforced_authorizers(data, source)
    return data, rest


def _unreadable(source: str, what: str, exc: Exception) -> Exception:
    """A shape the translation did not expect (a string where a mapping belongs, deep in a template): a config
    error saying so, rather than a traceback. The checks in sam.py and openapi.py name the key where they can."""
    from fastgw.config.errors import ConfigError

    return ConfigError(source, "$", f"cannot read {what}: {type(exc).__name__}: {exc}")


def _unenforced_authorizers(data: dict[str, Any], source: str) -> dict[str, Any]:
    """Authorizers read from a template or definition need the `lambda-authorizer` and `multi-auth` plugins; an
    installation without them serves those routes without the authorizer, saying so once (as `sam local` did before
    it ran authorizers), rather than refusing the template."""
    from fastgw.aws import auth
    from fastgw.aws._log import warn_once
    from fastgw.plugins.chain import PluginError, Registry

    wanted = {auth.LAMBDA, auth.MULTI}
    routes = [r for a in (data.get("apis") or {}).values() if isinstance(a, dict) for r in a.get("routes") or []]
    used = {n for r in routes if isinstance(r, dict) and isinstance(r.get("plugins"), dict) for n in r["plugins"]}
    if not used & wanted:
        return data
    try:
        available = set(Registry.load(list(data.get("plugin_modules") or [])).classes)
    except PluginError:
        return data  # the config's own plugin_modules are broken: its load says so
    missing = (used & wanted) - available
    if not missing:
        return data
    warn_once(
        f"{source}: authorizers are not enforced: this fastgw has no {' or '.join(sorted(missing))} plugin; "
        "their routes are served without authorization"
    )
    for r in routes:
        if isinstance(r, dict) and isinstance(r.get("plugins"), dict):
            r["plugins"] = {k: v for k, v in r["plugins"].items() if k not in missing}
    return data
