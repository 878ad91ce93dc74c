# Set-up and checks on a fresh machine with only Python (>= 3.10); each target makes .venv as needed:
#   make demo        -- the main job: python -m lsattn demo
#   make test        -- the test suite (includes the executed examples of docs/ and the docstrings), in
#                       PYTEST_WORKERS pytest-xdist processes (one file per worker at a time, the heaviest first:
#                       tests/conftest.py's FILE_SECONDS; 0: this process)
#   make docs        -- the documentation site (Sphinx) into docs/_build/html; fails on any warning
#   make dist-check  -- build sdist + wheel, install the wheel in a clean venv, smoke-test it
#   make bench       -- the CPU benchmarks (benchmarks/run_all.py) into benchmarks/results/
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PYTEST_WORKERS ?= 2

.PHONY: demo test docs dist-check bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip

$(VENV)/.%-installed: $(VENV)/bin/python pyproject.toml
	$(PY) -m pip install -e ".[$*]"
	touch $@

demo: $(VENV)/.numba-installed
	$(PY) -m lsattn demo

test: $(VENV)/.test-installed
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

docs: $(VENV)/.docs-installed
	$(PY) -m sphinx -W --keep-going -q -b html docs docs/_build/html
	@echo "docs: open docs/_build/html/index.html"

dist-check: $(VENV)/.dev-installed
	$(PY) .ci/wheel_smoke.py

bench: $(VENV)/.bench-installed
	$(PY) benchmarks/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .hypothesis docs/_build
