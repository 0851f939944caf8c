"""The path the gateway matches is the path the backend serves: auth-bypass paths under every path policy.

A key-auth route `/admin/{proxy+}` and an open `/public/{proxy+}` both proxy to the echo upstream. Paths that a
backend may read as `/admin/...` (encoded or raw separators inside dot-segments, `;` parameters on dot-segments,
double encoding) are sent without a key; whatever the gateway answers, the upstream must never have seen a
request that a loose reading (decoded twice, `\\` as `/`, `;params` dropped, dot-segments resolved) puts under
`/admin`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import pytest

from fastgw.testing import EchoUpstream, RawConnection
from tests.plugins.conftest import TWICE

pytestmark = pytest.mark.asyncio

ATTACKS = {
    "dot-segments": [b"/public/../admin/x", b"/public/%2e%2e/admin/x", b"/public/.%2E/admin/x"],
    "encoded slash": [
        b"/public/..%2Fadmin/x", b"/public/..%2fadmin/x", b"/public/%2e%2e%2Fadmin/x",
        b"/public/x%2F..%2F..%2Fadmin/x", b"/public/a%2F..%2F..%2Fadmin%2Fx", b"/public%2F..%2Fadmin/x",
    ],
    "encoded backslash": [b"/public/..%5Cadmin/x", b"/public/..%5cadmin/x", b"/public/x%5C..%5C..%5Cadmin/x"],
    "backslash": [b"/public/..\\admin/x", b"/public\\..\\admin\\x", b"/public/x\\..\\..\\admin/x"],
    "double encoding": [
        b"/public/%252e%252e/admin/x", b"/public/..%252Fadmin/x", b"/public/..%255Cadmin/x",
        b"/public/%25%32%65%25%32%65/admin/x", b"/public/..%253B/admin/x",
    ],
    "parameter on a dot-segment": [
        b"/public/..;/admin/x", b"/public/..;jsessionid=1/admin/x", b"/public/.;x/../../admin/x",
        b"/public/;x/../admin/x", b"/public/%2e%2e;/admin/x", b"/public/..%3B/admin/x",
    ],
}  # fmt: skip
ALL_ATTACKS = [(cls, t) for cls, targets in ATTACKS.items() for t in targets]

POLICIES: dict[str, dict[str, Any]] = {
    "default": {},
    "keep": {"escaped_slashes": "keep"},
    "decode": {"escaped_slashes": "decode"},
    "decode, backslash separator": {"escaped_slashes": "decode", "backslash": "separator"},
    "keep, backslash separator": {"escaped_slashes": "keep", "backslash": "separator"},
}


def _config(upstream: EchoUpstream, top: dict[str, Any] | None = None, public: dict[str, Any] | None = None):
    integ = {"type": "http", "upstream": "b"}
    public_route: dict[str, Any] = {"path": "/public/{proxy+}", "integration": integ}
    if public is not None:
        public_route["path_policy"] = public
    return {
        "upstreams": {"b": {"targets": [upstream.url]}},
        "consumers": {"ops": {"credentials": {"key-auth": [{"key": "ops-key"}]}}},
        "path_policy": top or {},
        "routes": [{"path": "/admin/{proxy+}", "integration": integ, "plugins": {"key-auth": {}}}, public_route],
    }


def _loose(target: str) -> list[str]:
    """How the loosest backend reads a request target's path."""
    s = unquote(unquote(target.split("?", 1)[0], encoding="latin-1"), encoding="latin-1").replace("\\", "/")
    out: list[str] = []
    for p in s.split("/"):
        p = p.split(";", 1)[0]
        if p in ("", "."):
            continue
        if p == "..":
            if out:
                out.pop()
            continue
        out.append(p)
    return out


async def _get(port: int, target: bytes, key: bool = False) -> tuple[int, Any]:
    conn = await RawConnection.open(port)
    auth = b"apikey: ops-key\r\n" if key else b""
    await conn.send(b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n" + auth + b"Connection: close\r\n\r\n")
    r = await conn.response()
    await conn.close()
    return r.status, r.json() if r.header("content-type") == "application/json" else r.body


def _assert_no_admin_without_key(upstream: EchoUpstream) -> None:
    for seen in upstream.received:
        if _loose(seen.target)[:1] == ["admin"]:
            assert seen.header("apikey") == "ops-key" or seen.header("x-consumer-username") == "ops", seen.target


async def _attack(gw_port: int, upstream: EchoUpstream, policy: str) -> dict[bytes, int]:
    answers = {}
    for _ in TWICE:
        for cls, target in ALL_ATTACKS:
            status, body = await _get(gw_port, target)
            answers[target] = status
            assert status in (400, 401, 404), (policy, cls, target, status, body)
            if status == 400:
                assert body == {"message": "Bad Request"}
            _assert_no_admin_without_key(upstream)
    assert not [r.target for r in upstream.received if _loose(r.target)[:1] == ["admin"]]
    return answers


@pytest.mark.parametrize("policy", sorted(POLICIES))
async def test_no_unauthenticated_request_reaches_admin_under_any_global_policy(policy, upstream, gateway):
    gw = await gateway(_config(upstream, POLICIES[policy]))
    answers = await _attack(gw.port, upstream, policy)
    if policy == "default":
        # The safe default refuses every class outright (plain dot-segments resolve to /admin: 401 there).
        for cls, target in ALL_ATTACKS:
            assert answers[target] == (401 if cls == "dot-segments" else 400), (cls, target)
        assert upstream.received == []
    # With the key, the same kind of path reaches the upstream as the path that was matched.
    status, _ = await _get(gw.port, b"/admin/x", key=True)
    assert status == 200
    assert upstream.received[-1].target == "/admin/x"


@pytest.mark.parametrize("policy", sorted(set(POLICIES) - {"default"}))
async def test_no_unauthenticated_request_reaches_admin_when_only_the_open_route_is_loose(policy, upstream, gateway):
    # The open route reads paths more loosely than the default; the admin route keeps the safe default.
    gw = await gateway(_config(upstream, public=POLICIES[policy]))
    await _attack(gw.port, upstream, policy)


async def test_decode_forwards_the_normalized_path_that_was_matched(upstream, gateway):
    gw = await gateway(_config(upstream, {"escaped_slashes": "decode", "backslash": "separator"}))
    for _ in TWICE:
        upstream.received.clear()
        assert (await _get(gw.port, b"/public/a%2Fb%5Cc?q=%2F"))[0] == 200
        assert upstream.received[-1].target == "/public/a/b/c?q=%2F"  # the query is not the path: as it came
        # Decoded, `..%2F` climbs: the request is judged (and refused) as the /admin path it really is.
        assert await _get(gw.port, b"/public/..%2Fadmin/x") == (401, {"message": "No API key found in request"})
        status, body = await _get(gw.port, b"/public/..%2Fadmin/x", key=True)
        assert (status, body["path"]) == (200, "/admin/x")
        assert upstream.received[-1].target == "/admin/x"


async def test_kept_encoded_slashes_pass_byte_exact(upstream, gateway):
    cfg = _config(upstream)
    keep = {"escaped_slashes": "keep"}
    cfg["routes"].append({"path": "/ids/{id}", "integration": {"type": "http", "upstream": "b"}, "path_policy": keep})
    gw = await gateway(cfg)
    for _ in TWICE:
        upstream.received.clear()
        status, body = await _get(gw.port, b"/ids/org%2Fteam%2Fid-1%5Cx?next=%2Fa")
        assert status == 200
        assert upstream.received[-1].target == "/ids/org%2Fteam%2Fid-1%5Cx?next=%2Fa"
        assert body["path"] == "/ids/org%2Fteam%2Fid-1%5Cx"
        # The other routes keep the default: the same bytes are refused there and never forwarded.
        assert await _get(gw.port, b"/public/org%2Fteam") == (400, {"message": "Bad Request"})
        assert await _get(gw.port, b"/ids/..%2Fadmin") == (400, {"message": "Bad Request"})
        assert len(upstream.received) == 1
