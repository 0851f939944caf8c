"""Router semantics, run on both implementations (compiled and pure Python)."""

from __future__ import annotations

import pytest

from fastgw.core import COMPILED
from fastgw.core import router as pyrouter

IMPLS = [pytest.param(pyrouter, id="pure")]
if COMPILED:
    from fastgw import _core

    IMPLS.append(pytest.param(_core, id="compiled"))


@pytest.fixture(params=IMPLS)
def impl(request):
    return request.param


def build(impl, *routes):
    r = impl.Router()
    for route in routes:
        r.add(*route[:3], **(route[3] if len(route) > 3 else {}))
    r.freeze()
    return r


def test_precedence_literal_then_param_then_greedy(impl):
    r = build(
        impl,
        ("lit", ["GET"], "/users/me"),
        ("param", ["GET"], "/users/{id}"),
        ("greedy", ["GET"], "/users/{rest+}"),
        ("root-greedy", ["ANY"], "/{proxy+}"),
    )
    assert r.match("GET", "h", "/users/me") == ("lit", {})
    assert r.match("GET", "h", "/users/7") == ("param", {"id": "7"})
    assert r.match("GET", "h", "/users/7/posts") == ("greedy", {"rest": "7/posts"})
    assert r.match("GET", "h", "/other/x/y") == ("root-greedy", {"proxy": "other/x/y"})


def test_backtracking_across_methods(impl):
    r = build(impl, ("me", ["GET"], "/users/me"), ("any-user", ["POST"], "/users/{id}"))
    assert r.match("POST", "h", "/users/me") == ("any-user", {"id": "me"})


def test_backtracking_from_a_dead_literal_branch(impl):
    r = build(impl, ("a", ["GET"], "/a/b/c"), ("p", ["GET"], "/a/{x}/d"))
    assert r.match("GET", "h", "/a/b/d") == ("p", {"x": "b"})


def test_405_lists_allowed_methods_and_404_is_none(impl):
    r = build(impl, ("g", ["GET", "HEAD"], "/items/{id}"), ("d", ["DELETE"], "/items/{key}"))
    assert r.match("PUT", "h", "/items/3") == (None, ("DELETE", "GET", "HEAD"))
    assert r.match("GET", "h", "/nothing") is None


def test_root_and_trailing_slash(impl):
    r = build(impl, ("root", ["GET"], "/"), ("x", ["GET"], "/x"))
    assert r.match("GET", "h", "/") == ("root", {})
    assert r.match("GET", "h", "/x/") == ("x", {})
    assert r.match("GET", "h", "//x") == ("x", {})


def test_greedy_needs_at_least_one_segment(impl):
    r = build(impl, ("g", ["ANY"], "/{proxy+}"))
    assert r.match("GET", "h", "/") is None
    assert r.match("GET", "h", "/a") == ("g", {"proxy": "a"})


def test_host_specificity(impl):
    r = build(
        impl,
        ("any", ["GET"], "/"),
        ("wild", ["GET"], "/", {"host": "*.example.com"}),
        ("deeper", ["GET"], "/", {"host": "*.api.example.com"}),
        ("exact", ["GET"], "/", {"host": "API.example.com"}),
    )
    assert r.match("GET", "api.example.com", "/") == ("exact", {})
    assert r.match("GET", "v1.api.example.com", "/") == ("deeper", {})
    assert r.match("GET", "www.example.com", "/") == ("wild", {})
    assert r.match("GET", "example.com", "/") == ("any", {})


def test_path_precedence_wins_over_host_specificity(impl):
    r = build(impl, ("lit-anyhost", ["GET"], "/a"), ("param-exact", ["GET"], "/{x}", {"host": "h.example"}))
    assert r.match("GET", "h.example", "/a") == ("lit-anyhost", {})


def test_host_mismatch_is_404_not_405(impl):
    r = build(impl, ("h", ["GET"], "/a", {"host": "a.example"}))
    assert r.match("POST", "b.example", "/a") is None


@pytest.mark.parametrize(
    "first,second",
    [
        ((["GET"], "/users/{id}"), (["GET"], "/users/{name}")),
        ((["ANY"], "/a"), (["POST"], "/a")),
        ((["GET", "PUT"], "/{p+}"), (["PUT"], "/{q+}")),
    ],
)
def test_conflicts_are_rejected_naming_both(impl, first, second):
    r = impl.Router()
    r.add("one", *first, name="first-route")
    with pytest.raises(impl.RouteConflict) as err:
        r.add("two", *second, name="second-route")
    assert "first-route" in str(err.value) and "second-route" in str(err.value)


def test_same_shape_different_host_or_method_is_fine(impl):
    r = impl.Router()
    r.add(1, ["GET"], "/a/{x}")
    r.add(2, ["POST"], "/a/{y}")
    r.add(3, ["GET"], "/a/{x}", host="h.example")
    assert len(r) == 3


@pytest.mark.parametrize("bad", ["no-slash", "/a/{x", "/a/x}", "/a/pre{x}", "/{p+}/tail", "/{x}/{x}", "/{1x}"])
def test_invalid_templates(impl, bad):
    with pytest.raises(ValueError):
        impl.Router().add(1, ["GET"], bad)


def test_frozen_lifecycle(impl):
    r = impl.Router()
    with pytest.raises(RuntimeError):
        r.match("GET", "h", "/")
    r.freeze()
    with pytest.raises(RuntimeError):
        r.add(1, ["GET"], "/late")


def test_dump_snapshot(impl):
    r = build(
        impl,
        ("r", ["GET"], "/", {"name": "root"}),
        ("u", ["GET", "PUT"], "/users/{id}", {"name": "user"}),
        ("m", ["GET"], "/users/me", {"name": "me", "host": "*.example.com"}),
        ("p", ["ANY"], "/{proxy+}", {"name": "proxy"}),
    )
    assert r.dump() == (
        "/ [GET@* -> root] [+ANY@* -> proxy]\n  users\n    me [GET@*.example.com -> me]\n    {} [GET,PUT@* -> user]\n"
    )


def test_dump_snapshot_with_constraints_and_priorities(impl):
    r = build(
        impl,
        ("n", ["GET"], "/users/{id:[0-9]+}", {"name": "number"}),
        ("h", ["GET"], "/users/{id:[0-9a-f]{8}}/orders", {"name": "hex", "priority": 3}),
        ("u", ["GET"], "/users/{name}", {"name": "user"}),
        ("p", ["ANY"], "/{proxy+}", {"name": "proxy", "priority": -1}),
    )
    # Constrained children print in the order they are tried: the higher priority first.
    assert r.dump() == (
        "/ [+ANY@* priority -1 -> proxy]\n"
        "  users\n"
        "    {:[0-9a-f]{8}}\n"
        "      orders [GET@* priority 3 -> hex]\n"
        "    {:[0-9]+} [GET@* -> number]\n"
        "    {} [GET@* -> user]\n"
    )


def test_constraint_matches_the_whole_segment_or_falls_through(impl):
    r = build(
        impl,
        ("num", ["GET"], "/users/{id:[0-9]+}"),
        ("any", ["GET"], "/users/{name}"),
        ("rest", ["ANY"], "/{proxy+}"),
        ("only", ["GET"], "/orders/{id:[0-9]+}"),
    )
    assert r.match("GET", "h", "/users/42") == ("num", {"id": "42"})
    assert r.match("GET", "h", "/users/42x") == ("any", {"name": "42x"})  # anchored at both ends
    assert r.match("GET", "h", "/users/x42") == ("any", {"name": "x42"})
    assert r.match("GET", "h", "/users/42/more") == ("rest", {"proxy": "users/42/more"})
    r2 = build(impl, ("only", ["GET"], "/orders/{id:[0-9]+}"))
    assert r2.match("GET", "h", "/orders/7") == ("only", {"id": "7"})
    assert r2.match("GET", "h", "/orders/seven") is None  # 404, not 405: no route has that path
    assert r2.match("POST", "h", "/orders/7") == (None, ("GET",))


def test_constraint_never_spans_segments(impl):
    # A constraint that would match "/" still sees one segment: "a/b" is two segments, so the greedy route takes it.
    r = build(impl, ("any", ["GET"], "/f/{x:.+}"), ("rest", ["GET"], "/f/{p+}"))
    assert r.match("GET", "h", "/f/a") == ("any", {"x": "a"})
    assert r.match("GET", "h", "/f/a/b") == ("rest", {"p": "a/b"})
    r = build(impl, ("slash", ["GET"], "/g/{x:[a-z/]+}/end"))
    assert r.match("GET", "h", "/g/ab/end") == ("slash", {"x": "ab"})
    assert r.match("GET", "h", "/g/a/b/end") is None


def test_literal_beats_constraint_and_constraint_beats_param(impl):
    r = build(
        impl,
        ("plain", ["GET"], "/v/{name}"),
        ("num", ["GET"], "/v/{id:[0-9]+}"),
        ("lit", ["GET"], "/v/123"),
        ("low", ["GET"], "/v/{id:[0-9]}", {"priority": -5}),
    )
    assert r.match("GET", "h", "/v/123") == ("lit", {})
    assert r.match("GET", "h", "/v/124") == ("num", {"id": "124"})
    assert r.match("GET", "h", "/v/5") == ("num", {"id": "5"})  # config order: `num` was added first
    assert r.match("GET", "h", "/v/abc") == ("plain", {"name": "abc"})


def test_priority_orders_overlapping_constraints(impl):
    routes = [("digits", ["GET"], "/i/{id:[0-9]+}"), ("hex", ["GET"], "/i/{id:[0-9a-f]+}")]
    assert build(impl, *routes).match("GET", "h", "/i/12") == ("digits", {"id": "12"})  # config order
    assert build(impl, routes[0], (*routes[1], {"priority": 1})).match("GET", "h", "/i/12") == ("hex", {"id": "12"})
    assert build(impl, routes[0], (*routes[1], {"priority": 1})).match("GET", "h", "/i/ab") == ("hex", {"id": "ab"})
    # A constraint shared by several routes ranks by the highest priority among them.
    r = build(
        impl,
        ("digits", ["GET"], "/i/{id:[0-9]+}"),
        ("hex", ["GET"], "/i/{id:[0-9a-f]+}", {"priority": 2}),
        ("digits-post", ["POST"], "/i/{id:[0-9]+}", {"priority": 5}),
    )
    assert r.match("GET", "h", "/i/12") == ("digits", {"id": "12"})
    # Backtracking: the first constraint that matches but leads nowhere gives way to the next one.
    r = build(impl, ("a", ["GET"], "/j/{id:[0-9]+}/x", {"priority": 9}), ("b", ["GET"], "/j/{id:[0-9a-f]+}/y"))
    assert r.match("GET", "h", "/j/12/y") == ("b", {"id": "12"})


def test_priority_never_overrides_specificity(impl):
    r = build(
        impl,
        ("lit", ["GET"], "/k/me"),
        ("num", ["GET"], "/k/{id:[a-z]+}", {"priority": 100}),
        ("rest", ["GET"], "/k/{p+}", {"priority": 100}),
    )
    assert r.match("GET", "h", "/k/me") == ("lit", {})
    assert r.match("GET", "h", "/k/you") == ("num", {"id": "you"})


def test_same_template_different_constraints_coexist_same_constraint_conflicts(impl):
    r = impl.Router()
    r.add(1, ["GET"], "/a/{id:[0-9]+}")
    r.add(2, ["GET"], "/a/{id:[a-z]+}")
    r.add(3, ["GET"], "/a/{id}")
    with pytest.raises(impl.RouteConflict):
        r.add(4, ["GET"], "/a/{other:[0-9]+}", name="again")


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ("/a/{id:[0-9}", "not a regular expression"),
        ("/a/{id:(}", "not a regular expression"),
        ("/a/{id:}", "empty constraint"),
        ("/a/{p+:.*}", "takes no constraint"),
        ("/a/{id:[0-9]+}x", "whole segment"),
    ],
)
def test_bad_constraints_are_refused(impl, bad, words):
    with pytest.raises(ValueError, match=words):
        impl.Router().add(1, ["GET"], bad)


def test_match_past_skips_routes_and_falls_to_the_next_template(impl):
    r = build(
        impl,
        ("static", ["GET"], "/users/me"),
        ("id", ["GET"], "/users/{id}"),
        ("host", ["GET"], "/users/{id}", {"host": "api.example.com"}),
        ("rest", ["GET"], "/users/{p+}"),
    )
    assert r.match_past("GET", "api.example.com", "/users/me", frozenset({"static"})) == ("host", {"id": "me"})
    assert r.match_past("GET", "api.example.com", "/users/7", frozenset({"host"})) == ("id", {"id": "7"})
    assert r.match_past("GET", "h", "/users/7", frozenset({"id", "host"})) == ("rest", {"p": "7"})
    assert r.match_past("GET", "h", "/users/7", frozenset({"id", "rest"})) is None
