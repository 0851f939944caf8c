"""Two gateways on one etcd (`store: {etcd: ...}`), on a real etcd: the store's deployment serves on both, a write
through either one's admin API is served by the other within a second, a write based on a stale deployment is
refused, and one that does not load on a gateway leaves it serving the last good one."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest

from fastgw.client import http_request
from fastgw.config.load import load_config
from fastgw.server.server import Server
from tests.etcdproc import EtcdCluster

CONFIG = """\
admin: {{host: 127.0.0.1, port: 0}}
logging: {{access_log: false}}
store: {{etcd: {{endpoints: ['{endpoint}'], prefix: '{prefix}'}}}}
routes:
  - name: v
    path: /v
    integration: {{type: mock, body: {body}}}
"""


async def _gateway(tmp_path: Path, name: str, node: EtcdCluster, prefix: str, body: str) -> Server:
    path = tmp_path / f"{name}.yaml"
    path.write_text(CONFIG.format(endpoint=node.endpoints[0], prefix=prefix, body=body))
    server = Server(load_config(path), "127.0.0.1", 0)
    await server.start()
    return server


async def _put(server: Server, path: str, body: object, **headers: str):
    assert server.admin is not None
    hdrs = {"content-type": "application/json", **{k.replace("_", "-"): v for k, v in headers.items()}}
    return await http_request(server.admin.port, "PUT", path, headers=hdrs, body=orjson.dumps(body), host="127.0.0.1")


async def _until_body(server: Server, path: str, body: bytes, timeout: float = 5.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if (await http_request(server.port, "GET", path)).body == body:
            return time.monotonic() - start
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} never answered {body!r}")


async def test_two_gateways_share_their_deployments(tmp_path: Path, node: EtcdCluster):
    prefix = f"/t-{uuid.uuid4().hex[:8]}"
    a = await _gateway(tmp_path, "a", node, prefix, "from-a")
    # The second one's file says otherwise: the store already holds a deployment, and it wins.
    b = await _gateway(tmp_path, "b", node, prefix, "from-b-file")
    try:
        assert (await http_request(b.port, "GET", "/v")).body == b"from-a"
        # A write through A reaches B.
        r = await _put(a, "/routes/w", {"path": "/w", "integration": {"type": "mock", "body": "written-on-a"}})
        assert r.status == 201, r.body
        took = await _until_body(b, "/w", b"written-on-a")
        assert took < 1.5
        # NOTE: the workers swap a deployment in a moment before the plane records it (a write on the ETag read in
        # between is refused with 409, never lost): the plane's record follows within that moment.
        deadline = time.monotonic() + 1.0
        while b.plane is None or b.plane.id != r.json()["deployment"]:
            assert time.monotonic() < deadline, (b.plane and b.plane.id, r.json()["deployment"])
            await asyncio.sleep(0.01)
        # And the other way; a write based on what no longer serves is refused.
        stale = r.header("etag")
        r = await _put(b, "/routes/w", {"path": "/w", "integration": {"type": "mock", "body": "written-on-b"}})
        assert r.status == 200
        await _until_body(a, "/w", b"written-on-b")
        r = await _put(a, "/routes/w", {"path": "/w", "integration": {"type": "mock"}}, if_match=stale or "")
        assert r.status == 409
        assert (await http_request(b.port, "GET", "/w")).body == b"written-on-b"
    finally:
        await a.shutdown(timeout=1.0)
        await b.shutdown(timeout=1.0)


async def test_serve_store_joins_a_fleet_with_its_workers(tmp_path: Path, node: EtcdCluster):
    from tests.integration.gwprocess import GatewayProcess

    prefix = f"/t-{uuid.uuid4().hex[:8]}"
    a = await _gateway(tmp_path, "a", node, prefix, "from-a")
    plain = tmp_path / "plain.yaml"  # no store section: --store gives it
    plain.write_text("logging: {access_log: false}\nroutes:\n  - path: /v\n    integration: {type: mock, body: own}\n")
    url = f"etcd://{node.endpoints[0].removeprefix('http://')}{prefix}"
    gw = await GatewayProcess(plain, "--workers", "2", "--store", url).start()
    try:
        deadline = time.monotonic() + 30
        while sum("ready on port" in line for line in gw.log) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert {(await http_request(gw.port, "GET", "/v")).body for _ in range(10)} == {b"from-a"}
        r = await _put(a, "/routes/v", {"path": "/v", "integration": {"type": "mock", "body": "second"}})
        assert r.status == 200, r.body
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            if {(await http_request(gw.port, "GET", "/v")).body for _ in range(10)} == {b"second"}:
                break
            await asyncio.sleep(0.05)
        assert {(await http_request(gw.port, "GET", "/v")).body for _ in range(20)} == {b"second"}, gw.log
    finally:
        await gw.stop()
        await a.shutdown(timeout=1.0)


def _fastgw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fastgw", *args], capture_output=True, text=True, timeout=60)


def _newest(node: EtcdCluster, prefix: str) -> list[dict[str, object]]:
    key = base64.b64encode(f"{prefix}/newest".encode()).decode()
    return list(node.call("/v3/kv/range", {"key": key}).get("kvs", []))


async def test_serve_store_without_config_waits_for_the_first_deployment(tmp_path: Path, node: EtcdCluster):
    """A gateway joining an empty store with no CONFIG answers 503 and writes nothing (the quickstart is not a
    fleet's config); `fastgw deploy FILE --store URL` with no gateway at hand then reaches it."""
    from tests.integration.gwprocess import GatewayProcess

    prefix = f"/t-{uuid.uuid4().hex[:8]}"
    url = f"etcd://{node.endpoints[0].removeprefix('http://')}{prefix}"
    gw = await GatewayProcess(None, "--store", url).start()
    try:
        for path in ("/", "/health", "/api/users/42"):
            r = await http_request(gw.port, "GET", path)
            assert (r.status, r.json()) == (503, {"message": "No deployment yet"}), path
        assert any("answering 503 until one is deployed" in line for line in gw.log)
        gw.signal(signal.SIGHUP)  # a reload has no file to read: the quickstart does not go into the store either
        deadline = time.monotonic() + 5
        while not any("nothing to reload" in line for line in gw.log):
            assert time.monotonic() < deadline, gw.log
            await asyncio.sleep(0.05)
        assert _newest(node, prefix) == []

        f = tmp_path / "fleet.yaml"
        f.write_text(
            "logging: {access_log: false}\nroutes:\n  - {name: v, path: /v, integration: {type: mock, body: one}}\n"
        )
        r = await asyncio.to_thread(_fastgw, "deploy", str(f), "--store", url)
        assert r.returncode == 0, r.stderr
        assert len(_newest(node, prefix)) == 1
        await _until_status(gw.port, "/v", b"one")
        assert (await http_request(gw.port, "GET", "/health")).status == 404
    finally:
        await gw.stop()


async def _until_status(port: int, path: str, body: bytes, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (await http_request(port, "GET", path)).body == body:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} never answered {body!r}")


def test_deploy_and_diff_against_the_store_without_a_gateway(tmp_path: Path, node: EtcdCluster):
    prefix = f"/t-{uuid.uuid4().hex[:8]}"
    url = f"etcd://{node.endpoints[0].removeprefix('http://')}{prefix}"
    f = tmp_path / "fleet.yaml"
    f.write_text("routes:\n  - {name: v, path: /v, integration: {type: mock, body: one}}\n")
    r = _fastgw("diff", str(f), "--store", url)
    assert r.returncode == 1 and "store is empty" in r.stdout and "+ $.routes" in r.stdout, r
    r = _fastgw("deploy", str(f), "--store", url, "-m", "from CI")
    assert r.returncode == 0, r.stderr
    first = _newest(node, prefix)[0]
    first_id = base64.b64decode(str(first["value"])).decode()
    assert first_id in r.stdout
    assert _fastgw("diff", str(f), "--store", url).returncode == 0
    assert "unchanged" in _fastgw("deploy", str(f), "--store", url).stdout

    # A broken file is refused before the store is touched, with its key path.
    bad = tmp_path / "bad.yaml"
    bad.write_text("routes:\n  - {name: v, path: /v, integration: {type: mock, status: 99}}\n")
    r = _fastgw("deploy", str(bad), "--store", url)
    assert r.returncode == 2 and "$.routes[0]" in r.stderr, r.stderr

    f.write_text("routes:\n  - {name: v, path: /v, integration: {type: mock, body: two}}\n")
    r = _fastgw("diff", str(f), "--store", url)
    assert r.returncode == 1 and '~ $.routes[name=v].integration.body: "one" -> "two"' in r.stdout, r.stdout
    # --if-match pins what the deploy was based on: a stale one writes nothing.
    r = _fastgw("deploy", str(f), "--store", url, "--if-match", "0123456789abcdef")
    assert r.returncode == 1 and "409" in r.stderr, r.stderr
    assert _newest(node, prefix)[0]["mod_revision"] == first["mod_revision"]
    r = _fastgw("deploy", str(f), "--store", url, "--if-match", first_id)
    assert r.returncode == 0, r.stderr
    assert _newest(node, prefix)[0]["mod_revision"] != first["mod_revision"]
    assert _fastgw("diff", str(f), "--store", url).returncode == 0

    r = _fastgw("deploy", str(f), "--store", "etcd://127.0.0.1:1/x")
    assert r.returncode == 2 and "unavailable" in r.stderr, r.stderr

    # Over etcd's request limit (random text does not compress): a clear refusal, the store untouched.
    big = tmp_path / "big.yaml"
    noise = base64.b64encode(os.urandom(1_700_000)).decode()
    big.write_text(f"routes:\n  - {{name: v, path: /v, integration: {{type: mock, body: {noise}}}}}\n")
    before = _newest(node, prefix)[0]["mod_revision"]
    r = _fastgw("deploy", str(big), "--store", url)
    assert r.returncode == 2 and "refused the deployment" in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert _newest(node, prefix)[0]["mod_revision"] == before


async def test_a_gateway_keeps_a_local_copy_by_default(tmp_path: Path, node: EtcdCluster, monkeypatch):
    """Without `local_copy` a gateway still keeps the fleet's newest deployment in its state folder (readable by its
    owner only), so a restart while etcd is away has something to serve; `local_copy: ""` keeps none."""
    from fastgw.control.plane import default_local_copy

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    prefix = f"/t-{uuid.uuid4().hex[:8]}"
    gw = await _gateway(tmp_path, "a", node, prefix, "kept")
    try:
        copy = Path(default_local_copy(node.endpoints, prefix))
        assert copy.parent == tmp_path / "state" / "fastgw"
        deadline = time.monotonic() + 5
        while not copy.exists():
            assert time.monotonic() < deadline, "no local copy was written"
            await asyncio.sleep(0.02)
        assert copy.stat().st_mode & 0o777 == 0o600
        assert b"kept" in copy.read_bytes()
    finally:
        await gw.shutdown(timeout=1.0)
    off = tmp_path / "off.yaml"
    off.write_text(
        CONFIG.format(endpoint=node.endpoints[0], prefix=prefix + "x", body="none").replace(
            "prefix: '" + prefix + "x'", "prefix: '" + prefix + "x', local_copy: ''"
        )
    )
    gw = Server(load_config(off), "127.0.0.1", 0)
    await gw.start()
    try:
        await asyncio.sleep(0.3)
        assert not Path(default_local_copy(node.endpoints, prefix + "x")).exists()
    finally:
        await gw.shutdown(timeout=1.0)


async def test_a_file_too_large_for_etcd_serves_without_seeding_the_store(
    tmp_path: Path, node: EtcdCluster, monkeypatch, caplog: pytest.LogCaptureFixture
):
    """The store refuses the file's deployment as too large (etcd's request limit): the gateway starts and serves
    it, as when the store is away, saying it could not seed the store; nothing is written there."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    prefix = f"/t-{uuid.uuid4().hex[:8]}"
    noise = base64.b64encode(os.urandom(1_700_000)).decode()  # random: does not compress
    gw = await _gateway(tmp_path, "big", node, prefix, f"'{noise}'")
    try:
        r = await http_request(gw.port, "GET", "/v")
        assert r.status == 200 and r.body == noise.encode()
        assert any("could not seed the store" in m and "too large" in m for m in caplog.messages), caplog.messages
        assert _newest(node, prefix) == []
    finally:
        await gw.shutdown(timeout=1.0)
