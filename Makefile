# Two entry points for a fresh machine with Python 3.11+ and pip: `make demo` and `make test`.
PYTHON ?= python3
# Extra pytest arguments for `make test`, e.g. make test ARGS="-k commands".
ARGS ?=
# Test processes for `make test` (pytest-xdist; one test file per process at a time). Most tests wait on
# a bot, a sandbox or a database, so two processes on two cores take about 60 % of the time of one.
# WORKERS=0 runs everything in one process.
WORKERS ?= 2
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/reconciler demo

test: $(STAMP)
	@bash .ci/install-prometheus.sh || echo "prometheus/promtool not installed: their tests will be skipped"
	$(BIN)/pytest -n $(WORKERS) --dist loadfile $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pyright reconciler/

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
