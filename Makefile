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

.PHONY: install serve test test-sqlite test-postgres bench lint clean

$(UV):
	python3 -m pip install --quiet --user "uv==$(UV_VERSION)" || python3 -m pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked --all-extras --compile-bytecode --python python3
	$(PY) -m compileall -q src
	touch $@

install: $(VENV)/.installed  ## create .venv from uv.lock (.venv/bin/redline is the CLI)

serve: install  ## start the server on http://$(HOST):$(PORT) with SQLite under ./.redline
	$(VENV)/bin/redline serve --host $(HOST) --port $(PORT)

test: install  ## the whole suite, on SQLite and then on PostgreSQL
	$(MAKE) --no-print-directory test-sqlite
	$(MAKE) --no-print-directory test-postgres

# Browser tests run in a pytest process of their own: Playwright's sync API keeps an event
# loop running in the main thread for the rest of the session, where the asyncio-based
# client tests (SDK AsyncClient, MCP sessions) need to start their own.
test-sqlite: install
	REDLINE_TEST_DB=sqlite $(PY) -m pytest -m "not browser" $(PYTEST_ARGS)
	REDLINE_TEST_DB=sqlite $(PY) -m pytest -m browser $(PYTEST_ARGS)

test-postgres: install
	REDLINE_TEST_DB=postgres $(PY) -m pytest -m "not browser" $(PYTEST_ARGS)
	REDLINE_TEST_DB=postgres $(PY) -m pytest -m browser $(PYTEST_ARGS)

bench: install  ## benchmarks: print figures beside their baselines
	for b in bench/*.py; do $(PY) $$b || exit 1; done

lint: install  ## ruff, the layer contracts (import-linter, [tool.importlinter]), mypy over src/
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/lint-imports --no-cache --no-logo
	$(VENV)/bin/mypy src

clean:
	rm -rf $(VENV) .pytest_cache
