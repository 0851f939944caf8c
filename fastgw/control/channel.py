"""The supervisor's line to each worker (a socketpair made before the fork): messages of a JSON header and raw
bytes (a deployment's config, as canonical JSON, is sent as it is and never escaped into the header).

    supervisor -> worker   {"op": "prepare", "deployment": {...without config}}  + the config's JSON
                           {"op": "commit", "id", "changed": [...]}   {"op": "abort", "id"}
                           {"op": "purge", "id", "prefix"}   (the admin API's POST /cache/purge)
    worker -> supervisor   {"op": "prepared" | "committed", "id", "error": null | "why"}
                           {"op": "purged", "id", "purged": N, "error": null}   (its memory caches' entries)

Frame: two big-endian 32-bit lengths (header, payload), then the two.
"""

from __future__ import annotations

import asyncio
import select
import socket
import struct
import time
from typing import Any

import orjson

_LENGTHS = struct.Struct("!II")
MAX_PAYLOAD = 1 << 30


def send(sock: socket.socket, header: dict[str, Any], payload: bytes = b"") -> None:
    h = orjson.dumps(header)
    sock.sendall(_LENGTHS.pack(len(h), len(payload)) + h + payload)


def _recv_exactly(sock: socket.socket, n: int, deadline: float) -> bytes:
    chunks = []
    while n:
        # NOTE: past the deadline what is already there is still read (a worker asked after a slow one answered
        # in time), only waiting ends.
        left = max(0.0, deadline - time.monotonic())
        if not select.select([sock], [], [], left)[0]:
            raise TimeoutError
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def recv(sock: socket.socket, deadline: float) -> tuple[dict[str, Any], bytes]:
    """The next message, waiting until `deadline` (time.monotonic()); TimeoutError, or EOFError when the
    worker's end is closed."""
    hl, pl = _LENGTHS.unpack(_recv_exactly(sock, _LENGTHS.size, deadline))
    header = orjson.loads(_recv_exactly(sock, hl, deadline))
    return header, _recv_exactly(sock, pl, deadline) if pl else b""


async def read(reader: asyncio.StreamReader) -> tuple[dict[str, Any], bytes]:
    hl, pl = _LENGTHS.unpack(await reader.readexactly(_LENGTHS.size))
    if pl > MAX_PAYLOAD:
        raise ValueError(f"a message of {pl} bytes")
    header = orjson.loads(await reader.readexactly(hl))
    return header, (await reader.readexactly(pl)) if pl else b""


async def write(writer: asyncio.StreamWriter, header: dict[str, Any], payload: bytes = b"") -> None:
    h = orjson.dumps(header)
    writer.write(_LENGTHS.pack(len(h), len(payload)) + h + payload)
    await writer.drain()
