"""The release check: fastgw as a user gets it from a wheel, not as the checkout runs it.

1. `python -m build`: an sdist, then a wheel built from that sdist (so the sdist builds).
2. The wheel carries every file git tracks under fastgw/ (modules, `_core.pyi`, `py.typed`, the quickstart, the
   function runtimes), the compiled core and the LICENSE; the sdist carries what building and testing need.
3. A fresh venv (no editable install, nothing from the checkout on sys.path) installs the wheel; `fastgw serve`
   on an ephemeral port answers the quickstart as its welcome says; `fastgw check` passes on every example config.
4. The same from the sdist with no usable C compiler: the install succeeds on the pure-Python core, says so in
   the build output (`pip -v`), `fastgw --version` names the core and why, quietly, and `fastgw serve` says so in
   one warning (naming the reinstall that works) and still answers; an editable install succeeds too.

Run by .ci/run (`python3 .ci/release_check.py`); stdlib only. Any failure stops it with "release check FAILED"
and exit 1.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LISTEN = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")
PASSED: list[str] = []


class CheckFailed(Exception):
    pass


def check(name: str, fn: Callable[[], None]) -> None:
    print(f"release check: {name} ...", flush=True)
    started = time.monotonic()
    fn()
    PASSED.append(name)
    print(f"release check: {name}: ok ({time.monotonic() - started:.1f}s)", flush=True)


def run(cmd: list[str | Path], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    """Run a command; its output (stdout and stderr together) is returned, and shown whole if it fails."""
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600, cwd=cwd, env=env)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise CheckFailed(f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{out}")
    return out


def expect(ok: object, what: str) -> None:
    if not ok:
        raise CheckFailed(what)


def build(work: Path) -> tuple[Path, Path]:
    tools = work / "tools"
    run([sys.executable, "-m", "venv", tools])
    run([tools / "bin" / "pip", "install", "-q", "build"])
    dist = work / "dist"
    run([tools / "bin" / "python", "-m", "build", "--outdir", dist, ROOT], cwd=work)
    sdists, wheels = list(dist.glob("*.tar.gz")), list(dist.glob("*.whl"))
    expect(len(sdists) == 1 and len(wheels) == 1, f"expected one sdist and one wheel in {dist}: {os.listdir(dist)}")
    return sdists[0], wheels[0]


def check_contents(sdist: Path, wheel: Path) -> None:
    tracked = run(["git", "-C", ROOT, "ls-files", "fastgw"]).split()
    expect(tracked, "git ls-files fastgw listed nothing: the release check needs a git checkout")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    missing = [f for f in tracked if f not in names]
    expect(not missing, f"the wheel lacks files git tracks under fastgw/ (declare them as package data): {missing}")
    expect(any(re.match(r"fastgw/_core\..*\.so$", n) for n in names), f"the wheel has no compiled core: {names}")
    expect("fastgw/_core_missing.txt" not in names, "the wheel says its compiled core is missing")
    expect(any(n.endswith(".dist-info/licenses/LICENSE") for n in names), "the wheel carries no LICENSE")
    with tarfile.open(sdist) as t:
        top = t.getnames()[0].split("/")[0]
        inside = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    for needed in ("LICENSE", "README.md", "pyproject.toml", "setup.py", "fastgw/_core.pyx", "fastgw/_core.pxd",
                   "tests/conftest.py", "examples/my-rest-api/fastgw.yaml"):  # fmt: skip
        expect(needed in inside, f"the sdist {top} lacks {needed}")


def venv_with(work: Path, name: str, wheel: Path) -> Path:
    venv = work / name
    run([sys.executable, "-m", "venv", venv])
    run([venv / "bin" / "pip", "install", "-q", "--no-cache-dir", wheel])
    where = run([venv / "bin" / "python", "-c", "import fastgw; print(fastgw.__file__)"], cwd=work).strip()
    expect(Path(where).is_relative_to(venv), f"{name} imports fastgw from {where}, not from its own site-packages")
    return venv


def get(port: int, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def serve_quickstart(venv: Path, work: Path, pure: bool) -> None:
    """`fastgw serve` (the built-in quickstart) on a free port answers every line of its own welcome."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTGW_")}
    proc = subprocess.Popen(
        [venv / "bin" / "fastgw", "serve", "--port", "0"],
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    log: list[str] = []
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 60
        port = 0
        while not port:
            line = proc.stderr.readline()
            if not line or time.monotonic() > deadline:
                raise CheckFailed("fastgw serve did not start:\n" + "".join(log))
            log.append(line)
            m = LISTEN.search(line)
            port = int(m.group(1)) if m else 0
        text = "".join(log)
        if pure:
            warned = [line for line in log if "runs on its pure-Python core" in line]
            expect(len(warned) == 1, f"a pure-core serve does not warn once:\n{text}")
            expect("not built when fastgw was installed" in text, f"the warning does not say why:\n{text}")
            expect(warned[0].rstrip().endswith("pip install --force-reinstall --no-deps ."),
                   f"the warning does not name the reinstall that works:\n{text}")  # fmt: skip
            expect("RuntimeWarning" not in text, f"a raw warning at import:\n{text}")
            expect("core pure-Python" in text, f"the listening line does not name the core:\n{text}")
        else:
            expect("pure-Python" not in text and "core compiled" in text, f"not on the compiled core:\n{text}")
        status, _, body = get(port, "GET", "/")
        welcome = json.loads(body)
        expect(status == 200 and "fastgw is running" in welcome["message"], f"GET / answered {status} {body!r}")
        for line in welcome["try"]:
            m = re.match(r"curl -i (?:-X (\w+) )?http://127\.0\.0\.1:(\d+)(/\S*)(?:\s+\((\d+): (.*)\))?$", line)
            expect(m, f"the welcome's line {line!r} is not a curl command this check understands")
            assert m is not None
            method, line_port, path, want, claim = m.groups()
            expect(int(line_port) == port, f"the welcome names port {line_port}, the gateway serves on {port}")
            status, headers, body = get(port, method or "GET", path)
            expect(status == int(want or 200), f"{line!r} answered {status} {body!r}")
            if claim:
                expect(headers.get("allow", "?") in claim, f"{line!r}: Allow is {headers.get('allow')!r}")
            if path.startswith("/api/"):
                expect(headers.get("x-served-by") == "demo-service", f"{line!r} was not proxied: {headers}")
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        expect(code == 0, f"fastgw serve exited {code} on SIGTERM")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def check_examples(venv: Path, work: Path) -> None:
    # examples/grafana/ holds a Grafana dashboard (JSON), not a gateway config.
    configs = sorted(
        p
        for ext in ("yaml", "yml", "json")
        for p in (ROOT / "examples").rglob(f"*.{ext}")
        if "grafana" not in p.relative_to(ROOT / "examples").parts
    )
    expect(configs, "no example configs found under examples/")
    for config in configs:
        out = run([venv / "bin" / "fastgw", "check", config], cwd=work)
        expect(": ok (" in out, f"fastgw check {config}: {out}")
        print(f"  {out.strip()}", flush=True)


def build_without_compiler(work: Path, sdist: Path) -> Path:
    out = work / "pure-dist"
    env = {**os.environ, "CC": str(work / "no-such-compiler")}
    env.pop("FASTGW_NO_EXTENSIONS", None)
    text = run(
        [work / "tools" / "bin" / "pip", "wheel", "-v", "--no-deps", "--no-cache-dir", "-w", out, sdist], env=env
    )
    expect("the compiled core was NOT built" in text, "the build without a compiler did not say it fell back")
    wheels = list(out.glob("*.whl"))
    expect(len(wheels) == 1, f"expected one wheel in {out}")
    with zipfile.ZipFile(wheels[0]) as z:
        names = set(z.namelist())
        expect(not any(n.endswith(".so") for n in names), "a wheel built without a compiler has a compiled core")
        expect("fastgw/_core_missing.txt" in names, "a wheel built without a compiler does not record why")
    return wheels[0]


def editable_without_compiler(work: Path) -> None:
    """`pip install -e .` with no usable C compiler succeeds (it used to fail the whole install)."""
    venv = work / "venv-editable"
    run([sys.executable, "-m", "venv", venv])
    env = {**os.environ, "CC": str(work / "no-such-compiler")}
    env.pop("FASTGW_NO_EXTENSIONS", None)
    marker = ROOT / "fastgw" / "_core_missing.txt"
    had_marker = marker.exists()
    try:
        text = run([venv / "bin" / "pip", "install", "-v", "--no-deps", "--no-cache-dir", "-e", ROOT], env=env)
        expect("the compiled core was NOT built" in text, "the editable build without a compiler did not say so")
    finally:
        if not had_marker:  # the checkout's own (gitignored) record of the failed build, not this check's business
            marker.unlink(missing_ok=True)


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="fastgw-release-"))
    try:
        built: dict[str, Path] = {}

        def do_build() -> None:
            built["sdist"], built["wheel"] = build(work)

        check("build an sdist, and a wheel from it", do_build)
        check("the wheel and the sdist carry everything", lambda: check_contents(built["sdist"], built["wheel"]))
        check("install the wheel into a fresh venv", lambda: built.update(venv=venv_with(work, "venv", built["wheel"])))
        version = run([built["venv"] / "bin" / "fastgw", "--version"], cwd=work)
        expect("core: compiled" in version, f"fastgw --version: {version}")
        check(
            "fastgw serve from the wheel answers the quickstart", lambda: serve_quickstart(built["venv"], work, False)
        )
        check("fastgw check passes on every example config", lambda: check_examples(built["venv"], work))

        def pure() -> None:
            wheel = build_without_compiler(work, built["sdist"])
            venv = venv_with(work, "venv-pure", wheel)
            version = run([venv / "bin" / "fastgw", "--version"], cwd=work)
            expect("core: pure-Python (it was not built" in version and "no-such-compiler" in version,
                   f"fastgw --version: {version}")  # fmt: skip
            expect("Warning" not in version, f"fastgw --version warns: {version}")
            serve_quickstart(venv, work, True)

        check("without a C compiler: installs, warns once, answers on the pure core", pure)
        check("without a C compiler: an editable install succeeds too", lambda: editable_without_compiler(work))
    except (CheckFailed, subprocess.TimeoutExpired) as exc:
        print(f"\nrelease check FAILED: {exc}\n(work folder kept: {work})", file=sys.stderr, flush=True)
        print(f"release check: {len(PASSED)} passed, 1 failed")
        return 1
    shutil.rmtree(work, ignore_errors=True)
    print(f"release check: {len(PASSED)} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
