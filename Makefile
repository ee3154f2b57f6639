# Two entry points for a fresh machine with Python 3.11+ and pip: `make demo` and `make test`.
PYTHON ?= python3
# Extra pytest arguments for `make test`, e.g. make test ARGS="-k commands".
ARGS ?=
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
	$(BIN)/pytest $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pyright reconciler/

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
