"""A SAM (or plain CloudFormation) template's function resources, as `sam local` reads them: their code (a folder, a
.zip, inline code), runtime, handler and environment (with --env-vars), Globals, and the template's parameters,
mappings and conditions that resolve their values. fastgw.aws.sam builds on it for the APIs and events (routes).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import msgspec

from fastgw.aws import code as function_code
from fastgw.aws._log import warn_once
from fastgw.aws.intrinsics import PSEUDO, Resolver, Unresolved, expand_foreach, is_intrinsic, number, variable_text
from fastgw.config.checks import handler_problem
from fastgw.config.errors import ConfigError
from fastgw.config.schema import Function

FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")
_FIELDS = {"runtime": "Runtime", "handler": "Handler", "code": "CodeUri", "timeout": "Timeout",
           "memory_size": "MemorySize", "environment": "Environment.Variables"}  # fmt: skip


def _merge_globals(glob: dict[str, Any], props: dict[str, Any]) -> dict[str, Any]:
    """SAM's Globals rules: mappings merge (the resource's keys win), lists add up, anything else the resource's."""
    out = dict(glob)
    for key, value in props.items():
        g = out.get(key)
        if isinstance(g, dict) and isinstance(value, dict) and not is_intrinsic(value) and not is_intrinsic(g):
            out[key] = _merge_globals(g, value)
        elif isinstance(g, list) and isinstance(value, list):
            out[key] = g + value
        else:
            out[key] = value
    return out


class FunctionResources:
    """A template's parameters, Globals and functions (`functions`: fastgw function configs by logical id)."""

    def __init__(self, doc: dict[str, Any], source: str, base: Path, options: dict[str, Any]) -> None:
        self.doc = doc
        self.source = source
        self.base = base
        self.stage_prefix = bool(options.get("stage_prefix"))
        overrides = dict(options.get("parameter_overrides") or {})
        self.env_file: dict[str, Any] = {}
        env_vars = options.get("env_vars")
        if env_vars:
            self.env_file = self._read_env_vars(str(env_vars))
            # NOTE: sam reads template parameters from the file's "Parameters" too, for environment variables
            # only; fastgw applies them to environment variables (below), not to template parameters.
        self.functions: dict[str, dict[str, Any]] = {}
        self.skipped_functions: set[str] = set()
        resources = doc.get("Resources")
        if not isinstance(resources, dict):
            raise ConfigError(source, "$.Resources", "expected a mapping of resources")
        params = self._parameters(overrides)
        self.resolver = Resolver(source, params, resources, _mapping(doc, "Mappings", source), {})
        self.resolver.resources = expand_foreach(resources, self.resolver, "$.Resources")
        self.resolver.condition_defs = expand_foreach(
            _mapping(doc, "Conditions", source), self.resolver, "$.Conditions"
        )
        self.resources: dict[str, Any] = self.resolver.resources
        self.globals = _mapping(doc, "Globals", source)

    # -- parameters and the env-vars file ---------------------------------------------------------------------

    def _parameters(self, overrides: dict[str, str]) -> dict[str, Any]:
        declared = _mapping(self.doc, "Parameters", self.source)
        values: dict[str, Any] = {k: v for k, v in PSEUDO.items() if k in overrides or v is not None}
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if region:
            values["AWS::Region"] = region
        for name in overrides:
            if name not in declared and name not in PSEUDO:
                known = ", ".join(sorted(declared)) or "none"
                raise ConfigError(
                    "--parameter-overrides", f"$.Parameters.{name}",
                    f"{self.source} declares no parameter {name!r} (its parameters: {known})",
                )  # fmt: skip
        for name, spec in declared.items():
            value: Any
            at = f"$.Parameters.{name}"
            if not isinstance(spec, dict):
                raise ConfigError(self.source, at, "expected a mapping (Type, Default...)")
            if name in overrides:
                value = overrides[name]
            elif "Default" in spec:
                value = spec["Default"]
            else:
                raise ConfigError(self.source, at, f"has no Default: give it with --parameter-overrides {name}=VALUE")
            value = "" if value is None else value
            allowed = spec.get("AllowedValues")
            if isinstance(allowed, list) and str(value) not in [str(a) for a in allowed]:
                where = "--parameter-overrides" if name in overrides else self.source
                raise ConfigError(where, at, f"{value!r} is not one of its AllowedValues {allowed}")
            kind = str(spec.get("Type", "String"))
            if kind == "CommaDelimitedList" or kind.startswith("List<"):
                value = [s.strip() for s in str(value).split(",")] if not isinstance(value, list) else value
            elif not isinstance(value, list):
                value = str(value)
            values[name] = value
        for name in PSEUDO:
            if name in overrides:
                values[name] = overrides[name]
        return values

    def _read_env_vars(self, path: str) -> dict[str, Any]:
        try:
            data = json.loads(Path(path).read_bytes())
        except OSError as exc:
            raise ConfigError(path, "$", f"cannot read the file (--env-vars): {exc.strerror or exc}") from None
        except ValueError as exc:
            raise ConfigError(path, "$", f"invalid JSON (--env-vars): {exc}") from None
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            raise ConfigError(path, "$", 'expected {"FunctionLogicalId": {"VAR": "value"}, "Parameters": {...}}')
        return data

    # -- resources -----------------------------------------------------------------------------------------

    def _included(self, res: dict[str, Any], at: str) -> bool:
        cond = res.get("Condition")
        return cond is None or self.resolver.condition(str(cond), f"{at}.Condition")

    def _props(self, res: dict[str, Any], at: str, globals_key: str | None = None) -> dict[str, Any]:
        props = res.get("Properties", {})
        if props is None:
            props = {}
        if not isinstance(props, dict):
            raise ConfigError(self.source, f"{at}.Properties", "expected a mapping")
        if globals_key is not None:
            glob = self.globals.get(globals_key)
            if isinstance(glob, dict):
                props = _merge_globals(glob, props)
        return props

    def value(self, props: dict[str, Any], key: str, at: str, default: Any = None) -> Any:
        if key not in props:
            return default
        v = self.resolver.resolved(props[key], f"{at}.{key}")
        return default if v is None else v

    # -- functions --------------------------------------------------------------------------------------------

    def _function(self, name: str, res: dict[str, Any], at: str) -> None:
        serverless = res["Type"] == "AWS::Serverless::Function"
        props = self._props(res, at, "Function" if serverless else None)
        pat = f"{at}.Properties"
        if str(self.value(props, "PackageType", pat, "Zip")) == "Image":
            self._skip(name, f"{name}: a container image function (PackageType: Image) is not run")
            return
        runtime = str(self.value(props, "Runtime", pat, ""))
        if runtime.startswith("python3") or runtime == "python":
            kind = "python"
        elif runtime.startswith("nodejs"):
            kind = "nodejs"
        else:
            self._skip(name, f"{name}: runtime {runtime or 'none'!r} is not run (python3.x and nodejs* are)")
            return
        handler = self.value(props, "Handler", pat)
        if not isinstance(handler, str) or not handler:
            raise ConfigError(self.source, f"{pat}.Handler", "expected the handler, e.g. app.lambda_handler")
        code = self._code(name, props, pat, kind, handler, serverless)
        if code is None:
            return
        if kind == "python" and "/" in handler:  # Lambda's Python runtime reads dir/app.handler as dir.app.handler
            handler = handler.replace("/", ".")
        fn: dict[str, Any] = {"runtime": kind, "handler": handler, "code": code}
        timeout = self.value(props, "Timeout", pat)
        if timeout is not None:
            fn["timeout"] = number(timeout)
        memory = self.value(props, "MemorySize", pat)
        if memory is not None:
            fn["memory_size"] = number(memory)
        fn["environment"] = self._environment(name, props, pat)
        try:
            spec = msgspec.convert(fn, Function, strict=False)
        except msgspec.ValidationError as exc:
            message, _, where = str(exc).partition(" - at `$.")
            key = where.rstrip("`").split(".")[0].split("[")[0]
            raise ConfigError(self.source, f"{pat}.{_FIELDS.get(key, key)}", message) from None
        folder = Path(code) if Path(code).is_absolute() else self.base / code
        if not folder.is_dir():
            raise ConfigError(self.source, f"{pat}.CodeUri", f"expected a folder or a .zip, {str(folder)!r} is neither")
        problem = handler_problem(spec, folder)
        if problem:
            raise ConfigError(self.source, f"{pat}.Handler", problem)
        self.functions[name] = fn

    def _skip(self, name: str, why: str) -> None:
        self.skipped_functions.add(name)
        warn_once(f"{self.source}: {why}; its events are not served")

    def _code(self, name: str, props: dict[str, Any], at: str, kind: str, handler: str, serverless: bool) -> str | None:
        key = "CodeUri" if serverless else "Code"
        inline = self.value(props, "InlineCode", at) if serverless else None
        raw = self.value(props, key, at)
        if not serverless and isinstance(raw, dict) and "ZipFile" in raw:
            inline = raw["ZipFile"]
        if isinstance(inline, str):
            module = handler.rpartition(".")[0] or "index"
            filename = module + (".py" if kind == "python" else ".js")
            return str(function_code.cached_files(f"{name}:{module}:{inline}", {filename: inline}))
        if raw is None:
            return "."
        if isinstance(raw, dict) or (isinstance(raw, str) and raw.startswith("s3://")):
            self._skip(name, f"{name}: its code is in S3 ({key}); point {key} at a local folder or .zip")
            return None
        if not isinstance(raw, str):
            raise ConfigError(self.source, f"{at}.{key}", "expected a folder or a .zip file")
        path = self.base / raw
        if raw.endswith(".zip") and path.is_file():
            return str(function_code.unzip(path, self.source, f"{at}.{key}"))
        if not path.is_dir():
            raise ConfigError(self.source, f"{at}.{key}", f"expected a folder or a .zip, {str(path)!r} is neither")
        return raw

    def _environment(self, name: str, props: dict[str, Any], at: str) -> dict[str, str]:
        env_at = f"{at}.Environment.Variables"
        env = props.get("Environment")
        variables: dict[str, Any] = {}
        if isinstance(env, dict) and isinstance(env.get("Variables"), dict):
            variables = env["Variables"]
        out: dict[str, str] = {}
        for var, raw in variables.items():
            try:
                value = self.resolver.resolved(raw, f"{env_at}.{var}")
            except Unresolved as exc:
                warn_once(f"{self.source}: {exc.at}: {exc.message}; {name} gets {var} empty")
                value = ""
            out[var] = variable_text(value)
        # sam's --env-vars: its "Parameters" for every function, then the function's own entry; only variables the
        # template declares are set (as sam does).
        for section in (self.env_file.get("Parameters", {}), self.env_file.get(name, {})):
            for var, value in section.items():
                if var in out:
                    out[var] = variable_text(value)
        out.setdefault("AWS_SAM_LOCAL", "true")  # as sam local sets it: handlers test it to find local endpoints
        return out


def _mapping(doc: dict[str, Any], key: str, source: str) -> dict[str, Any]:
    value = doc.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(source, f"$.{key}", "expected a mapping")
    return value
