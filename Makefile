# Two commands for a fresh machine: `make dev` and `make test`. Both install `.[dev]`: the runtime
# (nova_jobs) and, beside it, the local stack, demo data and benchmarks (nova_jobs_dev).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dev test bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## Local stack on embedded defaults (chdb, redis-server, tansu), demo data, `dagster dev`.
dev: $(STAMP)
	$(BIN)/nova-jobs dev

## Every test, against real chdb, redis-server, Kafka (tansu) and Dagster instances.
test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

## Import time of the code location, then speed and memory at scale; BENCH_ARGS="--scale small"
## for a quick look, BENCH_ARGS="--only import" for the import time alone.
bench: $(STAMP)
	$(BIN)/python -m nova_jobs_dev.bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .nova
