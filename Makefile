# Two commands do all set-up on a fresh machine with only Python (>= 3.10):
#   make demo   -- the main job: python -m lsattn demo
#   make test   -- the test suite
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python

.PHONY: demo test bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip

$(VENV)/.demo-installed: $(VENV)/bin/python pyproject.toml
	$(PY) -m pip install -e ".[numba]"
	touch $@

$(VENV)/.test-installed: $(VENV)/bin/python pyproject.toml
	$(PY) -m pip install -e ".[test]"
	touch $@

demo: $(VENV)/.demo-installed
	$(PY) -m lsattn demo

test: $(VENV)/.test-installed
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.test-installed
	$(PY) -m pip install -e ".[bench]"
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
