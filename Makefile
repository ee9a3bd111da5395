# The two commands: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip --disable-pip-version-check -q

.PHONY: demo test test-oldest install install-test services lint bench fuzz clean image-test stack-test

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

# The image and stack tests are their own targets (they build images): not collected here.
OPT_IN_TESTS := --ignore=tests/test_deploy_image.py --ignore=tests/test_deploy_stack.py

test: install-test services
	$(BIN)/python -m pytest -q $(OPT_IN_TESTS)

# The oldest Scrapy pyproject.toml admits, in a venv of its own: CI tests both ends of the
# range (make test: the newest), so a change in Scrapy's internals breaks CI, not users.
SCRAPY_OLDEST := $(shell sed -n 's/.*"scrapy>=\([0-9.]*\),.*/\1/p' pyproject.toml)
OLDEST := .venv-oldest
# The tests that exercise Scrapy's APIs and the few internals wfcrawl uses.
COMPAT_TESTS ?= tests/test_crawl_examples.py tests/test_crawl_robustness.py tests/test_middlewares_concurrency.py \
	tests/test_metarefresh.py tests/test_scheduler_distributed.py tests/test_durability_gate.py \
	tests/test_parse_workers.py tests/test_downloader_aiohttp.py tests/test_ops_metrics.py tests/test_cli.py \
	tests/test_utils_threads.py

test-oldest: services
	test -x $(OLDEST)/bin/python || $(PYTHON) -m venv $(OLDEST)
	$(OLDEST)/bin/pip --disable-pip-version-check -q install -e '.[test]' 'scrapy==$(SCRAPY_OLDEST)'
	$(OLDEST)/bin/python -m pytest -q $(COMPAT_TESTS)

lint: install-test
	$(PIP) install ruff mypy types-PyYAML
	$(BIN)/ruff check wfcrawl tests
	$(BIN)/mypy

# The benchmarks (docs/performance.md): crawl speed and memory (bench/README.md), storage
# throughput, rendering, the launch API of `wfcrawl serve`, the distributed crawl
# (needs Redis) when its script is there, and the fleet of 1-100 instances (needs root).
# Services as for `make test`, plus nginx (tools/test-services.sh --bench); BENCH_ARGS go to bench/run.py.
bench: install-test
	bash tools/test-services.sh --bench
	$(PIP) install -e '.[fast]'
	$(BIN)/python bench/run.py $(BENCH_ARGS)
	$(BIN)/python bench/storage_bench.py
	$(BIN)/python bench/render_bench.py --pages 500
	$(BIN)/python bench/api_bench.py
	if [ -f bench/redis_bench.py ]; then $(BIN)/python bench/redis_bench.py; fi
	if [ "$$(id -u)" = 0 ]; then $(BIN)/python bench/fleet_bench.py --instances 1,10,50,100 --latency 0.2 --concurrency 2; \
	else echo "bench/fleet_bench.py skipped: needs root (network namespaces)"; fi
	$(BIN)/python bench/fuzz_loader.py

# Fuzz the workflow loader (bench/fuzz_loader.py): FUZZ_ARGS="--examples 20000" for a longer run.
fuzz: install-test
	$(BIN)/python bench/fuzz_loader.py $(FUZZ_ARGS)

# Opt-in (docs/deploy.md#testing-the-image-and-the-stack): build docker/Dockerfile on a
# debootstrap base (nothing pulled) and run the image; needs root or a running Docker engine.
image-test: install-test
	bash tools/image-test.sh

# Opt-in: the compose stack on locally built images; a launch through its API writes rows.
stack-test: install-test
	bash tools/stack-test.sh

clean:
	rm -rf $(VENV) $(OLDEST) demo-items.jsonl
