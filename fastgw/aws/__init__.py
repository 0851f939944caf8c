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

from fastgw.config.errors import ConfigError

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
        if isinstance(doc, dict) and isinstance(doc.get("Resources"), dict):
            return sam.translate(doc, source, base, {k: o.value for k, o in options.items()}), rest
        data = doc
    else:
        data = parse(raw, source)
    if options:
        o = next(iter(options.values()))
        raise ConfigError(o.describe(), "$", f"{o.origin} is for SAM/CloudFormation templates; {source} is not one")
    if isinstance(data, dict) and isinstance(data.get("apis"), dict):
        from fastgw.aws import openapi

        data = openapi.expand_config(data, source, base)
    return data, rest
