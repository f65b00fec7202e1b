# The two commands the README starts with: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
DATA_DIR ?= ./data

.PHONY: setup run test test-fast lint typecheck pytest browser clean

## llama-cpp-python (the `llm` extra) compiles llama.cpp: portable CPU code (the native build of a
## build machine crashed elsewhere; no AVX-512/AMX, no OpenMP). pip caches the wheel: ~8 min once.
$(STAMP): export CMAKE_ARGS = -DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF \
	-DGGML_AMX_BF16=OFF -DGGML_OPENMP=OFF
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,train,llm]'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/vision-agent serve --host $(HOST) --port $(PORT) --data-dir $(DATA_DIR)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP) browser
	$(PY) -m pytest $(PYTEST_ARGS)

## Debian's chromium (+ a Korean font for the screenshots) for tests/web/browser; skipped when present.
## Playwright drives it at /usr/bin/chromium: no browser is ever downloaded.
browser:
	@if [ -x /usr/bin/chromium ] && [ -d /usr/share/fonts/truetype/nanum ]; then :; else \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  { $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium fonts-nanum; } \
	    || echo "warning: could not install chromium (apt-get); the browser tests will fail"; \
	fi

## Everything CI checks: lint, types, the whole test suite (slow tests included).
test: lint typecheck pytest

## The quick loop while working: the tests not marked slow, in parallel (pytest-xdist, one worker
## per core; a test module stays on one worker, so its module-scoped servers start once).
test-fast: $(STAMP) browser
	$(PY) -m pytest -m "not slow" -n auto --dist loadfile $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
