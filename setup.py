"""Builds the compiled core `fastgw._core` from `fastgw/_core.pyx`.

Everything else (metadata, dependencies, entry points) lives in pyproject.toml.
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = [
    Extension(
        "fastgw._core",
        ["fastgw/_core.pyx"],
        extra_compile_args=["-O2"],
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": "3", "embedsignature": True},
        annotate=False,
    ),
)
