# Every target sets itself up: a fresh machine needs only Python 3.11.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CLI := $(VENV)/bin/mnist-classifier
# torch is pinned and installed first: an unpinned torch would pull several GB of CUDA packages.
TORCH_PIN := torch==2.13.0
STAMP := $(VENV)/.installed
# The package with every extra, and the development tools (the `dev` dependency group, PEP 735:
# pip >= 25.1 installs it with --group).
EXTRAS := all
FLOOR_VENV ?= .venv-floors
FLOOR_PY := $(FLOOR_VENV)/bin/python
# What `make floors` runs against the lowest supported versions: data, preprocessing, plots
# and serving (test_onnx_backend_serves_the_same_answers exports, which needs the export extra).
FLOOR_TESTS := tests/test_idx.py tests/test_sources.py tests/test_prepare.py tests/test_plots.py \
	tests/test_serving.py
FLOOR_DESELECT := not onnx_backend_serves_the_same_answers

.PHONY: setup test test-fast floors demo lint format clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade 'pip>=25.1'
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -c constraints.txt -e '.[$(EXTRAS)]' --group dev
	touch $(STAMP)

# The whole suite, as CI runs it.
test: setup
	$(PY) -m pytest -q

# The developer's inner loop: everything but the tests marked slow (browsers, notebooks, real training).
test-fast: setup
	$(PY) -m pytest -q -m "not slow"

# The lowest supported versions (requirements/floors.txt) in a second venv, on a subset of the
# tests; torch stays at the pinned CPU build (see that file for why).
floors:
	test -x $(FLOOR_PY) || $(PYTHON) -m venv $(FLOOR_VENV)
	$(FLOOR_PY) -m pip install -q --upgrade 'pip>=25.1'
	$(FLOOR_PY) -m pip install -q $(TORCH_PIN)
	$(FLOOR_PY) -m pip install -q -c requirements/floors.txt -e '.[serve,onnx]' pytest pytest-timeout httpx
	$(FLOOR_PY) -m pip freeze | grep -i -E '^(numpy|pillow|matplotlib|fastapi|onnxruntime)=='
	$(FLOOR_PY) -m pytest -q -m "not slow" -W ignore::DeprecationWarning -k "$(FLOOR_DESELECT)" $(FLOOR_TESTS)

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
	rm -rf $(VENV) $(FLOOR_VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
