# The two commands a newcomer needs:  `make up`  (the whole hub, with a demo)  and  `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The official AsyncAPI parser (Node), used by tests/contract/test_asyncapi_document.py.
ASYNCAPI_CHECK := tools/asyncapi-check
NODE_STAMP := $(ASYNCAPI_CHECK)/node_modules/.installed
# The console's browser files (htmx, its SSE extension, Apache ECharts): served by the console itself, never a CDN.
CONSOLE_STATIC := services/console/static
CONSOLE_STAMP := $(CONSOLE_STATIC)/node_modules/.installed

.PHONY: up test deps install kafka clean lint

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	touch $(STAMP)

$(NODE_STAMP): $(ASYNCAPI_CHECK)/package.json $(ASYNCAPI_CHECK)/package-lock.json
	cd $(ASYNCAPI_CHECK) && npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

$(CONSOLE_STAMP): $(CONSOLE_STATIC)/package.json $(CONSOLE_STATIC)/package-lock.json
	cd $(CONSOLE_STATIC) && npm ci --no-audit --no-fund
	touch $(CONSOLE_STAMP)

deps:
	bash deploy/system-deps.sh

install: deps $(STAMP) $(NODE_STAMP) $(CONSOLE_STAMP)

kafka: install
	$(BIN)/cityops kafka fetch

up: kafka
	$(BIN)/cityops up

test: kafka
	$(BIN)/python -m pytest

# ruff and mypy alone: the same test `make test` runs (it passes mypy every top-level package present).
lint: install
	$(BIN)/python -m pytest -q tests/unit/test_static_checks.py

clean:
	rm -rf .state
