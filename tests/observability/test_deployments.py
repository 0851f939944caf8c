"""Deployments: every config that went live is kept (id = hash of its canonical JSON), listed newest first, and a
rollback serves an earlier one again as a new deployment, never writing over the config file, across restarts;
a reload under steady traffic fails no request."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import yaml

from fastgw.cli import main
from fastgw.client import RawConnection, http_request
from fastgw.config.load import load_config
from fastgw.control.deployment import deployment_id
from fastgw.control.filestore import FileStore
from fastgw.server.server import Server

JSON = {"content-type": "application/json"}
LOCAL = "127.0.0.1"
MOCK = (
    "admin: {{host: 127.0.0.1, port: 0}}\nlogging: {{access_log: false}}\n"
    "routes:\n  - path: /v\n    integration: {{type: mock, body: {body}}}\n"
)


def did(body: str, extra: str = "") -> str:
    return deployment_id(yaml.safe_load(MOCK.format(body=body) + extra))


async def _serve(path: Path) -> Server:
    server = Server(load_config(path), "127.0.0.1", 0)
    await server.start()
    return server


async def _body(server: Server) -> bytes:
    return (await http_request(server.port, "GET", "/v")).body


async def test_reloads_are_kept_listed_and_rolled_back_across_restarts(tmp_path: Path, capsys):
    path = tmp_path / "gw.yaml"
    path.write_text(MOCK.format(body="one"))
    first, second = did("one"), did("two")
    server = await _serve(path)
    try:
        assert server.admin is not None
        admin = server.admin.port
        path.write_text(MOCK.format(body="two"))
        body = orjson.dumps({"description": "ship two"})
        r = await http_request(admin, "POST", "/reload", body=body, headers=JSON, host=LOCAL)
        assert r.status == 200 and r.json()["deployment"] == second and r.header("etag") == f'"{second}"'
        listed = (await http_request(admin, "GET", "/deployments", host=LOCAL)).json()["deployments"]
        assert [(d["id"], d["description"], d["active"]) for d in listed] == [
            (second, "ship two", True),
            (first, "start", False),
        ]
        assert await _body(server) == b"two"
        # A reload of a file that did not change deploys nothing.
        r = await http_request(admin, "POST", "/reload", host=LOCAL)
        assert r.status == 200 and r.json()["changed"] is False and r.json()["deployment"] == second
        r = await http_request(admin, "POST", f"/deployments/{first}/rollback", host=LOCAL)
        assert r.status == 200 and r.json()["deployment"] == first and r.json()["file"] == "differs"
        assert await _body(server) == b"one"
        assert path.read_text() == MOCK.format(body="two")  # the file is never written over
        assert (await http_request(admin, "POST", "/deployments/0123abcd/rollback", host=LOCAL)).status == 404
        assert (await http_request(admin, "GET", f"/deployments/{first}/rollback", host=LOCAL)).status == 405
        one = (await http_request(admin, "GET", f"/deployments/{first}", host=LOCAL)).json()
        assert one["id"] == first and one["config"]["routes"][0]["integration"]["body"] == "one"
        assert one["config"]["admin"] == {"host": "127.0.0.1", "port": 0}
        assert (await http_request(admin, "GET", "/deployments/0123abcd", host=LOCAL)).status == 404
        diff = (await http_request(admin, "GET", f"/deployments/{first}/diff/{second}", host=LOCAL)).json()
        assert diff["changes"] == [
            {"path": "$.routes[0].integration.body", "op": "changed", "before": "one", "after": "two"}
        ]
    finally:
        await server.shutdown(timeout=1.0)
    # After a restart: the file has not changed since the rollback was made over it, so the rollback serves.
    server = await _serve(path)
    try:
        assert await _body(server) == b"one"
    finally:
        await server.shutdown(timeout=1.0)
    # A file edited since is the newer intent: it serves after a restart.
    path.write_text(MOCK.format(body="three"))
    server = await _serve(path)
    try:
        assert await _body(server) == b"three"
    finally:
        await server.shutdown(timeout=1.0)
    assert (tmp_path / "gw.yaml.deployments").stat().st_mode & 0o777 == 0o700  # secrets inside
    history = FileStore(tmp_path / "gw.yaml.deployments").history_now(limit=0)
    assert [s.deployment.id for s in history] == [did("three"), first, second, first]
    assert [s.deployment.source for s in history][1] == f"rollback to {first}"
    assert [s.revision for s in history] == [4, 3, 2, 1]
    assert main(["deployments", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"* {did('three')}") and lines[2].startswith(f"  {second}") and len(lines) == 4


async def test_a_rollback_keeps_an_edit_that_was_never_deployed(tmp_path: Path):
    """Issue 20: rollback overwrote an edit of the file that was never deployed. The file is never written."""
    path = tmp_path / "gw.yaml"
    path.write_text(MOCK.format(body="one"))
    server = await _serve(path)
    try:
        assert server.admin is not None
        admin = server.admin.port
        path.write_text(MOCK.format(body="two"))
        assert (await http_request(admin, "POST", "/reload", host=LOCAL)).status == 200
        path.write_text(MOCK.format(body="draft"))  # edited, not deployed
        r = await http_request(admin, "POST", f"/deployments/{did('one')}/rollback", host=LOCAL)
        assert r.status == 200 and await _body(server) == b"one"
        assert path.read_text() == MOCK.format(body="draft")
        # What serves is there to see, and deploying the draft is one reload away.
        cfg = (await http_request(admin, "GET", "/config", host=LOCAL)).json()
        assert cfg["routes"][0]["integration"]["body"] == "one"
        assert (await http_request(admin, "POST", "/reload", host=LOCAL)).json()["deployment"] == did("draft")
        assert await _body(server) == b"draft"
    finally:
        await server.shutdown(timeout=1.0)


async def test_a_rollback_to_a_config_that_no_longer_loads_changes_nothing(tmp_path: Path):
    (tmp_path / "h.py").write_text("def handler(event, context):\n    return {'statusCode': 200, 'body': 'f'}\n")
    fn = "functions: {f: {runtime: python, handler: 'h.py:handler', warm: 0}}\n"
    path = tmp_path / "gw.yaml"
    path.write_text(MOCK.format(body="one") + fn)
    old = did("one", fn)
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
            # The answer comes once the new deployment serves.
            assert await _body(server) == body.encode()
        await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*clients)
    finally:
        await server.shutdown(timeout=1.0)
    assert len(statuses) > 50 and set(statuses) == {200}
    assert b"f" in bodies and len(bodies) >= 3
