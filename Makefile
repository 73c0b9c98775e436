# The same commands locally and in CI. Everything installs from the project's own files:
# uv.lock pins every Python package. Bytecode is compiled at install (as pip does) so start-up
# never pays for compiling, even where PYTHONDONTWRITEBYTECODE keeps Python from caching it.
SHELL := /bin/bash
UV_VERSION := 0.13.9
VENV := .venv
PY := $(VENV)/bin/python
export UV_PYTHON_DOWNLOADS := never
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

# The SQLite half of the suite also runs on Python 3.13, in a venv of its own (pyenv's).
PY313_SOURCE ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python) $(shell command -v python3.13 2>/dev/null))
VENV313 := .venv-3.13

.PHONY: install install-serve serve test test-sqlite test-postgres test-py313 bench lint clean

$(UV):
	python3 -m pip install --quiet --user "uv==$(UV_VERSION)" || python3 -m pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked --all-extras --compile-bytecode --python python3
	$(PY) -m compileall -q src
	touch $@

install: $(VENV)/.installed  ## create .venv from uv.lock (.venv/bin/redline is the CLI)

# Serving needs the server and the MCP extras only: no test tools (the dev group). --inexact
# keeps what `make install` added to the same .venv.
$(VENV)/.installed-serve: pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked --extra server --extra mcp --no-dev --inexact --compile-bytecode \
	  --python python3
	touch $@

install-serve: $(VENV)/.installed-serve  ## .venv with what serving needs, no test tools

serve: install-serve  ## start the server on http://$(HOST):$(PORT) with SQLite under ./.redline
	$(VENV)/bin/redline serve --host $(HOST) --port $(PORT)

test: install  ## the whole suite, on SQLite and then on PostgreSQL; SQLite on Python 3.13 too
	$(MAKE) --no-print-directory test-sqlite
	$(MAKE) --no-print-directory test-postgres
	$(MAKE) --no-print-directory test-py313

# Browser tests run in a pytest process of their own: Playwright's sync API keeps an event
# loop running in the main thread for the rest of the session, where the asyncio-based
# client tests (SDK AsyncClient, MCP sessions) need to start their own.
test-sqlite: install
	REDLINE_TEST_DB=sqlite $(PY) -m pytest -m "not browser" $(PYTEST_ARGS)
	REDLINE_TEST_DB=sqlite $(PY) -m pytest -m browser $(PYTEST_ARGS)

test-postgres: install
	REDLINE_TEST_DB=postgres $(PY) -m pytest -m "not browser" $(PYTEST_ARGS)
	REDLINE_TEST_DB=postgres $(PY) -m pytest -m browser $(PYTEST_ARGS)

$(VENV313)/.installed: pyproject.toml uv.lock | $(UV)
	@test -n "$(PY313_SOURCE)" || { echo "Python 3.13 not found (pyenv install 3.13)"; exit 1; }
	UV_PROJECT_ENVIRONMENT=$(VENV313) $(UV) sync --locked --all-extras --compile-bytecode \
	  --python $(PY313_SOURCE)
	touch $@

# The browser tests are the same on every Python: they run on the main one only.
test-py313: $(VENV313)/.installed  ## the SQLite half of the suite on Python 3.13
	REDLINE_TEST_DB=sqlite $(VENV313)/bin/python -m pytest -m "not browser" $(PYTEST_ARGS)

bench: install  ## benchmarks: print figures beside their baselines
	for b in bench/*.py; do $(PY) $$b || exit 1; done

lint: install  ## ruff, the layer contracts (import-linter, [tool.importlinter]), mypy over src/
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/lint-imports --no-cache --no-logo
	$(VENV)/bin/mypy src

clean:
	rm -rf $(VENV) $(VENV313) .pytest_cache
