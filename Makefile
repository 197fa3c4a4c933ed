# Two entry points (see README): `make demo` and `make test`. Both create .venv and install covidct first.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
DEMO_OUT ?= demo_out

.PHONY: demo test test-fast lint install clean

$(BIN)/.covidct-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test,weights,lint]"
	touch $@

install: $(BIN)/.covidct-installed

demo: install
	$(BIN)/covidct demo --out $(DEMO_OUT)

test: install
	$(BIN)/python -m pytest -q

test-fast: install  # development lane: everything but the slow (training) and browser tests; CI runs all
	$(BIN)/python -m pytest -q -m "not slow and not browser"

lint: install  # ruff, formatting, mypy and the import contracts (pyproject.toml); CI runs it before the tests
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
