# Two commands set everything up on a fresh machine:
#   make serve   – virtualenv + package, then the platform on its embedded default
#   make test    – virtualenv + dev packages, then the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ARGS   ?=
PYTEST_ARGS ?=
# Every install takes its versions from the lock, so a fresh machine runs what CI ran.
# pyproject.toml keeps ranges (for people installing the package); `make lock` re-resolves.
LOCK   := requirements/dev.lock
PIP    := $(BIN)/python -m pip install --quiet --constraint $(LOCK)

.PHONY: serve test bench lint typecheck lock clean mutation

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-base: pyproject.toml $(LOCK) | $(BIN)/python
	$(PIP) -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(LOCK) | $(BIN)/python
	$(PIP) -e '.[dev]'
	touch $@ $(VENV)/.installed-base

serve: $(VENV)/.installed-base
	$(BIN)/inferenceops serve $(ARGS)

# Lint and type-check first (ruff, mypy --strict over src/), then the whole suite.
test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed-dev
	bench/ensure-tools
	$(BIN)/python -m bench.run --reference $(ARGS)
	$(BIN)/python -m bench.run --admission redis --quiet-wait 30 $(ARGS)
	$(BIN)/python -m bench.admission
	$(BIN)/python -m bench.ledger
	$(BIN)/python -m bench.fair_queue
	$(BIN)/python -m bench.identity
	$(BIN)/python -m bench.usage_ledger
	$(BIN)/python -m bench.params

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

# mypy --strict over src/ with the pydantic plugin; the whole configuration is [tool.mypy].
typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

# Mutation testing (mutmut 3; not part of CI or `make test`): mutants of the code that guards money
# and permissions — admission/, pipeline/auth.py, platform/identity.py, admin/api/deps.py — each run
# against the tests that reach it ([tool.mutmut] in pyproject.toml; it works in mutants/, a copy).
# A fresh run, niced, then the score per module and every survivor go to
# bench/results/mutation-latest.{md,json}. MUTANTS='inferenceops.pipeline.auth*' (a mutmut name
# glob) re-runs only those and keeps the other results; bench/README.md has the details.
MUTANTS ?=
mutation: $(VENV)/.installed-mutation
	$(if $(MUTANTS),,rm -rf mutants)
	set -f; start=$$(date +%s) && nice -n 10 $(BIN)/mutmut run $(MUTANTS) && \
		$(BIN)/python -m bench.mutation --command "make mutation$(if $(MUTANTS), MUTANTS='$(MUTANTS)')" \
		--seconds $$(( $$(date +%s) - start ))

$(VENV)/.installed-mutation: pyproject.toml $(LOCK) | $(BIN)/python
	$(PIP) -e '.[dev,mutation]'
	touch $@ $(VENV)/.installed-dev $(VENV)/.installed-base

# Re-resolve every extra against today's registry into the lock (review the diff, then commit).
lock: $(VENV)/.installed-dev
	$(PIP) -e '.[lock]'
	$(BIN)/pip-compile --quiet --extra dev --extra postgres --extra redis --extra uvicorn \
		--extra mutation --extra lock --no-emit-index-url --no-emit-find-links --strip-extras \
		--output-file $(LOCK) pyproject.toml

clean:
	rm -rf $(VENV) inferenceops-data .pytest_cache
