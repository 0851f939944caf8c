"""Routes, upstreams and consumers through the console (issue 24, item 3), and the keyboard and screen-reader
basics (labels, focus order, visible focus, errors with their key path), in a real headless Chromium."""

from __future__ import annotations

import re

from fastgw.client import http_request
from fastgw.testing import EchoUpstream
from tests.console.conftest import Gateway, Shots

# Every control with no accessible name: a <label for>, aria-label or aria-labelledby, or a button's own text.
UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea, button')]
  .filter((el) => !el.closest('[hidden]') && !el.closest('dialog:not([open])'))
  .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                  && !el.getAttribute('aria-labelledby') && !(el.tagName === 'BUTTON' && el.textContent.trim()))
  .map((el) => el.outerHTML.slice(0, 80))"""


async def test_routes_upstreams_and_consumers_are_created_edited_and_deleted(browser, gateway: Gateway, shots: Shots):
    from playwright.async_api import expect

    page = await browser.new_page()
    async with EchoUpstream() as up:
        # An upstream, and its target's live health.
        await page.goto(gateway.console + "#/upstreams")
        await page.get_by_label("Upstream name").fill("backend")
        await page.get_by_label("Targets").fill(up.url)
        await page.get_by_role("button", name="Save upstream").click()
        await expect(page.get_by_role("alert")).to_contain_text("Upstream backend saved", timeout=20_000)
        live = page.locator("#live-targets")
        await expect(live).to_contain_text(up.url.removeprefix("http://"))
        await expect(live.locator(".health")).to_contain_text("in rotation")

        # A route to it with a plugin; traffic reaches the upstream.
        await page.get_by_role("link", name="Routes").click()
        await page.get_by_label("Route name").fill("users")
        await page.get_by_label("Path").fill("/users/{id}")
        await page.get_by_label("Methods").fill("GET")
        await page.get_by_label("Integration").select_option("http")
        await page.get_by_label("Target").fill("backend")
        await page.get_by_label("Plugins").fill('{"request-id": {}}')
        await page.get_by_role("button", name="Save route").click()
        await expect(page.get_by_role("alert")).to_contain_text("Route users saved", timeout=20_000)
        row = page.get_by_role("row").filter(has_text="/users/{id}")
        await expect(row).to_contain_text("http → backend")
        await expect(row).to_contain_text("request-id")
        got = await http_request(gateway.port, "GET", "/users/7", host="127.0.0.1")
        assert got.status == 200 and got.json()["path"] == "/users/7" and got.header("x-request-id")

        # Edited: the form is filled from the route, the path changed; then deleted after a confirmation.
        await page.get_by_role("button", name="Edit users").click()
        await expect(page.get_by_label("Path")).to_have_value("/users/{id}")
        await page.get_by_label("Path").fill("/people/{id}")
        await page.get_by_role("button", name="Save route").click()
        await expect(page.get_by_role("row").filter(has_text="/people/{id}")).to_be_visible(timeout=20_000)
        assert (await http_request(gateway.port, "GET", "/people/7", host="127.0.0.1")).status == 200
        await shots.take(page, "routes")
        await page.get_by_role("button", name="Delete users").click()
        await page.get_by_role("button", name="Delete", exact=True).click()
        await expect(page.get_by_role("alert")).to_contain_text("Deleted users", timeout=20_000)
        assert (await http_request(gateway.port, "GET", "/people/7", host="127.0.0.1")).status == 404

    # A consumer with a key: shown masked, never in the page.
    await page.get_by_role("link", name="Consumers").click()
    await page.get_by_label("Consumer name").fill("alice")
    await page.get_by_label("Groups").fill("gold")
    await page.get_by_label("New API key (key-auth)").fill("alice-secret-key-123")
    await page.get_by_role("button", name="Save consumer").click()
    await expect(page.get_by_role("alert")).to_contain_text("Consumer alice saved", timeout=20_000)
    row = page.get_by_role("row").filter(has_text="alice")
    await expect(row).to_contain_text("key-auth: 1")
    await expect(row).to_contain_text("********")
    assert "alice-secret-key-123" not in await page.content()
    await shots.take(page, "consumers")
    # The upstream, now unused, is deleted.
    await page.get_by_role("link", name="Upstreams").click()
    await page.get_by_role("button", name="Delete backend").click()
    await page.get_by_role("button", name="Delete", exact=True).click()
    await expect(page.get_by_role("alert")).to_contain_text("Deleted backend", timeout=20_000)


async def test_a_refused_write_shows_the_key_path(browser, gateway: Gateway, shots: Shots):
    from playwright.async_api import expect

    page = await browser.new_page()
    await page.goto(gateway.console + "#/routes")
    await page.get_by_label("Route name").fill("bad")
    await page.get_by_label("Path").fill("nope")
    await page.get_by_role("button", name="Save route").click()
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("HTTP 400")
    await expect(alert.locator("code.key-path")).to_have_text(re.compile(r"^\$\.routes\[1\]\.path$"))
    await shots.take(page, "error-key-path", full_page=False)


async def test_every_control_is_labelled_and_the_keyboard_reaches_it_with_visible_focus(browser, gateway: Gateway):
    from playwright.async_api import expect

    page = await browser.new_page()
    for hash_ in ("#/functions", "#/apis", "#/routes", "#/upstreams", "#/consumers", "#/deployments", "#/traffic"):
        await page.goto(gateway.console + hash_)
        await expect(page.locator("main h1")).to_be_focused()  # a new page moves focus to its heading
        assert await page.evaluate(UNLABELLED) == [], hash_
        assert await page.locator("[tabindex]:not([tabindex='-1']):not([tabindex='0'])").count() == 0  # DOM order
    # From the top: the skip link, then the pages in the order they are shown, each with a visible focus ring.
    await page.goto(gateway.console + "#/functions")
    # Tab only once the page has drawn its controls and moved focus to its heading: on a slow run the heading took
    # focus in the middle of the walk, or the last Tab ran off an empty page to the body.
    await expect(page.locator("main h1")).to_be_focused()
    await expect(page.get_by_role("button", name="Create function")).to_be_visible()
    await page.focus("a.skip")
    order = [await page.evaluate("document.activeElement.textContent.trim()")]
    for _ in range(8):
        await page.keyboard.press("Tab")
        order.append(await page.evaluate("document.activeElement.textContent.trim()"))
        outline = await page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline not in ("none", ""), order[-1]  # :focus-visible draws a ring
    assert order[:8] == ["Skip to content", "Functions", "APIs", "Routes", "Upstreams", "Consumers", "Deployments",
                         "Live traffic"]  # fmt: skip
    # Then the page's own controls, in the order they read (the header's button is hidden without tokens).
    assert await page.evaluate("document.activeElement.closest('main') !== null")


READ = "r" * 20
WRITE = "w" * 20
TOKENS = f"""\
admin:
  port: 0
  tokens: [{{name: ro, token: {READ}, role: read}}, {{name: rw, token: {WRITE}, role: write}}]
routes:
  - {{name: health, path: /healthz, integration: {{type: mock, body: ok}}}}
"""
PRINTS = """import json

def lambda_handler(event, context):
    print("seen", event["n"])
    return {"statusCode": 200, "body": json.dumps(event["n"] * 2)}
"""


async def test_with_tokens_the_page_asks_for_one_and_a_python_functions_test_shows_its_logs(browser, tmp_path, shots):
    from playwright.async_api import expect

    from tests.console.conftest import start_gateway

    gw = await start_gateway(tmp_path, TOKENS)
    try:
        page = await browser.new_page()
        await page.goto(gw.console)
        dialog = page.get_by_role("dialog", name="Admin token")
        await expect(dialog).to_be_visible()
        await expect(page.get_by_label("Token", exact=True)).to_be_focused()
        await page.get_by_label("Token", exact=True).fill(READ)
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("heading", name="Functions", exact=True)).to_be_visible()
        # A read token reads, and its writes are refused with the API's answer.
        await page.get_by_label("Function name").fill("py-fn")
        await page.get_by_label("Runtime").select_option("python")
        await page.get_by_role("button", name="Create function").click()
        await expect(page.get_by_role("alert")).to_contain_text("HTTP 403: this token may only read")
        # Forgotten, then a write token.
        await page.get_by_role("button", name="Forget token").click()
        await expect(dialog).to_be_visible()
        await page.get_by_label("Token", exact=True).fill(WRITE)
        await page.get_by_role("button", name="Sign in").click()
        await page.get_by_label("Function name").fill("py-fn")
        await page.get_by_label("Runtime").select_option("python")
        await page.get_by_role("button", name="Create function").click()
        editor = page.get_by_label("Code of lambda_function.py")
        await expect(editor).to_have_value(re.compile(r"json\.dumps\('Hello from Lambda!'\)"), timeout=20_000)
        await editor.fill(PRINTS)
        await page.get_by_role("button", name="Deploy").click()
        await expect(page.get_by_role("alert")).to_contain_text("now runs the new code", timeout=20_000)
        await page.get_by_role("tab", name="Test").click()
        await page.get_by_label("Event JSON").fill('{"n": 21}')
        await page.get_by_role("button", name="Test", exact=True).click()
        result = page.locator("#test-result")
        await expect(result).to_contain_text("succeeded", timeout=20_000)
        await expect(result.locator(".response")).to_contain_text('"body": "42"')
        await expect(result.locator(".logs")).to_contain_text("seen 21")
        await shots.take(page, "python-test-logs")
    finally:
        await gw.proc.stop()


async def test_an_edit_is_written_only_over_what_it_was_read_from(browser, gateway: Gateway, shots: Shots):
    from playwright.async_api import expect

    page = await browser.new_page()
    await page.goto(gateway.console + "#/routes")
    await page.get_by_role("button", name="Edit health").click()
    await expect(page.get_by_label("Path")).to_have_value("/healthz")
    # Someone else deploys meanwhile (another tab, curl, CI).
    other = b'{"path": "/other", "integration": {"type": "mock", "body": "other"}}'
    r = await http_request(gateway.admin, "PUT", "/routes/other", headers={"content-type": "application/json"},
                           body=other, host="127.0.0.1")  # fmt: skip
    assert r.status == 201, r.body
    await page.get_by_label("Path").fill("/health")
    await page.get_by_role("button", name="Save route").click()
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("HTTP 409")
    await expect(alert).to_contain_text("is stale")
    await expect(alert.get_by_role("link", name="Reload the page")).to_be_visible()
    assert (await http_request(gateway.port, "GET", "/healthz", host="127.0.0.1")).status == 200  # nothing lost
    assert (await http_request(gateway.port, "GET", "/other", host="127.0.0.1")).body == b"other"
    # A new route is no edit: written over whatever serves.
    await page.get_by_label("Route name").fill("fresh")
    await page.get_by_label("Path").fill("/fresh")
    await page.get_by_role("button", name="Save route").click()
    await expect(alert).to_contain_text("Route fresh saved", timeout=20_000)


async def test_a_failing_target_shows_out_of_rotation_with_its_breaker_open(browser, gateway: Gateway, shots: Shots):
    from playwright.async_api import expect

    async def put(path: str, body: bytes) -> None:
        r = await http_request(gateway.admin, "PUT", path, headers={"content-type": "application/json"}, body=body,
                               host="127.0.0.1")  # fmt: skip
        assert r.status in (200, 201), r.body

    # A target nothing listens on (port 1), with a breaker that opens on the first failure.
    await put("/upstreams/flaky", b'{"targets": ["http://127.0.0.1:1"], "breaker": {"consecutive_failures": 1}}')
    await put("/routes/flaky", b'{"path": "/flaky", "integration": {"type": "http", "upstream": "flaky"}}')
    page = await browser.new_page()
    await page.goto(gateway.console + "#/upstreams")
    live = page.locator("#live-targets")
    await expect(live.locator(".health")).to_contain_text("in rotation")
    assert (await http_request(gateway.port, "GET", "/flaky", host="127.0.0.1")).status >= 500
    # The page reads the live health again every 2 seconds, without a reload.
    health = live.locator("tr", has_text="127.0.0.1:1").locator(".health")
    await expect(health).to_contain_text("out of rotation", timeout=10_000)
    await expect(health).to_contain_text("breaker open")
    await shots.take(page, "upstream-health")
