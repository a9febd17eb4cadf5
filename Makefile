# mars-impacts: `make demo` runs the pipeline on synthetic scenes, `make test` runs every check.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
DEMO := demo
PIP_FLAGS ?= --disable-pip-version-check

.PHONY: install dev demo test lint typecheck pytest bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_FLAGS) -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_FLAGS) -q -e '.[dev]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
dev: $(VENV)/.installed-dev

## demo: synthetic scenes -> balanced patch set (grows into the whole loop)
demo: install
	$(BIN)/impacts synth --out $(DEMO)/scenes --count 6 --seed 7
	$(BIN)/impacts tile --scenes $(DEMO)/scenes --out $(DEMO)/patches --config configs/tile.yaml
	@echo "demo: scenes in $(DEMO)/scenes, patch set in $(DEMO)/patches (manifest.csv)"

## test: lint, type check and the whole test suite
test: lint typecheck pytest

lint: dev
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: dev
	$(BIN)/mypy

pytest: dev
	$(BIN)/pytest -q

## bench: figures in the README (ratios measured side by side in one run)
bench: install
	$(BIN)/python benchmarks/startup.py
	$(BIN)/python benchmarks/tiling.py

clean:
	rm -rf $(VENV) $(DEMO) .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info
