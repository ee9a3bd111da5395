# The two commands: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip --disable-pip-version-check -q

.PHONY: demo test install install-test services lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/python
	$(PIP) install -e .

install-test: $(BIN)/python
	$(PIP) install -e '.[test]'

demo: install
	$(BIN)/wfcrawl demo --workflow workflows/demo.yaml --out demo-items.jsonl

services:
	bash tools/test-services.sh

test: install-test services
	$(BIN)/python -m pytest -q

lint: install-test
	$(PIP) install ruff mypy types-PyYAML
	$(BIN)/ruff check wfcrawl tests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) demo-items.jsonl
