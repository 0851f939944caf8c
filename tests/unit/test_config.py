"""Config errors name the file, the key path and what was expected."""

from __future__ import annotations

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
        (b"routes: [{path: /a, integration: {type: ftp}}]", "$.routes[0].integration.type", "Invalid value 'ftp'"),
        (
            b"routes: [{path: /a, methods: [FETCH], integration: {type: mock}}]",
            "$.routes[0].methods[0]",
            "matching regex",
        ),
        (b"routes: [{path: a, integration: {type: mock}}]", "$.routes[0].path", "must start with '/'"),
        (
            b"routes: [{path: /a, integration: {type: http, upstream: nope}}]",
            "$.routes[0].integration.upstream",
            "unknown upstream 'nope'",
        ),
        (b"upstreams: {u: {targets: ['ftp://x']}}", "$.upstreams.u.targets[0]", "matching regex"),
        (b"server: {trusted_proxies: [not-an-ip]}", "$.server.trusted_proxies[0]", "CIDR"),
        (GOOD.replace(b"/v1/users/{id}", b"/v1/{nope}"), "$.routes[0].integration.path", "{nope} is not a parameter"),
        (b"routes: [{path: /a, host: 'a.*.com', integration: {type: mock}}]", "$.routes[0].host", "wildcard"),
        (b"routes: [x: [", "$", "invalid YAML (line 1"),
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
