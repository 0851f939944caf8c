"""Routing by request headers: routes that share a path and methods, told apart by `headers:` conditions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastgw.config.load import ConfigError, load_config_bytes
from fastgw.config.schema import HeaderMatch
from fastgw.routing import HeaderRule
from fastgw.testing import EchoUpstream, http_request


def _mock(body: str) -> dict:
    return {"type": "mock", "body": {"served": body}}


def _http(upstream: str, path: str | None = None) -> dict:
    return {"type": "http", "upstream": upstream, **({"path": path} if path else {})}


@pytest.mark.asyncio
async def test_the_most_specific_route_whose_headers_hold_takes_the_request(gateway):
    gw = await gateway(
        {
            "logging": {"access_log": False},
            "routes": [
                {"path": "/items/{id}", "integration": _mock("stable")},
                {"path": "/items/{id}", "headers": {"X-Version": "v2"}, "integration": _mock("v2")},
                {
                    "path": "/items/{id}",
                    "headers": {"X-Version": "v2", "X-Canary": {"present": True}},
                    "integration": _mock("v2-canary"),
                },
                {"path": "/items/{id}", "headers": {"X-Version": ["v3", "v4"]}, "integration": _mock("v3-or-v4")},
                {"path": "/items/{id}", "headers": {"X-Version": {"prefix": "beta-"}}, "integration": _mock("beta")},
                {
                    "path": "/items/{id}",
                    "headers": {"X-Version": {"regex": "(?i)rc[0-9]+"}},
                    "integration": _mock("rc"),
                },  # noqa: E501
            ],
        }
    )
    cases = [
        ({}, "stable"),
        ({"X-Version": "v2"}, "v2"),
        ({"x-version": "v2", "X-Canary": ""}, "v2-canary"),  # names are case-insensitive, an empty value is sent
        ({"X-Version": "V2"}, "stable"),  # values are compared exactly
        ({"X-Version": "v4"}, "v3-or-v4"),
        ({"X-Version": "beta-7"}, "beta"),
        ({"X-Version": "RC12"}, "rc"),
        ({"X-Version": "rc12x"}, "stable"),  # a regex matches the whole value
        ({"X-Canary": "1"}, "stable"),
    ]
    for _ in range(2):  # twice: nothing may leak from one request to the next
        for headers, served in cases:
            r = await http_request(gw.port, "GET", "/items/7", headers=headers)
            assert r.status == 200 and r.json() == {"served": served}, (headers, r.body)


@pytest.mark.asyncio
async def test_without_a_route_for_the_rest_a_request_no_condition_takes_is_a_404(gateway):
    gw = await gateway(
        {
            "logging": {"access_log": False},
            "routes": [
                {"path": "/only", "methods": ["GET"], "headers": {"X-Tenant": "a"}, "integration": _mock("a")},
                {
                    "path": "/only",
                    "methods": ["GET"],
                    "headers": {"X-Tenant": {"present": False}},
                    "integration": _mock("nobody"),
                },  # fmt: skip
            ],
        }
    )
    assert (await http_request(gw.port, "GET", "/only", headers={"X-Tenant": "a"})).json() == {"served": "a"}
    assert (await http_request(gw.port, "GET", "/only")).json() == {"served": "nobody"}
    r = await http_request(gw.port, "GET", "/only", headers={"X-Tenant": "b"})
    assert r.status == 404 and r.json() == {"message": "Not Found"}
    assert (await http_request(gw.port, "POST", "/only", headers={"X-Tenant": "a"})).status == 405


def _path_routes(with_headers: bool) -> list[dict]:
    """Routes on /x and /x/{id}: GET /x told apart by headers (no route for the rest) when `with_headers`, else
    one plain GET /x; the other methods plain, and PUT /x/{id} told apart by headers too."""
    get = [{"path": "/x", "methods": ["GET"], "integration": _mock("get")}]
    if with_headers:
        get = [{**get[0], "headers": {"X-T": t}, "integration": _mock(t)} for t in ("a", "b")]
    put = {"path": "/x/{id}", "methods": ["PUT"], "integration": _mock("put")}
    return [
        *get,
        {"path": "/x", "methods": ["POST", "PATCH"], "integration": _mock("post")},
        {**put, "headers": {"X-T": "a"}} if with_headers else put,
        {"path": "/x/lit", "methods": ["DELETE"], "integration": _mock("delete")},
    ]


@pytest.mark.asyncio
async def test_a_method_no_route_of_the_path_serves_answers_405_as_for_plain_routes(gateway):
    grouped = await gateway({"logging": {"access_log": False}, "routes": _path_routes(True)})
    plain = await gateway({"logging": {"access_log": False}, "routes": _path_routes(False)})
    on_x = "GET, PATCH, POST"
    cases = [("DELETE", "/x", on_x), ("HEAD", "/x", on_x), ("OPTIONS", "/x", on_x),
             ("GET", "/x/lit", "DELETE, PUT"), ("POST", "/x/7", "PUT")]  # fmt: skip
    for method, path, allow in cases:
        for headers in ({}, {"X-T": "a"}):  # whether the group's headers hold or not
            for gw in (grouped, plain):
                r = await http_request(gw.port, method, path, headers=headers)
                assert (r.status, r.header("allow")) == (405, allow), (method, path, headers, gw is plain)
                if method != "HEAD":
                    assert r.json() == {"message": "Method Not Allowed"}


@pytest.mark.asyncio
async def test_a_method_served_only_under_other_headers_is_a_404_not_a_405(gateway):
    gw = await gateway({"logging": {"access_log": False}, "routes": _path_routes(True)})
    assert (await http_request(gw.port, "GET", "/x", headers={"X-T": "b"})).json() == {"served": "b"}
    for method, path in (("GET", "/x"), ("PUT", "/x/7")):
        for headers in ({}, {"X-T": "z"}):
            r = await http_request(gw.port, method, path, headers=headers)
            assert r.status == 404 and r.json() == {"message": "Not Found"}, (method, path, headers, r.body)
            assert r.header("allow") is None


@pytest.mark.asyncio
async def test_an_options_request_that_is_no_preflight_is_a_404_when_no_headers_hold(gateway):
    cors = {"cors": {"origins": ["https://app.test"]}}
    gw = await gateway(
        {
            "logging": {"access_log": False},
            "routes": [
                {"path": "/t", "headers": {"X-Tenant": "a"}, "integration": _mock("a"), "plugins": cors},
                {"path": "/t", "headers": {"X-Tenant": "b"}, "integration": _mock("b"), "plugins": cors},
            ],
        }
    )
    # Neither tenant's route may take it: without both CORS headers the cors plugin would pass it on.
    for headers in ({}, {"X-Tenant": "c"}, {"Origin": "https://app.test"}, {"Access-Control-Request-Method": "GET"}):
        r = await http_request(gw.port, "OPTIONS", "/t", headers=headers)
        assert r.status == 404 and r.json() == {"message": "Not Found"}, (headers, r.body)
    r = await http_request(gw.port, "OPTIONS", "/t", headers={"X-Tenant": "b"})  # an OPTIONS for tenant b
    assert r.json() == {"served": "b"}
    preflight = {"Origin": "https://app.test", "Access-Control-Request-Method": "GET"}
    r = await http_request(gw.port, "OPTIONS", "/t", headers=preflight)
    assert r.status == 204 and r.header("access-control-allow-origin") == "https://app.test"


@pytest.mark.asyncio
async def test_an_options_request_that_is_no_preflight_answers_405_where_no_route_takes_options(gateway):
    cors = {"cors": {"origins": ["https://app.test"]}}
    async with EchoUpstream() as upstream:
        integ = {"type": "http", "upstream": "u"}
        gw = await gateway(
            {
                "logging": {"access_log": False},
                "upstreams": {"u": {"targets": [upstream.url]}},
                "routes": [
                    {"path": "/plain", "methods": ["GET"], "integration": integ, "plugins": cors},
                    {"path": "/grouped", "methods": ["GET"], "headers": {"X-T": "a"}, "integration": integ,
                     "plugins": cors},
                    {"path": "/grouped", "methods": ["GET"], "integration": integ, "plugins": cors},
                ],
            }
        )  # fmt: skip
        for path in ("/plain", "/grouped"):
            # Without Origin the cors plugin would not answer it: the GET route would proxy an OPTIONS upstream.
            for headers in ({"Access-Control-Request-Method": "GET"}, {"Origin": "https://app.test"}):
                r = await http_request(gw.port, "OPTIONS", path, headers={**headers, "X-T": "a"})
                assert (r.status, r.header("allow")) == (405, "GET"), (path, headers, r.body)
            preflight = {"Origin": "https://app.test", "Access-Control-Request-Method": "GET"}
            r = await http_request(gw.port, "OPTIONS", path, headers=preflight)
            assert r.status == 204 and r.header("access-control-allow-origin") == "https://app.test", path
        assert upstream.received == []


@pytest.mark.asyncio
async def test_each_route_keeps_its_own_integration_and_plugins(gateway):
    async with EchoUpstream() as stable, EchoUpstream() as canary:
        gw = await gateway(
            {
                "logging": {"access_log": False},
                "upstreams": {"stable": {"targets": [stable.url]}, "canary": {"targets": [canary.url]}},
                "routes": [
                    {"path": "/api/{proxy+}", "integration": {"type": "http", "upstream": "stable"}},
                    {
                        "path": "/api/{proxy+}",
                        "headers": {"X-Canary": "1"},
                        "integration": {"type": "http", "upstream": "canary"},
                        "plugins": {"request-transformer": {"add": {"headers": {"X-Via-Canary": "yes"}}}},
                    },
                ],
            }
        )
        assert (await http_request(gw.port, "GET", "/api/a/b")).status == 200
        assert (await http_request(gw.port, "GET", "/api/c", headers={"X-Canary": "1"})).status == 200
        assert [r.target for r in stable.received] == ["/api/a/b"]
        assert [r.target for r in canary.received] == ["/api/c"]
        assert canary.received[0].header("x-via-canary") == "yes"
        assert stable.received[0].header("x-via-canary") is None
        # A body goes to the route picked, with or without plugins.
        for canary_header in ({"X-Canary": "1"}, {}):
            r = await http_request(gw.port, "POST", "/api/up", headers=canary_header, body=b"payload")
            assert r.status == 200
        assert canary.received[-1].body == b"payload" and stable.received[-1].body == b"payload"


ROUTES = """
routes:
  - {path: /v, integration: {type: mock}}
  - {path: /v, %s, integration: {type: mock}}
"""


@pytest.mark.parametrize(
    ("extra", "where", "says"),
    [
        ("headers: {X-A: {prefix: a, regex: b}}", "$.routes[1].headers.X-A", "exactly one of"),
        ("headers: {X-A: []}", "$.routes[1].headers.X-A", "at least one value"),
        ("headers: {X-A: {regex: '('}}", "$.routes[1].headers.X-A.regex", "not a regular expression"),
        ("headers: {'bad name': a}", "$.routes[1].headers", ""),
        ("name: same", "$.routes[1]", "conflicts with"),  # no headers: two routes for one request
        ("methods: [GET], headers: {X-A: a}", "$.routes[1]", "must list the same methods"),
    ],
)
def test_a_broken_header_route_is_refused_with_its_key_path(extra: str, where: str, says: str):
    with pytest.raises(ConfigError) as info:
        load_config_bytes((ROUTES % extra).encode(), "gw.yaml")
    assert info.value.path.startswith(where) and says in info.value.message, str(info.value)


def test_two_routes_with_the_same_headers_are_refused():
    raw = ROUTES % "headers: {X-A: a}" + "  - {path: /v, headers: {X-A: a}, integration: {type: mock}}\n"
    with pytest.raises(ConfigError, match=r"same path, host, methods and headers as \$\.routes\[1\]"):
        load_config_bytes(raw.encode(), "gw.yaml")


def test_fastgw_routes_prints_the_conditions(tmp_path: Path):
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(ROUTES % "headers: {X-A: [a, b], X-B: {prefix: p}, X-C: {present: false}}")
    out = subprocess.run(
        [sys.executable, "-m", "fastgw", "routes", str(cfg)], capture_output=True, text=True, check=True
    ).stdout
    assert "HEADERS" in out.splitlines()[0]
    assert "X-A=a|b,X-B^=p,!X-C" in out


VALUE = st.text(alphabet="abAB-1", max_size=6).map(str.encode)


@given(sent=st.lists(st.tuples(st.sampled_from([b"x-a", b"x-b"]), VALUE), max_size=4), want=VALUE)
def test_a_rule_matches_as_its_conditions_say(sent: list[tuple[bytes, bytes]], want: bytes):
    values = [v for k, v in sent if k == b"x-a"]
    w = want.decode()
    assert HeaderRule({"X-A": w}).matches(sent) == (want in values)
    assert HeaderRule({"X-A": HeaderMatch(prefix=w)}).matches(sent) == any(v.startswith(want) for v in values)
    assert HeaderRule({"X-A": HeaderMatch(present=True)}).matches(sent) == bool(values)
    assert HeaderRule({"X-A": HeaderMatch(present=False)}).matches(sent) == (not values)
    both = HeaderRule({"X-A": w, "X-B": HeaderMatch(present=True)})
    assert both.matches(sent) == (want in values and any(k == b"x-b" for k, _ in sent))


@pytest.mark.asyncio
async def test_a_cors_preflight_reaches_routes_told_apart_by_headers(gateway):
    cors = {"cors": {"origins": ["https://app.test"], "headers": ["X-Api-Version"]}}
    gw = await gateway(
        {
            "logging": {"access_log": False},
            "routes": [
                {"path": "/items", "methods": ["GET"], "headers": {"X-Api-Version": "1"},
                 "integration": _mock("v1"), "plugins": cors},
                {"path": "/items", "methods": ["GET"], "headers": {"X-Api-Version": "2"},
                 "integration": _mock("v2"), "plugins": cors},
            ],
        }
    )  # fmt: skip
    # The browser's preflight names the header but does not send it.
    preflight = {"Origin": "https://app.test", "Access-Control-Request-Method": "GET",
                 "Access-Control-Request-Headers": "x-api-version"}  # fmt: skip
    r = await http_request(gw.port, "OPTIONS", "/items", headers=preflight)
    assert r.status in (200, 204) and r.header("access-control-allow-origin") == "https://app.test", r.body
    r = await http_request(gw.port, "GET", "/items", headers={"Origin": "https://app.test", "X-Api-Version": "2"})
    assert r.json() == {"served": "v2"} and r.header("access-control-allow-origin") == "https://app.test"


def test_header_values_are_compared_as_utf8():
    rule = HeaderRule({"X-Team": "café", "X-Re": HeaderMatch(regex="日本.*")})
    assert rule.matches([(b"x-team", "café".encode()), (b"x-re", "日本語".encode())])
    assert not rule.matches([(b"x-team", "café".encode("latin-1")), (b"x-re", "日本語".encode())])
    load_config_bytes(ROUTES.replace("%s", "headers: {X-Team: café}").encode(), "gw.yaml")  # loads, no crash


@pytest.mark.asyncio
async def test_when_no_condition_holds_the_request_falls_through_to_a_less_specific_route(gateway):
    async with EchoUpstream() as v2, EchoUpstream() as users, EchoUpstream() as everything:
        gw = await gateway(
            {
                "logging": {"access_log": False},
                "upstreams": {
                    "v2": {"targets": [v2.url]},
                    "users": {"targets": [users.url]},
                    "everything": {"targets": [everything.url]},
                },
                "routes": [
                    {"path": "/users/me", "headers": {"X-Version": "v2"}, "integration": _http("v2", "/me-v2")},
                    {"path": "/users/{id}", "headers": {"X-Version": "v2"}, "integration": _http("v2", "/v2/{id}")},
                    # The next less specific template is itself told apart by headers: its own conditions decide.
                    {
                        "path": "/users/{id}/{proxy+}",
                        "headers": {"X-Tenant": "a"},
                        "integration": _http("users", "/tenant-a/{id}/{proxy}"),
                        "plugins": {"request-transformer": {"add": {"headers": {"X-Route": "tenant-a"}}}},
                    },
                    {"path": "/users/{proxy+}", "integration": _http("users", "/all/{proxy}")},
                    {"path": "/{proxy+}", "integration": _http("everything")},
                ],
            }
        )
        for _ in range(2):  # twice: nothing may leak from one request to the next
            sent = [
                ("/users/me", {"X-Version": "v2"}),
                ("/users/me", {}),  # the static path's routes: no condition holds -> /users/{proxy+}
                ("/users/7", {"X-Version": "v2"}),
                ("/users/7", {"X-Version": "v3"}),  # -> /users/{proxy+}
                ("/users/7/orders", {"X-Tenant": "a"}),
                ("/users/7/orders", {"X-Tenant": "b"}),  # -> /users/{proxy+}: its params, not the switch's
                ("/other", {}),
            ]
            for path, headers in sent:
                r = await http_request(gw.port, "GET", path, headers=headers)
                assert r.status == 200, (path, headers, r.body)
        assert [r.target for r in v2.received] == ["/me-v2", "/v2/7"] * 2
        assert [r.target for r in users.received] == ["/all/me", "/all/7", "/tenant-a/7/orders", "/all/7/orders"] * 2
        assert [r.header("x-route") for r in users.received] == [None, None, "tenant-a", None] * 2
        assert [r.target for r in everything.received] == ["/other"] * 2


@pytest.mark.asyncio
async def test_falling_through_reaches_the_any_host_route_of_the_same_template(gateway):
    gw = await gateway(
        {
            "logging": {"access_log": False},
            "routes": [
                {"path": "/p/{id}", "host": "api.example.com", "headers": {"X-A": "1"}, "integration": _mock("host")},
                {"path": "/p/{id}", "integration": _mock("any-host")},
            ],
        }
    )
    r = await http_request(gw.port, "GET", "/p/1", host="api.example.com", headers={"X-A": "1"})
    assert r.json() == {"served": "host"}
    r = await http_request(gw.port, "GET", "/p/1", host="api.example.com")
    assert r.json() == {"served": "any-host"}


@pytest.mark.asyncio
async def test_priority_orders_routes_with_as_many_conditions(gateway):
    def cfg(beta_priority: int) -> dict:
        return {
            "logging": {"access_log": False},
            "routes": [
                {"path": "/q", "headers": {"X-Version": "v2"}, "integration": _mock("v2")},
                {"path": "/q", "headers": {"X-Beta": "1"}, "priority": beta_priority, "integration": _mock("beta")},
                # More conditions stay first whatever the priorities: specificity decides before priority.
                {"path": "/q", "headers": {"X-Version": "v2", "X-Beta": "1", "X-C": "1"}, "integration": _mock("3")},
            ],
        }

    both = {"X-Version": "v2", "X-Beta": "1"}
    gw = await gateway(cfg(0))
    assert (await http_request(gw.port, "GET", "/q", headers=both)).json() == {"served": "v2"}  # config order
    gw = await gateway(cfg(5))
    assert (await http_request(gw.port, "GET", "/q", headers=both)).json() == {"served": "beta"}
    r = await http_request(gw.port, "GET", "/q", headers={**both, "X-C": "1"})
    assert r.json() == {"served": "3"}


@pytest.mark.asyncio
@pytest.mark.parametrize(("api_type", "status"), [("rest", 403), ("http", 200)])
async def test_under_a_rest_api_the_most_specific_resource_still_decides(gateway, api_type: str, status: int):
    # API Gateway picks a REST API's resource before anything else, so a request whose headers hold for no route
    # of `/items/{id}` does not reach `/{proxy+}`: it is the API's miss. An HTTP API falls through as plain routes.
    routes = [
        {"path": "/items/{id}", "methods": ["GET"], "headers": {"X-A": "1"}, "integration": _mock("a")},
        {"path": "/{proxy+}", "methods": ["GET"], "integration": _mock("rest")},
    ]
    api = {"type": api_type, "routes": routes, "stages": {"Prod": {}}}
    gw = await gateway({"logging": {"access_log": False}, "apis": {"shop": api}})
    r = await http_request(gw.port, "GET", "/Prod/items/1", headers={"X-A": "1"})
    assert r.json() == {"served": "a"}
    r = await http_request(gw.port, "GET", "/Prod/items/1")
    assert r.status == status, r.body
    if status == 200:
        assert r.json() == {"served": "rest"}
    else:
        assert r.json() == {"message": "Missing Authentication Token"}


@pytest.mark.asyncio
async def test_falling_through_twice_stays_under_the_first_routes_path_policy(gateway):
    # Router entries in config order: 0 and 3 read paths under `escaped_slashes: keep`, the rest under the default
    # (reject). `/a/b/c` matches the switch at 1; no condition holds, so it passes 2 (another policy) and reaches the
    # switch at 4, whose condition does not hold either; the second fall-through must still judge by the policy of
    # 1, not by that of 0 (the lowest entry passed over): the keep route at 3 is not for it, `/{proxy+}` is.
    keep = {"escaped_slashes": "keep"}
    gw = await gateway(
        {
            "logging": {"access_log": False},
            "routes": [
                {"path": "/a/b/{y}", "path_policy": keep, "integration": _mock("keep-1")},
                {"path": "/a/b/c", "headers": {"X-A": "1"}, "integration": _mock("switch-1")},
                {"path": "/a/{x}/c", "path_policy": keep, "integration": _mock("keep-2")},
                {"path": "/a/{x}/{z}", "headers": {"X-B": "1"}, "integration": _mock("switch-2")},
                {"path": "/a/{proxy+}", "path_policy": keep, "integration": _mock("keep-3")},
                {"path": "/{proxy+}", "integration": _mock("catch-all")},
            ],
        }
    )
    for _ in range(2):
        assert (await http_request(gw.port, "GET", "/a/b/c", headers={"X-A": "1"})).json() == {"served": "switch-1"}
        assert (await http_request(gw.port, "GET", "/a/b/c", headers={"X-B": "1"})).json() == {"served": "switch-2"}
        r = await http_request(gw.port, "GET", "/a/b/c")
        assert r.status == 200 and r.json() == {"served": "catch-all"}, r.body
        # A path only the keep policy reads still reaches its own routes.
        assert (await http_request(gw.port, "GET", "/a/b/x%2Fy")).json() == {"served": "keep-1"}
