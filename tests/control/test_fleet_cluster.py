"""A fleet of gateway processes (`fastgw serve CONFIG --store etcd://...`) on a real etcd, through what goes wrong:
a 3-member cluster that loses a member (its leader) while traffic and writes go on, etcd gone altogether (the
gateways keep serving, writes answer 503, a gateway restarted meanwhile serves its local copy, and all catch up
when etcd is back), and two writes racing through two gateways on the same If-Match."""

from __future__ import annotations

import asyncio
import base64
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from fastgw.client import http_request
from tests.etcdproc import EtcdCluster, etcd_binary
from tests.integration.gwprocess import GatewayProcess

CONFIG = """\
admin: {{host: 127.0.0.1, port: 0}}
logging: {{access_log: false}}
routes:
  - name: v
    path: /v
    integration: {{type: mock, body: {body}}}
"""
_ADMIN = re.compile(r"admin API listening on http://127\.0\.0\.1:(\d+)")
_SERVING = re.compile(r"fastgw listening on http://127\.0\.0\.1:(\d+)")


class Gateway:
    """A gateway process and its admin API's port."""

    def __init__(self, proc: GatewayProcess) -> None:
        self.proc = proc
        self.port = self.admin = 0

    @classmethod
    async def start(cls, config: Path, *args: str) -> Gateway:
        """NOTE: GatewayProcess takes the first "listening on" line for the port, which is the admin API's here
        (it listens first): both ports are read from the log instead."""
        g = cls(await GatewayProcess(config, *args).start())
        deadline = time.monotonic() + 30
        while not g.port:
            for line in g.proc.log:
                if m := _ADMIN.search(line):
                    g.admin = int(m.group(1))
                elif m := _SERVING.search(line):
                    g.port = int(m.group(1))
            assert time.monotonic() < deadline, g.proc.log
            await asyncio.sleep(0.02)
        assert g.admin, g.proc.log
        return g

    async def put(self, path: str, body: object, if_match: str = "") -> tuple[int, dict[str, object], str]:
        headers = {"content-type": "application/json"}
        if if_match:
            headers["if-match"] = if_match
        r = await http_request(self.admin, "PUT", path, headers=headers, body=orjson.dumps(body), host="127.0.0.1")
        return r.status, r.json(), (r.header("etag") or "")

    async def etag(self) -> str:
        r = await http_request(self.admin, "GET", "/config", host="127.0.0.1")
        assert r.status == 200, r.body
        return r.header("etag") or ""


async def _start(tmp_path: Path, name: str, url: str, body: str = "from-file") -> Gateway:
    path = tmp_path / f"{name}.yaml"
    path.write_text(CONFIG.format(body=body))
    return await Gateway.start(path, "--store", url)


def _url(cluster: EtcdCluster, prefix: str, **query: str) -> str:
    q = "&".join(f"{k}={v}" for k, v in query.items())
    return f"{cluster.url}{prefix}" + (f"?{q}" if q else "")


def _route(body: str, path: str = "/w") -> dict[str, object]:
    return {"path": path, "integration": {"type": "mock", "body": body}}


async def _serves(gateways: list[Gateway], path: str, body: bytes, within: float) -> float:
    """Until every gateway answers `path` with `body`; the time it took, or an AssertionError after `within` s."""
    start = time.monotonic()
    waiting = list(gateways)
    while waiting:
        got = [(await http_request(g.port, "GET", path)).body for g in waiting]
        waiting = [g for g, b in zip(waiting, got, strict=True) if b != body]
        if waiting and time.monotonic() - start > within:
            logs = "\n".join(line for g in waiting for line in g.proc.log[-15:])
            raise AssertionError(f"{path} not {body!r} on {len(waiting)} gateway(s) after {within} s ({got}):\n{logs}")
        if waiting:
            await asyncio.sleep(0.01)
    return time.monotonic() - start


class Traffic:
    """A bounded loop of requests to every gateway, in the background: each answer's status is kept."""

    def __init__(self, gateways: list[Gateway], path: str = "/v", rounds: int = 5000) -> None:
        self.gateways, self.path, self.rounds = gateways, path, rounds
        self.statuses: list[int] = []
        self.errors: list[str] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> Traffic:
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        for _ in range(self.rounds):
            if self._stop.is_set():
                return
            for g in self.gateways:
                try:
                    self.statuses.append((await http_request(g.port, "GET", self.path)).status)
                except Exception as exc:  # noqa: BLE001 - a connection refused or reset is what is counted
                    self.errors.append(repr(exc))
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task


def _newest_of(cluster: EtcdCluster, index: int, prefix: str) -> tuple[str, int]:
    """What one member says the store's newest deployment is: its id and revision (read on that member only)."""
    m = cluster.members[index]
    key = base64.b64encode(f"{prefix}/newest".encode()).decode()
    kvs = cluster.call_member(m, "/v3/kv/range", {"key": key, "serializable": True}).get("kvs", [])
    return (base64.b64decode(kvs[0]["value"]).decode(), int(kvs[0]["mod_revision"])) if kvs else ("", 0)


@pytest.fixture
def cluster() -> Iterator[EtcdCluster]:
    etcd_binary()
    c = EtcdCluster(3).start()
    yield c
    c.stop()


@pytest.fixture
def node() -> Iterator[EtcdCluster]:
    etcd_binary()
    c = EtcdCluster(1).start()
    yield c
    c.stop()


async def test_a_cluster_that_loses_its_leader_keeps_serving_and_taking_writes(tmp_path: Path, cluster: EtcdCluster):
    prefix = f"/t-{uuid.uuid4().hex[:8]}"
    url = _url(cluster, prefix)
    gateways = [await _start(tmp_path, name, url, body=f"from-{name}") for name in ("a", "b", "c")]
    try:
        # The first one seeded the store; the others serve what it holds.
        await _serves(gateways, "/v", b"from-a", within=5)
        traffic = Traffic(gateways).start()
        await asyncio.sleep(0.3)

        writers = iter(gateways * 3)
        # First the member every gateway speaks to first (its first endpoint), whatever its role; then the leader.
        for which in ("the first endpoint", "the leader"):
            lost = cluster.leader() if which == "the leader" else 0
            cluster.kill(lost)
            # Writes through the gateways after the kill: stored by the two members left, served by every gateway.
            for n in range(2):
                status, answer, _ = await next(writers).put("/routes/w", _route(f"{which}-{n}"))
                assert status in (200, 201), (which, answer)
                await _serves(gateways, "/w", f"{which}-{n}".encode(), within=1.0)

            # The member comes back with its data and catches up with what was written while it was away.
            cluster.restart(lost)
            deadline = time.monotonic() + 10
            while _newest_of(cluster, lost, prefix)[0] != answer["deployment"]:
                assert time.monotonic() < deadline, f"{which}, restarted, never caught up"
                await asyncio.sleep(0.05)
            assert _newest_of(cluster, lost, prefix) == _newest_of(cluster, (lost + 1) % 3, prefix)
            # And the cluster of three takes writes again, which every gateway serves.
            status, answer, _ = await next(writers).put("/routes/w", _route(f"back-{which}"))
            assert status == 200, answer
            await _serves(gateways, "/w", f"back-{which}".encode(), within=1.0)

        await asyncio.sleep(0.2)
        await traffic.stop()
        assert traffic.errors == []
        assert len(traffic.statuses) > 30
        assert set(traffic.statuses) == {200}, sorted(set(traffic.statuses))
    finally:
        for g in gateways:
            await g.proc.stop()


async def test_etcd_away_serves_the_last_deployment_refuses_writes_and_restarts_from_the_local_copy(
    tmp_path: Path, node: EtcdCluster
):
    prefix = f"/t-{uuid.uuid4().hex[:8]}"
    url_a = _url(node, prefix, local_copy=str(tmp_path / "a-last.json"), backoff_max="0.5")
    a = await _start(tmp_path, "a", url_a)
    b = await _start(tmp_path, "b", _url(node, prefix, backoff_max="0.5"))
    try:
        status, answer, _ = await a.put("/routes/w", _route("one"))
        assert status == 201, answer
        await _serves([a, b], "/w", b"one", within=2)
        # A stops; B writes what A misses; then etcd is gone altogether.
        await a.proc.stop()
        status, answer, _ = await b.put("/routes/w2", _route("two", "/w2"))
        assert status == 201, answer
        second = answer["deployment"]
        node.kill(0)

        # B keeps serving its last good deployment, and a write through it is refused naming the store.
        traffic = Traffic([b], path="/w2", rounds=200).start()
        r = await http_request(b.admin, "PUT", "/routes/x", headers={"content-type": "application/json"},
                               body=orjson.dumps(_route("x", "/x")), host="127.0.0.1")  # fmt: skip
        assert r.status == 503, r.body
        assert (r.header("content-type") or "").startswith("application/json")
        assert "deployment store" in r.json()["message"] and "etcd" in r.json()["message"], r.json()
        assert (await http_request(b.port, "GET", "/x")).status == 404  # nothing of it serves

        # A starts again while etcd is away: it serves its local copy (the deployment it had) and says so.
        assert a.proc.config is not None
        a = await Gateway.start(a.proc.config, "--store", url_a)
        assert any("from the local copy" in line for line in a.proc.log), a.proc.log
        assert (await http_request(a.port, "GET", "/w")).body == b"one"
        assert (await http_request(a.port, "GET", "/w2")).status == 404
        status, answer, _ = await a.put("/routes/x", _route("x", "/x"))
        assert status == 503, answer

        # etcd back: A catches up from its copy's revision (B's write made while A was down), B goes on.
        node.restart(0)
        await _serves([a, b], "/w2", b"two", within=10)
        r = await http_request(a.admin, "GET", "/status", host="127.0.0.1")
        assert second in r.body.decode(), r.body
        status, answer, _ = await a.put("/routes/x", _route("back", "/x"))
        assert status == 201, answer
        await _serves([a, b], "/x", b"back", within=2)
        await traffic.stop()
        assert traffic.errors == [] and set(traffic.statuses) == {200}, (traffic.errors, set(traffic.statuses))
    finally:
        await a.proc.stop()
        await b.proc.stop()


async def test_two_writes_racing_through_two_gateways(tmp_path: Path, node: EtcdCluster):
    prefix = f"/t-{uuid.uuid4().hex[:8]}"
    url = _url(node, prefix)
    a = await _start(tmp_path, "a", url)
    b = await _start(tmp_path, "b", url)
    try:
        await _serves([a, b], "/v", b"from-file", within=5)
        for round_ in range(3):
            deadline = time.monotonic() + 1.0
            while (etag := await a.etag()) != await b.etag():  # both have recorded the same deployment
                assert time.monotonic() < deadline, "the two gateways never agreed"
                await asyncio.sleep(0.01)
            results = await asyncio.gather(
                a.put(f"/routes/ra{round_}", _route(f"a{round_}", f"/ra{round_}"), if_match=etag),
                b.put(f"/routes/rb{round_}", _route(f"b{round_}", f"/rb{round_}"), if_match=etag),
            )
            assert sorted(s for s, _, _ in results) == [201, 409], results
            won, lost = ("a", "b") if results[0][0] == 201 else ("b", "a")
            winner = results[0] if won == "a" else results[1]
            # The winner serves everywhere; the loser wrote nothing, and writes again on top of what won.
            await _serves([a, b], f"/r{won}{round_}", f"{won}{round_}".encode(), within=1.0)
            assert (await http_request(a.port, "GET", f"/r{lost}{round_}")).status == 404
            loser = a if lost == "a" else b
            # NOTE: its ETag, not only its routes: the workers swap the deployment in a moment before the control
            # plane records it, and a write based on the ETag read in between is refused (409), never lost.
            deadline = time.monotonic() + 1.0
            while await loser.etag() != f'"{winner[1]["deployment"]}"':
                assert time.monotonic() < deadline, "the loser never served what won"
                await asyncio.sleep(0.01)
            status, answer, _ = await loser.put(f"/routes/r{lost}{round_}", _route(f"{lost}{round_}",
                                                f"/r{lost}{round_}"), if_match=await loser.etag())  # fmt: skip
            assert status == 201, answer
            await _serves([a, b], f"/r{lost}{round_}", f"{lost}{round_}".encode(), within=1.0)
            await _serves([a, b], f"/r{won}{round_}", f"{won}{round_}".encode(), within=1.0)
            assert winner[1]["deployment"] != answer["deployment"]
    finally:
        await a.proc.stop()
        await b.proc.stop()
