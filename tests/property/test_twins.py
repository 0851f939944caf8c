"""The compiled core and its pure-Python twin give the same answers (hypothesis drives both)."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastgw import _pycore, core

if not core.COMPILED:
    pytest.skip("compiled core not built (FASTGW_NO_EXTENSIONS or no extension)", allow_module_level=True)

from fastgw import _core  # noqa: E402


def test_compiled_core_is_loaded_in_the_normal_run():
    if os.environ.get("FASTGW_NO_EXTENSIONS"):
        pytest.skip("pure core requested")
    assert core.COMPILED is True
    assert core.Router is _core.Router and core.BucketTable is _core.BucketTable
    assert _core.__file__.endswith((".so", ".pyd"))


# Names the compiled module shares with the pure one on purpose: constants, the exceptions both raise (one class,
# so `except Reject` works whichever core runs), and load-time code compiled once (parse_template runs in add).
SHARED = {"ANY", "PATH_BACKSLASH_SEPARATOR", "PATH_SLASHES_DECODE", "PATH_SLASHES_KEEP", "PATH_SLASHES_REJECT",
          "Reject", "RouteConflict", "UpstreamProtocolError", "PluginFailed", "parse_template"}  # fmt: skip


def test_one_export_list_serves_every_twinned_name_from_the_compiled_side():
    # The twins' __all__ lists are the one list: the compiled module defines each of their names, its own
    # compiled class or function (not the pure one handed on), and fastgw.core hands out the compiled object.
    from fastgw import _pyobserve, _pyplugins

    assert sorted(_core.__all__) == sorted(core.TWINNED)
    for name in core.TWINNED:
        fast = getattr(_core, name)
        assert getattr(core, name) is fast, name
        pure = getattr(next(m for m in (_pycore, _pyplugins, _pyobserve) if name in m.__all__), name)
        assert (fast is pure) == (name in SHARED), name


LITERALS = st.sampled_from(["a", "b", "users", "me", "v1", "x.y", "%2F"])
SEGMENT = st.one_of(
    LITERALS,
    st.sampled_from(["{id}", "{name}", "{p}"]),
)
TEMPLATE = st.builds(
    lambda segs, greedy: "/" + "/".join(segs + (["{rest+}"] if greedy else [])),
    st.lists(SEGMENT, max_size=4),
    st.booleans(),
)
METHODS = st.lists(st.sampled_from(["GET", "POST", "PUT", "ANY", "DELETE"]), min_size=1, max_size=3)
HOSTS = st.sampled_from([None, "api.example.com", "*.example.com", "*.api.example.com", "other.org"])
ROUTE = st.tuples(METHODS, TEMPLATE, HOSTS)
REQ_PATH = st.builds(
    lambda segs, slash: "/" + "/".join(segs) + ("/" if slash and segs else ""),
    st.lists(st.one_of(LITERALS, st.sampled_from(["7", "zz", ""])), max_size=6),
    st.booleans(),
)
REQ_HOST = st.sampled_from(["api.example.com", "www.example.com", "v1.api.example.com", "other.org", "example.com"])
REQ_METHOD = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"])


def _build(impl, routes):
    router = impl.Router()
    outcomes = []
    for i, (methods, path, host) in enumerate(routes):
        try:
            router.add(i, methods, path, host=host, name=f"r{i}")
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
)
def test_router_twins_agree(routes, requests):
    fast, fast_out = _build(_core, routes)
    slow, slow_out = _build(_pycore, routes)
    assert fast_out == slow_out
    assert fast.dump() == slow.dump()
    # Also ask for each route's own template with concrete values, so hits are common.
    derived = [
        (
            "GET",
            "api.example.com",
            p.replace("{rest+}", "q/r").replace("{id}", "1").replace("{name}", "n").replace("{p}", "p"),
        )
        for _, p, _ in routes
    ]
    for method, host, path in requests + derived:
        assert fast.match(method, host, path) == slow.match(method, host, path), (method, host, path)


OP = st.tuples(
    st.sampled_from(["a", "b", "c", "d", "e"]),
    st.integers(min_value=-(10**9), max_value=5 * 10**9),  # clock step, sometimes backwards
    st.integers(min_value=0, max_value=12),
)


@settings(max_examples=300, deadline=None)
@given(
    capacity=st.integers(1, 10),
    refill=st.integers(1, 7),
    period=st.sampled_from([1, 1000, 10**9, 3 * 10**9]),
    max_keys=st.integers(1, 6),
    ops=st.lists(OP, max_size=60),
    sweep_every=st.integers(0, 10),
)
def test_bucket_twins_agree(capacity, refill, period, max_keys, ops, sweep_every):
    fast = _core.BucketTable(capacity, refill, period, max_keys)
    slow = _pycore.BucketTable(capacity, refill, period, max_keys)
    now = 10**12
    for i, (key, step, cost) in enumerate(ops):
        now += step
        assert fast.take(key, now, cost) == slow.take(key, now, cost), (i, key, now, cost)
        assert len(fast) == len(slow) <= max_keys
        if sweep_every and i % sweep_every == 0:
            assert fast.sweep(now) == slow.sweep(now)
