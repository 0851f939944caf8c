"""The command line against a running gateway (a real `fastgw serve` process): `fastgw reload` answers once the
deployment serves, `fastgw deploy FILE` and `fastgw diff FILE` go through the admin API (sending what it asks of
a client), `fastgw stop` uses the pid file `serve` wrote."""

from __future__ import annotations

import asyncio
import re
import sys
import time
from pathlib import Path

from fastgw.client import http_request
from fastgw.config.load import load_config
from fastgw.server.server import Server
from tests.integration.gwprocess import GatewayProcess

MOCK = (
    "admin: {{host: 127.0.0.1, port: {admin}}}\nlogging: {{access_log: false}}\n"
    "routes:\n  - name: v\n    path: /v\n    integration: {{type: mock, body: {body}}}\n"
)


async def fastgw(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fastgw", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_reload_deploy_diff_and_stop(tmp_path: Path):
    admin = free_port()
    path = tmp_path / "gw.yaml"
    path.write_text(MOCK.format(admin=admin, body="one"))
    gw = await GatewayProcess(path, "--workers", "2").start()
    try:
        deadline = time.monotonic() + 30
        while sum("ready on port" in line for line in gw.log) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        pid_file = Path(str(path) + ".pid")
        assert pid_file.read_text().strip() == str(gw.proc.pid)  # type: ignore[union-attr]
        # reload: answered once the deployment serves on both workers.
        path.write_text(MOCK.format(admin=admin, body="two"))
        code, out, err = await fastgw("reload", str(path), "-m", "ship two")
        assert code == 0, err
        assert re.search(r"deployment [0-9a-f]{16} serving \(1 routes; pid \d+, pid \d+\)", out), out
        assert {(await http_request(gw.port, "GET", "/v")).body for _ in range(20)} == {b"two"}
        # A broken file: refused with the key path, exit 1.
        path.write_text(MOCK.format(admin=admin, body="x").replace("path: /v", "path: v"))
        code, out, err = await fastgw("reload", str(path))
        assert code == 1 and "$.routes[0].path" in err
        # diff: the file against what serves.
        code, out, err = await fastgw("diff", str(path))
        assert code == 1 and '~ $.routes[name=v].path: "/v" -> "v"' in out, out
        # deploy another file; then it and what serves are the same.
        other = tmp_path / "other.yaml"
        other.write_text(MOCK.format(admin=admin, body="three"))
        code, out, err = await fastgw("deploy", str(other), "-m", "from CI")
        assert code == 0 and "serving on 2 workers" in out, err
        assert (await http_request(gw.port, "GET", "/v")).body == b"three"
        assert (await fastgw("diff", str(other)))[0] == 0
        code, out, err = await fastgw("deployments", str(path))
        assert code == 0 and "from CI" in out.splitlines()[0] and "ship two" in out
        # stop: SIGTERM to the pid in the pid file, waits for the exit; the pid file is gone.
        code, out, err = await fastgw("stop", str(path))
        assert code == 0 and f"stopped pid {gw.proc.pid}" in out, err  # type: ignore[union-attr]
        assert await gw.wait() == 0 and not pid_file.exists()
        code, out, err = await fastgw("stop", str(path))
        assert code == 2 and "no running gateway" in err
    finally:
        await gw.stop()


async def test_reload_without_an_admin_section_sends_sighup(tmp_path: Path):
    path = tmp_path / "gw.yaml"
    text = "logging: {access_log: false}\nroutes:\n  - path: /v\n    integration: {type: mock, body: %s}\n"
    path.write_text(text % "one")
    gw = await GatewayProcess(path).start()
    try:
        path.write_text(text % "two")
        code, out, err = await fastgw("reload", str(path))
        assert code == 0 and f"sent SIGHUP to pid {gw.proc.pid}" in out, err  # type: ignore[union-attr]
        deadline = time.monotonic() + 10
        while (await http_request(gw.port, "GET", "/v")).body != b"two" and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert (await http_request(gw.port, "GET", "/v")).body == b"two"
        # Without an admin section the file is all there is (issue 20, item 6): nothing is kept beside it.
        assert sorted(p.name for p in tmp_path.iterdir()) == ["gw.yaml", "gw.yaml.pid"]
    finally:
        await gw.stop()


async def test_the_cli_sends_a_token_and_the_admin_api_refuses_without(tmp_path: Path):
    path = tmp_path / "gw.yaml"
    path.write_text(MOCK.format(admin=0, body="one").replace("port: 0", "port: 0, token: t0123456789abcdef"))
    server = Server(load_config(path), "127.0.0.1", 0)
    await server.start()
    try:
        assert server.admin is not None
        url = f"http://127.0.0.1:{server.admin.port}"
        path.write_text(MOCK.format(admin=0, body="two").replace("port: 0", "port: 0, token: t0123456789abcdef"))
        code, out, err = await fastgw("reload", str(path), "--admin", url, "--token", "wrong-token-000000")
        assert code == 1 and "Unauthorized" in err
        code, out, err = await fastgw("reload", str(path), "--admin", url)  # the file's admin.token
        assert code == 0, err
        assert (await http_request(server.port, "GET", "/v")).body == b"two"
    finally:
        await server.shutdown(timeout=1.0)
