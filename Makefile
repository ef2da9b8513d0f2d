# Two commands do all the set-up on a fresh machine:
#   make demo   creates .venv (CPU torch 2.13.0 first), installs featurecontrols, runs the demo
#   make test   the same set-up, then ruff, mypy and the test suite
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck pytest slow clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev,report]"
	touch $@

demo: $(BIN)/.installed
	$(BIN)/featurecontrols demo --out runs/demo

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(BIN)/.installed
	$(BIN)/mypy

pytest: $(BIN)/.installed
	$(BIN)/pytest

test: lint typecheck pytest

slow: $(BIN)/.installed
	$(BIN)/pytest -m slow

clean:
	rm -rf $(VENV) runs .mypy_cache .ruff_cache .pytest_cache
