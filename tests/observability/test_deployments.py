"""Deployments: every config that went live is kept (id = hash of the file), listed newest first, and a rollback
restores one, in the file and in what serves, across restarts; a reload under steady traffic fails no request."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from fastgw.admin.deployments import DeploymentStore, deployment_id
from fastgw.cli import main
from fastgw.client import RawConnection, http_request
from fastgw.config.load import load_config
from fastgw.server.server import Server

JSON = {"content-type": "application/json"}
LOCAL = "127.0.0.1"
MOCK = (
    "admin: {{host: 127.0.0.1, port: 0}}\nlogging: {{access_log: false}}\n"
    "routes:\n  - path: /v\n    integration: {{type: mock, body: {body}}}\n"
)


async def _serve(path: Path) -> Server:
    server = Server(load_config(path), "127.0.0.1", 0)
    await server.start()
    return server


async def _body(server: Server) -> bytes:
    return (await http_request(server.port, "GET", "/v")).body


async def test_reloads_are_kept_listed_and_rolled_back_across_restarts(tmp_path: Path, capsys):
    path = tmp_path / "gw.yaml"
    path.write_text(MOCK.format(body="one"))
    first = deployment_id(path.read_bytes())
    server = await _serve(path)
    try:
        assert server.admin is not None
        admin = server.admin.port
        path.write_text(MOCK.format(body="two"))
        second = deployment_id(path.read_bytes())
        r = await http_request(
            admin, "POST", "/reload", body=orjson.dumps({"description": "ship two"}), headers=JSON, host=LOCAL
        )
        assert r.status == 200 and r.json()["deployment"] == second
        listed = (await http_request(admin, "GET", "/deployments", host=LOCAL)).json()["deployments"]
        assert [(d["id"], d["description"], d["active"]) for d in listed] == [
            (second, "ship two", True),
            (first, "start", False),
        ]
        assert await _body(server) == b"two"
        r = await http_request(admin, "POST", f"/deployments/{first}/rollback", host=LOCAL)
        assert r.status == 200 and r.json()["deployment"] == first
        assert await _body(server) == b"one"
        assert path.read_text() == MOCK.format(body="one")  # the file says what serves
        assert (await http_request(admin, "POST", "/deployments/0123abcd/rollback", host=LOCAL)).status == 404
        assert (await http_request(admin, "GET", f"/deployments/{first}/rollback", host=LOCAL)).status == 405
    finally:
        await server.shutdown(timeout=1.0)
    # After a restart: the history is still there, and the CLI lists it.
    server = await _serve(path)
    try:
        assert await _body(server) == b"one"
    finally:
        await server.shutdown(timeout=1.0)
    history = DeploymentStore(tmp_path / "gw.yaml.deployments").history()
    assert [d["id"] for d in history] == [first, first, second, first]
    assert [d["description"] for d in history] == ["start", f"rollback to {first}", "ship two", "start"]
    assert main(["deployments", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"* {first}") and lines[2].startswith(f"  {second}") and len(lines) == 4
    assert main(["deployments", str(path), "--rollback", second]) == 0
    assert path.read_text() == MOCK.format(body="two")


async def test_a_rollback_to_a_config_that_no_longer_loads_changes_nothing(tmp_path: Path):
    (tmp_path / "h.py").write_text("def handler(event, context):\n    return {'statusCode': 200, 'body': 'f'}\n")
    fn = "functions: {f: {runtime: python, handler: 'h.py:handler', warm: 0}}\n"
    path = tmp_path / "gw.yaml"
    path.write_text(MOCK.format(body="one") + fn)
    old = deployment_id(path.read_bytes())
    server = await _serve(path)
    try:
        assert server.admin is not None
        path.write_text(MOCK.format(body="two"))
        assert (await http_request(server.admin.port, "POST", "/reload", host=LOCAL)).status == 200
        (tmp_path / "h.py").unlink()  # the old deployment's function code is gone
        r = await http_request(server.admin.port, "POST", f"/deployments/{old}/rollback", host=LOCAL)
        assert r.status == 400 and "h.py" in r.json()["message"]
        assert path.read_text() == MOCK.format(body="two") and await _body(server) == b"two"
    finally:
        await server.shutdown(timeout=1.0)


async def test_a_reload_under_steady_load_fails_no_request(tmp_path: Path):
    path = tmp_path / "gw.yaml"
    path.write_text(MOCK.format(body="a"))
    server = await _serve(path)
    statuses: list[int] = []
    bodies: set[bytes] = set()
    stop = asyncio.Event()

    async def fresh_connections() -> None:
        while not stop.is_set():
            r = await http_request(server.port, "GET", "/v")
            statuses.append(r.status)
            bodies.add(r.body)

    async def keep_alive() -> None:
        # One connection across every reload: it moves to the new config at its next request.
        conn = await RawConnection.open(server.port)
        try:
            while not stop.is_set():
                await conn.send(b"GET /v HTTP/1.1\r\nhost: t\r\n\r\n")
                r = await conn.response()
                statuses.append(r.status)
                bodies.add(r.body)
        finally:
            await conn.close()

    try:
        assert server.admin is not None
        clients = [asyncio.create_task(fresh_connections()) for _ in range(3)] + [asyncio.create_task(keep_alive())]
        for body in ("b", "c", "d", "e", "f"):
            await asyncio.sleep(0.05)
            path.write_text(MOCK.format(body=body))
            assert (await http_request(server.admin.port, "POST", "/reload", host=LOCAL)).status == 200
        await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*clients)
    finally:
        await server.shutdown(timeout=1.0)
    assert len(statuses) > 50 and set(statuses) == {200}
    assert b"f" in bodies and len(bodies) >= 3
