# Short commands; the README explains each.
PY ?= .venv/bin/python

.PHONY: venv build test test-pure release-check diagram bench bench-functions lint clean

venv:
	python3 -m venv .venv && .venv/bin/pip install -q -e '.[dev]' -e examples/plugin-package

build:  ## rebuild the Cython core in place after editing its hub fastgw/_core.pyx or a part (fastgw/core/*.pyx, *.pxd)
	$(PY) setup.py build_ext --inplace

test:
	$(PY) -m pytest -q

test-pure:  ## the whole suite on the pure-Python twin of the core
	FASTGW_NO_EXTENSIONS=1 $(PY) -m pytest -q

release-check:  ## build the sdist and wheel, install them into fresh venvs, serve and check (what .ci/run does)
	python3 .ci/release_check.py

diagram:  ## redraw docs/request-path.svg after editing docs/diagram.py
	$(PY) docs/diagram.py

bench:
	$(PY) bench/run.py

bench-functions:
	$(PY) bench/functions.py

lint:
	$(PY) -m ruff check fastgw tests bench docs/diagram.py .ci/release_check.py && $(PY) -m ruff format --check fastgw tests bench docs/diagram.py .ci/release_check.py && $(PY) -m mypy fastgw

clean:
	rm -rf build dist *.egg-info fastgw/_core.c fastgw/_core*.so fastgw/_core.html fastgw/_core_missing.txt \
		fastgw/core/*.c fastgw/core/*.so fastgw/core/*.html
