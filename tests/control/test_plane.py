"""The file store keeps the store contract (revisions, compare-and-swap, watch from a revision), and the control
plane serves what another writer put in the store (the way a fleet's store plugs in), refusing one that does not
load while the last good one keeps serving."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fastgw.client import http_request
from fastgw.config.load import load_config
from fastgw.control import deployment as dep
from fastgw.control.filestore import FileStore, MemoryStore
from fastgw.control.plane import Refused
from fastgw.control.store import Conflict, Stored
from fastgw.server.server import Server

MOCK = (
    "admin: {host: 127.0.0.1, port: 0}\nlogging: {access_log: false}\n"
    "routes:\n  - path: /v\n    integration: {type: mock, body: %s}\n"
)


def _config(body: str) -> dict:
    return {
        "admin": {"host": "127.0.0.1", "port": 0},
        "logging": {"access_log": False},
        "routes": [{"path": "/v", "integration": {"type": "mock", "body": body}}],
    }


@pytest.mark.parametrize("kind", ["file", "memory"])
async def test_the_stores_keep_the_contract(tmp_path: Path, kind: str):
    store = FileStore(tmp_path / "d") if kind == "file" else MemoryStore()
    assert await store.latest() is None
    a, b, c = (dep.make(_config(x), "test") for x in "abc")
    assert await store.put(a, expect_revision=0) == 1
    with pytest.raises(Conflict) as info:
        await store.put(b, expect_revision=0)  # based on an empty store: someone wrote first
    assert (info.value.expected, info.value.actual) == (0, 1)
    assert await store.put(b, expect_revision=1) == 2
    assert await store.put(c, expect_revision=None) == 3
    latest = await store.latest()
    assert latest is not None and latest.revision == 3 and latest.deployment.config == _config("c")
    got = await store.get(a.id)
    assert got is not None and got.revision == 1 and got.deployment.config == _config("a")
    assert [s.revision for s in await store.history(2)] == [3, 2]
    seen: list[Stored] = []

    async def watch() -> None:
        async for stored in store.watch(1):
            seen.append(stored)
            if len(seen) == 3:
                return

    task = asyncio.create_task(watch())
    await asyncio.sleep(0.1)
    await store.put(a, expect_revision=3)  # the same config again: a new revision
    await asyncio.wait_for(task, 5)
    assert [(s.revision, s.deployment.id) for s in seen] == [(2, b.id), (3, c.id), (4, a.id)]


async def test_the_plane_follows_what_another_writer_stored(tmp_path: Path):
    path = tmp_path / "gw.yaml"
    path.write_text(MOCK % "one")
    server = Server(load_config(path), "127.0.0.1", 0)
    await server.start()
    try:
        assert server.plane is not None
        other = FileStore(tmp_path / "gw.yaml.deployments")  # another gateway writing to the same store
        d = dep.make(_config("from-another"), "fastgw deploy", author="ci")
        revision = other.put_now(d, expect_revision=1)
        loop = asyncio.get_running_loop()
        answer = await loop.run_in_executor(None, server.plane.follow, Stored(revision, d))
        assert answer["deployment"] == d.id and (await http_request(server.port, "GET", "/v")).body == b"from-another"
        assert server.plane.history(1)[0].revision == revision  # not written a second time
        # One that does not load is refused; the last good one keeps serving.
        bad = dep.make({"routes": [{"path": "no-slash", "integration": {"type": "mock"}}]}, "fastgw deploy")
        stored = Stored(other.put_now(bad, expect_revision=None), bad)
        with pytest.raises(Refused) as info:
            await loop.run_in_executor(None, server.plane.follow, stored)
        assert info.value.status == 400 and "$.routes[0].path" in info.value.message
        assert (await http_request(server.port, "GET", "/v")).body == b"from-another"
    finally:
        await server.shutdown(timeout=1.0)
