"""The console in a real headless Chromium (Debian's `chromium`), driven by Playwright for Python against a real
`fastgw serve` process. Skipped, saying why, only when /usr/bin/chromium is missing."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.gwprocess import GatewayProcess

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


# A gateway with nothing but a health check: the walkthrough adds the rest through the console.
CONFIG = """\
admin: {port: 0}
routes:
  - {name: health, path: /healthz, integration: {type: mock, body: {status: ok}}}
"""


class Shots:
    """Screenshots of a test: under its tmp_path, and in $FASTGW_SCREENSHOTS when that is set."""

    def __init__(self, tmp_path: Path) -> None:
        self.dirs = [tmp_path / "screenshots"]
        if os.environ.get("FASTGW_SCREENSHOTS"):
            self.dirs.append(Path(os.environ["FASTGW_SCREENSHOTS"]))
        for d in self.dirs:
            d.mkdir(parents=True, exist_ok=True)
        self.taken: list[Path] = []

    async def take(self, page: Any, name: str, full_page: bool = True) -> None:
        first = self.dirs[0] / f"{name}.png"
        await page.screenshot(path=str(first), full_page=full_page)
        for d in self.dirs[1:]:
            shutil.copyfile(first, d / first.name)
        self.taken.append(first)


@pytest.fixture
def shots(tmp_path: Path) -> Shots:
    return Shots(tmp_path)


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, args=ARGS, headless=True,
            viewport={"width": 1280, "height": 900},
        )  # fmt: skip
        try:
            yield context
        finally:
            await context.close()


class Gateway:
    def __init__(self, proc: GatewayProcess) -> None:
        self.proc = proc
        # NOTE: GatewayProcess.port is the first "listening on" line's, which may be the admin listener's.
        self.port = next(
            int(m.group(1))
            for line in proc.log
            if (m := re.search(r"fastgw listening on http://127\.0\.0\.1:(\d+)", line))
        )
        self.admin = next(
            int(m.group(1))
            for line in proc.log
            if (m := re.search(r"admin API listening on http://127\.0\.0\.1:(\d+)", line))
        )
        self.console = f"http://127.0.0.1:{self.admin}/console/"


async def start_gateway(tmp_path: Path, config: str) -> Gateway:
    path = tmp_path / "gw.yaml"
    path.write_text(config)
    proc = await GatewayProcess(path).start()
    for _ in range(100):  # the admin listener's line follows the traffic port's
        if any("fastgw listening on" in line for line in proc.log):
            break
        import asyncio

        await asyncio.sleep(0.05)
    return Gateway(proc)


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    gw = await start_gateway(tmp_path, CONFIG)
    try:
        yield gw
    finally:
        await gw.proc.stop()
