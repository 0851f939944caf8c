"""The seed walkthrough (issue 24's "done" test), done entirely in a browser: create my-function (Node.js, the
default handler, then edited), create the REST API my-rest-api, ANY on / with a Lambda proxy integration, deploy
to a new stage Prod, copy and open the invoke URL, read the function's answer."""

from __future__ import annotations

import re

from tests.console.conftest import Gateway, Shots

GREAT = "The API Gateway REST API console is great!"
EDITED = """export const handler = async (event) => {
    const response = {
        statusCode: 200,
        body: JSON.stringify('The API Gateway REST API console is great!'),
    };
    return response;
};
"""


async def test_the_walkthrough_in_a_browser(browser, gateway: Gateway, shots: Shots) -> None:
    from playwright.async_api import expect

    await browser.grant_permissions(["clipboard-read", "clipboard-write"], origin=f"http://127.0.0.1:{gateway.admin}")
    page = await browser.new_page()
    await page.goto(gateway.console)
    await expect(page.get_by_role("heading", name="Functions", exact=True)).to_be_visible()

    # 1. The function: name, runtime, the Lambda console's default handler.
    await page.get_by_label("Function name").fill("my-function")
    await page.get_by_label("Runtime").select_option("nodejs")
    await page.get_by_role("button", name="Create function").click()
    await expect(page.get_by_role("heading", name="Function my-function")).to_be_visible()
    editor = page.get_by_label("Code of index.mjs")
    await expect(editor).to_have_value(re.compile(r"JSON\.stringify\('Hello from Lambda!'\)"))

    # The Test tab runs the default handler: its response and duration.
    await page.get_by_role("tab", name="Test").click()
    await page.get_by_role("button", name="Test", exact=True).click()
    await expect(page.locator("#test-result")).to_contain_text("succeeded", timeout=20_000)
    await expect(page.locator("#test-result .response")).to_contain_text("Hello from Lambda!")
    await expect(page.locator("#test-result")).to_contain_text(re.compile(r"Duration: [\d.]+ ms"))
    await shots.take(page, "1-function-test")

    # Edit the code in the browser and deploy it.
    await page.get_by_role("tab", name="Code").click()
    await editor.click()
    await page.keyboard.press("Control+A")
    await page.keyboard.insert_text(EDITED)
    await page.get_by_role("button", name="Deploy").click()
    await expect(page.get_by_role("alert")).to_contain_text("now runs the new code", timeout=20_000)
    await shots.take(page, "2-function-code")

    # 2. The REST API.
    await page.get_by_role("link", name="APIs", exact=True).click()
    await page.get_by_label("API name").fill("my-rest-api")
    await page.get_by_label("API type").select_option("rest")
    await page.get_by_role("button", name="Create API").click()
    await expect(page.get_by_role("heading", name="API my-rest-api")).to_be_visible()

    # 3. ANY on / with a Lambda proxy integration to my-function.
    await expect(page.get_by_label("Resource path")).to_have_value("/")
    await page.get_by_label("Method", exact=True).select_option("ANY")
    await page.get_by_label("Integration type").select_option("lambda")
    await page.get_by_label("Lambda function").select_option("my-function")
    await page.get_by_role("button", name="Create method").click()
    await expect(page.get_by_role("cell", name="Lambda proxy → my-function")).to_be_visible(timeout=20_000)

    # 4. Deploy to a new stage Prod.
    await page.get_by_label("Stage", exact=True).select_option(label="[New stage]")
    await page.get_by_label("Stage name").fill("Prod")
    await page.get_by_role("button", name="Deploy").click()
    await expect(page.get_by_role("alert")).to_contain_text("Deployed my-rest-api to stage Prod", timeout=20_000)

    # 5. The invoke URL: copied by its button, then opened.
    url = f"http://127.0.0.1:{gateway.port}/Prod"
    await expect(page.get_by_role("link", name=url)).to_be_visible()
    await shots.take(page, "3-api")  # docs/console.png
    await page.get_by_role("button", name="Copy invoke URL of stage Prod").click()
    await expect(page.get_by_role("alert")).to_contain_text(f"Copied {url}")
    assert await page.evaluate("navigator.clipboard.readText()") == url
    async with browser.expect_page() as opened:
        await page.get_by_role("link", name=url).click()
    answer = await opened.value
    await answer.wait_for_load_state()
    await expect(answer.locator("body")).to_have_text(f'"{GREAT}"')
    await shots.take(answer, "4-invoke-url", full_page=False)
    # The APIs page lists it with the stage's invoke URL.
    await page.get_by_role("link", name="APIs", exact=True).click()
    await expect(page.get_by_role("row").filter(has_text="my-rest-api")).to_contain_text(url)
    await shots.take(page, "5-apis")
    assert len(shots.taken) == 5 and all(p.stat().st_size > 1000 for p in shots.taken)


async def test_an_http_api_is_a_draft_until_deployed_and_a_stage_is_deployed_again_with_new_variables(
    browser, gateway: Gateway, shots: Shots
) -> None:
    from playwright.async_api import expect

    from fastgw.client import http_request

    async def traffic(path: str):
        return await http_request(gateway.port, "GET", path, host="127.0.0.1")

    page = await browser.new_page()
    await page.goto(gateway.console + "#/apis")
    await page.get_by_label("API name").fill("pets")
    await page.get_by_label("API type").select_option("http")
    await page.get_by_role("button", name="Create API").click()
    await expect(page.locator("#undeployed")).to_contain_text("Not deployed yet")
    await page.get_by_label("Resource path").fill("/pets")
    await page.get_by_label("Method", exact=True).select_option("GET")
    await page.get_by_label("Integration type").select_option("mock")
    await page.get_by_label("Status").fill("200")
    await page.get_by_label("Response body").fill('{"pets": ["rex"]}')
    await page.get_by_role("button", name="Create method").click()
    await expect(page.get_by_role("cell", name="Mock → 200")).to_be_visible()
    assert (await traffic("/pets")).status == 404  # a draft serves nowhere

    # Deployed to a new stage, $default (an HTTP API's, at the root), with a stage variable.
    await page.get_by_label("Stage", exact=True).select_option(label="[New stage]")
    await page.get_by_label("Stage name").fill("$default")
    await page.get_by_label("Stage variables").fill("color=blue")
    await page.get_by_label("Deployment description").fill("first pets")
    await page.get_by_role("button", name="Deploy").click()
    await expect(page.get_by_role("alert")).to_contain_text("Deployed pets to stage $default", timeout=20_000)
    stage = page.get_by_role("row").filter(has_text="$default")
    await expect(stage).to_contain_text(f"http://127.0.0.1:{gateway.port}/")
    await expect(stage).to_contain_text("color=blue")
    await expect(page.locator("#undeployed")).to_have_count(0)
    got = await traffic("/pets")
    assert got.status == 200 and got.json() == {"pets": ["rex"]}

    # A change is a draft again; deploying to the existing stage serves it, with the variables changed.
    await page.get_by_label("Resource path").fill("/cats")
    await page.get_by_label("Method", exact=True).select_option("GET")
    await page.get_by_label("Integration type").select_option("mock")
    await page.get_by_label("Response body").fill("meow")
    await page.get_by_role("button", name="Create method").click()
    await expect(page.locator("#undeployed")).to_contain_text("Changes not deployed yet")
    assert (await traffic("/cats")).status == 404 and (await traffic("/pets")).status == 200
    await page.get_by_label("Stage", exact=True).select_option("$default")
    await expect(page.get_by_label("Stage variables")).to_have_value("color=blue")
    await page.get_by_label("Stage variables").fill("color=green")
    await page.get_by_role("button", name="Deploy").click()
    await expect(page.get_by_role("row").filter(has_text="$default")).to_contain_text("color=green", timeout=20_000)
    assert (await traffic("/cats")).body == b"meow"
    await shots.take(page, "http-api")
