"""The Python runtime's worker process: loads one handler and runs one invocation at a time, like a Lambda
sandbox. Started by fastgw (`fastgw/functions/pool.py`) with the function's folder as working directory; talks to
the gateway over the socket whose descriptor is in `_FASTGW_CHANNEL_FD`, in frames of a 4-byte big-endian length
and a JSON message. Only the standard library is used here, so a handler's imports start from a clean process.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import json
import logging
import os
import socket
import sys
import time
import traceback
from typing import Any

_chan = socket.socket(fileno=int(os.environ.pop("_FASTGW_CHANNEL_FD")))
_current_id = ""


def send(msg: dict[str, Any]) -> None:
    # allow_nan=False: NaN is not JSON; a result holding one fails the invocation (Runtime.MarshalError).
    data = json.dumps(msg, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    _chan.sendall(len(data).to_bytes(4, "big") + data)


def recv() -> dict[str, Any] | None:
    head = _recv_exact(4)
    if head is None:
        return None
    body = _recv_exact(int.from_bytes(head, "big"))
    return None if body is None else json.loads(body)


def _recv_exact(n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = _chan.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


class _LogWriter:
    """sys.stdout / sys.stderr: each line goes to the gateway's log, tagged with the invocation it came from."""

    encoding = "utf-8"
    errors = "replace"

    def __init__(self) -> None:
        self._partial = ""

    def write(self, text: str) -> int:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            send({"t": "log", "id": _current_id, "line": line})
        return len(text)

    def flush(self) -> None:
        if self._partial:
            line, self._partial = self._partial, ""
            send({"t": "log", "id": _current_id, "line": line})

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = _current_id
        return True


class LambdaContext:
    """The `context` argument, with the attributes and method of AWS Lambda's Python context."""

    def __init__(self, msg: dict[str, Any], fn: dict[str, Any]) -> None:
        self.aws_request_id: str = msg["id"]
        self.function_name: str = fn["name"]
        self.function_version = "$LATEST"
        self.invoked_function_arn: str = fn["arn"]
        self.memory_limit_in_mb: str = str(fn["memory"])
        self.log_group_name: str = f"/aws/lambda/{fn['name']}"
        self.log_stream_name: str = fn["log_stream"]
        self.identity = None
        self.client_context = None
        self._deadline_ms: int = msg["deadline_ms"]

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


def _error(exc: BaseException, error_type: str | None = None) -> dict[str, Any]:
    tb = traceback.extract_tb(exc.__traceback__)
    return {
        "errorMessage": str(exc),
        "errorType": error_type or type(exc).__name__,
        "requestId": _current_id,
        "stackTrace": [f'  File "{f.filename}", line {f.lineno}, in {f.name}\n    {f.line or ""}\n' for f in tb],
    }


def load_handler(spec: str) -> Any:
    sys.path.insert(0, os.getcwd())
    if ":" in spec:
        file, _, func = spec.rpartition(":")
        mod_spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(file))[0], file)
        if mod_spec is None or mod_spec.loader is None:
            raise ImportError(f"cannot load {file!r}")
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[mod_spec.name] = module
        mod_spec.loader.exec_module(module)
    else:
        mod_name, _, func = spec.rpartition(".")
        module = importlib.import_module(mod_name)
    handler = getattr(module, func, None)
    if not callable(handler):
        raise AttributeError(f"Handler '{func}' missing on module '{module.__name__}'")
    return handler


def main() -> None:
    global _current_id
    fn = json.loads(os.environ.pop("_FASTGW_FUNCTION"))
    sys.stdout = _LogWriter()
    sys.stderr = _LogWriter()
    handler_out = logging.StreamHandler(sys.stdout)
    handler_out.setFormatter(
        logging.Formatter(
            "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s", "%Y-%m-%dT%H:%M:%S"
        )
    )
    handler_out.formatter.converter = time.gmtime  # type: ignore[union-attr]
    handler_out.addFilter(_RequestIdFilter())
    logging.getLogger().addHandler(handler_out)
    logging.getLogger().setLevel(logging.INFO)
    try:
        handler = load_handler(fn["handler"])
    except BaseException as exc:  # noqa: BLE001 - any failure to load is reported, as Lambda does
        kind = "Runtime.ImportModuleError" if isinstance(exc, ImportError) else "Runtime.HandlerNotFound"
        if isinstance(exc, SyntaxError):
            kind = "Runtime.UserCodeSyntaxError"
        send({"t": "init_error", "error": _error(exc, kind)})
        return
    loop = asyncio.new_event_loop()
    send({"t": "ready", "pid": os.getpid()})
    while True:
        msg = recv()
        if msg is None:
            return
        _current_id = msg["id"]
        try:
            result = handler(msg["event"], LambdaContext(msg, fn))
            if inspect.isawaitable(result):
                result = loop.run_until_complete(result)
            try:
                reply = {"t": "result", "id": _current_id, "ok": True, "value": result}
                sys.stdout.flush()
                sys.stderr.flush()
                send(reply)
            except (TypeError, ValueError) as exc:
                send({"t": "result", "id": _current_id, "ok": False, "error": _error(exc, "Runtime.MarshalError")})
        except Exception as exc:  # noqa: BLE001 - the handler's failure is the invocation's result
            sys.stdout.flush()
            sys.stderr.flush()
            send({"t": "result", "id": _current_id, "ok": False, "error": _error(exc)})
        _current_id = ""


if __name__ == "__main__":
    main()
