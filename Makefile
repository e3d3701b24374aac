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

.PHONY: serve test bench bench-versus bench-fleet bench-batch bench-guardrails lint typecheck lock clean mutation engines clean-engines

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

# Lint and type-check first (ruff, mypy --strict over src/), then the engine tier's virtualenv
# (unless the machine lacks the memory or disk for it: then the tier is skipped and says why),
# then the whole suite, in TEST_WORKERS processes (pytest-xdist; one test file stays in one
# process, so a module's servers start once). ENGINES=skip leaves the engine tier out on purpose.
TEST_WORKERS ?= 2
test: lint
	@skip="$$($(ENGINES_PREFLIGHT))" && \
	if [ -z "$$skip" ]; then $(MAKE) --no-print-directory $(VLLM_VENV)/.installed; \
	else echo "make test: engine tier (tests/engines) skipped: $$skip"; fi && \
	INFERENCEOPS_ENGINES_SKIP="$$skip" $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile \
		$(PYTEST_ARGS)

# The engine test tier (tests/engines, docs/engines.md): real vLLM for the CPU in a virtualenv of
# its own, made once and kept (.engines/ is git-ignored; ~2 min and ~2.5 GB). Re-installed when
# requirements/engines-vllm.txt changes; a failed install fails the target (and `make test`).
ENGINES       ?= auto
ENGINES_DIR   := .engines
VLLM_VENV     := $(ENGINES_DIR)/vllm
VLLM_REQS     := requirements/engines-vllm.txt
ENGINES_PREFLIGHT := $(PYTHON) tests/engines/preflight.py --engines $(ENGINES) --venv $(VLLM_VENV)

engines: $(VLLM_VENV)/.installed

$(VLLM_VENV)/.installed: $(VLLM_REQS)
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install --quiet --requirement $(VLLM_REQS)
	$(VLLM_VENV)/bin/python -m pip uninstall --quiet --yes torchvision torchaudio torchcodec triton
	$(VLLM_VENV)/bin/python -c 'import vllm.entrypoints.openai.api_server, peft, transformers'
	touch $@

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

# Routing strategies on four simulated H100 replicas behind the gateway (bench/fleet.py, ~12 min):
# TTFT p50/p90, output tokens/s, per-replica load, then a replica killed and restarted under load
# (bench/fleet_death.py); results in bench/results/fleet-*. ARGS=--quick
# for a one-minute smoke run.
bench-fleet: $(VENV)/.installed-dev
	$(BIN)/python -m bench.fleet $(ARGS)

# A 20,000-request batch beside steady interactive traffic on simulated replicas (bench/batch.py,
# ~10 min): interactive p99 TTFT with vs without the batch, fleet busy fraction; then 50,000-line
# files (27 MB and 200 MB) uploaded, checked and downloaded (bench/batch_files.py, ~1 min): lines/s
# of the check, the gateway's RSS; results in bench/results/batch-* and batch_files-*.
# ARGS=--quick for a one-minute smoke run.
# The gateway now against the gateway at BASE (a commit), side by side in one run.
BASE ?= HEAD~1
bench-versus: $(VENV)/.installed-dev
	$(BIN)/python -m bench.versus --base $(BASE) $(ARGS)

bench-batch: $(VENV)/.installed-dev
	$(BIN)/python -m bench.batch $(ARGS)
	$(BIN)/python -m bench.batch_files $(ARGS)

bench-guardrails: $(VENV)/.installed-dev
	$(BIN)/python -m bench.guardrails
	$(BIN)/python -m bench.guardrails_latency

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

# The engine tier's virtualenv and built models (not part of `make clean`: they take minutes to remake).
clean-engines:
	rm -rf $(ENGINES_DIR)
