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
    # Templates and a config's OpenAPI files alike: what to do with routes behind authorizers fastgw does not run.
    unenforced = options.pop("unenforced_auth", None)
    mode = str(unenforced.value) if unenforced is not None else "closed"
    base = base_dir if base_dir is not None else Path.cwd()
    if _TEMPLATE.search(raw):
        from fastgw.aws import intrinsics, sam

        doc = intrinsics.load_yaml(raw, source) if not source.endswith(".json") else parse(raw, source)
        if isinstance(doc, dict) and ("AWSTemplateFormatVersion" in doc or "Transform" in doc or "Resources" in doc):
            try:
                config = sam.translate(doc, source, base, {k: o.value for k, o in options.items()})
            except (AttributeError, TypeError, KeyError, ValueError) as exc:
                raise _unreadable(source, "a SAM/CloudFormation template", exc) from None
            return close_unenforced(config, source, mode), rest
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
        data = close_unenforced(data, source, mode)
    return data, rest


def _unreadable(source: str, what: str, exc: Exception) -> Exception:
    """A shape the translation did not expect (a string where a mapping belongs, deep in a template): a config
    error saying so, rather than a traceback. The checks in sam.py and openapi.py name the key where they can."""
    from fastgw.config.errors import ConfigError

    return ConfigError(source, "$", f"cannot read {what}: {type(exc).__name__}: {exc}")


UNENFORCED_MODES = ("closed", "open")


def close_unenforced(data: dict[str, Any], source: str, mode: str) -> dict[str, Any]:
    """Routes guarded by authorizers fastgw does not run (Cognito user pools, IAM, API keys: auth.UNENFORCED).

    `closed` (the default): such an authorizer admits nobody; a route that only it guards answers 401
    `{"message":"Unauthorized"}` (a mock integration: nothing reaches the function), and where it is one of several
    any of which admits a request (multi-auth), the others still do. `open` (`--unenforced-auth open`): such an
    authorizer admits everyone, as `sam local` ignores them, so its routes are served without authorization. Either
    way the routes are listed once at start."""
    from fastgw.aws import auth
    from fastgw.aws._log import warn_once

    touched: list[str] = []
    for api_name, api in (data.get("apis") or {}).items():
        if not isinstance(api, dict):
            continue
        for route in api.get("routes") or []:
            plugins = route.get("plugins") if isinstance(route, dict) else None
            if not isinstance(plugins, dict):
                continue
            multi: Any = plugins.get(auth.MULTI)
            alternatives = multi.get("auth_plugins") if isinstance(multi, dict) else None
            if auth.UNENFORCED in plugins:
                whats = [plugins.pop(auth.UNENFORCED)["what"]]
                kept: list[Any] = []
            elif isinstance(alternatives, list) and any(auth.UNENFORCED in a for a in alternatives):
                whats = [a[auth.UNENFORCED]["what"] for a in alternatives if auth.UNENFORCED in a]
                kept = [a for a in alternatives if auth.UNENFORCED not in a]
            else:
                continue
            methods = ",".join(route.get("methods") or ["ANY"])
            touched.append(f"{api_name} {methods} {route.get('path')} ({'; '.join(whats)})")
            if mode == "open":
                plugins.pop(auth.MULTI, None)  # one of its alternatives admits anyone
            elif len(kept) > 1:
                plugins[auth.MULTI] = {**multi, "auth_plugins": kept}
            elif kept:
                plugins.pop(auth.MULTI, None)
                ((name, conf),) = kept[0].items()
                plugins[name] = conf
            else:
                plugins.pop(auth.MULTI, None)
                route["integration"] = {"type": "mock", "status": 401, "body": {"message": "Unauthorized"}}
    if touched:
        if mode == "open":
            said = "served WITHOUT authorization (--unenforced-auth open, as sam local ignores them)"
        else:
            said = "refused with 401 where no other authorizer admits the request (--unenforced-auth open serves them)"
        warn_once(f"{source}: authorizers fastgw does not run (Cognito, IAM, API keys); their routes are {said}: "
                  + ", ".join(touched))  # fmt: skip
    return data
