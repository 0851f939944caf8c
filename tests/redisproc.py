"""A real redis-server for the tests: started on a free loopback port, stopped (and started again on the same
port) by the test, always killed at teardown. No persistence: every server starts empty."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisProcess:
    def __init__(self, *extra: str) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            # Never a silent skip: .ci/run installs redis-server; a machine without it fails these tests loudly.
            pytest.fail("redis-server is not installed (apt-get install redis-server)")
        self.exe = exe
        self.extra = extra
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        cmd = [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               *self.extra]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise AssertionError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None


def _free_pair() -> int:
    """A port whose cluster bus port (+10000) is free too."""
    import random

    for _ in range(200):
        port = random.randint(20_000, 50_000)
        try:
            for p in (port, port + 10_000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise AssertionError("no free port pair for a cluster node")


class RedisCluster:
    """Three `redis-server --cluster-enabled` nodes (no replicas) joined with `redis-cli --cluster create`."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.nodes: list[RedisProcess] = []

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> RedisCluster:
        for i in range(3):
            node = RedisProcess("--cluster-enabled", "yes", "--cluster-config-file", f"{self.folder}/nodes-{i}.conf",
                                "--cluster-node-timeout", "2000")  # fmt: skip
            node.port = _free_pair()
            self.nodes.append(node.start())
        cli = shutil.which("redis-cli")
        assert cli is not None, "redis-cli is missing (it comes with redis-server)"
        addrs = [f"127.0.0.1:{n.port}" for n in self.nodes]
        subprocess.run([cli, "--cluster", "create", *addrs, "--cluster-replicas", "0", "--cluster-yes"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            states = [
                subprocess.run([cli, "-p", str(n.port), "cluster", "info"], capture_output=True, text=True).stdout
                for n in self.nodes
            ]
            if all("cluster_state:ok" in s for s in states):
                return self
            time.sleep(0.1)
        self.stop()
        raise AssertionError("the redis cluster did not come up")

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()
