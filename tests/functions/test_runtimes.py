"""Both runtimes end to end: handlers in real python and node worker processes behind a real gateway."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from fastgw.testing import http_request
from tests.functions.conftest import needs_node, write

pytestmark = pytest.mark.asyncio


def one_route(fn: dict, api_type: str = "http", **integ: object) -> dict:
    return {
        "functions": {"f": fn},
        "apis": {
            "a": {
                "type": api_type,
                "routes": [{"path": "/{proxy+}", "integration": {"type": "lambda", "function": "f", **integ}}],
                "stages": {} if api_type == "http" else {"Prod": {}},
            }
        },
    }


def root(api_type: str) -> str:
    return "" if api_type == "http" else "/Prod"


NODE_HANDLERS = {
    "esm-async": ("index.mjs", """
        export const handler = async (event, context) => ({
          statusCode: 201,
          headers: { "x-fn": context.functionName, "x-mem": context.memoryLimitInMB },
          body: JSON.stringify({ path: event.rawPath, left: context.getRemainingTimeInMillis() > 0,
                                 id: context.awsRequestId, env: process.env.GREETING }),
        });
    """),
    "cjs-exports": ("index.js", """
        exports.handler = async (event, context) => ({
          statusCode: 201,
          headers: { "x-fn": context.functionName, "x-mem": context.memoryLimitInMB },
          body: JSON.stringify({ path: event.rawPath, left: context.getRemainingTimeInMillis() > 0,
                                 id: context.awsRequestId, env: process.env.GREETING }),
        });
    """),
    "callback": ("index.cjs", """
        exports.handler = (event, context, callback) => {
          setTimeout(() => callback(null, {
            statusCode: 201,
            headers: { "x-fn": context.functionName, "x-mem": context.memoryLimitInMB },
            body: JSON.stringify({ path: event.rawPath, left: context.getRemainingTimeInMillis() > 0,
                                   id: context.awsRequestId, env: process.env.GREETING }),
          }), 5);
        };
    """),
}  # fmt: skip


@needs_node
@pytest.mark.parametrize("style", sorted(NODE_HANDLERS))
async def test_node_handler_styles(fgw, tmp_path, style, caplog):
    name, code = NODE_HANDLERS[style]
    write(tmp_path / "fn", name, code.replace("({", "{ console.log('hi from', event.rawPath); return ({", 1)
          .replace("});\n", "}); };\n", 1) if style != "callback" else code)  # fmt: skip
    fn = {"runtime": "nodejs", "handler": "index.handler", "code": "fn", "memory_size": 256,
          "environment": {"GREETING": "hello"}}  # fmt: skip
    gw = await fgw(one_route(fn))
    caplog.set_level(logging.INFO, logger="fastgw.function")
    for i in range(2):
        r = await http_request(gw.port, "GET", f"/x/{i}")
        assert r.status == 201, r.body
        body = r.json()
        assert body == {"path": f"/x/{i}", "left": True, "id": r.header("x-amzn-RequestId"), "env": "hello"}
        assert r.header("x-fn") == "f" and r.header("x-mem") == "256"
        if style != "callback":
            assert any(body["id"] in m and "INFO\thi from /x/" + str(i) in m for m in caplog.messages), caplog.messages


async def test_python_async_handler_print_and_logging_are_captured(fgw, tmp_path, caplog):
    write(tmp_path / "fn", "app.py", """
        import asyncio, logging
        async def handler(event, context):
            await asyncio.sleep(0)
            print("printed", event["rawPath"])
            logging.getLogger().info("logged %s", 1)
            return {"ok": True}
    """)  # fmt: skip
    gw = await fgw(one_route({"runtime": "python", "handler": "app.py:handler", "code": "fn"}))
    caplog.set_level(logging.INFO, logger="fastgw.function")
    r = await http_request(gw.port, "GET", "/p")
    # 2.0: a return value without statusCode is the JSON body of a 200.
    assert r.status == 200 and r.json() == {"ok": True} and r.header("content-type") == "application/json"
    rid = r.header("x-amzn-RequestId")
    assert any(f"f {rid} printed /p" in m for m in caplog.messages), caplog.messages
    assert any(rid in m and m.split(" ", 2)[2].startswith("[INFO]") and "logged 1" in m for m in caplog.messages)


FAILING = {
    "raise": "def handler(event, context):\n    raise ValueError('boom')\n",
    "not-json": "def handler(event, context):\n    return {'statusCode': 200, 'body': object()}\n",
    "exit": "import os\ndef handler(event, context):\n    os._exit(3)\n",
}


@pytest.mark.parametrize("api_type", ["rest", "http"])
@pytest.mark.parametrize("kind", sorted(FAILING))
async def test_function_errors_answer_like_api_gateway_and_the_next_call_works(fgw, tmp_path, api_type, kind, caplog):
    write(
        tmp_path / "fn",
        "app.py",
        FAILING[kind] + "def ok(event, context):\n    return {'statusCode': 200, 'body': 'fine'}\n",
    )
    cfg = one_route({"runtime": "python", "handler": "app.handler", "code": "fn", "concurrency": 1}, api_type)
    cfg["apis"]["a"]["routes"].insert(0, {"path": "/ok", "integration": {"type": "lambda", "function": "ok"}})
    cfg["functions"]["ok"] = {"runtime": "python", "handler": "app.ok", "code": "fn"}
    gw = await fgw(cfg)
    for _ in range(2):
        r = await http_request(gw.port, "GET", root(api_type) + "/fail")
        if api_type == "rest":
            assert (r.status, r.json()) == (502, {"message": "Internal server error"})
        else:
            assert (r.status, r.json()) == (500, {"message": "Internal Server Error"})
        r = await http_request(gw.port, "GET", root(api_type) + "/ok")
        assert (r.status, r.body) == (200, b"fine")
    why = {"raise": "ValueError: boom", "not-json": "Runtime.MarshalError", "exit": "Runtime.ExitError"}[kind]
    assert any(why in m for m in caplog.messages), caplog.messages
    if kind == "raise":
        assert any("in handler\n" in m and "raise ValueError('boom')" in m for m in caplog.messages)


MALFORMED_V1 = [
    ("none", "None", "the function returned null"),
    ("string", "'hello'", "the function returned a string"),
    ("no-status", "{'body': 'x'}", "statusCode is missing"),
    ("bad-status", "{'statusCode': 'abc', 'body': 'x'}", "statusCode must be an integer"),
    ("status-range", "{'statusCode': 99, 'body': 'x'}", "between 200 and 599"),
    ("dict-body", "{'statusCode': 200, 'body': {'a': 1}}", "body must be a string"),
    ("unknown-key", "{'statusCode': 200, 'body': 'x', 'extra': 1}", "unknown key(s) 'extra'"),
    ("headers-list", "{'statusCode': 200, 'body': 'x', 'headers': ['a']}", "headers must be an object"),
    ("header-crlf", "{'statusCode': 200, 'body': 'x', 'headers': {'a': 'x\\r\\nb: c'}}", "contains CR, LF"),
    ("header-name", "{'statusCode': 200, 'body': 'x', 'headers': {'a b': 'x'}}", "invalid header name"),
    ("multi-not-list", "{'statusCode': 200, 'body': 'x', 'multiValueHeaders': {'a': 'x'}}", "must be a list"),
    ("bad-base64", "{'statusCode': 200, 'body': '***', 'isBase64Encoded': True}", "not valid base64"),
    ("b64-flag", "{'statusCode': 200, 'body': 'x', 'isBase64Encoded': 'yes'}", "isBase64Encoded must be a boolean"),
]
MALFORMED_V2 = [
    ("bad-status", "{'statusCode': 'abc', 'body': 'x'}", "statusCode must be an integer"),
    ("dict-body", "{'statusCode': 200, 'body': {'a': 1}}", "body must be a string"),
    ("cookies-str", "{'statusCode': 200, 'body': 'x', 'cookies': 'a=1'}", "cookies must be a list"),
    ("header-crlf", "{'statusCode': 200, 'body': 'x', 'headers': {'a': 'x\\nb'}}", "contains CR, LF"),
]
MALFORMED = [("rest", *c) for c in MALFORMED_V1] + [("http", *c) for c in MALFORMED_V2]


@pytest.mark.parametrize(("api_type", "case", "value", "why"), MALFORMED, ids=[f"{c[0]}-{c[1]}" for c in MALFORMED])
async def test_malformed_responses_answer_the_api_error_with_the_reason_logged(
    fgw, tmp_path, api_type, case, value, why, caplog
):
    write(tmp_path / "fn", "app.py", f"def handler(event, context):\n    return {value}\n")
    gw = await fgw(one_route({"runtime": "python", "handler": "app.handler", "code": "fn"}, api_type))
    r = await http_request(gw.port, "GET", root(api_type) + "/x")
    if api_type == "rest":
        assert (r.status, r.json()) == (502, {"message": "Internal server error"})
    else:
        assert (r.status, r.json()) == (500, {"message": "Internal Server Error"})
    assert any("malformed Lambda proxy response" in m and why in m for m in caplog.messages), caplog.messages


async def test_response_rules_headers_cookies_and_base64(fgw, tmp_path):
    write(tmp_path / "fn", "app.py", """
        import base64
        def v1(event, context):
            return {"statusCode": 202, "headers": {"x-one": "1", "x-both": "single", "Content-Type": "text/plain"},
                    "multiValueHeaders": {"x-both": ["m1", "m2"], "x-num": [7]},
                    "body": base64.b64encode(b"\\x00\\x01raw").decode(), "isBase64Encoded": True}
        def v2(event, context):
            return {"statusCode": 200, "cookies": ["a=1; Path=/", "b=2"], "headers": {"x-two": "2"}, "body": "ok"}
        def v2plain(event, context):
            return "just a string"
    """)  # fmt: skip
    cfg = {
        "functions": {n: {"runtime": "python", "handler": f"app.{n}", "code": "fn"} for n in ("v1", "v2", "v2plain")},
        "routes": [
            {"path": "/v1", "integration": {"type": "lambda", "function": "v1", "payload_format": "1.0"}},
            {"path": "/v2", "integration": {"type": "lambda", "function": "v2"}},
            {"path": "/v2plain", "integration": {"type": "lambda", "function": "v2plain"}},
        ],
    }
    gw = await fgw(cfg)
    r = await http_request(gw.port, "GET", "/v1")
    assert r.status == 202 and r.body == b"\x00\x01raw" and r.header("content-type") == "text/plain"
    assert [v for k, v in r.headers if k.lower() == "x-both"] == ["m1", "m2"]  # multiValueHeaders win
    assert r.header("x-one") == "1" and r.header("x-num") == "7"
    r = await http_request(gw.port, "GET", "/v2")
    assert r.status == 200 and r.body == b"ok" and r.header("x-two") == "2"
    assert [v for k, v in r.headers if k.lower() == "set-cookie"] == ["a=1; Path=/", "b=2"]
    r = await http_request(gw.port, "GET", "/v2plain")
    # A bare string is the body as it is (AWS's documented "Hello from Lambda!" example), not JSON-quoted.
    assert (r.status, r.body, r.header("content-type")) == (200, b"just a string", "application/json")


async def test_function_timeout_is_a_function_error_and_integration_timeout_is_504(fgw, tmp_path, caplog):
    write(tmp_path / "fn", "app.py", """
        import time
        def slow(event, context):
            time.sleep(float(event["queryStringParameters"]["s"]))
            return {"statusCode": 200, "body": "late"}
    """)  # fmt: skip
    cfg = one_route(
        {"runtime": "python", "handler": "app.slow", "code": "fn", "timeout": 0.5, "concurrency": 1}, "rest"
    )
    gw = await fgw(cfg)
    r = await http_request(gw.port, "GET", "/Prod/x?s=5")
    assert (r.status, r.json()) == (502, {"message": "Internal server error"})
    assert any("Task timed out after 0.50 seconds" in m for m in caplog.messages), caplog.messages
    r = await http_request(gw.port, "GET", "/Prod/x?s=0")  # the killed worker was replaced
    assert (r.status, r.body) == (200, b"late")

    cfg = one_route({"runtime": "python", "handler": "app.slow", "code": "fn", "timeout": 30}, "rest", timeout=0.5)
    gw = await fgw(cfg)
    r = await http_request(gw.port, "GET", "/Prod/x?s=2")
    assert (r.status, r.json()) == (504, {"message": "Endpoint request timed out"})


@needs_node
async def test_crashed_node_worker_is_replaced(fgw, tmp_path):
    write(tmp_path / "fn", "index.mjs", """
        export const handler = async (event) => {
          if (event.rawPath === "/crash") setTimeout(() => { throw new Error("async crash"); }, 0);
          if (event.rawPath === "/exit") process.exit(7);
          await new Promise((r) => setTimeout(r, 50));
          return { statusCode: 200, body: String(process.pid) };
        };
    """)  # fmt: skip
    gw = await fgw(one_route({"runtime": "nodejs", "handler": "index.handler", "code": "fn", "concurrency": 1}))
    first = await http_request(gw.port, "GET", "/pid")
    assert first.status == 200
    for path in ("/crash", "/exit"):
        r = await http_request(gw.port, "GET", path)
        assert (r.status, r.json()) == (500, {"message": "Internal Server Error"})
        r = await http_request(gw.port, "GET", "/pid")
        assert r.status == 200 and r.body != first.body  # a new worker process answered
        first = r


async def test_invocations_run_concurrently_up_to_the_pool_then_queue_then_429(fgw, tmp_path):
    write(tmp_path / "fn", "app.py", """
        import os, time
        def handler(event, context):
            start = time.time()
            time.sleep(0.4)
            return {"statusCode": 200, "body": f"{os.getpid()} {start} {time.time()}"}
    """)  # fmt: skip
    fn = {"runtime": "python", "handler": "app.handler", "code": "fn", "concurrency": 2, "warm": 2, "queue": 1}
    gw = await fgw(one_route(fn))
    await asyncio.sleep(0)  # let the warm workers start
    ok = await asyncio.gather(*(http_request(gw.port, "GET", f"/{i}") for i in range(2)))
    spans = [tuple(map(float, r.body.split()[1:])) for r in ok]
    pids = {r.body.split()[0] for r in ok}
    assert len(pids) == 2  # two workers...
    assert max(s for s, _ in spans) < min(e for _, e in spans)  # ...whose invocations overlapped in time

    # Two running, one waiting in the queue of 1: the fourth is refused at once.
    tasks = [asyncio.create_task(http_request(gw.port, "GET", f"/{i}")) for i in range(3)]
    await asyncio.sleep(0.15)
    refused = await http_request(gw.port, "GET", "/3")
    assert (refused.status, refused.json()) == (429, {"message": "Too Many Requests"})
    assert [r.status for r in await asyncio.gather(*tasks)] == [200, 200, 200]


async def test_handler_that_cannot_load_fails_each_call_and_recovers_when_fixed(fgw, tmp_path, caplog):
    app = write(tmp_path / "fn", "app.py", "import not_a_module_anywhere\ndef handler(e, c):\n    return 'x'\n")
    gw = await fgw(one_route({"runtime": "python", "handler": "app.handler", "code": "fn", "warm": 0}))
    r = await http_request(gw.port, "GET", "/x")
    assert (r.status, r.json()) == (500, {"message": "Internal Server Error"})
    assert any("Runtime.ImportModuleError" in m and "not_a_module_anywhere" in m for m in caplog.messages)
    Path(app).write_text("def handler(e, c):\n    return 'fixed'\n")
    r = await http_request(gw.port, "GET", "/x")
    assert (r.status, r.body) == (200, b"fixed")


async def test_body_arriving_after_the_head_reaches_the_function_whole(fgw, tmp_path):
    from fastgw.testing import RawConnection

    write(tmp_path / "fn", "app.py", "def handler(e, c):\n    return {'statusCode': 200, 'body': e['body']}\n")
    gw = await fgw(one_route({"runtime": "python", "handler": "app.handler", "code": "fn"}))
    conn = await RawConnection.open(gw.port)
    try:
        body = b"x" * 200_000
        await conn.send(
            b"POST /b HTTP/1.1\r\nhost: t\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n\r\n" % len(body)
        )
        await asyncio.sleep(0.05)
        for i in range(0, len(body), 50_000):
            await conn.send(body[i : i + 50_000])
        r = await conn.response()
        assert r.status == 200 and r.body == body
    finally:
        await conn.close()


async def test_reload_keeps_workers_of_unchanged_functions_and_replaces_changed_ones(tmp_path):
    from fastgw.config.load import load_config
    from fastgw.server.server import Server

    write(
        tmp_path / "fn",
        "app.py",
        "import os\ndef handler(e, c):\n    return {'pid': os.getpid(), 'v': os.environ.get('V')}\n",
    )
    text = (
        "functions:\n"
        "  same: {runtime: python, handler: app.handler, code: fn, concurrency: 1}\n"
        "  edited: {runtime: python, handler: app.handler, code: fn, environment: {V: '%s'}}\n"
        "routes:\n"
        "  - {path: /same, integration: {type: lambda, function: same}}\n"
        "  - {path: /edited, integration: {type: lambda, function: edited}}\n"
    )
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(text % "one")
    server = Server(load_config(cfg), "127.0.0.1", 0)
    await server.start()
    try:
        before = {p: (await http_request(server.port, "GET", p)).json() for p in ("/same", "/edited")}
        assert before["/edited"]["v"] == "one"
        cfg.write_text(text % "two")
        assert server.reload()
        after = {p: (await http_request(server.port, "GET", p)).json() for p in ("/same", "/edited")}
        assert after["/same"]["pid"] == before["/same"]["pid"]  # still the same warm worker
        assert after["/edited"] == {"pid": after["/edited"]["pid"], "v": "two"}
        assert after["/edited"]["pid"] != before["/edited"]["pid"]
        cfg.write_text(text.replace("function: same", "function: missing") % "three")
        assert not server.reload()  # refused: the running config (and its workers) stay
        r = await http_request(server.port, "GET", "/same")
        assert r.json()["pid"] == before["/same"]["pid"]
    finally:
        await server.shutdown(timeout=1.0)


async def test_oversized_response_fails_the_invocation_and_raw_output_is_logged(fgw, tmp_path, caplog):
    write(tmp_path / "fn", "app.py", """
        import os
        def handler(event, context):
            os.write(1, b"raw line from fd 1\\n")
            size = int(event["queryStringParameters"]["n"])
            return {"statusCode": 200, "body": "x" * size}
    """)  # fmt: skip
    gw = await fgw(one_route({"runtime": "python", "handler": "app.handler", "code": "fn", "concurrency": 1}))
    caplog.set_level(logging.INFO, logger="fastgw.function")
    r = await http_request(gw.port, "GET", "/x?n=7000000")
    assert (r.status, r.json()) == (500, {"message": "Internal Server Error"})
    assert any("Function.ResponseSizeTooLarge" in m for m in caplog.messages), caplog.messages
    r = await http_request(gw.port, "GET", "/x?n=3")
    assert (r.status, r.body) == (200, b"xxx")
    assert any(m == "f - raw line from fd 1" for m in caplog.messages), caplog.messages
