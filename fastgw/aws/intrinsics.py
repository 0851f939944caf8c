"""CloudFormation's YAML (the short `!Ref`, `!Sub`, `!GetAtt` tags) and its intrinsic functions, resolved as far as
they resolve on one machine: parameters, pseudo parameters, conditions, mappings, resource ids and ARNs made up
from the logical ids (a Lambda function's ARN names its logical id, so an integration URI built with `Fn::Sub` maps
back to the function). What cannot resolve (`Fn::ImportValue`, `Fn::GetAZs`, attributes other than ARNs and names)
raises `Unresolved`, which the caller turns into a warning or an error naming the key path.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from typing import Any

from fastgw.config.errors import ConfigError
from fastgw.config.parse import parse_yaml

# Defaults of `sam local`: its region and account id when none are configured (--parameter-overrides
# AWS::Region=... changes them, as it does for sam).
PSEUDO: dict[str, Any] = {
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "local",
    "AWS::StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/local/00000000-0000-0000-0000-000000000000",
    "AWS::NoValue": None,
    "AWS::NotificationARNs": [],
}

_SUB = re.compile(r"\$\{([^}]*)\}")


class Unresolved(Exception):
    """An intrinsic function that has no value on this machine; `at` is the key path of the function."""

    def __init__(self, at: str, message: str) -> None:
        super().__init__(message)
        self.at = at
        self.message = message


def short_form(tag: str, value: Any) -> Any:
    """CloudFormation's short forms as their long ones: `!Ref X` is `{"Ref": "X"}`, `!GetAtt A.B` is
    `{"Fn::GetAtt": ["A", "B"]}`, `!Sub`, `!If`... are `{"Fn::Sub": ...}`... (on a scalar, a sequence or a mapping)."""
    suffix = tag[1:]
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        first, _, rest = value.partition(".")
        return {"Fn::GetAtt": [first, rest]}
    return {f"Fn::{suffix}": value}


def load_yaml(raw: bytes, source: str) -> Any:
    """A template or OpenAPI file in YAML: fastgw's own reader (a key given twice is an error naming its key path and
    both lines, issue 19 item 9), with CloudFormation's short tags."""
    return parse_yaml(raw, source, tags=short_form)


def integer(value: Any, source: str, at: str) -> int:
    """A whole number a template or definition gives (as a number or a string), or a ConfigError naming its key."""
    try:
        if isinstance(value, bool):
            raise ValueError
        return int(str(value).strip().strip("'"))
    except ValueError:
        raise ConfigError(source, at, f"expected a whole number, got {value!r}") from None


def number(value: Any) -> Any:
    """A number a template gives as a string (a parameter's value is one) as a number; anything else as it is, for
    the config's check to judge."""
    if isinstance(value, str):
        try:
            return float(value) if "." in value else int(value)
        except ValueError:
            return value
    return value


def variable_text(value: Any) -> str:
    """A resolved value as the text a variable holds (a function's environment, a stage's variables: strings only),
    as CloudFormation writes it: booleans lower-case, mappings and lists as JSON, nothing as ""."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return "" if value is None else str(value)


def is_intrinsic(value: dict[str, Any]) -> bool:
    """Whether a mapping is an intrinsic function call (`{"Ref": ...}`, `{"Fn::If": ...}`), not data."""
    return len(value) == 1 and next(iter(value)).startswith(("Fn::", "Ref", "Condition"))


def lambda_arn(region: str, account: str, name: str) -> str:
    return f"arn:aws:lambda:{region}:{account}:function:{name}"


class Resolver:
    """Resolves intrinsic functions against one template's parameters, conditions, mappings and resources."""

    def __init__(
        self,
        source: str,
        parameters: dict[str, Any],
        resources: dict[str, Any],
        mappings: dict[str, Any],
        conditions: dict[str, Any],
    ) -> None:
        self.source = source
        self.parameters = parameters  # name -> value (pseudo parameters included)
        self.resources = resources
        self.mappings = mappings
        self.condition_defs = conditions
        self._conditions: dict[str, bool] = {}

    @property
    def region(self) -> str:
        return str(self.parameters.get("AWS::Region", PSEUDO["AWS::Region"]))

    @property
    def account(self) -> str:
        return str(self.parameters.get("AWS::AccountId", PSEUDO["AWS::AccountId"]))

    def condition(self, name: str, at: str) -> bool:
        if name not in self._conditions:
            if name not in self.condition_defs:
                raise ConfigError(self.source, at, f"no condition {name!r} in $.Conditions")
            self._conditions[name] = False  # a condition naming itself is false, not a recursion error
            self._conditions[name] = bool(self.resolve(self.condition_defs[name], f"$.Conditions.{name}"))
        return self._conditions[name]

    def resolve(self, value: Any, at: str) -> Any:
        """The value with every intrinsic function inside it evaluated; `AWS::NoValue` drops a key or an item."""
        if isinstance(value, list):
            out = [self.resolve(v, f"{at}[{i}]") for i, v in enumerate(value)]
            return [v for v in out if v is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            fn = _FUNCTIONS.get(key)
            if fn is not None:
                result = fn(self, arg, f"{at}.{key}")
                return _NO_VALUE if result is None and key == "Ref" else result
        mapping = {}
        for k, v in value.items():
            r = self.resolve(v, f"{at}.{k}")
            if r is not _NO_VALUE:
                mapping[k] = r
        return mapping

    def resolved(self, value: Any, at: str) -> Any:
        """`resolve`, and AWS::NoValue at the top is None."""
        r = self.resolve(value, at)
        return None if r is _NO_VALUE else r

    def string(self, value: Any, at: str) -> str:
        r = self.resolved(value, at)
        if isinstance(r, bool):
            return "true" if r else "false"
        if isinstance(r, (int, float)):
            return str(r)
        if not isinstance(r, str):
            raise ConfigError(self.source, at, f"expected a string, got {_kind(r)}")
        return r

    # -- the functions ------------------------------------------------------------------------------------------

    def _ref(self, arg: Any, at: str) -> Any:
        name = self.string(arg, at)
        if name in self.parameters:
            return self.parameters[name]
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.resources:
            return name  # a resource's physical id: locally, its logical id (as sam local names functions)
        raise ConfigError(self.source, at, f"Ref to {name!r}: no parameter, pseudo parameter or resource of that name")

    def _getatt(self, arg: Any, at: str) -> Any:
        if isinstance(arg, str):
            arg = arg.split(".", 1)
        arg = self.resolve(arg, at)
        if not isinstance(arg, list) or len(arg) != 2 or not all(isinstance(a, str) for a in arg):
            raise ConfigError(self.source, at, "expected [LogicalId, Attribute] or LogicalId.Attribute")
        name, attr = arg
        res = self.resources.get(name)
        if not isinstance(res, dict):
            raise ConfigError(self.source, at, f"GetAtt of {name!r}: no resource of that name")
        kind = str(res.get("Type", ""))
        if attr == "Arn":
            if kind in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
                return lambda_arn(self.region, self.account, name)
            service = kind.split("::")[1].lower() if kind.count("::") >= 2 else "local"
            return f"arn:aws:{service}:{self.region}:{self.account}:{name}"
        if attr in ("Name", "FunctionName", "TableName", "QueueName", "TopicName", "BucketName"):
            return name
        if attr in ("RootResourceId", "ApiId", "ApiEndpoint", "QueueUrl", "StreamArn", "Id"):
            return name
        raise Unresolved(at, f"GetAtt {name}.{attr} has no local value")

    def _sub(self, arg: Any, at: str) -> str:
        if isinstance(arg, list):
            if len(arg) != 2 or not isinstance(arg[1], dict):
                raise ConfigError(self.source, at, "expected a string, or [string, {Name: value}]")
            text, names = arg[0], {k: self.resolved(v, f"{at}[1].{k}") for k, v in arg[1].items()}
        else:
            text, names = arg, {}
        if not isinstance(text, str):
            raise ConfigError(self.source, at, f"expected a string, got {_kind(text)}")

        def one(m: re.Match[str]) -> str:
            inner = m.group(1)
            if inner.startswith("!"):  # ${!Literal} is written as ${Literal}
                return "${" + inner[1:] + "}"
            if inner in names:
                return _text(names[inner])
            if "." in inner and inner.split(".", 1)[0] in self.resources:
                return _text(self._getatt(inner.split(".", 1), at))
            return _text(self._ref(inner, at))

        return _SUB.sub(one, text)

    def _join(self, arg: Any, at: str) -> str:
        arg = self.resolve(arg, at)
        if not isinstance(arg, list) or len(arg) != 2 or not isinstance(arg[1], list):
            raise ConfigError(self.source, at, "expected [delimiter, [values...]]")
        return str(arg[0]).join(_text(v) for v in arg[1])

    def _select(self, arg: Any, at: str) -> Any:
        arg = self.resolve(arg, at)
        if not isinstance(arg, list) or len(arg) != 2 or not isinstance(arg[1], list):
            raise ConfigError(self.source, at, "expected [index, [values...]]")
        try:
            return arg[1][int(arg[0])]
        except (ValueError, IndexError):
            raise ConfigError(self.source, at, f"index {arg[0]!r} is not in a list of {len(arg[1])}") from None

    def _split(self, arg: Any, at: str) -> list[str]:
        arg = self.resolve(arg, at)
        if not isinstance(arg, list) or len(arg) != 2 or not isinstance(arg[1], str):
            raise ConfigError(self.source, at, "expected [delimiter, string]")
        return arg[1].split(str(arg[0]))

    def _if(self, arg: Any, at: str) -> Any:
        if not isinstance(arg, list) or len(arg) != 3:
            raise ConfigError(self.source, at, "expected [ConditionName, value if true, value if false]")
        chosen = 1 if self.condition(self.string(arg[0], f"{at}[0]"), f"{at}[0]") else 2
        return self.resolve(arg[chosen], f"{at}[{chosen}]")

    def _equals(self, arg: Any, at: str) -> bool:
        arg = self.resolve(arg, at)
        if not isinstance(arg, list) or len(arg) != 2:
            raise ConfigError(self.source, at, "expected [value, value]")
        return _text(arg[0]) == _text(arg[1])

    def _and(self, arg: Any, at: str) -> bool:
        return all(self._cond_list(arg, at))

    def _or(self, arg: Any, at: str) -> bool:
        return any(self._cond_list(arg, at))

    def _not(self, arg: Any, at: str) -> bool:
        values = self._cond_list(arg, at)
        if len(values) != 1:
            raise ConfigError(self.source, at, "expected [condition]")
        return not values[0]

    def _cond_list(self, arg: Any, at: str) -> list[bool]:
        if not isinstance(arg, list):
            raise ConfigError(self.source, at, "expected a list of conditions")
        return [bool(self.resolve(v, f"{at}[{i}]")) for i, v in enumerate(arg)]

    def _condition_ref(self, arg: Any, at: str) -> bool:
        return self.condition(self.string(arg, at), at)

    def _find_in_map(self, arg: Any, at: str) -> Any:
        arg = self.resolve(arg, at)
        if not isinstance(arg, list) or len(arg) < 3:
            raise ConfigError(self.source, at, "expected [MapName, TopLevelKey, SecondLevelKey]")
        table: Any = self.mappings
        for key in arg[:3]:
            if not isinstance(table, dict) or _text(key) not in table:
                if len(arg) == 4 and isinstance(arg[3], dict) and "DefaultValue" in arg[3]:
                    return arg[3]["DefaultValue"]
                raise ConfigError(self.source, at, f"no {_text(key)!r} in $.Mappings ({'.'.join(map(_text, arg[:3]))})")
            table = table[_text(key)]
        return table

    def _base64(self, arg: Any, at: str) -> str:
        return base64.b64encode(self.string(arg, at).encode()).decode("ascii")

    def _unresolvable(self, arg: Any, at: str) -> Any:
        raise Unresolved(at, f"{at.rpartition('.')[2]} has no value outside AWS")

    def _to_json_string(self, arg: Any, at: str) -> str:
        import json

        return json.dumps(self.resolve(arg, at), separators=(",", ":"))


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


_NO_VALUE: Any = _NoValue()


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_text(v) for v in value)
    return "" if value is None or value is _NO_VALUE else str(value)


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", type(None): "nothing"}.get(type(value), type(value).__name__)


_FUNCTIONS: dict[str, Callable[[Resolver, Any, str], Any]] = {
    "Ref": Resolver._ref,
    "Fn::GetAtt": Resolver._getatt,
    "Fn::Sub": Resolver._sub,
    "Fn::Join": Resolver._join,
    "Fn::Select": Resolver._select,
    "Fn::Split": Resolver._split,
    "Fn::If": Resolver._if,
    "Fn::Equals": Resolver._equals,
    "Fn::And": Resolver._and,
    "Fn::Or": Resolver._or,
    "Fn::Not": Resolver._not,
    "Condition": Resolver._condition_ref,
    "Fn::FindInMap": Resolver._find_in_map,
    "Fn::Base64": Resolver._base64,
    "Fn::ImportValue": Resolver._unresolvable,
    "Fn::GetAZs": Resolver._unresolvable,
    "Fn::Cidr": Resolver._unresolvable,
    "Fn::Transform": Resolver._unresolvable,
    "Fn::ToJsonString": Resolver._to_json_string,
}


# -- Fn::ForEach (AWS::LanguageExtensions) ----------------------------------------------------------------------

_FOREACH = "Fn::ForEach::"


def expand_foreach(section: Any, resolver: Resolver, at: str) -> Any:
    """A template section (Resources, Conditions, Outputs) with its `Fn::ForEach::Name` loops unrolled:
    `[Identifier, [values...], {"Key${Identifier}": {...}}]`, `${Identifier}` (and `&{Identifier}`, its
    alphanumerics only) replaced in the keys and in `Fn::Sub` strings, `Ref: Identifier` replaced by the value."""
    if not isinstance(section, dict):
        return section
    out: dict[str, Any] = {}
    for key, value in section.items():
        if not key.startswith(_FOREACH):
            out[key] = value
            continue
        where = f"{at}.{key}"
        if not isinstance(value, list) or len(value) != 3 or not isinstance(value[2], dict):
            raise ConfigError(resolver.source, where, "expected [Identifier, [values...], {OutputKey: value}]")
        ident, collection, body = value
        if not isinstance(ident, str):
            raise ConfigError(resolver.source, f"{where}[0]", "expected the loop's identifier (a name)")
        items = resolver.resolved(collection, f"{where}[1]")
        if isinstance(items, str):
            items = [s.strip() for s in items.split(",")]
        if not isinstance(items, list):
            raise ConfigError(resolver.source, f"{where}[1]", f"expected a list of values, got {_kind(items)}")
        for item in items:
            text = _text(item)
            unrolled = expand_foreach(_replace(body, ident, text), resolver, at)
            for k, v in unrolled.items():
                if k in out:
                    raise ConfigError(resolver.source, where, f"{k!r} is made twice (by the loop, or is also given)")
                out[k] = v
    return out


def _replace(value: Any, ident: str, text: str) -> Any:
    plain = re.sub(r"[^A-Za-z0-9]", "", text)

    def in_string(s: str) -> str:
        return s.replace("${" + ident + "}", text).replace("&{" + ident + "}", plain)

    if isinstance(value, str):
        return in_string(value)
    if isinstance(value, list):
        return [_replace(v, ident, text) for v in value]
    if isinstance(value, dict):
        if value == {"Ref": ident}:
            return text
        return {in_string(k): _replace(v, ident, text) for k, v in value.items()}
    return value
