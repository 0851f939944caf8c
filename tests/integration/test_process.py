"""`fastgw serve` as a real process: quickstart, graceful shutdown, workers, reload, bounded streaming memory."""

from __future__ import annotations

import asyncio
import re
import signal
import time

import pytest

from fastgw import core
from fastgw.testing import EchoUpstream, RawConnection, http_request
from tests.integration.gwprocess import GatewayProcess

pytestmark = pytest.mark.asyncio


def _write(path, text: str):
    path.write_text(text)
    return path


def _proxy_yaml(upstream_url: str, extra: str = "") -> str:
    return f"""
logging: {{access_log: false}}
server: {{shutdown_timeout: 5}}
upstreams:
  b: {{targets: ["{upstream_url}"]}}
routes:
  - path: /{{proxy+}}
    integration: {{type: http, upstream: b}}
{extra}
"""


async def test_quickstart_answers_at_once():
    gw = await GatewayProcess(None).start()
    try:
        r = await http_request(gw.port, "GET", "/")
        assert r.status == 200 and "fastgw is running" in r.json()["message"]
        r = await http_request(gw.port, "GET", "/health")
        assert r.json() == {"status": "ok"}
        # The suite also runs on the pure twin (make test-pure): the log must say which core is serving.
        expected = "core compiled" if core.COMPILED else "core pure-Python"
        assert any(expected in line for line in gw.log), gw.log
    finally:
        await gw.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _try_lines_answer_as_they_say(port: int) -> None:
    """Each `curl` line of the quickstart's welcome, run against the gateway, answers as the line says."""
    welcome = (await http_request(port, "GET", "/")).json()
    assert len(welcome["try"]) == 3, welcome
    for line in welcome["try"]:
        m = re.match(r"curl -i (?:-X (\w+) )?http://127\.0\.0\.1:(\d+)(/\S*)(?:\s+\((\d+): (.*)\))?$", line)
        assert m, line
        method, line_port, path, status, claim = m.groups()
        assert int(line_port) == port, line  # the welcome names the port it is served on
        r = await http_request(port, method or "GET", path)
        assert r.status == int(status or 200), (line, r.status, r.body)
        if claim is not None:
            allowed = r.header("allow")
            assert allowed and allowed in claim, (line, allowed)  # says what the Allow header says
        if path.startswith("/api/"):
            assert r.header("x-served-by") == "demo-service"  # proxied through the gateway to itself


async def test_quickstart_follows_the_port_it_is_served_on():
    port = _free_port()
    gw = await GatewayProcess(None, "--port", str(port)).start()  # the later --port wins
    try:
        assert gw.port == port
        await _try_lines_answer_as_they_say(port)
    finally:
        await gw.stop()
    gw = await GatewayProcess(None, port_flag=False, env={"FASTGW_PORT": "0"}).start()  # a free port, chosen
    try:
        await _try_lines_answer_as_they_say(gw.port)
    finally:
        await gw.stop()


async def test_pure_core_fallback_warns_loudly():
    gw = await GatewayProcess(None, env={"FASTGW_NO_EXTENSIONS": "1"}).start()
    try:
        assert (await http_request(gw.port, "GET", "/health")).status == 200
        assert any("runs on its pure-Python core" in line for line in gw.log), gw.log
    finally:
        await gw.stop()


async def test_sigterm_lets_the_request_in_flight_finish(tmp_path):
    async with EchoUpstream() as up:
        gw = await GatewayProcess(_write(tmp_path / "gw.yaml", _proxy_yaml(up.url))).start()
        try:
            in_flight = asyncio.create_task(http_request(gw.port, "GET", "/sleep/1500", timeout=10))
            await asyncio.sleep(0.5)
            gw.signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            with pytest.raises(OSError):  # no longer accepting
                await RawConnection.open(gw.port)
            r = await in_flight
            assert r.status == 200 and r.json()["path"] == "/sleep/1500"
            assert r.header("connection") == "close"
            assert await gw.wait() == 0
        finally:
            await gw.stop()


async def test_shutdown_grace_period_is_bounded(tmp_path):
    async with EchoUpstream() as up:
        cfg = _proxy_yaml(up.url).replace("shutdown_timeout: 5", "shutdown_timeout: 0.5")
        gw = await GatewayProcess(_write(tmp_path / "gw.yaml", cfg)).start()
        try:
            stuck = asyncio.create_task(http_request(gw.port, "GET", "/sleep/30000", timeout=20))
            await asyncio.sleep(0.3)
            started = time.monotonic()
            gw.signal(signal.SIGTERM)
            # The request in flight would take 30 s: well under that proves the 0.5 s grace period bounds the
            # shutdown, with room for a slow, shared CI machine.
            assert await gw.wait(timeout=25) == 0
            assert time.monotonic() - started < 20
            with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
                await stuck
        finally:
            await gw.stop()


async def test_workers_share_the_port_and_a_killed_worker_is_replaced(tmp_path):
    async with EchoUpstream() as up:
        gw = await GatewayProcess(_write(tmp_path / "gw.yaml", _proxy_yaml(up.url)), "--workers", "2").start()
        try:
            deadline = time.monotonic() + 30
            while sum("ready on port" in line for line in gw.log) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            first = sorted(gw.children())
            assert len(first) == 2 and sum("ready on port" in line for line in gw.log) == 2, gw.log
            assert (await http_request(gw.port, "GET", "/w")).status == 200
            victim = first[0]
            import os

            os.kill(victim, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                kids = gw.children()
                if len(kids) == 2 and victim not in kids:
                    break
                await asyncio.sleep(0.1)
            kids = gw.children()
            assert len(kids) == 2 and victim not in kids, (first, kids)
            while sum("ready on port" in line for line in gw.log) < 3 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert sum("ready on port" in line for line in gw.log) == 3, gw.log
            assert any("exited (killed by signal 9)" in line for line in gw.log), gw.log
            statuses = [(await http_request(gw.port, "GET", f"/after/{i}")).status for i in range(20)]
            assert statuses == [200] * 20
        finally:
            await gw.stop()
        assert gw.proc is not None and gw.proc.returncode == 0
        assert not gw.children()


async def test_sighup_reload_keeps_old_config_when_new_one_is_broken(tmp_path):
    path = tmp_path / "gw.yaml"
    mock = "routes:\n  - path: /v\n    integration: {{type: mock, body: {body}}}\nlogging: {{access_log: false}}\n"
    _write(path, mock.format(body="one"))
    gw = await GatewayProcess(path).start()
    try:
        assert (await http_request(gw.port, "GET", "/v")).body == b"one"
        _write(path, mock.format(body="two").replace("path: /v", "path: v-without-slash"))
        gw.signal(signal.SIGHUP)
        for _ in range(100):
            if any("reload refused" in line for line in gw.log):
                break
            await asyncio.sleep(0.05)
        refused = [line for line in gw.log if "reload refused" in line]
        assert refused and "$.routes[0].path" in refused[0] and str(path) in refused[0]
        assert (await http_request(gw.port, "GET", "/v")).body == b"one"
        _write(path, mock.format(body="two"))
        gw.signal(signal.SIGHUP)
        for _ in range(100):
            if (await http_request(gw.port, "GET", "/v")).body == b"two":
                break
            await asyncio.sleep(0.05)
        assert (await http_request(gw.port, "GET", "/v")).body == b"two"
    finally:
        await gw.stop()


async def test_a_worker_started_after_a_reload_serves_the_reloaded_config(tmp_path):
    # With --workers N the supervisor reloads too: a worker that replaces a dead one must not bring back the
    # config the gateway started with.
    import os

    path = tmp_path / "gw.yaml"
    mock = "routes:\n  - path: /v\n    integration: {{type: mock, body: {body}}}\nlogging: {{access_log: false}}\n"
    _write(path, mock.format(body="one"))
    gw = await GatewayProcess(path, "--workers", "2").start()
    try:
        deadline = time.monotonic() + 30
        while sum("ready on port" in line for line in gw.log) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        _write(path, mock.format(body="two"))
        gw.signal(signal.SIGHUP)
        while sum("reloaded" in line for line in gw.log) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert sum("reloaded" in line for line in gw.log) >= 2, gw.log
        victim = gw.children()[0]
        os.kill(victim, signal.SIGKILL)
        while sum("ready on port" in line for line in gw.log) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert sum("ready on port" in line for line in gw.log) == 3, gw.log
        # Each request may land on either worker (SO_REUSEPORT): all of them must answer the reloaded body.
        bodies = {(await http_request(gw.port, "GET", "/v")).body for _ in range(30)}
        assert bodies == {b"two"}, bodies
    finally:
        await gw.stop()


async def test_sighup_reload_names_the_settings_that_need_a_restart_and_applies_the_rest(tmp_path):
    path = tmp_path / "gw.yaml"
    port, other = _free_port(), _free_port()
    text = """
server: {{port: {port}, backlog: {backlog}}}
logging: {{access_log: false}}
upstreams:
  self: {{targets: ["http://${{server.host}}:${{server.port}}"]}}
routes:
  - {{path: /v, integration: {{type: mock, body: {body}}}}}
  - {{path: /via-self, integration: {{type: http, upstream: self, path: /v}}}}
"""
    _write(path, text.format(port=port, backlog=2048, body="one"))
    gw = await GatewayProcess(path, port_flag=False).start()
    try:
        assert gw.port == port and (await http_request(port, "GET", "/via-self")).body == b"one"
        _write(path, text.format(port=other, backlog=16, body="two"))
        gw.signal(signal.SIGHUP)
        for _ in range(100):
            if any("needs a restart" in line for line in gw.log):
                break
            await asyncio.sleep(0.05)
        warned = [line for line in gw.log if "needs a restart" in line]
        assert warned, gw.log
        assert f"server.port: {port} -> {other}" in warned[0] and "server.backlog: 2048 -> 16" in warned[0]
        assert f"still listening on 127.0.0.1:{port}" in warned[0]
        # The rest of the new config serves, and `${server.port}` still names the port being served.
        assert (await http_request(port, "GET", "/v")).body == b"two"
        assert (await http_request(port, "GET", "/via-self")).body == b"two"
        with pytest.raises(OSError):
            await RawConnection.open(other)
    finally:
        await gw.stop()


async def test_large_response_to_a_slow_reader_keeps_memory_bounded(tmp_path):
    size = 256 * 1024 * 1024
    async with EchoUpstream() as up:
        gw = await GatewayProcess(_write(tmp_path / "gw.yaml", _proxy_yaml(up.url))).start()
        try:
            baseline = gw.rss_kib()
            conn = await RawConnection.open(gw.port)
            await conn.send(f"GET /bytes/{size} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
            head = await conn.reader.readuntil(b"\r\n\r\n")
            assert b"content-length: %d" % size in head.lower()
            await conn.reader.readexactly(1024 * 1024)
            await asyncio.sleep(2.0)  # the client stops reading; the upstream would send it all if it could
            paused_rss = gw.rss_kib()
            received = 1024 * 1024
            while received < size:
                chunk = await asyncio.wait_for(conn.reader.read(1 << 20), 10)
                assert chunk
                received += len(chunk)
            assert received == size
            await conn.close()
            assert paused_rss - baseline < 48 * 1024, (baseline, paused_rss)
        finally:
            await gw.stop()


async def test_large_upload_to_a_slow_upstream_keeps_memory_bounded(tmp_path):
    size = 128 * 1024 * 1024
    total = 0
    started = asyncio.Event()

    async def slow_sink(reader, writer):
        nonlocal total
        head = await reader.readuntil(b"\r\n\r\n")
        length = int([ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")][0].split(b":")[1])
        started.set()
        await asyncio.sleep(2.0)  # not reading: the gateway must stop reading from the client
        while total < length:
            data = await reader.read(1 << 20)
            if not data:
                break
            total += len(data)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(slow_sink, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    cfg = _proxy_yaml(f"http://127.0.0.1:{port}") + "limits: {max_body_size: 0}\n"
    gw = await GatewayProcess(_write(tmp_path / "gw.yaml", cfg)).start()
    try:
        baseline = gw.rss_kib()
        conn = await RawConnection.open(gw.port)
        conn.writer.write(f"PUT /up HTTP/1.1\r\nHost: a\r\nContent-Length: {size}\r\n\r\n".encode())
        block = b"u" * (1 << 20)
        peak = 0

        async def send_all():
            for _ in range(size // len(block)):
                conn.writer.write(block)
                await conn.writer.drain()

        sender = asyncio.create_task(send_all())
        await started.wait()
        await asyncio.sleep(1.5)
        peak = gw.rss_kib()
        await asyncio.wait_for(sender, 60)
        r = await conn.response(timeout=30)
        assert r.status == 200 and total == size
        await conn.close()
        assert peak - baseline < 48 * 1024, (baseline, peak)
    finally:
        await gw.stop()
        srv.close()


async def test_serve_takes_its_config_from_the_environment(tmp_path):
    path = _write(tmp_path / "env.yaml", "routes: [{path: /env, integration: {type: mock, body: from-env}}]\n")
    gw = await GatewayProcess(None, env={"FASTGW_CONFIG": str(path), "FASTGW_LOG_LEVEL": "info"}).start()
    try:
        r = await http_request(gw.port, "GET", "/env")
        assert r.status == 200 and r.body == b"from-env"
        assert (await http_request(gw.port, "GET", "/health")).status == 404  # not the quickstart
    finally:
        await gw.stop()
