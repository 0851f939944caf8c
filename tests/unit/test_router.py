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
