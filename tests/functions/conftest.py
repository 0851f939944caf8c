from __future__ import annotations

import shutil
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from fastgw.pytest_plugin import GatewayFactory
from fastgw.server.server import Server

needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (.ci/run installs it)")

# A Python function that answers with the event it received (as its JSON body) and what its context said.
ECHO_PY = """
import json, os

def handler(event, context):
    info = {
        "aws_request_id": context.aws_request_id,
        "function_name": context.function_name,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "invoked_function_arn": context.invoked_function_arn,
        "log_group_name": context.log_group_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "env": os.environ.get("GREETING"),
        "pid": os.getpid(),
    }
    print("echo invoked for", event.get("rawPath") or event.get("path"))
    return {"statusCode": 200, "body": json.dumps({"event": event, "context": info})}
"""


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


@pytest.fixture
def fgw(fastgw_gateway: GatewayFactory, tmp_path: Path) -> Callable[[dict[str, Any]], Awaitable[Server]]:
    """Factory: `srv = await fgw(config)`, function code relative to `tmp_path`; all shut down at teardown."""
    return lambda config: fastgw_gateway(config, base_dir=tmp_path)
