# Two commands: `make serve` and `make test`. Both build .venv with pip on first use
# (torch==2.13.0 first: the CPU build on this machine's disk; an unpinned torch would
# pull a multi-GB CUDA build) and do nothing more while pyproject.toml is unchanged.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: install serve test lint bench bench-proxy clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install torch==2.13.0
	$(PIP) install -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

serve: install
	$(BIN)/contextgate serve

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

LOCOMO ?= ../shared/data/locomo/locomo-dev.json

bench: install
	@mkdir -p ops/bench/results
	$(BIN)/python ops/bench/append.py --json ops/bench/results/append.json
	$(BIN)/python ops/bench/context_latency.py --json ops/bench/results/context_latency.json
	$(BIN)/python ops/bench/locomo.py $(LOCOMO) --json ops/bench/results/locomo.json
	$(BIN)/python ops/bench/search_scaling.py --json ops/bench/results/search_scaling.json

# Not part of `bench`: LiteLLM is installed into its own venv on first use, and the
# default run (100,000 requests in the memory phase) takes over half an hour here.
bench-proxy: install
	@mkdir -p ops/bench/results
	$(BIN)/python ops/bench/proxy_overhead.py --json ops/bench/results/proxy_overhead.json

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
