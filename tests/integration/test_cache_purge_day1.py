"""`fastgw cache-purge` on a memory cache (issue 23): it printed `purged 0`, exited 0, and the entry stayed. Now the
running gateway purges every worker's memory through its admin API (POST /cache/purge), or the command fails
saying why."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from fastgw.testing import http_request
from tests.integration.gwprocess import GatewayProcess


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(tmp_path: Path, admin: bool) -> Path:
    path = tmp_path / "gw.yaml"
    path.write_text(
        (f"admin: {{host: 127.0.0.1, port: {_free_port()}}}\n" if admin else "") + "routes:\n"
        "  - path: /c\n    name: c\n    methods: [GET]\n"
        "    integration: {type: mock, status: 200, body: cached}\n"
        "    plugins: {proxy-cache: {backend: memory, ttl: 300}}\n"
        "  - path: /d\n    name: d\n    methods: [GET]\n"
        "    integration: {type: mock, status: 200, body: other}\n"
        "    plugins: {proxy-cache: {ttl: 300}}\n"
    )
    return path


async def _purge(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "fastgw", "cache-purge", *args]
    return await asyncio.to_thread(subprocess.run, cmd, capture_output=True, text=True, timeout=60, env=os.environ)


async def _serve(config: Path, *args: str) -> GatewayProcess:
    # NOTE: the port is given, not learnt from the log: the admin API's "listening on" line may come first.
    port = _free_port()
    gw = await GatewayProcess(config, "--port", str(port), *args, port_flag=False).start()
    gw.port = port
    for _ in range(400):
        if any("fastgw listening on" in line or "workers on" in line for line in gw.log):
            return gw
        await asyncio.sleep(0.05)
    raise AssertionError("the gateway did not start:\n" + "\n".join(gw.log))


async def _status(port: int, path: str) -> str | None:
    return (await http_request(port, "GET", path)).header("x-cache-status")


async def test_cache_purge_empties_the_memory_cache_of_a_gateway_of_one_process(tmp_path):
    config = _config(tmp_path, admin=True)
    gw = await _serve(config)
    try:
        assert [await _status(gw.port, "/c") for _ in range(2)] == ["MISS", "HIT"]
        assert [await _status(gw.port, "/d") for _ in range(2)] == ["MISS", "HIT"]
        out = await _purge(str(config), "--route", "c")
        assert out.returncode == 0, out.stderr
        pid = gw.proc.pid if gw.proc else 0
        assert out.stdout.strip() == f"purged 1 cache entries of route c (1 in the memory of worker pid {pid})"
        assert await _status(gw.port, "/c") == "MISS"  # gone
        assert await _status(gw.port, "/d") == "HIT"  # another route's stays
        out = await _purge(str(config))
        assert out.returncode == 0 and out.stdout.startswith("purged 2 cache entries ("), out
        assert [await _status(gw.port, p) for p in ("/c", "/d")] == ["MISS", "MISS"]
    finally:
        await gw.stop()


async def test_cache_purge_reaches_every_worker(tmp_path):
    config = _config(tmp_path, admin=True)
    gw = await _serve(config, "--workers", "2")
    try:
        for _ in range(200):  # the workers are up when each has said so
            if sum("ready on port" in line for line in gw.log) == 2:
                break
            await asyncio.sleep(0.05)
        for _ in range(20):  # new connections, spread over the workers by the kernel
            await _status(gw.port, "/c")
        out = await _purge(str(config), "--prefix", "c|")
        assert out.returncode == 0, out.stderr
        workers = [line for line in gw.log if "ready on port" in line]
        assert len(workers) == 2
        # Each worker answers for itself (one entry, or none if no request reached it), and the sum is said.
        said = out.stdout.strip()
        assert said.startswith("purged ") and said.count("in the memory of worker pid") == 2, said
        total = int(said.split()[1])
        assert 1 <= total <= 2, said
        assert await _status(gw.port, "/c") == "MISS"
    finally:
        await gw.stop()


async def test_the_admin_endpoint_answers_each_workers_count_and_refuses_a_bad_body(tmp_path):
    config = _config(tmp_path, admin=True)
    admin_port = int(config.read_text().split("port: ")[1].split("}")[0])
    gw = await _serve(config)
    try:
        await _status(gw.port, "/c")

        async def post(body: bytes):
            headers = {"content-type": "application/json"}
            return await http_request(admin_port, "POST", "/cache/purge", headers=headers, body=body, host="127.0.0.1")

        r = await post(b'{"route": "c"}')
        assert r.status == 200, r.body
        pid = gw.proc.pid if gw.proc else 0
        assert r.json() == {"purged": 1, "workers": [{"worker": f"pid {pid}", "pid": pid, "purged": 1}], "redis": None}
        for bad in (b'{"route": "c", "prefix": "x"}', b'{"routes": "c"}', b'{"route": ""}', b"[]", b"{"):
            r = await post(bad)
            assert r.status == 400 and "expected {}" in r.json()["message"], (bad, r.body)
    finally:
        await gw.stop()


@pytest.mark.parametrize("admin_flag", [False, True])
async def test_without_a_reachable_admin_api_a_memory_cache_is_refused_with_the_reason(tmp_path, admin_flag):
    config = _config(tmp_path, admin=False)
    args = ["--admin", f"http://127.0.0.1:{_free_port()}"] if admin_flag else []
    out = await _purge(str(config), *args)
    assert out.returncode == 1 and "purged 0" not in out.stdout, out
    if admin_flag:
        assert "cannot reach the admin API" in out.stderr and "nothing was purged" in out.stderr, out.stderr
    else:
        assert "caches in the gateway's memory" in out.stderr and "admin" in out.stderr, out.stderr


def test_the_openapi_file_describes_the_purge():
    import yaml

    spec = yaml.safe_load((Path(__file__).resolve().parents[2] / "docs" / "admin-api.openapi.yaml").read_text())
    op = spec["paths"]["/cache/purge"]["post"]
    assert set(op["requestBody"]["content"]["application/json"]["schema"]["properties"]) == {"route", "prefix"}
    assert orjson.dumps(op["responses"]["200"])  # (the file's route table test holds it to the served routes)
