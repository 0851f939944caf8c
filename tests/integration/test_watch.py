"""`fastgw serve --watch`: a real process follows its config file and its functions' code."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from pathlib import Path

import pytest

from fastgw.config.load import load_config
from fastgw.server.watch import MAX_FILES, Watcher, code_files, stamp
from fastgw.testing import http_request
from tests.integration.gwprocess import GatewayProcess

MOCK = "logging: {{access_log: false}}\nroutes:\n  - path: /v\n    integration: {{type: mock, body: {body}}}\n"
ADMIN = "admin: {host: 127.0.0.1, port: 0}\n"

HANDLER = """
import os

def handler(event, context):
    return {"statusCode": 200, "body": "%s " + str(os.getpid())}
"""


async def _until(check, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.1)
    return False


async def _body(port: int, path: str = "/v") -> bytes:
    return (await http_request(port, "GET", path)).body


@pytest.mark.asyncio
async def test_a_changed_config_is_served_and_a_broken_one_refused(tmp_path: Path):
    path = tmp_path / "gw.yaml"
    path.write_text(MOCK.format(body="one"))
    gw = await GatewayProcess(path, "--watch").start()
    try:
        assert await _body(gw.port) == b"one"
        path.write_text(MOCK.format(body="two"))

        async def two() -> bool:
            return await _body(gw.port) == b"two"

        assert await _until(two), gw.log
        assert any("watch: " in line and "changed; reloading" in line for line in gw.log), gw.log
        # A broken file is refused with the key path, and the running config keeps serving.
        path.write_text(MOCK.format(body="three").replace("path: /v", "path: no-slash"))

        async def refused() -> bool:
            return any("reload refused" in line for line in gw.log)

        assert await _until(refused), gw.log
        assert any("$.routes[0].path" in line for line in gw.log if "reload refused" in line)
        assert await _body(gw.port) == b"two"
    finally:
        await gw.stop()


@pytest.mark.asyncio
@pytest.mark.parametrize("follow", ["events", "polling"])
async def test_file_system_events_serve_a_save_at_once_and_polling_still_follows(tmp_path: Path, follow: str):
    """With watchfiles (the `watch` extra) a save wakes the watch: served well within the two polls a second apart
    that polling needs (1-2 s); FASTGW_WATCH_POLL=1 (bind mounts) polls, and still gets there."""
    pytest.importorskip("watchfiles")
    path = tmp_path / "gw.yaml"
    path.write_text(MOCK.format(body="one"))
    env = {"FASTGW_WATCH_POLL": "1"} if follow == "polling" else {}
    gw = await GatewayProcess(path, "--watch", env=env).start()
    try:
        assert await _body(gw.port) == b"one"
        await asyncio.sleep(0.3)  # the watch is following
        for n, body in enumerate(("two", "three")):
            started = time.monotonic()
            path.write_text(MOCK.format(body=body))

            async def served(body: str = body) -> bool:
                return await _body(gw.port) == body.encode()

            assert await _until(served), gw.log
            took = time.monotonic() - started
            if follow == "events":
                assert took < 0.9, (n, took)
            else:
                assert took >= 0.9, (n, took)  # two polls a second apart: FASTGW_WATCH_POLL took effect
    finally:
        await gw.stop()


@pytest.mark.asyncio
async def test_a_changed_handler_restarts_only_its_own_function(tmp_path: Path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "app.py").write_text(HANDLER % f"{name}1")
    path = tmp_path / "gw.yaml"
    path.write_text(
        "logging: {access_log: false}\n"
        "functions:\n"
        "  a: {runtime: python, handler: app.handler, code: a, warm: 1}\n"
        "  b: {runtime: python, handler: app.handler, code: b, warm: 1}\n"
        "routes:\n"
        "  - {path: /a, integration: {type: lambda, function: a}}\n"
        "  - {path: /b, integration: {type: lambda, function: b}}\n"
    )
    gw = await GatewayProcess(path, "--watch").start()
    try:
        a_version, a_pid = (await _body(gw.port, "/a")).split()
        b_before = await _body(gw.port, "/b")
        assert a_version == b"a1" and b_before.startswith(b"b1 ")
        (tmp_path / "a" / "app.py").write_text(HANDLER % "a2")

        async def new_code() -> bool:
            return (await _body(gw.port, "/a")).startswith(b"a2 ")

        assert await _until(new_code), gw.log
        assert (await _body(gw.port, "/a")).split()[1] != a_pid  # a new worker process loaded it
        assert await _body(gw.port, "/b") == b_before  # the other function's worker was left alone
        assert any("the code of function a changed" in line for line in gw.log), gw.log
        assert not any("the code of function b changed" in line for line in gw.log), gw.log
    finally:
        await gw.stop()


@pytest.mark.asyncio
async def test_every_worker_follows_a_changed_config(tmp_path: Path):
    path = tmp_path / "gw.yaml"
    path.write_text(MOCK.format(body="one"))
    gw = await GatewayProcess(path, "--watch", "--workers", "2").start()
    try:
        deadline = time.monotonic() + 30
        while sum("ready on port" in line for line in gw.log) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        path.write_text(MOCK.format(body="two"))

        async def both_reloaded() -> bool:
            return sum("reloaded" in line for line in gw.log) >= 2

        assert await _until(both_reloaded), gw.log
        # Each connection may land on either worker (SO_REUSEPORT): all must answer the new body.
        bodies = {await _body(gw.port) for _ in range(30)}
        assert bodies == {b"two"}, bodies
    finally:
        await gw.stop()


ENV_HANDLER = """
import os

def handler(event, context):
    return {"statusCode": 200, "body": "%s " + os.environ["V"]}
"""


@pytest.mark.asyncio
async def test_a_pool_a_reload_makes_compiles_the_code_afresh(tmp_path: Path):
    (tmp_path / "f").mkdir()
    source = tmp_path / "f" / "app.py"
    source.write_text(ENV_HANDLER % "one")
    path = tmp_path / "gw.yaml"
    config = (
        "logging: {access_log: false}\n"
        "functions:\n  f: {runtime: python, handler: app.handler, code: f, environment: {V: '%s'}}\n"
        "routes:\n  - {path: /f, integration: {type: lambda, function: f}}\n"
    )
    path.write_text(config % "1")
    gw = await GatewayProcess(path, "--watch").start()
    try:
        assert await _body(gw.port, "/f") == b"one 1"  # its worker compiled app.py into f/__pycache__
        # An edit in the same second that keeps the size: the .pyc there still matches it. The stamp is put back
        # whole (mtime_ns too, and the file keeps its inode), so the code watch cannot tell either and does not
        # recycle: only the reload below decides which code the new pool's workers load.
        before = source.stat()
        source.write_text(ENV_HANDLER % "two")
        os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))
        path.write_text(config % "2")  # the function's definition changed: the reload makes it a new pool

        async def reloaded() -> bool:
            return (await _body(gw.port, "/f")).endswith(b" 2")

        assert await _until(reloaded), gw.log
        assert await _body(gw.port, "/f") == b"two 2", gw.log  # not the bytecode of "one"
    finally:
        await gw.stop()


def test_a_change_is_acted_on_once_it_holds_still(tmp_path: Path):
    path = tmp_path / "gw.yaml"
    path.write_text("one")
    w = Watcher(str(path))
    assert not w.poll()
    path.write_text("two, longer")  # the size changes, so the stamp does whatever the clock's resolution
    assert not w.poll().config  # seen once: maybe half written
    assert w.poll().config  # unchanged since: acted on
    assert not w.poll().config  # and only once
    path.unlink()
    assert not w.poll().config  # a file gone (mid-save) is not a change


def test_a_file_state_a_reload_applied_is_not_a_change(tmp_path: Path):
    path = tmp_path / "gw.yaml"
    path.write_text(MOCK.format(body="one"))
    w = Watcher(str(path), loaded_from=load_config(path).stamp)
    path.write_text(MOCK.format(body="two-longer"))
    w.applied(load_config(path).stamp)  # a SIGHUP loaded it before the watch saw it
    assert not w.poll() and not w.poll()
    path.write_text(MOCK.format(body="three-longer-still"))
    assert not w.poll()  # seen once: pending
    w.applied(stamp(str(path)))  # a POST /reload loaded it meanwhile
    assert not w.poll() and not w.poll()
    path.write_text(MOCK.format(body="four"))
    assert not w.poll()
    changes = w.poll()
    assert changes.config and w.wants_reload(changes)  # a change nobody loaded is still acted on
    w.applied(changes.config_stamp)  # ... unless a reload loaded it between the poll and the watch's own reload
    assert not w.wants_reload(changes)


def test_a_save_before_the_watch_starts_is_still_a_change(tmp_path: Path):
    path = tmp_path / "gw.yaml"
    path.write_text(MOCK.format(body="one"))
    loaded = load_config(path)
    path.write_text(MOCK.format(body="two-longer"))  # saved after the load, before the watch took its first stamp
    w = Watcher(str(path), loaded_from=loaded.stamp)
    assert not w.poll().config
    assert w.poll().config


async def _reload_by(gw: GatewayProcess, how: str) -> None:
    if how == "SIGHUP":
        gw.signal(signal.SIGHUP)
        return
    admin = next(int(m.group(1)) for line in gw.log if (m := re.search(r"admin API listening on .*:(\d+)", line)))
    assert (await http_request(admin, "POST", "/reload", host="127.0.0.1")).status == 200


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["SIGHUP", "POST /reload"])
@pytest.mark.parametrize("workers", [1, 2])
async def test_a_change_reloaded_otherwise_is_not_reloaded_again_by_the_watch(tmp_path: Path, how: str, workers: int):
    path = tmp_path / "gw.yaml"
    path.write_text(ADMIN + MOCK.format(body="one"))
    gw = await GatewayProcess(path, "--watch", "--workers", str(workers)).start()
    try:

        async def ready() -> bool:  # serving, with its signal handlers set (under a supervisor: every worker)
            if workers > 1:
                return sum("ready on port" in line for line in gw.log) >= workers
            return any("fastgw listening on" in line for line in gw.log)

        assert await _until(ready), gw.log
        # NOTE: the admin API's line comes first and also says "listening on": the gateway's own port is on its line.
        gw.port = next(
            int(m.group(1)) for line in gw.log if (m := re.search(r"(?:fastgw listening|workers) on .*:(\d+)", line))
        )
        path.write_text(ADMIN + MOCK.format(body="two"))
        await _reload_by(gw, how)  # well within the watch's two polls of the new file

        async def reloaded() -> bool:
            return sum("reloaded" in line for line in gw.log) >= workers

        assert await _until(reloaded), gw.log
        await asyncio.sleep(3.5)  # three polls or more: the watch would have acted on the file by now
        assert sum("reloaded" in line for line in gw.log) == workers, gw.log  # each worker once
        assert not any("changed; reloading" in line for line in gw.log), gw.log
        assert [m.group(1) for line in gw.log if (m := re.search(r"deployment \w+ live \((.*)\)", line))] == [
            "start",
            how,
        ], gw.log
        assert {await _body(gw.port) for _ in range(10)} == {b"two"}
        # The watch still follows the file for the next change.
        path.write_text(ADMIN + MOCK.format(body="three"))

        async def three() -> bool:
            return await _body(gw.port) == b"three"

        assert await _until(three), gw.log
    finally:
        await gw.stop()


def test_the_code_walk_skips_dependencies_and_is_bounded(tmp_path: Path):
    (tmp_path / "node_modules" / "dep").mkdir(parents=True)
    (tmp_path / "node_modules" / "dep" / "index.js").write_text("x")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "app.cpython-311.pyc").write_text("x")
    (tmp_path / "app.py").write_text("x")
    (tmp_path / "README.md").write_text("x")
    (tmp_path / "gw.yaml").write_text("x")
    assert sorted(Path(p).name for p in code_files(tmp_path, exclude=str(tmp_path / "gw.yaml"))) == ["app.py"]
    many = tmp_path / "many"
    many.mkdir()
    for i in range(MAX_FILES + 5):
        (many / f"m{i}.py").write_text("")
    assert len(code_files(many)) == MAX_FILES
