"""Worker pools: each function runs in up to `concurrency` worker processes, one invocation per worker at a time.

A worker is a `python` or `node` process running the bootstrap shipped in `fastgw/functions/runtimes/`, started
in the function's folder with the function's environment. The gateway talks to it over a unix socket pair, in
frames of a 4-byte big-endian length and a JSON message (`invoke` one way; `ready`, `init_error`, `log` and
`result` the other). Processes rather than threads, as Lambda does with sandboxes: a handler cannot block the
gateway's event loop, its environment variables and globals are its own, and a timed-out or crashed worker is
killed and replaced without touching anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from fastgw.config.schema import Function
from fastgw.functions import ACCOUNT_ID, REGION

log = logging.getLogger("fastgw.functions")
function_log = logging.getLogger("fastgw.function")

INIT_TIMEOUT = 10.0  # Lambda's init phase limit: a handler module that takes longer to load fails the invocation
STOP_GRACE = 2.0  # a worker told to stop (its channel closed) is killed if it has not exited by then
# Variables a worker inherits from the gateway (the rest of its environment is the function's own).
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "NODE_PATH", "SYSTEMROOT", "TMPDIR")
# Lambda's limit on a synchronous invocation's response; a bigger answer fails the invocation, as on AWS.
MAX_RESPONSE = 6 * 1024 * 1024
MAX_LOG_LINES = 1000  # lines kept per invocation for `fastgw invoke` (all of them still go to the log)


class Throttled(Exception):
    """Every worker is busy and the queue of waiting invocations is full."""


@dataclass
class Outcome:
    """What one invocation gave: the function's return value, or Lambda's error object for why it failed."""

    ok: bool
    value: Any = None
    error: dict[str, Any] | None = None
    logs: list[str] = field(default_factory=list)
    duration_ms: float = 0.0
    cold_start: bool = False


def bootstrap_path(name: str) -> Path:
    return Path(str(resources.files("fastgw.functions") / "runtimes" / name))


class Worker(asyncio.Protocol):
    """One worker process and its channel. Carries one invocation at a time."""

    def __init__(self, pool: FunctionPool, proc: asyncio.subprocess.Process) -> None:
        self.pool = pool
        self.proc = proc
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.ready: asyncio.Future[dict[str, Any]] = pool.loop.create_future()
        self.result: asyncio.Future[Outcome] | None = None
        self.request_id = ""
        self.logs: list[str] = []
        self.started = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.dead = False  # the process is gone
        self.retired = False  # killed or told to stop: never given another invocation
        self.generation = pool.generation  # the code it loaded: older than the pool's after a `recycle`

    # -- channel --------------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while len(buf) >= 4:
            n = int.from_bytes(buf[:4], "big")
            if n > MAX_RESPONSE + 65536:  # room for the message around the payload
                self._too_large(n)
                return
            if len(buf) < 4 + n:
                break
            try:
                msg = orjson.loads(buf[4 : 4 + n])
            except orjson.JSONDecodeError:
                log.error("function %s: worker %s sent a malformed frame; stopping it", self.pool.name, self.proc.pid)
                self.kill()
                return
            del buf[: 4 + n]
            self._message(msg)

    def connection_lost(self, exc: Exception | None) -> None:
        self.died("its channel closed")

    def _message(self, msg: dict[str, Any]) -> None:
        kind = msg.get("t")
        if kind == "log":
            line = str(msg.get("line", ""))
            rid = msg.get("id") or ""
            function_log.info("%s %s %s", self.pool.name, rid or "-", line)
            if rid and rid == self.request_id and len(self.logs) < MAX_LOG_LINES:
                self.logs.append(line)
        elif kind == "result":
            if msg.get("id") != self.request_id or self.result is None or self.result.done():
                return  # the answer to an invocation that already timed out
            if msg.get("exiting"):
                self.retired = True  # it is about to exit: never hand it the next invocation
            if msg.get("ok"):
                outcome = Outcome(ok=True, value=msg.get("value"))
            else:
                outcome = Outcome(ok=False, error=msg.get("error") or {"errorMessage": "unknown error"})
            self._settle(outcome)
        elif kind in ("ready", "init_error") and not self.ready.done():
            self.ready.set_result(msg)

    def _too_large(self, n: int) -> None:
        log.error("function %s: worker %s sent a %d-byte message; stopping it", self.pool.name, self.proc.pid, n)
        error = {
            "errorType": "Function.ResponseSizeTooLarge",
            "errorMessage": f"Response payload size ({n} bytes) exceeded maximum allowed payload size "
            f"({MAX_RESPONSE} bytes).",
        }
        self._settle(Outcome(ok=False, error=error))
        self.kill()

    # -- invocations ----------------------------------------------------------------------------------------

    def call(self, request_id: str, event: Any, timeout: float) -> asyncio.Future[Outcome]:
        loop = self.pool.loop
        self.request_id = request_id
        self.logs = []
        self.result = loop.create_future()
        self.started = time.perf_counter()
        deadline_ms = int((time.time() + timeout) * 1000)
        frame = orjson.dumps({"t": "invoke", "id": request_id, "deadline_ms": deadline_ms, "event": event})
        assert self.transport is not None
        self.transport.write(len(frame).to_bytes(4, "big") + frame)
        self.timer = loop.call_later(timeout, self._timed_out, timeout)
        return self.result

    def _settle(self, outcome: Outcome) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        outcome.logs = self.logs
        outcome.duration_ms = (time.perf_counter() - self.started) * 1000
        self.request_id = ""
        result, self.result = self.result, None
        if result is not None and not result.done():
            result.set_result(outcome)

    def _timed_out(self, timeout: float) -> None:
        self.timer = None
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        error = {
            "errorType": "Sandbox.Timedout",
            "errorMessage": f"{stamp}Z {self.request_id} Task timed out after {timeout:.2f} seconds",
        }
        log.warning("function %s: invocation %s timed out after %.2fs", self.pool.name, self.request_id, timeout)
        self._settle(Outcome(ok=False, error=error))
        self.kill()  # as Lambda does: the sandbox that timed out is not reused

    def died(self, why: str) -> None:
        if self.dead:
            return
        self.dead = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self.ready.done():
            self.ready.set_result({"t": "exited", "why": why})
        if self.result is not None and not self.result.done():
            code = self.proc.returncode
            error = {
                "errorType": "Runtime.ExitError",
                "errorMessage": f"RequestId: {self.request_id} Error: Runtime exited"
                + (f" with error: exit status {code}" if code is not None else f" ({why})"),
            }
            log.warning(
                "function %s: worker %s died during invocation %s", self.pool.name, self.proc.pid, self.request_id
            )
            self._settle(Outcome(ok=False, error=error))
        self.pool.worker_died(self)
        self.kill()

    def stop(self) -> None:
        """Ask the worker to exit (it does on end of input), and kill it if it has not after a grace period."""
        self.retired = True
        if self.transport is not None:
            self.transport.close()
        self.pool.loop.call_later(STOP_GRACE, self.kill)

    def kill(self) -> None:
        self.retired = True
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        if self.transport is not None:
            self.transport.close()


class FunctionPool:
    """The worker processes of one function, with a bounded queue of invocations waiting for one."""

    def __init__(self, name: str, spec: Function, code: Path, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.name = name
        self.spec = spec
        self.code = code
        self._loop = loop
        self.idle: list[Worker] = []
        self.workers: set[Worker] = set()
        self.size = 0  # live workers plus those starting
        self.warming = 0  # workers starting with no invocation waiting for them yet
        self.waiters: deque[asyncio.Future[Worker | None]] = deque()
        self.watchers: set[asyncio.Task[None]] = set()
        self.closed = False
        self.generation = 0  # bumped by `recycle`: workers of an older one have loaded code that changed
        # After a recycle, or in a pool a reload made: where python workers keep their bytecode (`fresh_bytecode`).
        self.pycache: str | None = None
        self.arn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"
        # Counted per invocation, read by the metrics at scrape time (as Lambda's Invocations, Errors, Throttles).
        self.invocations = 0
        self.errors = 0
        self.throttles = 0

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def command(self) -> list[str]:
        if self.spec.runtime == "nodejs":
            node = shutil.which("node")
            if node is None:
                raise RuntimeError("the nodejs runtime needs `node` on PATH (apt-get install -y nodejs)")
            return [node, str(bootstrap_path("bootstrap.mjs"))]
        return [sys.executable, "-u", str(bootstrap_path("bootstrap.py"))]

    def environment(self, fd: int) -> dict[str, str]:
        env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
        spec = self.spec
        env.update(
            AWS_LAMBDA_FUNCTION_NAME=self.name,
            AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
            AWS_LAMBDA_FUNCTION_MEMORY_SIZE=str(spec.memory_size),
            AWS_LAMBDA_LOG_GROUP_NAME=f"/aws/lambda/{self.name}",
            AWS_REGION=REGION,
            AWS_DEFAULT_REGION=REGION,
            AWS_EXECUTION_ENV="AWS_Lambda_nodejs" if spec.runtime == "nodejs" else "AWS_Lambda_python",
            LAMBDA_TASK_ROOT=str(self.code),
            _HANDLER=spec.handler,
        )
        env.update(spec.environment)
        env["_FASTGW_CHANNEL_FD"] = str(fd)
        if self.pycache is not None:
            env["PYTHONPYCACHEPREFIX"] = self.pycache
        stream = time.strftime("%Y/%m/%d", time.gmtime()) + "/[$LATEST]" + uuid.uuid4().hex
        env["_FASTGW_FUNCTION"] = orjson.dumps(
            {"name": self.name, "handler": spec.handler, "memory": spec.memory_size, "arn": self.arn,
             "log_stream": stream}
        ).decode()  # fmt: skip
        return env

    # -- serving ----------------------------------------------------------------------------------------------

    def start_warm(self) -> None:
        """Start the `warm` workers in the background (serving starts with them ready, as provisioned
        concurrency does)."""
        for _ in range(self.spec.warm - self.size):
            self.size += 1
            self.warming += 1
            self.loop.create_task(self._warm_one())

    async def _warm_one(self) -> None:
        try:
            worker = await self._spawn()
        except Exception as exc:  # noqa: BLE001 - reported; the first invocation tries again
            self.size -= 1
            self._wake()
            log.error("function %s: could not start a worker: %s", self.name, exc)
            return
        finally:
            self.warming -= 1
        if isinstance(worker, Worker):
            self.release(worker)

    async def invoke(self, request_id: str, event: Any) -> Outcome:
        """Run one invocation; never raises for the function's faults (they are in the Outcome)."""
        try:
            outcome = await self._invoke(request_id, event)
        except Throttled:
            self.throttles += 1
            raise
        except Exception:
            self.invocations += 1
            self.errors += 1
            raise
        self.invocations += 1
        if not outcome.ok:
            self.errors += 1
        return outcome

    async def _invoke(self, request_id: str, event: Any) -> Outcome:
        cold = False
        worker: Worker | None = None
        while worker is None:
            if self.closed:
                raise RuntimeError(f"function {self.name} is shutting down")
            while self.idle:
                candidate = self.idle.pop()
                if not candidate.retired:
                    worker = candidate
                    break
            if worker is not None:
                break
            # A free slot starts a worker, unless one already starting (warm) is not yet promised to a waiter.
            if self.size < self.spec.concurrency and self.warming <= len(self.waiters):
                self.size += 1
                cold = True
                try:
                    spawned = await self._spawn()
                except BaseException:
                    self.size -= 1  # no process was registered for the slot
                    self._wake()
                    raise
                if isinstance(spawned, Outcome):
                    return spawned  # the handler failed to load: that is this invocation's answer
                worker = spawned
                break
            # Waiting for a worker that is already starting does not take a place in the queue.
            if len(self.waiters) >= self.spec.queue + self.warming:
                raise Throttled(self.name)
            waiter: asyncio.Future[Worker | None] = self.loop.create_future()
            self.waiters.append(waiter)
            try:
                worker = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled() and waiter.result() is not None:
                    self.release(waiter.result())  # type: ignore[arg-type]
                else:
                    with contextlib.suppress(ValueError):
                        self.waiters.remove(waiter)
                raise
        try:
            outcome = await worker.call(request_id, event, self.spec.timeout)
        finally:
            if worker.result is None:
                self.release(worker)  # unless it died or was retired meanwhile (release checks)
        outcome.cold_start = cold
        return outcome

    async def _spawn(self) -> Worker | Outcome:
        """Start a worker for a slot already counted in `size`. Raises only before the process exists; after
        that, any failure is an Outcome (and the worker's death frees the slot)."""
        loop = self.loop
        parent, child = socket.socketpair()
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.command(),
                cwd=str(self.code),
                env=self.environment(child.fileno()),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                pass_fds=(child.fileno(),),
            )
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        worker = Worker(self, proc)
        self.workers.add(worker)
        watcher = loop.create_task(self._watch(worker))
        self.watchers.add(watcher)
        watcher.add_done_callback(self.watchers.discard)
        try:
            await loop.create_unix_connection(lambda: worker, sock=parent)
            msg = await asyncio.wait_for(asyncio.shield(worker.ready), INIT_TIMEOUT)
        except OSError as exc:
            msg = {"t": "exited", "why": f"cannot talk to it: {exc}"}
        except asyncio.TimeoutError:
            msg = {"t": "init_error", "error": {
                "errorType": "Runtime.InitTimeout",
                "errorMessage": f"the handler did not load within {INIT_TIMEOUT:.0f} seconds"}}  # fmt: skip
        if msg.get("t") == "ready":
            log.debug("function %s: worker %s ready", self.name, proc.pid)
            return worker
        error = msg.get("error") or {
            "errorType": "Runtime.ExitError",
            "errorMessage": f"the worker exited before it was ready ({msg.get('why', 'unknown')})",
        }
        log.error("function %s: init failed: %s: %s", self.name, error.get("errorType"), error.get("errorMessage"))
        worker.died("init failed")  # frees the slot it held
        return Outcome(ok=False, error=error, cold_start=True, logs=list(worker.logs))

    async def _watch(self, worker: Worker) -> None:
        """Forward what the worker writes straight to stdout/stderr (not through its log channel), and notice
        when it exits."""
        out = worker.proc.stdout
        assert out is not None
        pending = b""
        while chunk := await out.read(65536):
            *lines, pending = (pending + chunk).split(b"\n")
            if len(pending) >= 65536:  # a line that long is logged in pieces
                lines.append(pending)
                pending = b""
            for line in lines:
                function_log.info("%s - %s", self.name, line.decode("utf-8", "replace"))
        if pending:
            function_log.info("%s - %s", self.name, pending.decode("utf-8", "replace"))
        code = await worker.proc.wait()
        worker.died(f"exit status {code}")

    def release(self, worker: Worker) -> None:
        if worker.dead or worker.retired:
            return
        if self.closed or worker.generation != self.generation:
            worker.stop()  # closing, or its code changed under it (`recycle`): the next invocation gets a new one
            return
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(worker)
                return
        self.idle.append(worker)

    def worker_died(self, worker: Worker) -> None:
        if worker in self.workers:
            self.workers.discard(worker)
            self.size -= 1
        if worker in self.idle:
            self.idle.remove(worker)
        self._wake()
        if worker.generation != self.generation and not self.closed:
            self.start_warm()  # a recycled worker's slot: warm workers come back, on the new code

    def recycle(self) -> None:
        """The function's code changed on disk (`serve --watch`): idle workers stop now, busy ones when their
        invocation ends, and every later invocation (and the warm workers) gets a worker that loads the code
        again. Other functions' workers are not touched."""
        self.generation += 1
        self.fresh_bytecode()
        idle, self.idle = self.idle, []
        for worker in idle:
            worker.stop()

    def fresh_bytecode(self) -> None:
        """Python workers started from now on compile the function's code into a new folder of their own (the
        previous one, if any, is removed): called by `recycle`, and by a reload for a pool it made (Server.reload),
        whose code may have changed since another pool's workers compiled it."""
        if self.spec.runtime != "python":
            return
        # NOTE: a .pyc is trusted when the source's mtime (in whole seconds) and size match what it recorded, so
        # an edit within the second of the last import that keeps the size would load the old code from a folder
        # that import wrote (the code's own __pycache__, or a previous generation's folder).
        old = self.pycache
        self.pycache = tempfile.mkdtemp(prefix=f"fastgw-{self.name}-pycache-")
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def _wake(self) -> None:
        """A slot is free: the first waiter starts a worker in it."""
        while self.waiters and not self.closed:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        """Stop idle workers now and busy ones when their invocation ends; waiting invocations fail."""
        self.closed = True
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_exception(RuntimeError(f"function {self.name} is shutting down"))
        self.waiters.clear()
        for worker in self.idle:
            worker.stop()
        self.idle.clear()
        if self.pycache is not None:
            shutil.rmtree(self.pycache, ignore_errors=True)
            self.pycache = None

    async def wait_closed(self, grace: float = STOP_GRACE) -> None:
        """After `close`: stop every worker (busy ones too, after `grace`) and wait until all have exited."""
        self.close()
        if self.watchers:
            await asyncio.wait(set(self.watchers), timeout=grace)
        for worker in list(self.workers):
            worker.kill()
        if self.watchers:
            await asyncio.wait(set(self.watchers))
