"""Run `python -m fastgw serve` as a real process and learn its port from its log."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

_LISTEN = re.compile(r"(?:listening on|workers on) https?://127\.0\.0\.1:(\d+)")
_TLS = re.compile(r"https://127\.0\.0\.1:(\d+)")  # on the same line: the TLS listener (server.tls)


class GatewayProcess:
    def __init__(
        self, config: Path | None, *args: str, env: dict[str, str] | None = None, port_flag: bool = True
    ) -> None:
        self.config = config
        self.args = args
        self.port_flag = port_flag  # False: the port comes from the config (or the environment), not `--port 0`
        self.env = {**os.environ, **(env or {})}
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0
        self.tls_port: int | None = None
        self.log: list[str] = []
        self._drain: list[asyncio.Task[None]] = []

    async def start(self, timeout: float = 30.0) -> GatewayProcess:
        cmd = [sys.executable, "-m", "fastgw", "serve"]
        if self.config is not None:
            cmd.append(str(self.config))
        cmd += ["--port", "0", *self.args] if self.port_flag else list(self.args)
        self.proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=self.env
        )
        found: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        assert self.proc.stderr is not None and self.proc.stdout is not None
        self._drain.append(asyncio.create_task(self._read(self.proc.stderr, found)))
        self._drain.append(asyncio.create_task(self._read(self.proc.stdout, None)))
        try:
            self.port = await asyncio.wait_for(found, timeout)
        except asyncio.TimeoutError:
            self.kill()
            raise AssertionError("gateway did not start:\n" + "\n".join(self.log)) from None
        return self

    async def _read(self, stream: asyncio.StreamReader, found: asyncio.Future[int] | None) -> None:
        while True:
            line = await stream.readline()
            if not line:
                if found is not None and not found.done():
                    found.set_exception(AssertionError("gateway exited:\n" + "\n".join(self.log)))
                return
            text = line.decode(errors="replace").rstrip()
            self.log.append(text)
            m = _LISTEN.search(text)
            if m and found is not None and not found.done():
                tls = _TLS.search(text)
                self.tls_port = int(tls.group(1)) if tls else None
                found.set_result(int(m.group(1)))

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.signal(signal.SIGTERM)
            try:
                await self.wait()
            except asyncio.TimeoutError:
                self.kill()
                await self.proc.wait()
        for t in self._drain:
            t.cancel()

    def children(self) -> list[int]:
        assert self.proc is not None
        kids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                    kids.append(int(entry))
        return kids

    def rss_kib(self, pid: int | None = None) -> int:
        pid = pid or (self.proc.pid if self.proc else 0)
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0
