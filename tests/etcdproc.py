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

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

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
            with urllib.request.urlopen(self.url + "/health", timeout=0.5) as r:
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

    def __init__(self, size: int = 1, extra: tuple[str, ...] = ()) -> None:
        self.extra = extra  # more etcd flags, for every member
        self.folder = tempfile.mkdtemp(prefix="fastgw-etcd-", dir=_data_root())
        self.members = [EtcdMember(f"m{i}", self.folder) for i in range(size)]
        cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        for m in self.members:
            m.cluster = cluster

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
        with urllib.request.urlopen(req, timeout=5) as r:
            return dict(json.loads(r.read()))

    def enable_auth(self, user: str, password: str) -> None:
        """A root user `user` with `password` and auth on: from then on every request needs a token."""
        self.call("/v3/auth/user/add", {"name": user, "password": password})
        self.call("/v3/auth/user/grant", {"user": user, "role": "root"})
        self.call("/v3/auth/enable", {})

    def compact(self, auth: tuple[str, str] | None = None) -> int:
        """Compact everything below the current revision; returns it."""
        token = self.call("/v3/auth/authenticate", {"name": auth[0], "password": auth[1]})["token"] if auth else ""
        key = base64.b64encode(b"\0").decode()
        rev = int(self.call("/v3/kv/range", {"key": key}, token)["header"]["revision"])
        self.call("/v3/kv/compaction", {"revision": rev, "physical": True}, token)
        return rev
