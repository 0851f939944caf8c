"""Deployments (the timeline, a diff, rollback with a confirmation) and live traffic (charts updated every second)
in the console (issue 24, items 4 and 5), in a real headless Chromium against a real gateway process."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import orjson

from fastgw.client import http_request
from fastgw.testing import EchoUpstream
from tests.console.conftest import Shots, start_gateway

TRAFFIC = """\
admin: {port: 0}
logging: {access_log: false}
routes:
  - {name: health, path: /healthz, integration: {type: mock, body: {status: ok}}}
  - name: limited
    path: /limited
    integration: {type: mock, body: slow down}
    plugins: {rate-limit: {rate: 1, burst: 1}}
"""


async def _admin(port: int, method: str, path: str, body=None):
    data = orjson.dumps(body) if body is not None else b""
    headers = {"content-type": "application/json"} if body is not None else {}
    return await http_request(port, method, path, headers=headers, body=data, host="127.0.0.1", timeout=30)


async def test_the_timeline_a_diff_and_a_rollback_after_a_confirmation(browser, tmp_path: Path, shots: Shots):
    from playwright.async_api import expect

    gw = await start_gateway(tmp_path, TRAFFIC)
    try:
        first = (await _admin(gw.admin, "GET", "/status")).json()["deployment"]
        route = {"path": "/new", "integration": {"type": "mock", "body": "new"}}
        r = await _admin(gw.admin, "PUT", "/routes/new", route)
        assert r.status == 201, r.body
        assert (await http_request(gw.port, "GET", "/new", host="127.0.0.1")).body == b"new"
        page = await browser.new_page()
        await page.goto(gw.console + "#/deployments")
        timeline = page.locator("ol.timeline > li")
        await expect(timeline).to_have_count(2)
        await expect(timeline.first).to_contain_text("PUT /routes/new")
        await expect(timeline.first).to_contain_text("serving")
        # The diff between the two: the route added, by its name.
        await page.get_by_label("From").select_option(first)
        await page.get_by_role("button", name="Show diff").click()
        await expect(page.locator("#diff")).to_contain_text("$.routes[name=new]")
        await expect(page.locator("#diff")).to_contain_text("added")
        await shots.take(page, "deployments-diff")
        # Rollback asks first: cancelled, nothing changes.
        await page.get_by_role("button", name=f"Roll back to {first}").click()
        dialog = page.get_by_role("dialog")
        await expect(dialog).to_contain_text(first)
        await dialog.get_by_role("button", name="Cancel").click()
        await expect(timeline).to_have_count(2)
        assert (await http_request(gw.port, "GET", "/new", host="127.0.0.1")).status == 200
        # Confirmed: the first config serves again, as a new deployment.
        await page.get_by_role("button", name=f"Roll back to {first}").click()
        await dialog.get_by_role("button", name="Roll back").click()
        await expect(page.get_by_role("alert")).to_contain_text(f"Rolled back to {first}", timeout=20_000)
        await expect(timeline).to_have_count(3)
        assert (await http_request(gw.port, "GET", "/new", host="127.0.0.1")).status == 404
    finally:
        await gw.proc.stop()


PROXIED = (
    TRAFFIC.replace("{", "{{").replace("}", "}}")
    + """\
  - name: cached
    path: /cached
    integration: {{type: http, upstream: backend}}
    plugins: {{proxy-cache: {{ttl: 0.2}}}}
upstreams:
  backend: {{targets: ['{url}']}}
"""
)


async def test_live_traffic_charts_follow_the_requests_every_second(browser, tmp_path: Path, shots: Shots):
    async with EchoUpstream() as up:
        gw = await start_gateway(tmp_path, PROXIED.format(url=up.url))
        try:
            await _watch_traffic(page=await browser.new_page(), gw=gw, shots=shots)
        finally:
            await gw.proc.stop()


async def _watch_traffic(page, gw, shots: Shots) -> None:
    from playwright.async_api import expect

    await page.goto(gw.console + "#/traffic")
    await expect(page.get_by_role("heading", name="Live traffic")).to_be_visible()
    stop = asyncio.Event()

    async def load() -> None:  # bounded: ~20 requests a second until the charts have seen them
        for _ in range(400):
            if stop.is_set():
                return
            await http_request(gw.port, "GET", "/healthz", host="127.0.0.1")
            await http_request(gw.port, "GET", "/limited", host="127.0.0.1")
            await http_request(gw.port, "GET", "/cached", host="127.0.0.1")
            await asyncio.sleep(0.05)

    task = asyncio.create_task(load())
    try:
        rps = page.locator("#chart-rps .now")
        await expect(rps).to_have_text(re.compile(r"^([1-9]\d*|\d+\.\d*[1-9])\.?\d*/s$"), timeout=15_000)
        row = page.locator("#route-traffic tr", has_text="limited")
        await expect(row.locator(".statuses")).to_contain_text("429", timeout=10_000)
        await expect(page.locator("#route-traffic tr", has_text="health").locator(".statuses")).to_contain_text("200")
        limited = page.locator("#chart-limited .now")
        await expect(limited).to_have_text(re.compile(r"^[1-9]"), timeout=10_000)
        latency = page.locator("#chart-latency")
        await expect(latency).to_contain_text(re.compile(r"p99: [\d.]+ ms"))
        # Upstream latency by upstream, and the cache's hits (a 0.2 s TTL: some hits, some misses each second).
        await expect(page.locator("#chart-upstream .legend")).to_contain_text(re.compile(r"backend: [\d.]+ ms"))
        await expect(page.locator("#chart-cache .now")).to_have_text(re.compile(r"^[1-9]\d* %$"), timeout=10_000)
        # The chart is drawn from one reading a second: three seconds make a line of three points.
        line = page.locator("#chart-rps polyline")
        await expect(line).to_have_attribute("points", re.compile(r"^\S+ \S+ \S+"), timeout=10_000)
        await shots.take(page, "traffic")
    finally:
        stop.set()
        await task
