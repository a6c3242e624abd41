# The README's commands. Every target creates .venv if needed and installs the project into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-fast lint dev demo sandbox bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,deploy]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

# The fast tier: no server, no Dagster run, no multi-second computation (README "Two commands").
test-fast: $(STAMP)
	$(BIN)/pytest -m "not servers and not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pyright --pythonpath $(BIN)/python

dev: $(STAMP)
	$(BIN)/market-data dev

demo: $(STAMP)
	$(BIN)/market-data demo $(DEMO_ARGS)

sandbox: $(STAMP)
	$(BIN)/market-data sandbox --port 8787

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache data/.staging
