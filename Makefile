# The two commands of the README: `make quickstart` (main job) and `make test` (the docs site, built
# with --strict into site/, then the tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install quickstart test test-interrupts docs lint bench

$(BIN)/jaxflow: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/jaxflow

quickstart: install
	$(BIN)/jaxflow sweep configs/quickstart.toml --out results/quickstart

test: install docs
	$(BIN)/python -m pytest -n 2 -q -m "not interrupts"

# the scheduled interrupts of every command at 10 moments (tests/test_interrupts.py; `make test` runs
# them at 3): several minutes
test-interrupts: install
	$(BIN)/python -m pytest -q -m interrupts

docs: install
	$(BIN)/mkdocs build --strict --site-dir site

lint: install
	$(BIN)/ruff check jaxflow tests benchmarks

bench: install
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done
