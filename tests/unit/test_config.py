"""Config errors name the file, the key path and what was expected."""

from __future__ import annotations

import orjson
import pytest

from fastgw.cli import main
from fastgw.config.load import ConfigError, default_config_path, load_config, load_config_bytes

GOOD = b"""
upstreams:
  users: {targets: ["http://127.0.0.1:9001"]}
routes:
  - path: /users/{id}
    methods: [GET]
    integration: {type: http, upstream: users, path: "/v1/users/{id}"}
"""


def err(raw: bytes, source: str = "gw.yaml") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config_bytes(raw, source)
    return info.value


def test_good_config_loads():
    loaded = load_config_bytes(GOOD, "gw.yaml")
    assert loaded.router.match("GET", "h", "/users/1") == (0, {"id": "1"})


@pytest.mark.parametrize(
    "raw,path,words",
    [
        (b"routes: [{path: /a, integration: {type: mock}, colour: red}]", "$.routes[0]", "unknown field `colour`"),
        (b"limits: {max_body_size: lots}", "$.limits.max_body_size", "Expected `int`"),
        (b"limits: {header_timeout: -1}", "$.limits.header_timeout", "Expected `float` >"),
        (
            b"routes: [{path: /a, integration: {type: ftp}}]",
            "$.routes[0].integration.type",
            "Invalid value 'ftp': expected one of aggregate, http, lambda, mock",
        ),
        (
            b"routes: [{path: /a, methods: [FETCH], integration: {type: mock}}]",
            "$.routes[0].methods[0]",
            "expected one of ANY, GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE, got 'FETCH'",
        ),
        (b"routes: [{path: a, integration: {type: mock}}]", "$.routes[0].path", "must start with '/'"),
        (
            b"routes: [{path: /a, integration: {type: http, upstream: nope}}]",
            "$.routes[0].integration.upstream",
            "unknown upstream 'nope'",
        ),
        (b"upstreams: {u: {targets: ['ftp://x']}}", "$.upstreams.u.targets[0]", "the scheme must be http"),
        (b"server: {trusted_proxies: [not-an-ip]}", "$.server.trusted_proxies[0]", "CIDR"),
        (GOOD.replace(b"/v1/users/{id}", b"/v1/{nope}"), "$.routes[0].integration.path", "{nope} is not a parameter"),
        (b"routes: [{path: /a, host: 'a.*.com', integration: {type: mock}}]", "$.routes[0].host", "wildcard"),
        (b"routes: [x: [", "$", "invalid YAML (line 2, column 1)"),
        (b"- just a list", "$", "expected a mapping"),
    ],
)
def test_errors_name_the_key_path(raw, path, words):
    e = err(raw)
    assert e.source == "gw.yaml" and e.path == path, str(e)
    assert words in e.message, str(e)
    assert str(e).startswith(f"gw.yaml: {path}: ")


def test_conflicting_routes_are_named():
    raw = b"""routes:
  - {name: first, path: "/a/{x}", integration: {type: mock}}
  - {path: /b, integration: {type: mock}}
  - {path: "/a/{y}", methods: [POST], integration: {type: mock}}
"""
    e = err(raw)
    assert e.path == "$.routes[2]" and "$.routes[0] (first:" in e.message and "conflicts" in e.message


def test_duplicate_route_names():
    e = err(b"routes: [{name: a, path: /x, integration: {type: mock}}, {name: a, path: /y, integration: {type: mock}}]")
    assert e.path == "$.routes[1].name"


def test_missing_file_names_it(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert "nope.yaml" in str(info.value) and "cannot read" in str(info.value)


def test_json_configs(tmp_path):
    p = tmp_path / "gw.json"
    p.write_text('{"routes": [{"path": "/", "integration": {"type": "mock"}}]}')
    assert len(load_config(p).config.routes) == 1
    p.write_text('{"routes": [}')
    with pytest.raises(ConfigError, match="invalid JSON"):
        load_config(p)


def test_default_quickstart_ships_and_is_valid():
    loaded = load_config(default_config_path())
    assert loaded.router.match("GET", "127.0.0.1", "/") == (0, {})


def test_cli_check_and_routes(tmp_path, capsys):
    p = tmp_path / "gw.yaml"
    p.write_bytes(GOOD)
    assert main(["check", str(p)]) == 0
    assert "ok (1 routes, 1 upstreams, 0 functions, 0 apis)" in capsys.readouterr().out
    assert main(["routes", str(p)]) == 0
    out = capsys.readouterr().out
    assert "GET" in out and "/users/{id}" in out and "http -> users /v1/users/{id}" in out
    p.write_bytes(b"routes: [{path: /a, integration: {type: http, upstream: x}}]")
    assert main(["check", str(p)]) == 1
    assert "$.routes[0].integration.upstream" in capsys.readouterr().err


def test_cli_help_lists_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for word in ("serve", "check", "routes"):
        assert word in out


def test_path_policy_errors_name_the_key_path():
    e = err(GOOD + b"path_policy: {escaped_slashes: unescape}\n")
    assert e.path == "$.path_policy.escaped_slashes" and "unescape" in e.message
    e = err(GOOD.replace(b"methods: [GET]", b"methods: [GET]\n    path_policy: {backslash: slash}"))
    assert e.path == "$.routes[0].path_policy.backslash"
    e = err(GOOD + b"limits: {max_header_field_size: 10}\n")
    assert e.path == "$.limits.max_header_field_size"


def test_path_policy_fields_inherit_from_the_wider_level():
    from fastgw.core import PATH_BACKSLASH_SEPARATOR, PATH_SLASHES_DECODE, PATH_SLASHES_KEEP, PATH_SLASHES_REJECT

    raw = b"""
path_policy: {backslash: separator}
upstreams: {u: {targets: ["http://127.0.0.1:9001"]}}
routes:
  - {path: /a, integration: {type: http, upstream: u}}
  - {path: /b, integration: {type: http, upstream: u}, path_policy: {escaped_slashes: keep}}
apis:
  shop:
    type: http
    path_policy: {escaped_slashes: decode}
    routes:
      - {path: /c, integration: {type: http, upstream: u}}
      - {path: /d, integration: {type: http, upstream: u}, path_policy: {backslash: reject}}
"""
    paths = load_config_bytes(raw, "gw.yaml").paths
    sep = PATH_BACKSLASH_SEPARATOR
    assert paths.default == PATH_SLASHES_REJECT | sep
    assert paths.policy_of == (
        PATH_SLASHES_REJECT | sep, PATH_SLASHES_KEEP | sep, PATH_SLASHES_DECODE | sep, PATH_SLASHES_DECODE,
    )  # fmt: skip
    # Each route is reached only by a path normalized under its own policy.
    assert paths.route("GET", "h", b"/b/x%2Fy")[0] is None  # /b takes no parameter: a 404 under keep...
    assert paths.route("GET", "h", b"/a%2F") == (None, None)  # ...and the top-level policy refuses %2F
    assert paths.route("GET", "h", b"/x/..%2Fc") == ("/c", (2, {}))  # decoded: /c, whose policy decodes
    assert paths.route("GET", "h", b"/d\\\\") == (None, None)  # /d refuses a backslash


# What a newcomer types wrong first: each error says what to write instead.
@pytest.mark.parametrize(
    "raw,path,words",
    [
        (
            b"upstreams: {u: {targets: ['127.0.0.1:9001']}}",
            "$.upstreams.u.targets[0]",
            "a target starts with its scheme, e.g. 'http://127.0.0.1:9001'",
        ),
        (b"upstreams: {u: {targets: ['ftp://api.example.com']}}", "$.upstreams.u.targets[0]", "http or https"),
        (b"upstreams: {u: {targets: ['http://h:9001/v1']}}", "$.upstreams.u.targets[0]", "no path"),
        (b"upstreams: {u: {targets: ['http://h:port']}}", "$.upstreams.u.targets[0]", "port must be a number"),
        (
            b"apis: {a: {routes: [{path: /, integration: {type: lamda, function: f}}], stages: {P: {}}}}",
            "$.apis.a.routes[0].integration.type",
            "Invalid value 'lamda': expected one of aggregate, http, lambda, mock",
        ),
        (
            b"routes: [{path: /a, integration: {upstream: u}}]",
            "$.routes[0].integration",
            "missing required field `type`: one of aggregate, http, lambda, mock",
        ),
        (b"", "$", "the config is empty"),
        (b"# only a comment\n", "$", "the config is empty"),
        (b"functions: {f: {runtime: node, handler: index.handler}}", "$.functions.f.runtime", "one of python, nodejs"),
    ],
)
def test_first_mistakes_say_what_to_write(raw, path, words):
    e = err(raw)
    assert e.path == path and words in e.message, str(e)


def test_targets_that_worked_before_still_load():
    for target in ("http://127.0.0.1:9001", "http://127.0.0.1:9001/", "http://localhost", "http://[::1]:8080"):
        raw = b"upstreams: {u: {targets: ['%s']}}\nroutes: [{path: /, integration: {type: http, upstream: u}}]"
        assert load_config_bytes(raw % target.encode(), "gw.yaml").config.upstreams["u"].targets == [target]


def test_check_refuses_a_config_that_serves_nothing(tmp_path, capsys):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert main(["check", str(empty)]) == 1
    assert f"{empty}: $: the config is empty" in capsys.readouterr().err
    no_routes = tmp_path / "no-routes.yaml"
    no_routes.write_bytes(b"upstreams: {u: {targets: ['http://127.0.0.1:9001']}}\n")
    assert main(["check", str(no_routes)]) == 1
    assert f"{no_routes}: $.routes: no routes" in capsys.readouterr().err


@pytest.mark.parametrize(
    "env,argv,words",
    [
        (
            {"FASTGW_WORKERS": "0"},
            [],
            "FASTGW_WORKERS=0: $.server.workers: Expected `int` >= 1 (FASTGW_WORKERS overrides",
        ),
        ({}, ["--workers", "0"], "--workers 0: $.server.workers: Expected `int` >= 1 (--workers overrides"),
        ({"FASTGW_PORT": "70000"}, [], "FASTGW_PORT=70000: $.server.port: Expected `int` <= 65535"),
        (
            {"FASTGW_LOG_LEVEL": "loud"},
            [],
            "FASTGW_LOG_LEVEL=loud: $.logging.level: Invalid enum value 'loud': expected one of debug, info, warning",
        ),
        ({"FASTGW_PORT": "eighty"}, [], "FASTGW_PORT='eighty' is not an integer"),
    ],
)
def test_serve_errors_name_the_flag_or_variable_the_value_came_from(tmp_path, monkeypatch, capsys, env, argv, words):
    cfg = tmp_path / "gw.yaml"
    cfg.write_text("routes: [{path: /, integration: {type: mock}}]\n")
    for name in ("FASTGW_CONFIG", "FASTGW_HOST", "FASTGW_PORT", "FASTGW_WORKERS", "FASTGW_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if "not an integer" in words:
        with pytest.raises(SystemExit) as info:
            main(["serve", str(cfg), *argv])
        err_text = str(info.value.code)
    else:
        assert main(["serve", str(cfg), *argv]) == 1  # refused before anything binds a port
        err_text = capsys.readouterr().err
    assert words in err_text, err_text
    if "overrides" in words:
        assert str(cfg) in err_text  # and which file's setting it replaced


def test_serve_says_when_the_config_path_came_from_the_environment(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FASTGW_CONFIG", str(tmp_path / "missing.yaml"))
    assert main(["serve"]) == 1
    err_text = capsys.readouterr().err
    assert "(the config named by FASTGW_CONFIG)" in err_text and "missing.yaml: $: cannot read the file" in err_text


def test_routes_lists_each_routes_plugins_in_the_order_they_run(tmp_path, capsys):
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(
        """
consumers: {ann: {credentials: {key-auth: [{key: k}]}}}
plugins: {request-id: {}}
routes:
  - {path: /open, integration: {type: mock}}
  - {path: /locked, integration: {type: mock}, plugins: {key-auth: {}, cors: {origins: ['*']}}}
  - {path: /bare, integration: {type: mock}, plugins: {request-id: false}}
"""
    )
    assert main(["routes", str(cfg)]) == 0
    rows = {line.split()[2]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows["/open"][-1] == "request-id"
    assert rows["/locked"][-1] == "request-id,cors,key-auth"  # priority order: 3950, 3800, 2500
    assert rows["/bare"][-1] == "-"


def test_hash_password_help_example_hashes_the_password_it_shows(capsys):
    import re
    import subprocess
    import sys

    from fastgw.plugins.basic_auth import verify_password

    with pytest.raises(SystemExit):
        main(["hash-password", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    m = re.search(r"(printf .*?) \| fastgw hash-password", text)
    assert m, text
    printf = m.group(1)
    out = subprocess.run(
        ["sh", "-c", f"{printf} | {sys.executable} -m fastgw hash-password --iterations 1000"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert verify_password("s3cret", out), (printf, out)


U = b"upstreams: {u: {targets: ['http://127.0.0.1:1', 'http://127.0.0.1:2'], %s}}"


@pytest.mark.parametrize(
    "extra,path,words",
    [
        (b"balancer: consistent-hash", "$.upstreams.u.hash_on", "consistent-hash needs hash_on"),
        (b"hash_on: ip", "$.upstreams.u.hash_on", "only read by consistent-hash"),
        (b"balancer: consistent-hash, hash_on: 'header:'", "$.upstreams.u.hash_on", "matching regex"),
        (b"balancer: fastest", "$.upstreams.u.balancer", "Invalid enum value 'fastest'"),
        (b"retries: {when: [error, http_500]}", "$.upstreams.u.retries.when[1]", "Invalid enum value 'http_500'"),
        (b"retries: {attempts: 0}", "$.upstreams.u.retries.attempts", "Expected `int` >= 1"),
        (b"health: {active: {interval: 1, timeout: 2}}", "$.upstreams.u.health.active.timeout", "shorter than"),
        (
            b"health: {passive: {consecutive_failures: null}}",
            "$.upstreams.u.health.passive",
            "consecutive_failures or failure_ratio",
        ),
        (b"breaker: {cool_down: 0}", "$.upstreams.u.breaker.cool_down", "Expected `float` >"),
    ],
)
def test_upstream_errors_name_the_key_path(extra, path, words):
    e = err(U % extra)
    assert e.path == path, str(e)
    assert words in e.message, str(e)


def test_targets_take_weights_and_refuse_duplicates():
    loaded = load_config_bytes(b"upstreams: {u: {targets: [{url: 'http://127.0.0.1:1', weight: 3}, 'http://h:2']}}")
    assert loaded.config.upstreams["u"].targets[0].weight == 3  # type: ignore[union-attr]
    e = err(b"upstreams: {u: {targets: ['http://127.0.0.1:1', {url: 'http://127.0.0.1:1/'}]}}")
    assert e.path == "$.upstreams.u.targets[1]" and "already targets[0]" in e.message
    e = err(b"upstreams: {u: {targets: [{url: 'http://127.0.0.1:1', weight: 0}]}}")
    assert e.path == "$.upstreams.u.targets[0].weight"


AGG = b"""
upstreams: {users: {targets: ['http://127.0.0.1:1']}}
routes:
  - path: /p/{id}
    integration: {type: aggregate, backends: [%s]}
"""


@pytest.mark.parametrize(
    "backends,path,words",
    [
        (b"{upstream: nope, path: /u}", "$.routes[0].integration.backends[0].upstream", "unknown upstream 'nope'"),
        (b"{upstream: users, path: '/u/{uid}'}", "$.routes[0].integration.backends[0].path", "{uid} is not a param"),
        (
            b"{upstream: users, path: '/u/{resp0.id}'}",
            "$.routes[0].integration.backends[0].path",
            "not an earlier one",
        ),
        (
            b"{upstream: users, path: /a, group: g}, {upstream: users, path: /b, group: g}",
            "$.routes[0].integration.backends[1].group",
            "backends[0]'s too",
        ),
        (b"", "$.routes[0].integration.backends", "length >= 1"),
    ],
)
def test_aggregate_errors_name_the_key_path(backends, path, words):
    e = err(AGG % backends)
    assert e.path == path, str(e)
    assert words in e.message, str(e)


def test_aggregate_sequence_loads():
    load_config_bytes(AGG % b"{upstream: users, path: '/u/{id}'}, {upstream: users, path: '/o?u={resp0.user.id}'}")


def test_websocket_only_on_http_routes():
    e = err(b"routes: [{path: /ws, websocket: true, integration: {type: mock}}]")
    assert e.path == "$.routes[0].websocket" and "http integrations only" in e.message
    e = err(b"routes: [{path: /ws, websocket: {idle_timeout: 0}, integration: {type: mock}}]")
    assert e.path == "$.routes[0].websocket.idle_timeout"


def test_tls_ca_file_must_exist():
    e = err(b"upstreams: {u: {targets: ['https://h:443'], tls: {ca_file: nope.pem}}}")
    assert e.path == "$.upstreams.u.tls.ca_file" and "no such file" in e.message


def test_aggregate_backend_is_an_upstream_or_a_function():
    e = err(AGG % b"{path: /u}")
    assert e.path == "$.routes[0].integration.backends[0]" and "either upstream" in e.message
    e = err(AGG % b"{function: nope}")
    assert e.path == "$.routes[0].integration.backends[0].function" and "unknown function" in e.message
    e = err(AGG % b"{upstream: users}")
    assert e.path == "$.routes[0].integration.backends[0].path"


DUPLICATE_PLUGINS = b"""\
plugins:
  key-auth: {}
consumers:
  alice: {credentials: {key-auth: [{key: k1}]}}
routes:
  - path: /a
    integration: {type: mock}
plugins:
  cors: {}
"""


@pytest.mark.parametrize("pure", [False, True], ids=["libyaml", "pure-yaml"])
def test_a_key_given_twice_in_yaml_is_refused_with_its_path_and_both_lines(monkeypatch, tmp_path, capsys, pure):
    import yaml

    from fastgw.config import _yaml

    monkeypatch.setattr(_yaml, "_Loader", yaml.SafeLoader if pure else yaml.CSafeLoader)
    # The case: a second top-level `plugins:` silently dropped the global key-auth.
    e = err(DUPLICATE_PLUGINS)
    assert e.path == "$.plugins" and "given twice" in str(e) and "lines 1 and 8" in str(e)
    e = err(b"routes:\n  - path: /a\n    integration: {type: mock}\n    plugins: {cors: {}, cors: {max_age: 5}}\n")
    assert e.path == "$.routes[0].plugins.cors" and "lines 4 and 4" in str(e)
    e = err(b"upstreams:\n  u:\n    targets: ['http://127.0.0.1:1']\n    targets: ['http://127.0.0.1:2']\n")
    assert e.path == "$.upstreams.u.targets" and "lines 3 and 4" in str(e)
    # What a merge key brings in is not a duplicate: the mapping's own key wins, as YAML says.
    loaded = load_config_bytes(
        b"routes:\n  - path: /a\n    integration: &m {type: mock, status: 201}\n"
        b"  - path: /b\n    integration: {<<: *m, status: 202}\n",
        "gw.yaml",
    )
    assert [r.integration.status for r in loaded.config.routes] == [201, 202]  # type: ignore[union-attr]
    # fastgw check says so too.
    path = tmp_path / "gw.yaml"
    path.write_bytes(DUPLICATE_PLUGINS)
    assert main(["check", str(path)]) == 1
    assert "$.plugins: given twice in one mapping (lines 1 and 8)" in capsys.readouterr().err


def test_yaml_anchors_merge_keys_and_scalars_load_as_safe_load_reads_them():
    import yaml

    from fastgw.config.parse import parse_yaml

    raw = (
        b"a: 1\nb: &x {c: 2, d: [1, 2]}\ne: *x\nf:\n  <<: *x\n  c: 3\n"
        b"g: [yes, no, on, ~, null, 1.5, 0x1f, 2024-01-01, '1', !!str 5, 1_000, '', .inf]\nh: |\n  text\n"
        b"i: {<<: [{a: 1}, {a: 2, b: 3}]}\n"
    )
    assert parse_yaml(raw, "x") == parse_yaml(raw, "x", yaml.SafeLoader) == yaml.safe_load(raw)
    assert parse_yaml(b"# nothing\n", "x") is None
    with pytest.raises(ConfigError, match="one YAML document"):
        parse_yaml(b"a: 1\n---\nb: 2\n", "x")


def test_a_key_given_twice_in_json_is_refused_with_its_path(tmp_path):
    p = tmp_path / "gw.json"
    p.write_text('{"routes": [{"path": "/", "integration": {"type": "mock", "status": 200, "status": 201}}]}')
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert info.value.path == "$.routes[0].integration.status" and "given twice" in str(info.value)
    p.write_text(
        '{"plugins": {"key-auth": {}}, "routes": [{"path": "/", "integration": {"type": "mock"}}], "plugins": {}}'
    )
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert info.value.path == "$.plugins"


def test_a_large_config_converted_in_pieces_names_the_same_paths():
    routes = [{"path": f"/r{i}", "integration": {"type": "mock"}} for i in range(1200)]
    loaded = load_config_bytes(orjson.dumps({"routes": routes}), "gw.json")
    assert len(loaded.config.routes) == 1200 and loaded.config.routes[1199].path == "/r1199"
    routes[1050]["methods"] = ["FETCH"]
    with pytest.raises(ConfigError) as info:
        load_config_bytes(orjson.dumps({"routes": routes}), "gw.json")
    assert info.value.path == "$.routes[1050].methods[0]"


def test_parse_yaml_hands_local_tags_to_a_hook_and_still_refuses_a_key_twice():
    """fastgw.aws reads templates with CloudFormation's short tags through fastgw's own reader (issue 19, item 9)."""
    from fastgw.config.parse import parse_yaml

    def hook(tag, value):
        return {tag: value}

    raw = b"a: !Ref X\nb: !Join [-, [x, y]]\nc: !Thing {k: 1}\nd: &n !Sub {s: 2}\ne: *n\nf: !!str 3\n"
    assert parse_yaml(raw, "t.yaml", tags=hook) == {
        "a": {"!Ref": "X"},
        "b": {"!Join": ["-", ["x", "y"]]},
        "c": {"!Thing": {"k": 1}},
        "d": {"!Sub": {"s": 2}},
        "e": {"!Sub": {"s": 2}},
        "f": "3",
    }
    with pytest.raises(ConfigError) as err:
        parse_yaml(b"a: !Sub\n  k: 1\n  k: 2\n", "t.yaml", tags=hook)
    assert err.value.path == "$.a.k" and "lines 2 and 3" in err.value.message
    with pytest.raises(ConfigError, match="the tag !Thing is not supported"):
        parse_yaml(b"c: !Thing {k: 1}\n", "t.yaml")  # no hook: as before
