"""A real etcd for the tests: one node or a 3-node cluster on free loopback ports, each member a process the test
can kill and start again (same name, ports and data, so it rejoins), every member killed at teardown.

Data lives under /dev/shm when there is one: etcd fsyncs its WAL on every write, which on a slow disk makes a
test's hundred writes take seconds. Heartbeats of 50 ms and elections after 500 ms let a cluster that loses its
leader elect another within a second, as a test expects.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any

import pytest


def etcd_binary() -> str:
    """The etcd binary, or a skip saying why: .ci/run installs Debian's etcd-server, so CI never skips."""
    exe = shutil.which("etcd")
    if exe is None:
        pytest.skip("etcd is not installed (apt-get install etcd-server etcd-client)")
    return exe


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _data_root() -> str:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()


class EtcdMember:
    def __init__(self, name: str, folder: str) -> None:
        self.name = name
        self.folder = folder
        self.client_port = _free_port()
        self.peer_port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.cluster = ""  # --initial-cluster, set by the owner
        self.state = "new"
        self.scheme = "http"
        self.context: ssl.SSLContext | None = None  # for https: the CA and a client certificate

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def launch(self, *extra: str) -> None:
        exe = etcd_binary()
        cmd = [
            exe, "--name", self.name, "--data-dir", os.path.join(self.folder, self.name),
            "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
            "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", self.cluster, "--initial-cluster-state", self.state,
            "--initial-cluster-token", os.path.basename(self.folder),
            "--heartbeat-interval", "50", "--election-timeout", "500",
            "--logger", "zap", "--log-outputs", os.path.join(self.folder, f"{self.name}.log"), *extra,
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=0.5, context=self.context) as r:
                return bool(json.loads(r.read()).get("health") == "true")
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def wait_healthy(self, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"etcd {self.name} exited with {self.proc.returncode}: {self.log_tail()}")
            if self.healthy():
                return
            time.sleep(0.05)
        raise AssertionError(f"etcd {self.name} did not become healthy on {self.url}: {self.log_tail()}")

    def log_tail(self) -> str:
        try:
            with open(os.path.join(self.folder, f"{self.name}.log")) as f:
                return f.read()[-2000:]
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class EtcdCluster:
    """`size` members on loopback (1: a single node). `start()` waits until every member answers /health."""

    def __init__(self, size: int = 1, extra: tuple[str, ...] = (), tls: dict[str, str] | None = None) -> None:
        """`tls`: {ca, cert, key} of the members, and {client_cert, client_key} for the fixture's own calls:
        clients speak https and must show a certificate of that CA."""
        self.extra = extra  # more etcd flags, for every member
        self.folder = tempfile.mkdtemp(prefix="fastgw-etcd-", dir=_data_root())
        self.members = [EtcdMember(f"m{i}", self.folder) for i in range(size)]
        cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        context = None
        if tls is not None:
            self.extra += ("--cert-file", tls["cert"], "--key-file", tls["key"], "--trusted-ca-file", tls["ca"],
                           "--client-cert-auth")  # fmt: skip
            context = ssl.create_default_context(cafile=tls["ca"])
            context.load_cert_chain(tls["client_cert"], tls["client_key"])
        for m in self.members:
            m.cluster = cluster
            if context is not None:
                m.scheme, m.context = "https", context

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    @property
    def url(self) -> str:
        """`etcd://HOST:PORT,HOST:PORT` (no prefix: the caller adds one)."""
        return "etcd://" + ",".join(self.endpoints)

    def start(self) -> EtcdCluster:
        for m in self.members:
            m.launch(*self.extra)
        try:
            for m in self.members:
                m.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def kill(self, index: int) -> None:
        self.members[index].kill()

    def restart(self, index: int) -> None:
        """Start a killed member again with its data: it rejoins the cluster it was part of."""
        m = self.members[index]
        m.state = "existing"
        m.launch(*self.extra)
        m.wait_healthy()

    def stop(self) -> None:
        for m in self.members:
            m.kill()
        shutil.rmtree(self.folder, ignore_errors=True)

    def call(self, path: str, body: dict[str, Any], token: str = "") -> dict[str, Any]:
        """One request to the v3 JSON gateway of the first running member (for set-up and checks, not the code
        under test)."""
        m = next(m for m in self.members if m.running)
        req = urllib.request.Request(m.url + path, data=json.dumps(body).encode(), method="POST")
        if token:
            req.add_header("Authorization", token)
        with urllib.request.urlopen(req, timeout=5, context=m.context) as r:
            return dict(json.loads(r.read()))

    def enable_auth(self, user: str, password: str) -> None:
        """A root user `user` with `password` and auth on: from then on every request needs a token."""
        self.call("/v3/auth/user/add", {"name": user, "password": password})
        self.call("/v3/auth/user/grant", {"user": user, "role": "root"})
        self.call("/v3/auth/enable", {})

    def leader(self) -> int:
        """The index of the member that leads the cluster now."""
        ids = [self.call_member(m, "/v3/maintenance/status", {})["header"]["member_id"] for m in self.members]
        return ids.index(self.call_member(self.members[0], "/v3/maintenance/status", {})["leader"])

    def call_member(self, m: EtcdMember, path: str, body: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(m.url + path, data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=5, context=m.context) as r:
            return dict(json.loads(r.read()))

    def add_user(self, user: str, password: str, prefix: str, root: tuple[str, str]) -> None:
        """A user allowed to read and write the keys under `prefix` only (a role of the same name)."""
        token = self.call("/v3/auth/authenticate", {"name": root[0], "password": root[1]})["token"]
        key = prefix.encode()
        end = key[:-1] + bytes([key[-1] + 1])
        self.call("/v3/auth/role/add", {"name": user}, token)
        perm = {
            "permType": "READWRITE",
            "key": base64.b64encode(key).decode(),
            "range_end": base64.b64encode(end).decode(),
        }
        self.call("/v3/auth/role/grant", {"name": user, "perm": perm}, token)
        self.call("/v3/auth/user/add", {"name": user, "password": password}, token)
        self.call("/v3/auth/user/grant", {"user": user, "role": user}, token)

    def compact(self, auth: tuple[str, str] | None = None) -> int:
        """Compact everything below the current revision; returns it."""
        token = self.call("/v3/auth/authenticate", {"name": auth[0], "password": auth[1]})["token"] if auth else ""
        key = base64.b64encode(b"\0").decode()
        rev = int(self.call("/v3/kv/range", {"key": key}, token)["header"]["revision"])
        self.call("/v3/kv/compaction", {"revision": rev, "physical": True}, token)
        return rev


class TcpProxy:
    """A loopback TCP proxy in front of one etcd member, on the test's event loop, that can go wrong on purpose:
    `freeze()` stops passing bytes on the connections it has (both ways, sockets left open: a half-open link
    as a dead machine or a dropped route leaves it), `drop_replies = True` passes requests but no answer (a request
    that reaches etcd whose answer is lost). New connections pass unless `drop_replies`."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.drop_replies = False
        self._frozen: set[int] = set()
        self._links: list[tuple[int, Any, Any]] = []
        self._server: Any = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> TcpProxy:
        import asyncio

        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def _serve(self, reader: Any, writer: Any) -> None:
        import asyncio

        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        link = len(self._links)
        self._links.append((link, writer, up_writer))

        async def pipe(src: Any, dst: Any, replies: bool) -> None:
            try:
                while data := await src.read(65536):
                    if link in self._frozen or (replies and self.drop_replies):
                        continue
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                if link not in self._frozen:
                    dst.close()

        await asyncio.gather(pipe(reader, up_writer, False), pipe(up_reader, writer, True))

    def freeze(self) -> None:
        self._frozen.update(link for link, _, _ in self._links)

    async def close(self) -> None:
        for _, a, b in self._links:
            a.close()
            b.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
