# The two commands a newcomer needs: `make run` (install + serve) and `make test` (install + test).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint typecheck bench clean

run: $(VENV)/.runtime
	$(PY) -m uvicorn main:app --host $(HOST) --port $(PORT)

test: $(VENV)/.dev
	./.ci/system-deps
	$(PY) -m pytest -n 2 --dist loadfile

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

typecheck: $(VENV)/.dev
	$(VENV)/bin/mypy

bench: $(VENV)/.dev
	$(PY) bench/candle_store_bench.py
	$(PY) bench/indicators_bench.py
	$(PY) bench/backtest_bench.py
	$(PY) bench/api_bench.py
	$(PY) bench/report_bench.py

$(VENV)/.python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (set PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	touch $@

$(VENV)/.runtime: requirements.txt $(VENV)/.python
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt requirements-distributed.txt $(VENV)/.python
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

clean:
	rm -rf $(VENV)
