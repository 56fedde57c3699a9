# Every target sets itself up: a fresh machine needs only Python 3.11.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CLI := $(VENV)/bin/mnist-classifier
# torch is pinned and installed first: an unpinned torch would pull several GB of CUDA packages.
TORCH_PIN := torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: setup test test-fast demo lint format clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# The whole suite, as CI runs it.
test: setup
	$(PY) -m pytest -q

# The developer's inner loop: everything but the tests marked slow (browsers, notebooks, real training).
test-fast: setup
	$(PY) -m pytest -q -m "not slow"

demo: setup
	$(CLI) train --recipe seed

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy

format: setup
	$(VENV)/bin/ruff check --fix src tests benchmarks
	$(VENV)/bin/ruff format src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
