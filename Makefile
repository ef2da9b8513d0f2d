# Two commands do all the set-up on a fresh machine:
#   make demo   creates .venv (CPU torch 2.13.0 first), installs featurecontrols, runs the demo
#   make test   the same set-up, then ruff, mypy and the test suite
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck pytest slow bench-null bench-sae clean

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

# The suite, then the slow checks that fit in CI: modular addition retrained, and its grokking series.
pytest: $(BIN)/.installed
	$(BIN)/pytest
	$(BIN)/pytest -m slow tests/test_modular_addition.py

test: lint typecheck pytest

slow: $(BIN)/.installed
	$(BIN)/pytest -m slow

# Benchmarks (each prints a table; the last line is the headline ratio).
bench-null: $(BIN)/.installed
	$(BIN)/python benchmarks/null_speed.py

# SAELens lives in its own venv: sae-lens pins transformer-lens < 4.
.venv-saelens/.installed:
	$(PYTHON) -m venv .venv-saelens
	.venv-saelens/bin/python -m pip install --quiet "$(TORCH)"
	.venv-saelens/bin/python -m pip install --quiet sae-lens
	touch $@

bench-sae: $(BIN)/.installed .venv-saelens/.installed
	$(BIN)/python benchmarks/sae_speed.py --saelens-python .venv-saelens/bin/python

clean:
	rm -rf $(VENV) .venv-saelens runs .mypy_cache .ruff_cache .pytest_cache
