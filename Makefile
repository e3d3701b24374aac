# Two commands set everything up on a fresh machine:
#   make serve   – virtualenv + package, then the platform on its embedded default
#   make test    – virtualenv + dev packages, then the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ARGS   ?=
PYTEST_ARGS ?=

.PHONY: serve test bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-base: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed-base

serve: $(VENV)/.installed-base
	$(BIN)/inferenceops serve $(ARGS)

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed-dev
	bench/ensure-tools
	$(BIN)/python -m bench.run --reference $(ARGS)
	$(BIN)/python -m bench.run --admission redis --quiet-wait 30 $(ARGS)
	$(BIN)/python -m bench.admission
	$(BIN)/python -m bench.ledger
	$(BIN)/python -m bench.fair_queue
	$(BIN)/python -m bench.identity

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests bench

clean:
	rm -rf $(VENV) inferenceops-data .pytest_cache
