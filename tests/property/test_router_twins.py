"""The router pair (fastgw/core/router.pyx and its pure twin router.py) gives the same answers: hypothesis drives
both with the same route tables and requests (tests/property/test_http_twins.py has `Router.route`, the path policy
and the match in one call)."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastgw import core
from fastgw.core import router as pyrouter

if not core.COMPILED:
    pytest.skip("compiled core not built (FASTGW_NO_EXTENSIONS or no extension)", allow_module_level=True)

from fastgw import _core  # noqa: E402

LITERALS = st.sampled_from(["a", "b", "users", "me", "v1", "x.y", "%2F"])
SEGMENT = st.one_of(
    LITERALS,
    st.sampled_from(["{id}", "{name}", "{p}"]),
    # Constraints: overlapping ones ("7" matches three), one with braces, one that can never match ("/").
    st.sampled_from(["{id:[0-9]+}", "{id:[a-z]+}", "{c:[0-9a-f]{1,2}}", "{s:[^/]*/}", "{n:(?i)Z+}"]),
)
TEMPLATE = st.builds(
    lambda segs, greedy: "/" + "/".join(segs + (["{rest+}"] if greedy else [])),
    st.lists(SEGMENT, max_size=4),
    st.booleans(),
)
METHODS = st.lists(st.sampled_from(["GET", "POST", "PUT", "ANY", "DELETE"]), min_size=1, max_size=3)
HOSTS = st.sampled_from([None, "api.example.com", "*.example.com", "*.api.example.com", "other.org"])
ROUTE = st.tuples(METHODS, TEMPLATE, HOSTS, st.integers(-2, 2))
REQ_PATH = st.builds(
    lambda segs, slash: "/" + "/".join(segs) + ("/" if slash and segs else ""),
    st.lists(st.one_of(LITERALS, st.sampled_from(["7", "zz", "", "ab", "a1", "ZZ", "123"])), max_size=6),
    st.booleans(),
)
REQ_HOST = st.sampled_from(["api.example.com", "www.example.com", "v1.api.example.com", "other.org", "example.com"])
REQ_METHOD = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"])


def _build(impl, routes):
    router = impl.Router()
    outcomes = []
    for i, (methods, path, host, priority) in enumerate(routes):
        try:
            router.add(i, methods, path, host=host, name=f"r{i}", priority=priority)
            outcomes.append("ok")
        except impl.RouteConflict as exc:
            outcomes.append(("conflict", str(exc)))
        except ValueError as exc:
            outcomes.append(("invalid", str(exc)))
    router.freeze()
    return router, outcomes


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    routes=st.lists(ROUTE, max_size=12),
    requests=st.lists(st.tuples(REQ_METHOD, REQ_HOST, REQ_PATH), max_size=25),
    skip=st.frozensets(st.integers(0, 11), max_size=4),
)
def test_router_twins_agree(routes, requests, skip):
    fast, fast_out = _build(_core, routes)
    slow, slow_out = _build(pyrouter, routes)
    assert fast_out == slow_out
    assert fast.dump() == slow.dump()
    # Also ask for each route's own template with concrete values, so hits are common.
    derived = [
        (
            "GET",
            "api.example.com",
            p.replace("{rest+}", "q/r").replace("{id}", "1").replace("{name}", "n").replace("{p}", "p")
            .replace("{id:[0-9]+}", "12").replace("{id:[a-z]+}", "ab").replace("{c:[0-9a-f]{1,2}}", "a1")
            .replace("{n:(?i)Z+}", "zZ"),
        )
        for _, p, _, _ in routes
    ]  # fmt: skip
    for method, host, path in requests + derived:
        found = fast.match(method, host, path)
        assert found == slow.match(method, host, path), (method, host, path)
        if found is not None and found[0] is not None:
            # What a constraint let through matches it whole.
            shape, names = pyrouter.parse_template(routes[found[0]][1])
            kinds = [c for kind, c in shape if kind != pyrouter.LITERAL]
            for name, constraint in zip(names, kinds, strict=True):
                assert not constraint or re.fullmatch(constraint, found[1][name]), (path, name, constraint)
        # Falling through routes told apart by headers: the match as if some routes were not there.
        assert fast.match_past(method, host, path, skip) == slow.match_past(method, host, path, skip)


# Tables whose root has only greedy routes (and maybe "/"): both twins answer them without splitting the path or
# walking the trie (issue 22). The same table with one more route, a literal no request path ever holds, makes the
# root a full node and so takes the general walk: the shortcut must answer exactly as that walk does.
ROOT_ROUTE = st.tuples(
    METHODS, st.sampled_from(["/{proxy+}", "/{rest+}", "/"]), HOSTS, st.integers(-2, 2)
)  # fmt: skip
SLASHY_PATH = st.builds(
    lambda lead, segs, trail: "/" * lead + "/".join(segs) + "/" * trail,
    st.integers(0, 3),
    st.lists(st.sampled_from(["a", "b", "", "x.y", "%2F", "users", "7"]), max_size=5),
    st.integers(0, 2),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    routes=st.lists(ROOT_ROUTE, max_size=5),
    requests=st.lists(st.tuples(REQ_METHOD, REQ_HOST, SLASHY_PATH), min_size=1, max_size=20),
    skip=st.frozensets(st.integers(0, 4), max_size=2),
)
def test_a_root_of_greedy_routes_answers_as_the_walk(routes, requests, skip):
    for impl in (_core, pyrouter):
        short, _ = _build(impl, routes)
        walked, _ = _build(impl, [*routes, (["ANY"], "/never-requested", None, 0)])
        for method, host, path in requests:
            assert short.match(method, host, path) == walked.match(method, host, path), (impl, method, host, path)
            assert short.match_past(method, host, path, skip) == walked.match_past(method, host, path, skip)
    fast, _ = _build(_core, routes)
    slow, _ = _build(pyrouter, routes)
    for method, host, path in requests:
        assert fast.match(method, host, path) == slow.match(method, host, path), (method, host, path)
