"""Builds the compiled core `fastgw._core` from its hub `fastgw/_core.pyx`, when it can.

The hub includes the core's compiled parts (`fastgw/core/router.pyx`, `http.pyx`, `phases.pyx`, `limit.pyx`,
`observe.pyx`, with their `.pxd` through `fastgw/_core.pxd`): one extension, as uvloop builds its own. Cython follows
the includes; `PARTS` lists them again as the extension's dependencies, so that a changed part rebuilds it.

Everything else (metadata, dependencies, entry points, package data) lives in pyproject.toml.

The extension is optional, as aiohttp's and falcon's are: without a C compiler or the Python headers (or with
FASTGW_NO_EXTENSIONS=1 at install time) the install still succeeds, on the pure-Python twins (`fastgw/core/*.py`).
It says so in the build output (which pip shows only with `pip install -v`: a successful build's output is hidden,
and nothing a build prints can change that), and it leaves `fastgw/_core_missing.txt` in the installed package so that
`fastgw serve` (and `fastgw --version`) can say why the compiled core is missing and how to get it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import BaseError, CCompilerError

MISSING_MARKER = "_core_missing.txt"  # read by fastgw.cli; the name is part of the contract between the two
# Whatever goes wrong building the optional extension (no compiler, no Python.h, no Cython and no C file) falls back.
BUILD_ERRORS = (CCompilerError, BaseError, OSError, ValueError)
NO_EXTENSIONS = os.environ.get("FASTGW_NO_EXTENSIONS", "") not in ("", "0")
HERE = Path(__file__).resolve().parent
PARTS = sorted(f"fastgw/core/{p.name}" for ext in ("pyx", "pxd") for p in (HERE / "fastgw" / "core").glob(f"*.{ext}"))


def _core(source: str) -> Extension:
    return Extension("fastgw._core", [source], depends=["fastgw/_core.pxd", *PARTS], extra_compile_args=["-O2"])


def _extensions() -> list[Extension]:
    try:
        from Cython.Build import cythonize
    except ImportError:
        # An sdist carries the generated C file, so a build without Cython still compiles the core.
        if (HERE / "fastgw" / "_core.c").exists():
            return [_core("fastgw/_core.c")]
        print("fastgw: Cython is not installed and there is no generated fastgw/_core.c", file=sys.stderr)
        return [_core("fastgw/_core.pyx")]
    return cythonize(
        [_core("fastgw/_core.pyx")],
        compiler_directives={"language_level": "3", "embedsignature": True},
        annotate=False,
    )


class OptionalBuildExt(build_ext):
    """build_ext that falls back to the pure-Python core instead of failing the install."""

    def run(self) -> None:
        # NOTE: setuptools clears `inplace` while it builds and copies the library into the source tree afterwards,
        # so where this build installs to is decided here, before.
        self._in_source = bool(self.inplace or getattr(self, "editable_mode", False))
        self._reason: str | None = None
        if NO_EXTENSIONS:
            self._fell_back("FASTGW_NO_EXTENSIONS was set when fastgw was built")
            return
        try:
            super().run()
        except BUILD_ERRORS as exc:
            if self._reason is None:
                self._fell_back(f"no usable C compiler ({exc})")

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except BUILD_ERRORS as exc:
            self._fell_back(f"compiling {ext.name} failed ({exc})")
            return
        self._write_marker(None)

    def copy_extensions_to_source(self) -> None:
        if self._reason is None:  # there is nothing to copy when the build fell back
            super().copy_extensions_to_source()

    def _fell_back(self, reason: str) -> None:
        self._reason = reason
        # A build folder reused from an earlier, successful build would slip its (stale) library into this wheel.
        if not self.inplace:
            Path(self.get_ext_fullpath("fastgw._core")).unlink(missing_ok=True)
        bar = "*" * 100
        print(
            f"\n{bar}\n"
            f"fastgw: the compiled core was NOT built: {reason}.\n"
            "fastgw is installed and works on its pure-Python core, several times slower at routing and rate\n"
            "limiting; `fastgw serve` says so in one warning at every start, and `fastgw --version` names the core.\n"
            "To get the compiled core, install a C compiler and the Python headers (Debian/Ubuntu: apt-get install\n"
            "-y gcc python3-dev), then reinstall from the fastgw checkout or unpacked sdist:\n"
            "pip install --force-reinstall --no-deps .\n"
            f"{bar}\n",
            file=sys.stderr,
        )
        self._write_marker(reason)

    def _write_marker(self, reason: str | None) -> None:
        """Record (or clear) why the core is missing, where the extension would have gone and, for in-place and
        editable builds, in the source tree the installation imports from."""
        folders = {Path(self.get_ext_fullpath("fastgw._core")).parent}
        if self._in_source:
            folders.add(HERE / "fastgw")
        for folder in folders:
            marker = folder / MISSING_MARKER
            if reason is None:
                marker.unlink(missing_ok=True)
            else:
                folder.mkdir(parents=True, exist_ok=True)
                marker.write_text(reason + "\n")


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
