# The two commands of the README: `make quickstart` (main job) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install quickstart test lint bench

$(BIN)/jaxflow: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/jaxflow

quickstart: install
	$(BIN)/jaxflow sweep configs/quickstart.toml --out results/quickstart

test: install
	$(BIN)/python -m pytest -n 2 -q

lint: install
	$(BIN)/ruff check jaxflow tests benchmarks

bench: install
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done
