"""A call to a test gateway's admin API over its real listener: JSON bodies, a bearer token, headers by keyword
(`if_match="..."` sends If-Match)."""

from __future__ import annotations

from typing import Any

import orjson

from fastgw.client import Response, http_request
from fastgw.server.server import Server


async def admin_call(
    server: Server, method: str, path: str, body: Any = None, token: str | None = None, **headers: str
) -> Response:
    assert server.admin is not None
    hdrs = {k.replace("_", "-"): v for k, v in headers.items()}
    if token:
        hdrs["authorization"] = f"Bearer {token}"
    data = b""
    if body is not None:
        data = orjson.dumps(body)
        hdrs.setdefault("content-type", "application/json")  # (a test may send another, to see it refused)
    return await http_request(server.admin.port, method, path, headers=hdrs, body=data, host="127.0.0.1")
