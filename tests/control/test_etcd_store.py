"""The etcd store against a real etcd (tests/etcdproc.py): one node, a 3-node cluster that loses a member, etcd gone
and back, two stores racing and converging, auth. Skipped only where the etcd binary is missing (CI installs it)."""

from __future__ import annotations

import asyncio
import base64
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from fastgw.control import etcd as etcd_module
from fastgw.control.etcd import (
    DeploymentTooLarge,
    EtcdRefused,
    EtcdStore,
    LocalStored,
    store_from_config,
    store_from_url,
)
from fastgw.control.etcd_config import config_from_dict, store_config_from_url
from fastgw.control.store import Conflict, Deployment, Stored, StoreUnavailable
from tests.etcdproc import EtcdCluster, TcpProxy, etcd_binary

pytest.importorskip("aiohttp", reason="the etcd store's client: pip install 'fastgw[etcd]'")


def deployment(n: int, **extra: Any) -> Deployment:
    config = {"routes": [{"path": f"/r{n}", "integration": {"type": "mock", "body": {"n": n}}}], **extra}
    return Deployment(id=f"{n:016x}", config=config, time="2026-12-07T19:00:00Z", source="test", author="t")


@pytest.fixture
def prefix() -> str:
    """Each test on the shared node writes under a prefix of its own."""
    return f"/t-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def stores() -> AsyncIterator[list[EtcdStore]]:
    """Every store a test makes (append it) is closed at teardown, on the test's loop."""
    made: list[EtcdStore] = []
    yield made
    for s in made:
        await s.close()


def make(stores: list[EtcdStore], endpoints: list[str], prefix: str, **conf: Any) -> EtcdStore:
    store = store_from_config({"endpoints": endpoints, "prefix": prefix, "timeout": 2, **conf})
    stores.append(store)
    return store


async def next_within(watch: AsyncIterator[Stored], seconds: float) -> Stored:
    return await asyncio.wait_for(watch.__anext__(), seconds)


# -- reads and writes ------------------------------------------------------------------------------------------


async def test_put_latest_get_history(node: EtcdCluster, prefix: str, stores: list[EtcdStore]):
    store = make(stores, node.endpoints, prefix)
    assert await store.latest() is None
    assert await store.history() == []
    r1 = await store.put(deployment(1), expect_revision=0)
    r2 = await store.put(deployment(2), expect_revision=r1)
    assert r2 > r1 > 0
    assert await store.latest() == Stored(r2, deployment(2))
    assert await store.get(deployment(1).id) == Stored(r1, deployment(1))
    assert await store.get("0" * 16) is None
    assert await store.get("../newest") is None
    assert await store.history() == [Stored(r2, deployment(2)), Stored(r1, deployment(1))]
    assert await store.history(limit=1) == [Stored(r2, deployment(2))]
    r3 = await store.put(deployment(3), expect_revision=None)  # None: whatever is there
    assert (await store.latest()) == Stored(r3, deployment(3))
    with pytest.raises(ValueError, match="deployment id"):
        await store.put(Deployment(id="a/b", config={}, time=""), expect_revision=None)


async def test_the_layout_is_one_key_per_deployment_and_one_naming_the_newest(
    node: EtcdCluster, prefix: str, stores: list[EtcdStore]
):
    store = make(stores, node.endpoints, prefix)
    rev = await store.put(deployment(7), expect_revision=0)
    answer = node.call("/v3/kv/range", {"key": b64(f"{prefix}/newest")})
    assert base64.b64decode(answer["kvs"][0]["value"]) == deployment(7).id.encode()
    assert int(answer["kvs"][0]["mod_revision"]) == rev
    answer = node.call("/v3/kv/range", {"key": b64(f"{prefix}/deployments/{deployment(7).id}")})
    assert int(answer["kvs"][0]["mod_revision"]) == rev


async def test_a_stale_expect_revision_is_refused_with_conflict(
    node: EtcdCluster, prefix: str, stores: list[EtcdStore]
):
    store = make(stores, node.endpoints, prefix)
    r1 = await store.put(deployment(1), expect_revision=0)
    with pytest.raises(Conflict) as e:
        await store.put(deployment(2), expect_revision=0)  # 0: only into an empty store
    assert (e.value.expected, e.value.actual) == (0, r1)
    r2 = await store.put(deployment(2), expect_revision=r1)
    with pytest.raises(Conflict) as e:
        await store.put(deployment(3), expect_revision=r1)
    assert (e.value.expected, e.value.actual) == (r1, r2)
    assert await store.latest() == Stored(r2, deployment(2))
    assert await store.get(deployment(3).id) is None  # the refused write left nothing behind


async def test_two_stores_racing_on_one_revision_one_wins_and_nothing_is_lost(
    node: EtcdCluster, prefix: str, stores: list[EtcdStore]
):
    a, b = make(stores, node.endpoints, prefix), make(stores, node.endpoints, prefix)
    base = await a.put(deployment(0), expect_revision=0)
    for round_ in range(1, 11):
        da, db = deployment(100 + round_), deployment(200 + round_)
        results = await asyncio.gather(
            a.put(da, expect_revision=base), b.put(db, expect_revision=base), return_exceptions=True
        )
        won = [r for r in results if isinstance(r, int)]
        lost = [r for r in results if isinstance(r, Conflict)]
        assert len(won) == 1 and len(lost) == 1, results
        assert lost[0].actual == won[0]
        winner, loser, loser_store = (da, db, b) if isinstance(results[0], int) else (db, da, a)
        assert await a.latest() == Stored(won[0], winner)
        # The loser learns what it lost to and writes on top of it: both are kept.
        base = await loser_store.put(loser, expect_revision=lost[0].actual)
        assert [s.deployment for s in await b.history(2)] == [loser, winner]


async def test_history_keeps_the_newest_n(node: EtcdCluster, prefix: str, stores: list[EtcdStore]):
    store = make(stores, node.endpoints, prefix, history=3)
    revs = [await store.put(deployment(n), expect_revision=None) for n in range(6)]
    assert [s.revision for s in await store.history()] == revs[:2:-1]
    assert await store.get(deployment(0).id) is None
    # Writing an id again (a rollback to an identical config) moves it to the top, kept once.
    again = await store.put(deployment(4), expect_revision=revs[-1])
    assert [s.deployment.id for s in await store.history()] == [deployment(n).id for n in (4, 5, 3)]
    assert (await store.latest()) == Stored(again, deployment(4))


async def test_a_large_deployment_is_compressed_and_one_too_large_refused(
    node: EtcdCluster, prefix: str, stores: list[EtcdStore]
):
    store = make(stores, node.endpoints, prefix)
    routes = [{"path": f"/api/v1/things/{i}", "integration": {"type": "http", "upstream": "b"}} for i in range(30_000)]
    big = Deployment(id="b" * 16, config={"routes": routes}, time="t")
    assert len(str(big.config)) > 2_000_000  # over etcd's 1.5 MiB request limit as plain JSON
    rev = await store.put(big, expect_revision=0)
    assert await store.latest() == Stored(rev, big)
    for size in (1_700_000, 3_000_000):  # past etcd's --max-request-bytes, and past its gRPC message limit
        noise = Deployment(id="c" * 16, config={"blob": base64.b64encode(os.urandom(size)).decode()}, time="t")
        with pytest.raises(DeploymentTooLarge, match="too large"):
            await store.put(noise, expect_revision=None)
    assert (await store.latest()) == Stored(rev, big)


async def test_values_that_are_not_deployments_are_passed_over(node: EtcdCluster, prefix: str, stores: list[EtcdStore]):
    store = make(stores, node.endpoints, prefix)
    r1 = await store.put(deployment(1), expect_revision=0)
    watch = store.watch(r1)
    # Written by hand: a newest key naming a body that is no deployment, and one naming nothing.
    node.call("/v3/kv/txn", {"success": [
        {"request_put": {"key": b64(f"{prefix}/deployments/bad"), "value": b64('{"id": 1}')}},
        {"request_put": {"key": b64(f"{prefix}/newest"), "value": b64("bad")}},
    ]})  # fmt: skip
    assert await store.latest() == Stored(r1, deployment(1))
    assert [s.deployment.id for s in await store.history()] == [deployment(1).id]
    r3 = await store.put(deployment(3), expect_revision=None)
    assert await next_within(watch, 2) == Stored(r3, deployment(3))
    await watch.aclose()  # type: ignore[attr-defined]


# -- watching --------------------------------------------------------------------------------------------------


async def test_watch_sees_every_write_in_order_within_a_second(node: EtcdCluster, prefix: str, stores: list[EtcdStore]):
    writer, reader = make(stores, node.endpoints, prefix), make(stores, node.endpoints, prefix)
    before = [await writer.put(deployment(n), expect_revision=None) for n in range(3)]
    watch = reader.watch(before[0])  # from a revision: what came after it first, in order
    assert await next_within(watch, 1) == Stored(before[1], deployment(1))
    assert await next_within(watch, 1) == Stored(before[2], deployment(2))
    for n in range(3, 23):
        rev = await writer.put(deployment(n), expect_revision=None)
        assert await next_within(watch, 1) == Stored(rev, deployment(n))
    await watch.aclose()  # type: ignore[attr-defined]


async def test_two_gateways_converge_on_the_newest(node: EtcdCluster, prefix: str, stores: list[EtcdStore]):
    a, b = make(stores, node.endpoints, prefix), make(stores, node.endpoints, prefix)
    seen: dict[str, list[Stored]] = {"a": [], "b": []}

    async def follow(name: str, store: EtcdStore) -> None:
        async for stored in store.watch(0):
            seen[name].append(stored)

    tasks = [asyncio.create_task(follow("a", a)), asyncio.create_task(follow("b", b))]
    revs = []
    for n in range(10):  # writes through both gateways, each on the revision it saw last
        via = (a, b)[n % 2]
        newest = await via.latest()
        revs.append(await via.put(deployment(n), expect_revision=newest.revision if newest else 0))
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and not (len(seen["a"]) == len(seen["b"]) == 10):
        await asyncio.sleep(0.01)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    expected = [Stored(r, deployment(n)) for n, r in enumerate(revs)]
    assert seen["a"] == expected and seen["b"] == expected


async def test_a_compacted_watch_reads_the_newest_and_goes_on(node: EtcdCluster, prefix: str, stores: list[EtcdStore]):
    store = make(stores, node.endpoints, prefix)
    first = await store.put(deployment(1), expect_revision=None)
    await store.put(deployment(2), expect_revision=None)
    r3 = await store.put(deployment(3), expect_revision=None)
    node.compact()
    watch = store.watch(first)  # revisions after `first` are gone: deployment 2 cannot be replayed
    assert await next_within(watch, 1) == Stored(r3, deployment(3))
    r4 = await store.put(deployment(4), expect_revision=r3)
    assert await next_within(watch, 1) == Stored(r4, deployment(4))
    await watch.aclose()  # type: ignore[attr-defined]


async def test_closing_the_store_ends_its_watches(node: EtcdCluster, prefix: str, stores: list[EtcdStore]):
    store = make(stores, node.endpoints, prefix)
    rev = await store.put(deployment(1), expect_revision=0)
    got: list[Stored] = []

    async def follow() -> None:
        async for stored in store.watch(0):
            got.append(stored)

    task = asyncio.create_task(follow())
    await wait_for(lambda: store.watching and got)
    assert store.status() == {
        "store": "etcd", "endpoints": node.endpoints, "prefix": prefix, "endpoint": node.members[0].url,
        "watching": True, "delivered_revision": rev, "last_error": "",
    }  # fmt: skip
    await store.close()
    # The watch ended: nothing left running against a closed store (before the 5 s check a watch makes anyway).
    await asyncio.wait_for(task, 4)
    assert got == [Stored(rev, deployment(1))]
    with pytest.raises(StoreUnavailable, match="closed"):
        await store.latest()


async def test_a_watch_from_a_revision_etcd_never_reached_reads_the_newest(
    node: EtcdCluster, prefix: str, stores: list[EtcdStore], tmp_path
):
    # A local copy from another history (a cluster restored from a snapshot, or a new one) names a revision
    # beyond etcd's: the watch takes this cluster's newest rather than wait for that revision to come.
    store = make(stores, node.endpoints, prefix, local_copy=str(tmp_path / "copy.json"))
    rev = await store.put(deployment(1), expect_revision=None)
    watch = store.watch(rev + 1_000_000)
    assert await next_within(watch, 1) == Stored(rev, deployment(1))
    r2 = await store.put(deployment(2), expect_revision=rev)
    assert await next_within(watch, 1) == Stored(r2, deployment(2))
    await watch.aclose()  # type: ignore[attr-defined]
    assert store.local_copy() == LocalStored(r2, deployment(2), saved=store.local_copy().saved)  # type: ignore[union-attr]


# -- failures --------------------------------------------------------------------------------------------------


async def test_a_cluster_that_loses_a_member_keeps_reading_writing_and_watching(stores: list[EtcdStore]):
    etcd_binary()
    cluster = EtcdCluster(3).start()
    try:
        # The leader first: both stores talk to it, and it is the member killed (the hardest loss: an election,
        # and requests in flight to it dropped).
        leader = cluster.leader()
        endpoints = [cluster.endpoints[(leader + i) % 3] for i in range(3)]
        writer = make(stores, endpoints, "/fleet")
        reader = make(stores, endpoints, "/fleet")
        r0 = await writer.put(deployment(0), expect_revision=0)
        watch = reader.watch(r0)
        r1 = await writer.put(deployment(1), expect_revision=r0)
        assert await next_within(watch, 1) == Stored(r1, deployment(1))
        assert reader.endpoint == writer.endpoint == cluster.members[leader].url
        cluster.kill(leader)
        rev = r1
        for n in range(2, 12):
            rev = await writer.put(deployment(n), expect_revision=rev)
            assert await next_within(watch, 1.5) == Stored(rev, deployment(n))
        assert await reader.latest() == Stored(rev, deployment(11))
        assert writer.endpoint != cluster.members[leader].url
        await watch.aclose()  # type: ignore[attr-defined]
    finally:
        cluster.stop()


async def test_etcd_gone_fails_fast_and_the_local_copy_stands_in(tmp_path, stores: list[EtcdStore]):
    etcd_binary()
    cluster = EtcdCluster(1).start()
    local = str(tmp_path / "state" / "last-deployment.json")
    try:
        store = make(stores, cluster.endpoints, "/fleet", local_copy=local)
        assert store.local_copy() is None
        r1 = await store.put(deployment(1), expect_revision=0)
        assert await store.latest() == Stored(r1, deployment(1))  # delivered: kept in the local copy
        watch = store.watch(r1)
        r2 = await store.put(deployment(2), expect_revision=r1)
        assert await next_within(watch, 1) == Stored(r2, deployment(2))  # delivered by the watch
        await watch.aclose()  # type: ignore[attr-defined]
        cluster.kill(0)

        for call in (store.latest(), store.put(deployment(3), expect_revision=r2), store.get("x"), store.history()):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await call
            assert time.monotonic() - started < store.conf.timeout + 1  # refused at once; never a hang

        # A gateway started while etcd is away: the local copy, flagged as such.
        restarted = make(stores, cluster.endpoints, "/fleet", local_copy=local)
        got = await restarted.latest(fallback_local=True)
        assert isinstance(got, LocalStored) and got.local and got.saved
        assert (got.revision, got.deployment) == (r2, deployment(2))
        assert restarted.local_copy() == got
        # Another fleet's copy is not taken for this one's.
        other = make(stores, cluster.endpoints, "/other", local_copy=local)
        assert other.local_copy() is None
        with pytest.raises(StoreUnavailable):
            await other.latest(fallback_local=True)
        assert not [p for p in os.listdir(tmp_path / "state") if p.startswith(".")]  # no temporary file left
        assert os.stat(local).st_mode & 0o777 == 0o600  # the config's secrets: its owner's only
    finally:
        cluster.stop()


async def test_an_endpoint_that_never_answers_costs_timeout_then_store_unavailable(
    node: EtcdCluster, prefix: str, stores: list[EtcdStore]
):
    proxy = await TcpProxy(node.members[0].client_port).start()
    try:
        proxy.drop_replies = True  # connections are taken, requests read, nothing ever answered
        store = make(stores, [proxy.endpoint], prefix, timeout=1)
        for call in (store.latest(), store.put(deployment(1), expect_revision=None)):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="unreachable"):
                await call
            assert 0.9 < time.monotonic() - started < 3  # `timeout`, not etcd's (~7 s) nor the kernel's
    finally:
        await proxy.close()


async def test_etcd_back_the_watch_resumes_and_catches_up_from_another_member(stores: list[EtcdStore]):
    etcd_binary()
    cluster = EtcdCluster(3).start()
    try:
        m0, m1, m2 = cluster.endpoints
        watcher = make(stores, [m0], "/fleet", backoff_max=0.5)  # this gateway knows member 0 only
        writer = make(stores, [m1, m2], "/fleet")
        r0 = await writer.put(deployment(0), expect_revision=0)
        watch = watcher.watch(r0)
        got: list[Stored] = []

        async def follow() -> None:
            async for stored in watch:
                got.append(stored)

        task = asyncio.create_task(follow())
        r1 = await writer.put(deployment(1), expect_revision=r0)
        await wait_for(lambda: len(got) == 1 and watcher.watching)
        cluster.kill(0)
        await wait_for(lambda: not watcher.watching)
        with pytest.raises(StoreUnavailable):
            await watcher.latest()
        missed = [await writer.put(deployment(n), expect_revision=None) for n in range(2, 6)]
        await asyncio.sleep(0.3)
        assert len(got) == 1
        cluster.restart(0)
        await wait_for(lambda: len(got) == 5, 3)
        assert got == [Stored(r, deployment(n)) for n, r in zip(range(1, 6), [r1, *missed], strict=True)]
        r6 = await writer.put(deployment(6), expect_revision=missed[-1])
        await wait_for(lambda: len(got) == 6)
        assert got[-1] == Stored(r6, deployment(6))
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    finally:
        cluster.stop()


async def test_a_stale_watch_stream_is_found_and_opened_again(
    node: EtcdCluster, prefix: str, stores: list[EtcdStore], monkeypatch
):
    monkeypatch.setattr(etcd_module, "STALE_CHECK", 0.3)
    proxy = await TcpProxy(node.members[0].client_port).start()
    try:
        watcher = make(stores, [proxy.endpoint], prefix, timeout=1.5)
        writer = make(stores, node.endpoints, prefix)
        r0 = await writer.put(deployment(0), expect_revision=0)
        watch = watcher.watch(0)
        assert await next_within(watch, 1) == Stored(r0, deployment(0))
        proxy.freeze()  # the watch's connection goes silent without closing, as a link to a dead machine does
        r1 = await writer.put(deployment(1), expect_revision=r0)
        assert await next_within(watch, 3) == Stored(r1, deployment(1))
        await watch.aclose()  # type: ignore[attr-defined]
    finally:
        await proxy.close()


async def test_a_write_whose_answer_was_lost_is_not_taken_for_a_conflict(
    node: EtcdCluster, prefix: str, stores: list[EtcdStore]
):
    proxy = await TcpProxy(node.members[0].client_port).start()
    try:
        store = make(stores, [proxy.endpoint, *node.endpoints], prefix, timeout=1.5)
        r0 = await store.put(deployment(0), expect_revision=0)
        proxy.drop_replies = True  # the next write reaches etcd through the proxy; its answer never comes back
        r1 = await store.put(deployment(1), expect_revision=r0)  # sent again on the next endpoint: it was ours
        assert await store.latest() == Stored(r1, deployment(1))
        assert store.endpoint == node.members[0].url
        # A real conflict after a lost answer is still one.
        proxy.drop_replies = False
        other = make(stores, node.endpoints, prefix)
        await other.put(deployment(2), expect_revision=r1)
        with pytest.raises(Conflict):
            await store.put(deployment(3), expect_revision=r1)
    finally:
        await proxy.close()


async def test_a_member_without_a_leader_ends_its_watches(stores: list[EtcdStore], monkeypatch):
    # The watch's own check of a silent stream is put out of reach: what ends the watch here is the member, which
    # etcd tells (through `hasleader`) to end its watches when it loses the cluster's leader.
    monkeypatch.setattr(etcd_module, "STALE_CHECK", 60.0)
    etcd_binary()
    cluster = EtcdCluster(3).start()
    try:
        m0, m1, _ = cluster.endpoints
        watcher = make(stores, [m0], "/fleet", backoff_max=0.2)
        r0 = await make(stores, [m0], "/fleet").put(deployment(0), expect_revision=0)
        got: list[Stored] = []

        async def follow() -> None:
            async for stored in watcher.watch(0):
                got.append(stored)

        task = asyncio.create_task(follow())
        await wait_for(lambda: watcher.watching and got == [Stored(r0, deployment(0))])
        cluster.kill(1)
        cluster.kill(2)  # member 0 is alone: no quorum, no leader
        await wait_for(lambda: not watcher.watching, 5)
        cluster.restart(1)
        r1 = await make(stores, [m1], "/fleet").put(deployment(1), expect_revision=r0)
        await wait_for(lambda: len(got) == 2, 5)
        assert got[-1] == Stored(r1, deployment(1))
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    finally:
        cluster.stop()


async def wait_for(condition: Any, seconds: float = 3.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        await asyncio.sleep(0.01)


# -- auth ------------------------------------------------------------------------------------------------------


async def test_auth_by_username_and_password_with_expiring_tokens(stores: list[EtcdStore]):
    etcd_binary()
    cluster = EtcdCluster(1, extra=("--auth-token-ttl", "1")).start()
    try:
        cluster.enable_auth("root", "s3cret")
        store = make(stores, cluster.endpoints, "/fleet", username="root", password="s3cret")
        r1 = await store.put(deployment(1), expect_revision=0)
        await asyncio.sleep(2.5)  # the token expires after a second unused: a watch opened now gets a new one
        watch = store.watch(0)
        assert await next_within(watch, 2) == Stored(r1, deployment(1))
        await asyncio.sleep(2.5)  # and so does a write
        r2 = await store.put(deployment(2), expect_revision=r1)
        assert await store.latest() == Stored(r2, deployment(2))
        assert await next_within(watch, 1) == Stored(r2, deployment(2))
        await watch.aclose()  # type: ignore[attr-defined]

        wrong = make(stores, cluster.endpoints, "/fleet", username="root", password="nope")
        with pytest.raises(EtcdRefused, match="refused user 'root'"):
            await wrong.latest()
        anonymous = make(stores, cluster.endpoints, "/fleet")
        with pytest.raises(StoreUnavailable, match="refused"):
            await anonymous.latest()

        # A user whose role reads and writes the fleet's prefix only: all the store does stays under it.
        cluster.add_user("gw", "gw-pass", "/fleet/", root=("root", "s3cret"))
        gw = make(stores, cluster.endpoints, "/fleet", username="gw", password="gw-pass", history=1)
        assert await gw.latest() == Stored(r2, deployment(2))
        watch = gw.watch(r2)
        r3 = await gw.put(deployment(3), expect_revision=r2)  # and prunes the two before it
        assert await next_within(watch, 1) == Stored(r3, deployment(3))
        assert await gw.history() == [Stored(r3, deployment(3))]
        await watch.aclose()  # type: ignore[attr-defined]
        elsewhere = make(stores, cluster.endpoints, "/other", username="gw", password="gw-pass")
        with pytest.raises(EtcdRefused, match="permission denied"):
            await elsewhere.put(deployment(4), expect_revision=None)
    finally:
        cluster.stop()


async def test_tls_with_a_client_certificate(tmp_path, stores: list[EtcdStore]):
    etcd_binary()
    from tests.integration.test_tls import CA

    ca = CA(tmp_path)
    cert, key = server_and_client_leaf(ca, "etcd")
    client_cert, client_key = ca.issue("gateway", ["gateway"], client=True)
    tls = {"ca": str(ca.path), "cert": str(cert), "key": str(key)}
    cluster = EtcdCluster(1, tls={**tls, "client_cert": str(client_cert), "client_key": str(client_key)}).start()
    try:
        client_tls = {"ca": str(ca.path), "cert": str(client_cert), "key": str(client_key)}
        store = make(stores, cluster.endpoints, "/fleet", tls=client_tls)
        rev = await store.put(deployment(1), expect_revision=0)
        watch = store.watch(0)
        assert await next_within(watch, 1) == Stored(rev, deployment(1))
        await watch.aclose()  # type: ignore[attr-defined]
        # The URL form says the same; without a client certificate etcd refuses the handshake.
        url = f"etcd+https://{cluster.endpoints[0]}/fleet?ca={ca.path}&cert={client_cert}&key={client_key}"
        by_url = store_from_url(url)
        stores.append(by_url)
        assert await by_url.latest() == Stored(rev, deployment(1))
        no_cert = make(stores, cluster.endpoints, "/fleet", tls={"ca": str(ca.path)}, timeout=1)
        with pytest.raises(StoreUnavailable):
            await no_cert.latest()
        plain = make(stores, cluster.endpoints, "/fleet")  # http:// to an https member
        with pytest.raises(StoreUnavailable):
            await plain.latest()
    finally:
        cluster.stop()


# -- configuration ---------------------------------------------------------------------------------------------


def test_config_names_what_is_wrong():
    with pytest.raises(ValueError, match=r"\$\.endpoints"):
        config_from_dict({"endpoints": []})
    with pytest.raises(ValueError, match=r"Expected host:port \(or https://host:port\) - at `\$\.endpoints\[1\]`"):
        config_from_dict({"endpoints": ["127.0.0.1:2379", "127.0.0.1"]})
    with pytest.raises(ValueError, match=r"a key prefix starting with '/'.*\$\.prefix"):
        config_from_dict({"endpoints": ["127.0.0.1:2379"], "prefix": "fastgw"})
    with pytest.raises(ValueError, match=r"\$\.timeout"):
        config_from_dict({"endpoints": ["127.0.0.1:2379"], "timeout": 0})
    with pytest.raises(ValueError, match="username and password go together"):
        config_from_dict({"endpoints": ["127.0.0.1:2379"], "username": "root"})
    with pytest.raises(ValueError, match="tsl"):
        config_from_dict({"endpoints": ["127.0.0.1:2379"], "tsl": {}})
    # Files that cannot be read are refused when the store is made, naming the setting.
    with pytest.raises(ValueError, match=r"store\.etcd\.tls\.ca: /nonexistent/ca\.pem"):
        store_from_config({"endpoints": ["127.0.0.1:2379"], "tls": {"ca": "/nonexistent/ca.pem"}})
    with pytest.raises(ValueError, match=r"store\.etcd\.tls\.cert: /nonexistent/c\.pem"):
        store_from_config({"endpoints": ["127.0.0.1:2379"], "tls": {"cert": "/nonexistent/c.pem"}})


def test_the_url_form():
    conf = store_config_from_url("etcd://10.0.0.1:2379,10.0.0.2:2379/fleet/a")
    assert (conf.endpoints, conf.prefix, conf.tls, conf.username) == (["10.0.0.1:2379", "10.0.0.2:2379"], "/fleet/a",
                                                                       None, None)  # fmt: skip
    assert store_config_from_url("etcd://h:2379").prefix == "/fastgw"
    conf = store_config_from_url("etcd://root:p%40ss@h:2379/p?timeout=0.5&history=7&local_copy=/var/lib/f.json")
    assert (conf.username, conf.password, conf.timeout, conf.history) == ("root", "p@ss", 0.5, 7)
    assert conf.local_copy == "/var/lib/f.json"
    assert store_config_from_url("etcd://h:1/p", local_copy="/x.json").local_copy == "/x.json"
    conf = store_config_from_url("etcd+https://h:2379/p?ca=/ca.pem&cert=/c.pem&key=/k.pem")
    assert conf.tls is not None and (conf.tls.ca, conf.tls.cert, conf.tls.key, conf.tls.verify) == (
        "/ca.pem", "/c.pem", "/k.pem", True)  # fmt: skip
    conf = store_config_from_url("etcd://h:2379/p?verify=false")
    assert conf.tls is not None and not conf.tls.verify
    for bad, says in [
        ("http://h:2379/p", "starts with etcd://"),
        ("etcd:///p", "no endpoint"),
        ("etcd://h/p", r"\$\.endpoints\[0\]"),
        ("etcd://h:1/p?timout=1", "unknown parameter 'timout'"),
        ("etcd://h:1/p?timeout=soon", "timeout must be a number"),
        ("etcd://h:1/p?history=0", r"\$\.history"),
        ("etcd://root@h:1/p", "username and password go together"),
    ]:
        with pytest.raises(ValueError, match=says):
            store_config_from_url(bad)


def server_and_client_leaf(ca: Any, stem: str) -> tuple[str, str]:
    """A leaf for 127.0.0.1 with both usages: etcd 3.4's JSON gateway shows the member's own certificate as a
    client to the member's gRPC server, which --client-cert-auth then checks (etcd's security guide says so)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, stem)]))
        .issuer_name(ca.name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    cert_path, key_path = ca.folder / f"{stem}.crt", ca.folder / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    key_path.write_bytes(pem)
    return str(cert_path), str(key_path)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
