"""The compiled steps of the built-in plugins (fastgw._core), their pure twins (fastgw.core.steps) and the plugins'
own phases give the same answers.

For random requests (headers, query strings, client addresses, methods) and configurations, each plugin's phase runs
three ways: the compiled step on the compiled context, the pure step on the pure context, and the plugin's Python
phase (the oracle) on the pure context. The refusal (status, headers, body), the consumer and credential, ctx.vars,
the headers set for the response, and the upstream request the changes are written into must all match.
"""

from __future__ import annotations

import re
from contextlib import ExitStack
from typing import Any
from unittest.mock import patch

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastgw import core
from fastgw.core import http as pyhttp
from fastgw.core import phases as pyphases
from fastgw.core import steps as pysteps
from fastgw.plugins import acl, cors, ip_restriction, key_auth, request_id, transformer
from fastgw.plugins.base import Response
from fastgw.plugins.consumers import Consumer

if not core.COMPILED:
    pytest.skip("compiled core not built (FASTGW_NO_EXTENSIONS or no extension)", allow_module_level=True)

from fastgw import _core  # noqa: E402

STEP_NAMES = ("KeyAuthStep", "RequestIdStep", "HeaderStep", "AclStep", "IpStep", "CorsStep", "CorsFilterStep")
MODULES = (key_auth, request_id, transformer, acl, ip_restriction, cors)


class RouteInfo:
    methods = ("GET", "OPTIONS")
    stage_variables: dict[str, str] = {}
    name = "r"


def context(runtime: Any, http: Any, raw: list[tuple[bytes, bytes]], query: bytes | None, method: str = "GET",
            ip: str = "10.0.0.1") -> tuple[Any, Any]:  # fmt: skip
    req = http.Request()
    req.method = method
    req.headers = list(raw)
    req.query = query
    req.complete = True
    return req, runtime.new_context(req, ip, {}, RouteInfo(), runtime.PhaseChain())


def outcome(result: Any) -> Any:
    if result is None:
        return None
    assert isinstance(result, Response)
    return (result.status, result.headers, result.body)


def run_three(plugin: Any, phase: str, conf: Any, raw: list[tuple[bytes, bytes]], query: bytes | None,
              method: str = "GET", ip: str = "10.0.0.1", before: Any = None,
              consumer: Any = None, fresh: Any = None) -> list[Any]:  # fmt: skip
    """The phase as the compiled step, the pure step and the plugin's own phase: what each leaves behind (each with
    a plugin of its own when `fresh` makes them)."""
    results = []
    for way in ("compiled", "pure", "phase"):
        if fresh is not None:
            plugin = fresh()
        runtime, http = (_core, _core) if way == "compiled" else (pyphases, pyhttp)
        req, ctx = context(runtime, http, raw, query, method, ip)
        ctx._consumer = consumer
        if before is not None:
            before(ctx)
        with ExitStack() as stack:
            if way == "pure":  # the plugin module makes its step from the pure twin
                for mod in MODULES:
                    for name in STEP_NAMES:
                        if hasattr(mod, name):
                            stack.enter_context(patch.object(mod, name, getattr(pysteps, name)))
            step = plugin.step(phase, conf)
        if way == "phase":
            fn = getattr(plugin, phase)
        else:
            assert step is not None, f"{plugin.name} gave no step for this configuration"
            assert (way == "compiled") == isinstance(step, _core.Step)
            fn = step
        try:
            result: Any = outcome(fn(ctx, conf))
        except Exception as exc:  # noqa: BLE001 - an error is an answer too, compared as such
            result = (type(exc).__name__, str(exc))
        runtime.finish_phases(ctx, req, frozenset(), None)
        consumer_name = ctx.consumer.name if ctx.consumer is not None else None
        seen = sorted(getattr(plugin, "seen", ()))
        response = list(ctx.response.headers) if ctx.response is not None else None
        results.append([result, consumer_name, ctx.credential, dict(ctx.vars), ctx._reply_headers, req.headers,
                        req.query, seen, response])  # fmt: skip
    return results


# -- key-auth -------------------------------------------------------------------------------------------------

KEY_CONFS = [
    {},
    {"in_header": False},
    {"key_names": ["x-api-key"]},
    {"key_names": ["x-api-key", "apikey"]},
    {"key_names": ["apikey", "token"], "in_header": False},
    {"in_query": False},
    {"key_names": ["X-Key"], "in_query": False},
]
KEY_HEADERS = st.lists(
    st.tuples(st.sampled_from([b"apikey", b"x-api-key", b"x_api_key", b"x-key", b"token", b"host"]),
              st.sampled_from([b"k1", b"k2", b"bad", b"", b"k\xc3\xa91"])),
    max_size=3,
)  # fmt: skip
QUERY_PARTS = st.sampled_from(
    ["apikey=k1", "apikey=k2", "apikey=", "apikey", "token=k1", "x=1", "api%6Bey=k1", "apikey=k%31", "a+b=c",
     ";apikey=k1", "apikey=bad", "=k1", "x-api-key=k1", "apikey=k1=2", "apikey=\xe9"]
)  # fmt: skip
QUERIES = st.one_of(st.none(), st.lists(QUERY_PARTS, max_size=3).map(lambda p: "&".join(p).encode("latin-1")))


def key_plugin() -> Any:
    plugin = key_auth.KeyAuth()
    alice = Consumer("alice", ("staff",), {})
    bob = Consumer("bob", (), {})
    plugin.credentials([(alice, key_auth.KeyCredential(key="k1")), (bob, key_auth.KeyCredential(key="k2")),
                        (alice, key_auth.KeyCredential(key="ké1"))])  # fmt: skip
    plugin.seen["k1"] = alice  # met before: the step answers; k2 is not, the phase does (and remembers it)
    return plugin


@settings(max_examples=400, deadline=None)
@given(conf=st.sampled_from(KEY_CONFS), raw=KEY_HEADERS, query=QUERIES)
def test_key_auth(conf, raw, query):
    prepared = key_plugin().prepare(msgspec.convert(conf, key_auth.KeyAuthConfig))
    results = run_three(None, "access", prepared, raw, query, fresh=key_plugin)
    assert results[0] == results[1] == results[2]


def test_key_auth_step_forgets_the_keys_met_when_credentials_load_again():
    """The step holds the plugin's dict of keys met: a reload of the credentials clears it in place, so a key met
    before and since taken from its consumer is the phase's again (refused), on both twins."""
    for runtime, http, twin in ((_core, _core, _core), (pyphases, pyhttp, pysteps)):
        plugin = key_plugin()
        prepared = plugin.prepare(msgspec.convert({"in_header": False}, key_auth.KeyAuthConfig))
        step = twin.KeyAuthStep(plugin, prepared, plugin.access, None, prepared.wire, ("apikey",), True)
        req, ctx = context(runtime, http, [], b"apikey=k1")
        assert step(ctx, prepared) is None and ctx.consumer.name == "alice"
        plugin.credentials([(Consumer("carol", (), {}), key_auth.KeyCredential(key="k3"))])
        req, ctx = context(runtime, http, [], b"apikey=k1")
        refused = step(ctx, prepared)
        assert ctx.consumer is None and isinstance(refused, Response) and refused.status == 401


# -- request-id -----------------------------------------------------------------------------------------------

GENERATED = re.compile(r"^[0-9a-f-]{36}#\d+$")


def normalized(results: list[Any], incoming: list[bytes]) -> list[Any]:
    """The generated ids (each side counts its own) replaced by one word."""
    out = []
    for r in results:
        rid = r[3].get("request_id")
        text = repr(r)
        if rid is not None and rid.encode() not in incoming:
            assert GENERATED.match(rid), rid
            text = text.replace(rid, "<generated>")
        out.append(text)
    return out


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(["X-Request-Id", "x-correlation-id"]),
    keep=st.booleans(),
    echo=st.booleans(),
    raw=st.lists(
        st.tuples(st.sampled_from([b"x-request-id", b"x-correlation-id", b"host"]),
                  st.sampled_from([b"abc-1", b"a b", b"", b"x" * 200, b"x" * 201, b"\xc3\xa9", b"a#b:c/d+e=f.g_h"])),
        max_size=3,
    ),
    early=st.sampled_from([None, "set", "touch", "build"]),
)  # fmt: skip
def test_request_id(name, keep, echo, raw, early):
    plugin = request_id.RequestId()
    conf = plugin.prepare(request_id.RequestIdConfig(header_name=name, keep_incoming=keep, echo_downstream=echo))
    results = run_three(plugin, "rewrite", conf, raw, b"a=1", before=EARLY[early])
    norm = normalized(results, [v for _, v in raw])
    assert norm[0] == norm[1] == norm[2]


def _set(ctx: Any) -> None:
    ctx.set_upstream_header("X-Bench-Chain", "pre")


def _touch(ctx: Any) -> None:
    ctx.upstream_request.query["q"] = ["1"]  # the upstream request exists, its header map does not


def _build(ctx: Any) -> None:
    ctx.upstream_request.headers.add("x-built", "1")


EARLY = {None: None, "set": _set, "touch": _touch, "build": _build}


# -- request-transformer --------------------------------------------------------------------------------------

HEADER_OPS = st.fixed_dictionaries(
    {
        "remove": st.fixed_dictionaries({"headers": st.lists(st.sampled_from(["x-a", "X-B", "host"]), max_size=2)}),
        "set": st.fixed_dictionaries({"headers": st.dictionaries(st.sampled_from(["x-a", "X-C"]),
                                                                  st.sampled_from(["1", "é", ""]), max_size=2)}),
        "add": st.fixed_dictionaries({"headers": st.dictionaries(st.sampled_from(["x-a", "x-bench-chain", "X-B"]),
                                                                  st.sampled_from(["on", "2"]), max_size=2)}),
    }
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    ops=HEADER_OPS,
    raw=st.lists(st.tuples(st.sampled_from([b"x-a", b"x-b", b"x-bench-chain", b"host"]), st.just(b"c")), max_size=3),
    early=st.sampled_from([None, "set", "touch", "build"]),
)
def test_request_transformer_headers(ops, raw, early):
    plugin = transformer.RequestTransformer()
    conf = plugin.prepare(msgspec.convert(ops, transformer.RequestTransformerConfig))
    if conf[0] is None:
        return  # nothing to do: no phase work, no step
    results = run_three(plugin, "access", conf, raw, None, before=EARLY[early])
    assert results[0] == results[1] == results[2]


def test_request_transformer_gives_no_step_for_what_it_does_not_cover():
    plugin = transformer.RequestTransformer()
    for ops in ({"set": {"headers": {"x-a": "$context.request_id"}}}, {"add": {"query": {"a": "1"}}},
                {"rename": {"headers": {"a": "b"}}}, {"append": {"headers": {"a": "b"}}}, {"path": "/x"},
                {"set": {"headers": {"x-a": "a\r\nb"}}}):  # fmt: skip
        conf = plugin.prepare(msgspec.convert(ops, transformer.RequestTransformerConfig))
        assert plugin.step("access", conf) is None, ops
    conf = plugin.prepare(msgspec.convert({"add": {"headers": {"x-a": "1"}}}, transformer.RequestTransformerConfig))
    assert isinstance(plugin.step("access", conf), _core.HeaderStep)


# -- acl, ip-restriction, cors --------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    allow=st.lists(st.sampled_from(["staff", "admin"]), max_size=2),
    deny=st.lists(st.sampled_from(["banned", "staff"]), max_size=2),
    groups=st.one_of(st.none(), st.lists(st.sampled_from(["staff", "admin", "banned", "x"]), max_size=3)),
)
def test_acl(allow, deny, groups):
    plugin = acl.Acl()
    try:
        conf = plugin.prepare(acl.AclConfig(allow=allow, deny=deny))
    except ValueError:
        return
    consumer = Consumer("c", tuple(groups), {}) if groups is not None else None
    results = run_three(plugin, "access", conf, [], None, consumer=consumer)
    assert results[0] == results[1] == results[2]


ADDRESSES = st.one_of(
    st.sampled_from(["10.0.0.1", "10.1.2.3", "192.168.1.9", "127.0.0.1", "0.0.0.0", "255.255.255.255", "010.0.0.1",
                     "10.0.0.256", "10.0.0", "10.0.0.1.2", "::1", "2001:db8::1", "::ffff:10.0.0.1", "", "x",
                     "1.2.3.4 ", "1..2.3", "१.2.3.4", "1.2.3.0004"]),
    st.tuples(*[st.integers(0, 300)] * 4).map(lambda t: ".".join(map(str, t))),
)  # fmt: skip
NETWORKS = st.lists(st.sampled_from(["10.0.0.0/8", "192.168.1.9", "::/0", "2001:db8::/32", "0.0.0.0/0",
                                     "127.0.0.1/32", "10.1.0.0/16"]), max_size=3)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(allow=NETWORKS, deny=NETWORKS, ip=ADDRESSES)
def test_ip_restriction(allow, deny, ip):
    plugin = ip_restriction.IpRestriction()
    try:
        conf = plugin.prepare(ip_restriction.IpRestrictionConfig(allow=allow, deny=deny, status=451))
    except ValueError:
        return
    results = run_three(plugin, "access", conf, [], None, ip=ip)
    assert results[0] == results[1] == results[2]
    assert pysteps.parse_ipv4(ip) == _core.parse_ipv4(ip)


CORS_HEADERS = st.lists(
    st.tuples(st.sampled_from([b"origin", b"access-control-request-method", b"access-control-request-headers"]),
              st.sampled_from([b"https://a.example", b"https://b.example", b"GET", b"x-a"])),
    max_size=3,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    origins=st.sampled_from([["*"], ["https://a.example"], ["~^https://[a-z]\\.example$"]]),
    method=st.sampled_from(["GET", "OPTIONS", "POST"]),
    raw=CORS_HEADERS,
    preflight=st.booleans(),
)
def test_cors(origins, method, raw, preflight):
    plugin = cors.Cors()
    conf = plugin.prepare(cors.CorsConfig(origins=origins, exposed_headers=["x-b"]))
    results = run_three(plugin, "rewrite", conf, raw, None, method=method)
    assert results[0] == results[1] == results[2]

    def responded(ctx: Any) -> None:
        runtime = _core if isinstance(ctx, _core.Context) else pyphases
        ctx.response = runtime.ResponseHead(200, runtime.Headers([("Vary", "Accept")]))
        if preflight:
            ctx.vars["cors_preflight"] = True

    results = run_three(plugin, "header_filter", conf, raw, None, method=method, before=responded)
    assert results[0] == results[1] == results[2]


def test_header_filter_step_changes_the_response():
    """The header_filter step hands a request with Origin to the phase, which sets the CORS headers."""
    plugin = cors.Cors()
    conf = plugin.prepare(cors.CorsConfig(origins=["https://a.example"]))
    for runtime, http, twin in ((_core, _core, _core), (pyphases, pyhttp, pysteps)):
        req, ctx = context(runtime, http, [(b"origin", b"https://a.example")], None)
        ctx.response = runtime.ResponseHead(200, runtime.Headers())
        twin.CorsFilterStep(conf, plugin.header_filter)(ctx, conf)
        assert list(ctx.response.headers) == [("vary", "Origin"), ("access-control-allow-origin", "https://a.example")]


def test_next_request_id_counts_on_both_twins():
    for twin in (_core, pysteps):
        a, b = twin.next_request_id(), twin.next_request_id()
        assert GENERATED.match(a) and a.split("#")[0] == b.split("#")[0]
        assert int(b.split("#")[1]) == int(a.split("#")[1]) + 1


# -- the steps' header changes, written into the request --------------------------------------------------------

WIRE_NAMES = st.sampled_from([b"x-a", b"x-b", b"x-user", b"x-groups", b"host"])


@settings(max_examples=300, deadline=None)
@given(
    raw=st.lists(st.tuples(WIRE_NAMES, st.sampled_from([b"c", b"d"])), max_size=4),
    sets=st.lists(st.tuples(WIRE_NAMES, st.sampled_from([b"1", b"2", None])), max_size=4),
    strip=st.sampled_from([frozenset(), frozenset({b"x-user", b"x-groups"})]),
    keys=st.sampled_from([None, (b"x-user", b"x-groups"), (b"x-user", None)]),
    authenticated=st.booleans(),
)
def test_step_changes_are_written_as_the_spec_writes_them(raw, sets, strip, keys, authenticated):
    """Sets and removals the steps made (upstream_set, the header map never built), then the strip of the
    consumer headers and the consumer's own: both twins' finish_phases write the same headers, in the same order
    (test_phases_twins.py's test_consumer_headers sets through the context's API, which never removes)."""
    consumer = Consumer("alice", ("staff", "admin"), {})
    results = []
    for runtime, http, twin in ((_core, _core, _core), (pyphases, pyhttp, pysteps)):
        req, ctx = context(runtime, http, raw, None)
        ctx._consumer = consumer if authenticated else None
        for key, value in sets:
            twin.upstream_set(ctx, key, value)
        runtime.finish_phases(ctx, req, strip, keys)
        results.append(req.headers)
    assert results[0] == results[1]


def test_the_client_request_made_late_is_what_the_client_sent():
    """The steps never make the context's ClientRequest; a phase that asks for it after they changed the upstream
    request (a header_filter, the log phase) still sees the headers and query the client sent."""
    raw = [(b"host", b"a"), (b"x-request-id", b"given"), (b"x-a", b"c")]
    for runtime, http, twin in ((_core, _core, _core), (pyphases, pyhttp, pysteps)):
        req, ctx = context(runtime, http, raw, b"apikey=k1", ip="10.0.0.7")
        twin.RequestIdStep("X-Request-Id", False, True)(ctx, None)
        twin.HeaderStep(((pysteps.REMOVE, b"x-a", None), (pysteps.SET, b"x-b", b"1")))(ctx, None)
        runtime.finish_phases(ctx, req, frozenset({b"x-user"}), None)
        assert req.headers != raw  # the upstream request changed...
        seen = ctx.request  # ...the client's request, made now, did not
        assert list(seen.headers.raw()) == raw and seen.query_string == "apikey=k1"
        assert (seen.client_ip, seen.method, seen.params, seen.body) == ("10.0.0.7", "GET", {}, None)
        assert ctx.request is seen


def test_the_client_request_never_shows_the_consumer_headers_the_gateway_added():
    """With nothing else changed (the upstream request still the client's own header list), naming the consumer
    for the upstream must not write into what ctx.request reads: a header_filter or log phase would see the
    gateway's x-consumer-username as if the client had sent it."""
    from fastgw.plugins.consumers import Consumer

    raw = [(b"host", b"a"), (b"accept", b"*/*")]
    keys = (b"x-consumer-username", b"x-consumer-groups")
    for runtime, http in ((_core, _core), (pyphases, pyhttp)):
        req, ctx = context(runtime, http, raw, None)
        ctx._consumer = Consumer("alice", ("gold",), {})
        runtime.finish_phases(ctx, req, frozenset(keys), keys)
        assert req.headers == [*raw, (keys[0], b"alice"), (keys[1], b"gold")]  # the upstream is told...
        assert list(ctx.request.headers.raw()) == raw  # ...the client's request is what it sent
        assert ctx.request.header("x-consumer-username") is None
