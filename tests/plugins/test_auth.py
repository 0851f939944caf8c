"""key-auth, basic-auth and acl on a real gateway: what the client got, and what the upstream saw (or not)."""

from __future__ import annotations

import base64
import hashlib

import pytest

from fastgw.plugins.basic_auth import hash_password
from fastgw.testing import http_request
from tests.plugins.conftest import TWICE, route_config


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


# -- key-auth ---------------------------------------------------------------------------------------------------


async def test_key_auth_header_query_cookie_and_hidden_credentials(upstream, gateway, consumers):
    consumers["carol"] = {"credentials": {"key-auth": [{"key_sha256": hashlib.sha256(b"carol-key").hexdigest()}]}}
    plugins = {"key-auth": {"in_cookie": True, "hide_credentials": True, "key_names": ["apikey", "x-api-key"]}}
    gw = await gateway(route_config(upstream, plugins, consumers=consumers))
    for _ in TWICE:
        upstream.received.clear()
        r = await http_request(gw.port, "GET", "/a", headers={"X-API-Key": "alice-key"})
        assert r.status == 200
        r = await http_request(gw.port, "GET", "/b?apikey=bob-key&keep=1")
        assert r.status == 200
        r = await http_request(gw.port, "GET", "/c", headers={"Cookie": "theme=dark; apikey=carol-key"})
        assert r.status == 200
        a, b, c = upstream.received
        assert a.header("x-api-key") is None and a.header("x-consumer-username") == "alice"
        assert a.header("x-consumer-groups") == "admin,staff"
        assert b.target == "/b?keep=1" and b.header("x-consumer-username") == "bob"
        assert c.header("cookie") == "theme=dark" and c.header("x-consumer-username") == "carol"


@pytest.mark.parametrize(
    ("headers", "path", "status", "message"),
    [
        ({}, "/x", 401, "No API key found in request"),
        ({"apikey": ""}, "/x", 401, "No API key found in request"),
        ({"apikey": "wrong"}, "/x", 401, "Invalid authentication credentials"),
        ({"apikey": "ALICE-KEY"}, "/x", 401, "Invalid authentication credentials"),  # keys are case-sensitive
        ({"apikey": "alice-key x"}, "/x", 401, "Invalid authentication credentials"),
        ({}, "/x?apikey=nope", 401, "Invalid authentication credentials"),
    ],
)
async def test_key_auth_refusals_never_reach_the_upstream(upstream, gateway, consumers, headers, path, status, message):
    gw = await gateway(route_config(upstream, {"key-auth": {}}, consumers=consumers))
    for _ in TWICE:
        r = await http_request(gw.port, "GET", path, headers=headers)
        assert (r.status, r.json()) == (status, {"message": message})
        assert r.header("www-authenticate") == 'Key realm="fastgw"'
    assert upstream.received == []


def test_key_auth_refuses_a_key_held_twice(tmp_path):
    from fastgw.config.load import ConfigError, load_config_bytes

    yaml = (
        "consumers:\n  a: {credentials: {key-auth: [{key: same}]}}\n  b: {credentials: {key-auth: [{key: same}]}}\n"
        "routes: [{path: /, integration: {type: mock}, plugins: {key-auth: {}}}]\n"
    )
    with pytest.raises(ConfigError, match="hold the same API key"):
        load_config_bytes(yaml.encode(), "gw.yaml")


# -- basic-auth -------------------------------------------------------------------------------------------------


@pytest.fixture
def basic_consumers():
    return {
        "dana": {"groups": ["ops"], "credentials": {"basic-auth": [
            {"username": "dana", "password_hash": hash_password("s3cret pass", iterations=1000)}]}},
    }  # fmt: skip


async def test_basic_auth_passes_and_hides_the_credentials(upstream, gateway, basic_consumers):
    plugins = {"basic-auth": {"hide_credentials": True}}
    gw = await gateway(route_config(upstream, plugins, consumers=basic_consumers))
    for _ in range(3):  # the first is checked in a thread, the next ones are remembered
        upstream.received.clear()
        r = await http_request(gw.port, "GET", "/x", headers=basic("dana", "s3cret pass"))
        assert r.status == 200
        (seen,) = upstream.received
        assert seen.header("authorization") is None and seen.header("x-consumer-username") == "dana"


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "Unauthorized"),
        ({"Authorization": "Bearer abc"}, "Unauthorized"),
        ({"Authorization": "Basic !!!"}, "Invalid authentication credentials"),
        ({"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()}, "Invalid authentication credentials"),
        (basic("dana", "wrong"), "Invalid authentication credentials"),
        (basic("nobody", "s3cret pass"), "Invalid authentication credentials"),
    ],
)
async def test_basic_auth_refusals(upstream, gateway, basic_consumers, headers, message):
    gw = await gateway(route_config(upstream, {"basic-auth": {"realm": "shop"}}, consumers=basic_consumers))
    for _ in TWICE:
        r = await http_request(gw.port, "GET", "/x", headers=headers)
        assert (r.status, r.json()) == (401, {"message": message})
        assert r.header("www-authenticate") == 'Basic realm="shop"'
    assert upstream.received == []


def test_basic_auth_refuses_clear_text_passwords():
    from fastgw.config.load import ConfigError, load_config_bytes

    yaml = (
        "consumers:\n  a: {credentials: {basic-auth: [{username: a, password_hash: hunter2}]}}\n"
        "routes: [{path: /, integration: {type: mock}, plugins: {basic-auth: {}}}]\n"
    )
    with pytest.raises(ConfigError, match="never a password"):
        load_config_bytes(yaml.encode(), "gw.yaml")


# -- acl --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("acl", "key", "status"),
    [
        ({"allow": ["admin"]}, "alice-key", 200),
        ({"allow": ["admin"]}, "bob-key", 403),
        ({"deny": ["admin"]}, "alice-key", 403),
        ({"deny": ["admin"]}, "bob-key", 200),
        ({"allow": ["staff"], "deny": ["admin"]}, "alice-key", 403),
    ],
)
async def test_acl_by_consumer_group(upstream, gateway, consumers, acl, key, status):
    gw = await gateway(route_config(upstream, {"key-auth": {}, "acl": acl}, consumers=consumers))
    for _ in TWICE:
        upstream.received.clear()
        r = await http_request(gw.port, "GET", "/x", headers={"apikey": key})
        assert r.status == status
        if status == 403:
            assert r.json() == {"message": "You cannot consume this service"} and upstream.received == []
        else:
            assert len(upstream.received) == 1


async def test_acl_without_an_auth_plugin_refuses_everyone(upstream, gateway, consumers):
    gw = await gateway(route_config(upstream, {"acl": {"allow": ["admin"]}}, consumers=consumers))
    r = await http_request(gw.port, "GET", "/x", headers={"apikey": "alice-key"})
    assert (r.status, r.json()) == (401, {"message": "Unauthorized"})
    assert upstream.received == []


async def test_the_consumer_reaches_a_function_as_the_authorizer(gateway, consumers, tmp_path):
    from fastgw.testing import running_gateway
    from tests.functions.conftest import ECHO_PY, write

    write(tmp_path / "fn", "echo.py", ECHO_PY)
    cfg = {
        "consumers": consumers,
        "functions": {"echo": {"runtime": "python", "handler": "echo.handler", "code": "fn"}},
        "routes": [
            {"path": "/v1", "integration": {"type": "lambda", "function": "echo", "payload_format": "1.0"},
             "plugins": {"key-auth": {}}},
            {"path": "/v2", "integration": {"type": "lambda", "function": "echo"}, "plugins": {"key-auth": {}}},
        ],
    }  # fmt: skip
    async with running_gateway(cfg, base_dir=tmp_path) as gw:
        for _ in TWICE:
            r = await http_request(gw.port, "GET", "/v1", headers={"apikey": "alice-key"})
            auth = r.json()["event"]["requestContext"]["authorizer"]
            assert auth == {"principalId": "alice", "consumer": "alice", "groups": "admin,staff", "tier": "gold"}
            r = await http_request(gw.port, "GET", "/v2", headers={"apikey": "bob-key"})
            auth = r.json()["event"]["requestContext"]["authorizer"]
            assert auth == {"lambda": {"principalId": "bob", "consumer": "bob", "groups": "staff"}}
            r = await http_request(gw.port, "GET", "/v2")
            assert r.status == 401


async def test_docs_show_the_authorizer_a_function_gets(consumers, tmp_path):
    """docs/functions.md's examples of `requestContext.authorizer` are what a function behind key-auth receives."""
    import json
    import re
    from pathlib import Path

    from fastgw.testing import running_gateway
    from tests.functions.conftest import ECHO_PY, write

    doc = (Path(__file__).resolve().parents[2] / "docs" / "functions.md").read_text()
    section = doc[doc.index("### Who called: `requestContext.authorizer`") :]
    section = section[: section.index("\n#", 1)] if "\n#" in section[1:] else section
    v1, v2 = (json.loads(block) for block in re.findall(r"```json\n(.*?)\n```", section, re.S)[:2])
    write(tmp_path / "fn", "echo.py", ECHO_PY)
    cfg = {
        "consumers": consumers,  # alice: groups admin, staff; custom tier gold, as the docs' example
        "functions": {"echo": {"runtime": "python", "handler": "echo.handler", "code": "fn"}},
        "routes": [
            {"path": "/v1", "integration": {"type": "lambda", "function": "echo", "payload_format": "1.0"},
             "plugins": {"key-auth": {}}},
            {"path": "/v2", "integration": {"type": "lambda", "function": "echo"}, "plugins": {"key-auth": {}}},
        ],
    }  # fmt: skip
    async with running_gateway(cfg, base_dir=tmp_path) as gw:
        for path, documented in (("/v1", v1), ("/v2", v2)):
            r = await http_request(gw.port, "GET", path, headers={"apikey": "alice-key"})
            assert r.json()["event"]["requestContext"]["authorizer"] == documented, path


async def test_basic_auth_with_a_bcrypt_hash(upstream, gateway):
    bcrypt = pytest.importorskip("bcrypt")
    stored = bcrypt.hashpw(b"open sesame", bcrypt.gensalt(rounds=4)).decode()
    consumers = {"erin": {"credentials": {"basic-auth": [{"username": "erin", "password_hash": stored}]}}}
    gw = await gateway(route_config(upstream, {"basic-auth": {}}, consumers=consumers))
    for _ in TWICE:
        r = await http_request(gw.port, "GET", "/x", headers=basic("erin", "open sesame"))
        assert r.status == 200 and upstream.received[-1].header("x-consumer-username") == "erin"
        r = await http_request(gw.port, "GET", "/x", headers=basic("erin", "open sesame!"))
        assert r.status == 401


async def test_basic_auth_with_an_argon2id_hash(upstream, gateway, monkeypatch, capsys):
    # argon2id, the recommended hash (issue 23), as `fastgw hash-password` prints it by default
    import io

    from fastgw.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO("open sesame\n"))
    assert main(["hash-password"]) == 0
    stored = capsys.readouterr().out.strip()
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    consumers = {"erin": {"credentials": {"basic-auth": [{"username": "erin", "password_hash": stored}]}}}
    gw = await gateway(route_config(upstream, {"basic-auth": {}}, consumers=consumers))
    for _ in TWICE:
        r = await http_request(gw.port, "GET", "/x", headers=basic("erin", "open sesame"))
        assert r.status == 200 and upstream.received[-1].header("x-consumer-username") == "erin"
        r = await http_request(gw.port, "GET", "/x", headers=basic("erin", "open sesame!"))
        assert r.status == 401 and r.json() == {"message": "Invalid authentication credentials"}


@pytest.mark.parametrize(
    "stored",
    [
        "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ",  # no hash part
        "$argon2id$v=19$m=lots,t=3,p=4$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2g",
        "$argon2x$v=19$m=65536,t=3,p=4$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2g",
        "$2b$12$tooshort",
        "pbkdf2_sha256$many$c2FsdA$aGFzaA",
    ],
)
def test_a_malformed_hash_is_a_config_error_at_its_credential(stored):
    from fastgw.config.load import ConfigError, load_config_bytes

    yaml = (
        "consumers:\n  a: {credentials: {basic-auth: [{username: b, password_hash: x}, "
        f"{{username: a, password_hash: '{stored}'}}]}}}}\n"
        "routes: [{path: /, integration: {type: mock}, plugins: {basic-auth: {}}}]\n"
    ).replace("password_hash: x", f"password_hash: '{hash_password('pw', iterations=1000)}'")
    with pytest.raises(ConfigError) as err:
        load_config_bytes(yaml.encode(), "gw.yaml")
    assert str(err.value).startswith("gw.yaml: $.consumers.a.credentials.basic-auth[1]: password_hash: ")


def test_hash_password_schemes_verify(monkeypatch, capsys):
    import io

    from fastgw.cli import main
    from fastgw.plugins.basic_auth import verify_password

    for scheme, prefix in (("bcrypt", "$2b$12$"), ("pbkdf2", "pbkdf2_sha256$600000$"), ("argon2id", "$argon2id$")):
        monkeypatch.setattr("sys.stdin", io.StringIO("correct horse\n"))
        assert main(["hash-password", "--scheme", scheme]) == 0
        stored = capsys.readouterr().out.strip()
        assert stored.startswith(prefix), stored
        assert verify_password("correct horse", stored) and not verify_password("correct horse!", stored)
