"""Config rules of functions, APIs and stages: each broken config names the file, the key path and the fix."""

from __future__ import annotations

import pytest

from fastgw.config.load import ConfigError, load_config
from tests.functions.conftest import write

FN = "functions:\n  hello: {runtime: python, handler: app.handler, code: fn}\n"


def load(tmp_path, text: str):
    write(tmp_path / "fn", "app.py", "def handler(e, c):\n    return 1\n")
    path = tmp_path / "gw.yaml"
    path.write_text(text)
    return load_config(path)


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        (FN + "routes:\n  - {path: /, integration: {type: lambda, function: nope}}\n",
         "$.routes[0].integration.function", "unknown function 'nope' (functions: hello)"),
        (FN + "apis:\n  a: {routes: [{path: /, integration: {type: lambda, function: hello}}]}\n",
         "$.apis.a.stages", "a REST API is served only through a stage"),
        (FN + "apis:\n  a:\n    routes: [{path: /, integration: {type: lambda, function: '${stageVariables.fn}'}}]\n"
              "    stages: {Prod: {variables: {other: x}}}\n",
         "$.apis.a.routes[0].integration.function", "stage 'Prod' has no variable 'fn' (its variables: other)"),
        (FN + "apis:\n  a:\n    routes: [{path: /, integration: {type: lambda, function: '${stageVariables.fn}'}}]\n"
              "    stages: {Prod: {variables: {fn: hello}}, Beta: {variables: {fn: missing}}}\n",
         "$.apis.a.routes[0].integration.function", "unknown function 'missing' (stage 'Beta')"),
        ("functions:\n  f: {runtime: nodejs, handler: index.handler, code: fn}\n",
         "$.functions.f.handler", "no index.mjs, index.js or index.cjs"),
        ("functions:\n  f: {runtime: python, handler: app.handler, code: nowhere}\n",
         "$.functions.f.code", "expected a folder"),
        ("functions:\n  f: {runtime: python, handler: 'missing.py:handler', code: fn}\n",
         "$.functions.f.handler", "no file 'missing.py'"),
        ("functions:\n  f: {runtime: ruby, handler: app.handler, code: fn}\n",
         "$.functions.f.runtime", "Invalid enum value 'ruby'"),
        ("functions:\n  f: {runtime: python, handler: app.handler, code: fn, concurrency: 2, warm: 3}\n",
         "$.functions.f.warm", "at most concurrency (2)"),
        ("apis:\n  a: {type: rest, stages: {$default: {}}}\n", "$.apis.a.stages", "'$default' is an HTTP API stage"),
    ],
)  # fmt: skip
def test_broken_function_configs_say_where_and_what(tmp_path, text, where, what):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    err = info.value
    assert err.source.endswith("gw.yaml") and err.path == where, str(err)
    assert what in err.message, str(err)


def test_stage_variables_pick_the_function_per_stage(tmp_path):
    text = (
        "functions:\n  v1: {runtime: python, handler: app.handler, code: fn}\n"
        "  v2: {runtime: python, handler: app.handler, code: fn}\n"
        "apis:\n  shop:\n    routes:\n"
        "      - {path: '/{proxy+}', integration: {type: lambda, function: '${stageVariables.fn}'}}\n"
        "    stages: {Prod: {variables: {fn: v1}}, Beta: {variables: {fn: v2}}}\n"
    )
    loaded = load(tmp_path, text)
    by_stage = {e.stage: (e.path, e.integration.function) for e in loaded.entries}  # type: ignore[union-attr]
    assert by_stage == {"Prod": ("/Prod/{proxy+}", "v1"), "Beta": ("/Beta/{proxy+}", "v2")}
    assert loaded.rest_prefixes == {"/Prod", "/Beta"}
    index, params = loaded.router.match("GET", "x", "/Beta/a/b")
    assert loaded.entries[index].stage == "Beta" and params == {"proxy": "a/b"}


def test_stage_variables_in_an_http_integration(tmp_path):
    text = (
        "upstreams:\n  blue: {targets: ['http://127.0.0.1:9']}\n  green: {targets: ['http://127.0.0.1:10']}\n"
        "apis:\n  shop:\n    routes:\n"
        "      - {path: '/{proxy+}', integration: {type: http, upstream: '${stageVariables.color}', "
        "path: '/${stageVariables.version}/{proxy}'}}\n"
        "    stages: {Prod: {variables: {color: blue, version: v1}}, Beta: {variables: {color: green, version: v2}}}\n"
    )
    loaded = load(tmp_path, text)
    got = {e.stage: (e.integration.upstream, e.integration.path) for e in loaded.entries}  # type: ignore[union-attr]
    assert got == {"Prod": ("blue", "/v1/{proxy}"), "Beta": ("green", "/v2/{proxy}")}
