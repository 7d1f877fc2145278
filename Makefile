# The two commands a newcomer needs:  `make up`  (the whole hub, with a demo)  and  `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up test deps install kafka clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	touch $(STAMP)

deps:
	bash deploy/system-deps.sh

install: deps $(STAMP)

kafka: install
	$(BIN)/cityops kafka fetch

up: kafka
	$(BIN)/cityops up

test: kafka
	$(BIN)/python -m pytest

clean:
	rm -rf .state
