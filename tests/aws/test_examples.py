"""examples/sam-hello: the SAM CLI's python hello-world template (`sam init`), which docs/functions.md tells readers
to serve as it is: `fastgw check` passes on it from any working directory, and served, /hello answers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fastgw.testing import http_request
from tests.aws.conftest import serving

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "sam-hello" / "template.yaml"


def test_fastgw_check_passes_on_the_example(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "fastgw", "check", str(EXAMPLE)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert "template.yaml: ok" in run.stdout


def test_docs_show_the_example():
    assert "fastgw serve examples/sam-hello/template.yaml" in (ROOT / "docs" / "functions.md").read_text()


@pytest.mark.asyncio
async def test_the_example_answers_hello_world():
    async with serving(EXAMPLE) as srv:
        r = await http_request(srv.port, "GET", "/hello")
        assert (r.status, json.loads(r.body)) == (200, {"message": "hello world"})
