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

# The benchmarks (docs/performance.md): crawl speed and memory (bench/README.md), storage
# throughput, rendering, and the distributed crawl (needs Redis) when its script is there.
# Services as for `make test`, plus nginx (tools/test-services.sh --bench); BENCH_ARGS go to bench/run.py.
bench: install-test
	bash tools/test-services.sh --bench
	$(PIP) install -e '.[fast]'
	$(BIN)/python bench/run.py $(BENCH_ARGS)
	$(BIN)/python bench/storage_bench.py
	$(BIN)/python bench/render_bench.py --pages 500
	if [ -f bench/redis_bench.py ]; then $(BIN)/python bench/redis_bench.py; fi

clean:
	rm -rf $(VENV) demo-items.jsonl
