from __future__ import annotations

import contextlib
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastgw.config.load import Override, load_config
from fastgw.server.server import Server

TEMPLATES = Path(__file__).resolve().parent / "templates"

# A Python function answering with the event it got and its environment.
ECHO_PY = """
import json, os

def handler(event, context):
    return {"statusCode": 200, "body": json.dumps({"event": event, "env": dict(os.environ),
                                                   "function": context.function_name})}
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def options(**given: Any) -> list[Override]:
    """The command line's template options, as `fastgw serve` passes them."""
    return [Override(f"aws.{k}", v, f"--{k.replace('_', '-')}") for k, v in given.items()]


@contextlib.asynccontextmanager
async def serving(template: Path, **given: Any) -> AsyncIterator[Server]:
    """Serve a template on 127.0.0.1:<free port> with real function workers; shut down after."""
    server = Server(load_config(template, options(**given)), "127.0.0.1", 0)
    await server.start()
    try:
        yield server
    finally:
        await server.shutdown(timeout=1.0)
