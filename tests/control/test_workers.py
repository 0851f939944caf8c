"""Deployments atomic across workers (issue 20, item 2), on a real `fastgw serve --workers 2`: a reload is answered
once every worker serves it (no mixed answers after it), /status says what each worker serves, a worker that
cannot load it fails it everywhere, and no worker reads the config file (one started later serves what the others
do, not a file edited since)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from pathlib import Path

import orjson

from fastgw.client import http_request
from tests.integration.gwprocess import GatewayProcess

MOCK = (
    "admin: {{host: 127.0.0.1, port: 0, deploy_timeout: 2}}\nlogging: {{access_log: false}}\n"
    "routes:\n  - path: /v\n    integration: {{type: mock, body: {body}}}\n"
)


async def _start(path: Path, workers: int = 2) -> tuple[GatewayProcess, int]:
    gw = await GatewayProcess(path, "--workers", str(workers)).start()
    deadline = time.monotonic() + 30
    while sum("ready on port" in line for line in gw.log) < workers and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    admin = next(int(m.group(1)) for line in gw.log if (m := re.search(r"admin API listening on .*:(\d+)", line)))
    return gw, admin


async def _bodies(port: int, n: int = 30) -> set[bytes]:
    # Fresh connections: SO_REUSEPORT spreads them over the workers.
    return {(await http_request(port, "GET", "/v")).body for _ in range(n)}


async def _call(admin: int, method: str, path: str, body=None):
    headers = {"content-type": "application/json"} if body is not None else {}
    data = orjson.dumps(body) if body is not None else b""
    return await http_request(admin, method, path, headers=headers, body=data, host="127.0.0.1", timeout=60)


async def test_a_reload_answers_once_every_worker_serves_it(tmp_path: Path):
    path = tmp_path / "gw.yaml"
    path.write_text(MOCK.format(body="v0"))
    gw, admin = await _start(path)
    try:
        for i in range(1, 5):
            path.write_text(MOCK.format(body=f"v{i}"))
            r = await _call(admin, "POST", "/reload")
            assert r.status == 200, r.body
            assert await _bodies(gw.port) == {f"v{i}".encode()}  # no worker still on the previous one
            did = r.json()["deployment"]
            status = (await _call(admin, "GET", "/status")).json()
            assert status["deployment"] == did and len(status["serving"]) == 2
            assert {w["deployment"] for w in status["serving"]} == {did}
            assert {w["pid"] for w in status["serving"]} == set(gw.children())
        # A write through the admin API is served by every worker when it is answered.
        r = await _call(admin, "PUT", "/routes/w", {"path": "/w", "integration": {"type": "mock", "body": "w"}})
        assert r.status == 201
        assert {(await http_request(gw.port, "GET", "/w")).body for _ in range(20)} == {b"w"}
        # A broken file: refused with the key path; every worker keeps what it serves.
        path.write_text(MOCK.format(body="v5").replace("path: /v", "path: no-slash"))
        r = await _call(admin, "POST", "/reload")
        assert r.status == 400 and "$.routes[0].path" in r.json()["message"] and r.json()["reloaded"] is False
        assert await _bodies(gw.port) == {b"v4"}
    finally:
        await gw.stop()


async def test_a_worker_that_cannot_serve_it_fails_the_deployment_everywhere(tmp_path: Path):
    path = tmp_path / "gw.yaml"
    path.write_text(MOCK.format(body="old"))
    gw, admin = await _start(path)
    try:
        stuck, other = gw.children()
        os.kill(stuck, signal.SIGSTOP)  # it will not answer within admin.deploy_timeout
        try:
            path.write_text(MOCK.format(body="new"))
            r = await _call(admin, "POST", "/reload")
        finally:
            os.kill(stuck, signal.SIGCONT)
        assert r.status == 502, r.body
        assert r.json()["workers"] == {f"pid {stuck}": "no answer in 2s"} and f"pid {stuck}" in r.json()["message"]
        assert await _bodies(gw.port) == {b"old"}  # the worker that was ready did not swap either
        # The next reload goes through on both.
        r = await _call(admin, "POST", "/reload")
        assert r.status == 200 and await _bodies(gw.port) == {b"new"}
    finally:
        await gw.stop()


async def test_no_worker_reads_the_config_file(tmp_path: Path):
    path = tmp_path / "gw.yaml"
    path.write_text(MOCK.format(body="one"))
    gw, admin = await _start(path)
    try:
        path.write_text(MOCK.format(body="two"))
        assert (await _call(admin, "POST", "/reload")).status == 200
        path.write_text(MOCK.format(body="edited-not-deployed"))
        victim = gw.children()[0]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while (victim in gw.children() or len(gw.children()) < 2) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        while sum("ready on port" in line for line in gw.log) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert await _bodies(gw.port, 40) == {b"two"}
        status = (await _call(admin, "GET", "/status")).json()
        assert {w["deployment"] for w in status["serving"]} == {status["deployment"]}
    finally:
        await gw.stop()
